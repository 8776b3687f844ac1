// npm run soak [-- --quick] [-- --images N]: the host's reliability as figures, in one bounded run on the committed
// tiny bundle, over stdio only. Prints: requests served; every hostile input tried and what it got; cancels (queued,
// during the image encoders, during decoding) with their latency from cancel to answer (goal <= 100 ms); host kills
// (SIGKILL mid-turn) with restarts and chat turns lost (goal 0); and the host's RSS over requests on distinct images
// (goal: flat once the embedding cache is full). Not part of npm test: it measures, it does not assert.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { type ChatTurn, Methods, type SegmentParams } from '../src/protocol/rpc';
import { CancellationTokenSource, HostClient, SERVER_JS } from '../test/helpers/host-client';

const REPO = path.resolve(__dirname, '..', '..');
const BUNDLE = path.join(REPO, 'test', 'fixtures', 'bundles', 'tiny-7b');
const BUNDLE_13B = path.join(REPO, 'test', 'fixtures', 'bundles', 'tiny-13b');
const IMAGES = path.join(REPO, 'test', 'fixtures', 'images');
const CHELSEA = path.join(BUNDLE, 'images', 'chelsea.png');
const CACHE_MB = 16; // a small embedding cache, so that it is full after a few dozen images and RSS must then stay flat

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const imagesArg = args.indexOf('--images');
const DISTINCT = imagesArg >= 0 ? Number(args[imagesArg + 1]) : quick ? 120 : 500;
const CANCELS = quick ? 10 : 30; // of each kind
const KILLS = quick ? 3 : 10;
const DEADLINE = Date.now() + (quick ? 5 : 14) * 60_000; // the run stops itself, cutting the RSS phase short if need be

const tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-soak-'));
const env = { XDG_CACHE_HOME: tmp, REASON_SEGMENT_CACHE_MB: String(CACHE_MB) };
let served = 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const short = (s: string, n = 110) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

async function startHost(): Promise<HostClient> {
  const host = await HostClient.start(env);
  await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cpu' });
  return host;
}

function segment(host: HostClient, params: Partial<SegmentParams>, token?: CancellationTokenSource) {
  const p = host.request(
    Methods.segment,
    { image: { path: CHELSEA }, prompt: 'What is here?', history: [], maxNewTokens: 4, ...params },
    token,
  );
  return p.then((r) => {
    served++;
    return r;
  });
}

async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'served (!)';
  } catch (e) {
    const err = e as { code: number; message: string };
    return `${err.code} ${short(err.message.replace(/\n/g, '\\n'))}`;
  }
}

// ---- hostile inputs ----------------------------------------------------------------------------------------------

async function hostileInputs(host: HostClient): Promise<void> {
  console.log('\nhostile inputs (each followed by an ordinary request, which must be served):');
  const fifo = path.join(tmp, 'pipe.png');
  execFileSync('mkfifo', [fifo]);
  const svg = path.join(tmp, 'bomb.svg');
  writeFileSync(
    svg,
    '<svg xmlns="http://www.w3.org/2000/svg" width="9900" height="9900"><filter id="b"><feGaussianBlur stdDeviation="900"/></filter><rect width="9900" height="9900" filter="url(#b)"/></svg>',
  );
  const swapped = path.join(tmp, 'swapped');
  cpSync(BUNDLE, swapped, { recursive: true });
  for (const f of ['decoder.onnx', 'decoder.onnx_data'])
    copyFileSync(path.join(BUNDLE_13B, 'onnx', f), path.join(swapped, 'onnx', f));
  const mf = path.join(swapped, 'lisa.manifest.json');
  const manifest = JSON.parse(readFileSync(mf, 'utf8'));
  for (const rel of Object.keys(manifest.files)) {
    const bytes = readFileSync(path.join(swapped, rel));
    manifest.files[rel] = { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length };
  }
  writeFileSync(mf, JSON.stringify(manifest));

  const cases: Array<[string, () => Promise<unknown>]> = [
    ['a FIFO as the image', () => segment(host, { image: { path: fifo } })],
    ['/dev/zero', () => segment(host, { image: { path: '/dev/zero' } })],
    ['/dev/urandom', () => segment(host, { image: { path: '/dev/urandom' } })],
    ['a folder', () => segment(host, { image: { path: tmp } })],
    ['a 9900x9900 SVG with a blur (223 bytes)', () => segment(host, { image: { path: svg } })],
    ['a zero-byte file', () => segment(host, { image: { path: path.join(IMAGES, 'empty.png') } })],
    ['a truncated PNG', () => segment(host, { image: { path: path.join(IMAGES, 'truncated.png') } })],
    ['a truncated JPEG', () => segment(host, { image: { path: path.join(IMAGES, 'truncated.jpg') } })],
    ['text named .png', () => segment(host, { image: { path: path.join(IMAGES, 'not-an-image.png') } })],
    ['a decompression bomb', () => segment(host, { image: { path: path.join(IMAGES, 'bomb.png') } })],
    ['a missing file', () => segment(host, { image: { path: path.join(tmp, 'nope.png') } })],
    [
      'inline bytes that are not an image',
      () => segment(host, { image: { data: Buffer.from('hello').toString('base64') } }),
    ],
    ['an unknown image hash', () => segment(host, { image: { sha256: '0'.repeat(64) } })],
    ['"<image>" in the prompt', () => segment(host, { prompt: 'What is <image>?' })],
    ['"<image>" in history', () => segment(host, { history: [{ user: '<image>', assistant: 'ok' }] })],
    ['a blank prompt', () => segment(host, { prompt: ' \t ' })],
    ['a prompt over the context', () => segment(host, { prompt: 'cat '.repeat(5000) })],
    // a failed load leaves no model (the old one is freed first), so the good one is loaded again
    [
      'a decoder swapped in from tiny-13b (checksums updated)',
      () =>
        host
          .request(Methods.loadModel, { bundle: swapped, device: 'cpu' })
          .finally(() => host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cpu' })),
    ],
  ];
  for (const [what, run] of cases) {
    const got = await outcome(run());
    const after = await outcome(
      segment(host, { maxNewTokens: 1 }).then(() => Promise.reject({ code: 0, message: 'ok' })),
    );
    console.log(`  ${what.padEnd(56)} -> ${got}${after.startsWith('0 ok') ? '' : `  THEN ${after}`}`);
  }

  console.log('\nbroken stdio framing (a fresh host each; a framing error must end it with status 3, EOF with 0):');
  const frame = (body: string) => `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  const framing: Array<[string, string]> = [
    ['garbage bytes', 'garbage garbage\r\n\r\n'],
    ['Content-Length: -5', 'Content-Length: -5\r\n\r\n{}'],
    ['a length larger than the body, then EOF', 'Content-Length: 100\r\n\r\n{}'],
    ['Content-Length: 99999999999', 'Content-Length: 99999999999\r\n\r\n'],
    ['invalid JSON in a valid frame, then EOF', frame('{nope')],
    ['EOF at once', ''],
  ];
  for (const [what, input] of framing) {
    const t0 = performance.now();
    const child = spawn(process.execPath, [SERVER_JS], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.stdin.end(input);
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    const line = stderr
      .split('\n')
      .filter((l) => l && !/listening on stdio/.test(l))
      .map((l) => l.replace(/^\[[^\]]*\] /, ''))
      .join(' | ');
    const reply = /"code":(-?\d+)/.exec(stdout)?.[1];
    console.log(
      `  ${what.padEnd(56)} -> exit ${code} in ${(performance.now() - t0).toFixed(0)} ms${reply ? `, replied ${reply}` : ''}: ${short(line, 90)}`,
    );
  }
}

// ---- cancels -----------------------------------------------------------------------------------------------------

async function distinctImage(i: number, dir: string): Promise<string> {
  const w = 48 + (i % 17) * 4;
  const h = 40 + (i % 13) * 4;
  const raw = Buffer.alloc(w * h * 3);
  let s = (i + 1) * 2654435761;
  for (let j = 0; j < raw.length; j++) {
    s = (s * 1103515245 + 12345) >>> 0;
    raw[j] = s >>> 24;
  }
  const file = path.join(dir, `img-${i}.png`);
  await sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toFile(file);
  return file;
}

async function cancels(host: HostClient, images: string[]): Promise<void> {
  const latencies: Record<string, number[]> = { queued: [], 'during the encoders': [], 'during decoding': [] };
  let next = 0;
  const fresh = () => images[next++ % images.length];
  const timeCancel = async (p: Promise<unknown>, source: CancellationTokenSource): Promise<number> => {
    const t0 = performance.now();
    source.cancel();
    await p.catch(() => undefined);
    return performance.now() - t0;
  };
  for (let i = 0; i < CANCELS && Date.now() < DEADLINE; i++) {
    // queued: behind a request that decodes for a while
    const ahead = segment(host, { image: { path: fresh() }, prompt: 'Describe everything.', maxNewTokens: 60 });
    const source = new CancellationTokenSource();
    const queued = segment(host, { image: { path: fresh() } }, source);
    await sleep(20);
    latencies.queued.push(await timeCancel(queued, source));
    await ahead;

    // during the image encoders: a new image, cancelled shortly after it was sent
    const s2 = new CancellationTokenSource();
    const encoding = segment(host, { image: { path: fresh() }, maxNewTokens: 60 }, s2);
    await sleep(150);
    latencies['during the encoders'].push(await timeCancel(encoding, s2));

    // during decoding: a cached image, cancelled once text streams
    const s3 = new CancellationTokenSource();
    host.deltas.length = 0;
    const decoding = segment(host, { maxNewTokens: 400, requestId: `c${i}` }, s3);
    while (!host.deltas.some((d) => d.requestId === `c${i}`)) await sleep(2);
    latencies['during decoding'].push(await timeCancel(decoding, s3));
  }
  await segment(host, { maxNewTokens: 1 }); // the queue is drained before the next stage
  console.log('\ncancels: latency from cancel to answer (ms), goal <= 100:');
  for (const [kind, xs] of Object.entries(latencies)) {
    if (!xs.length) continue;
    const over = xs.filter((x) => x > 100).length;
    console.log(
      `  ${kind.padEnd(22)} n=${String(xs.length).padStart(3)}  min ${Math.min(...xs).toFixed(1)}  p50 ${pct(xs, 50).toFixed(1)}  p90 ${pct(xs, 90).toFixed(1)}  max ${Math.max(...xs).toFixed(1)}  over 100 ms: ${over}`,
    );
  }
}

// ---- host kills --------------------------------------------------------------------------------------------------

/** A client that keeps the conversation and, when the host dies, starts a new one and asks the same turn again. */
async function kills(): Promise<void> {
  let host = await startHost();
  const history: ChatTurn[] = [];
  let restarts = 0;
  let lost = 0;
  const turns = KILLS * 2;
  for (let t = 0; t < turns; t++) {
    const params = { prompt: `Turn ${t}: what is here?`, history: [...history], maxNewTokens: 40, requestId: `k${t}` };
    const died = new Promise<never>((_, reject) => host.child.once('exit', () => reject(new Error('the host died'))));
    const pending = Promise.race([segment(host, params), died]);
    pending.catch(() => undefined);
    if (t % 2 === 0) {
      // kill the host mid-turn, once it streams
      host.deltas.length = 0;
      while (!host.deltas.some((d) => d.requestId === `k${t}`) && host.child.exitCode === null) await sleep(2);
      host.child.kill('SIGKILL');
    }
    let answer: string | undefined;
    try {
      answer = (await pending).answer;
    } catch {
      for (let attempt = 0; attempt < 3 && answer === undefined; attempt++) {
        await host.stop().catch(() => undefined);
        host = await startHost();
        restarts++;
        answer = await segment(host, params).then(
          (r) => r.answer,
          () => undefined,
        );
      }
    }
    if (answer === undefined) lost++;
    else history.push({ user: params.prompt, assistant: answer });
  }
  await host.stop();
  console.log(
    `\nhost kills: ${Math.ceil(turns / 2)} SIGKILLs mid-turn over ${turns} chat turns, ${restarts} restarts, ${lost} turns lost (goal 0), history kept ${history.length} turns`,
  );
}

// ---- memory ------------------------------------------------------------------------------------------------------

async function memory(host: HostClient, images: string[]): Promise<void> {
  const samples: Array<[number, number]> = [];
  const every = Math.max(10, Math.floor(images.length / 10));
  const t0 = performance.now();
  let n = 0;
  for (const [i, file] of images.entries()) {
    if (Date.now() > DEADLINE) break;
    await segment(host, { image: { path: file }, maxNewTokens: 2 });
    n++;
    if ((i + 1) % every === 0 || i === 0) samples.push([i + 1, rssMb(host.child.pid!)]);
  }
  const status = await host.request(Methods.status, undefined);
  const cacheFull = samples.find(([k]) => k >= Math.ceil((CACHE_MB * 1024 * 1024) / (700 * 1024)) * 2) ?? samples[0];
  const last = samples[samples.length - 1];
  console.log(
    `\nhost RSS over ${n} requests on distinct images (${((performance.now() - t0) / 1000).toFixed(0)} s, embedding cache ${CACHE_MB} MB, now ${(status.counters.cacheBytes / 1048576).toFixed(1)} MB):`,
  );
  console.log(`  ${samples.map(([k, mb]) => `${k}: ${mb.toFixed(0)} MB`).join(', ')}`);
  console.log(
    `  growth after the cache filled (request ${cacheFull[0]} -> ${last[0]}): ${(last[1] - cacheFull[1]).toFixed(1)} MB`,
  );
}

async function main(): Promise<void> {
  const started = Date.now();
  console.log(
    `soak: ${quick ? 'quick' : 'full'} run, tiny-7b on cpu, ${DISTINCT} distinct images, ${CANCELS} cancels of each kind, ${KILLS} kills; stops by ${new Date(DEADLINE).toISOString()}`,
  );
  const dir = path.join(tmp, 'images');
  mkdirSync(dir);
  const images: string[] = [];
  for (let i = 0; i < DISTINCT + 3 * CANCELS; i++) images.push(await distinctImage(i, dir));

  const host = await startHost();
  try {
    await hostileInputs(host);
    await cancels(host, images.slice(DISTINCT));
  } finally {
    await host.stop();
  }
  await kills();
  // Last, in a fresh host, so that the RSS is the serving's alone; the deadline cuts this phase short, if any.
  const fresh = await startHost();
  try {
    await memory(fresh, images.slice(0, DISTINCT));
  } finally {
    await fresh.stop();
  }
  console.log(
    `\nrequests served: ${served}; run time ${((Date.now() - started) / 1000).toFixed(0)} s${Date.now() > DEADLINE ? ' (stopped at its time limit)' : ''}`,
  );
}

main()
  .catch((e) => {
    console.error(`soak failed: ${(e as Error).stack ?? e}`);
    process.exitCode = 1;
  })
  .finally(() => rmSync(tmp, { recursive: true, force: true }));
