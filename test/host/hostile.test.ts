// Hostile input and faults, against the real host and CLI processes (issue 9, section 3): paths that are not image
// files, SVG bombs, broken stdio framing, cancels of queued requests, bundles whose graphs do not match their manifest,
// and refusals that must be one clear line. Every case ends with the host still serving, or exiting on purpose.
import * as assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type HostCounters, Methods, RpcErrorCode, type SegmentParams } from '../../src/protocol/rpc';
import { FIXTURE_BUNDLES, REPO } from '../helpers/bundles';
import { CancellationTokenSource, HostClient, SERVER_JS } from '../helpers/host-client';

const BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-7b');
const BUNDLE_13B = path.join(FIXTURE_BUNDLES, 'tiny-13b');
const CHELSEA = path.join(BUNDLE, 'images', 'chelsea.png');
const CLI = path.join(REPO, 'out', 'src', 'host', 'cli.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-hostile-'));

async function rpcError(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code: number; message: string };
  }
  assert.fail('expected the request to fail');
}

const frame = (body: string) => `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

/**
 * Starts a bare host, writes `input` to its stdin, closes stdin when `end` (at once, or once the output has that many
 * messages), and collects what comes back.
 */
function rawHost(
  input: string,
  end: boolean | number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [SERVER_JS], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, XDG_CACHE_HOME: tmp },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
    if (typeof end === 'number' && stdout.split('Content-Length').length - 1 >= end) child.stdin.end();
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  child.stdin.write(input);
  if (end === true) child.stdin.end();
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

after(() => rmSync(tmp, { recursive: true, force: true }));

const hostLines = (stderr: string) => stderr.split('\n').filter((l) => l && !/listening on stdio/.test(l));

describe('hostile input: stdio framing', function () {
  this.timeout(60_000);

  const fatal: Array<[string, string, boolean, RegExp]> = [
    ['garbage bytes', 'garbage garbage\r\n\r\n', false, /not "Name: value"/],
    ['garbage without a header end', 'x'.repeat(10_000), false, /no end of header/],
    ['a negative Content-Length', 'Content-Length: -5\r\n\r\n{}', false, /"-5" is not a byte count/],
    ['a huge Content-Length', 'Content-Length: 99999999999\r\n\r\n', false, /over the \d+-byte message limit/],
    [
      'a length larger than the body, then EOF',
      'Content-Length: 100\r\n\r\n{"jsonrpc":"2.0"}',
      true,
      /ended inside a message \(17 of 100/,
    ],
    ['a header without Content-Length', 'Content-Type: application/json\r\n\r\n{}', false, /without Content-Length/],
  ];
  for (const [what, input, end, why] of fatal) {
    it(`${what}: logs one line and ends the host with a non-zero status`, async () => {
      const r = await rawHost(input, end);
      assert.equal(r.code, 3, r.stderr);
      const lines = hostLines(r.stderr);
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], /framing error on stdin/);
      assert.match(lines[0], why);
    });
  }

  it('a message that stalls mid-body ends the host', async () => {
    const r = await rawHost('Content-Length: 100\r\n\r\n{"jsonrpc":', false);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /stalled: 11 of 100 body bytes/);
  });

  it('invalid JSON in a valid frame gets -32700, the host keeps serving, and EOF ends it with status 0', async () => {
    const status = JSON.stringify({ jsonrpc: '2.0', id: 7, method: Methods.status });
    const r = await rawHost(frame('{not json') + frame('[1, 2]') + frame(status), 3);
    assert.equal(r.code, 0, r.stderr);
    const bodies = r.stdout
      .split(/Content-Length: \d+\r\n\r\n/)
      .filter(Boolean)
      .map((b) => JSON.parse(b));
    assert.equal(bodies[0].error.code, -32700);
    assert.equal(bodies[0].id, null);
    assert.equal(bodies[1].error.code, -32600);
    assert.equal(bodies[2].id, 7);
    assert.equal(bodies[2].result.state, 'idle');
    assert.match(r.stderr, /stdin closed, exiting/);
  });
});

describe('hostile input: the host with a model loaded', function () {
  this.timeout(300_000);
  let host: HostClient;
  const segment = (params: Partial<SegmentParams>, token?: CancellationTokenSource) =>
    host.request(
      Methods.segment,
      { image: { path: CHELSEA }, prompt: 'What is here?', history: [], maxNewTokens: 4, ...params },
      token,
    );
  const counters = async (): Promise<HostCounters> => (await host.request(Methods.status, undefined)).counters;
  const stillServes = async () => assert.equal((await segment({ maxNewTokens: 2 })).outputIds.length, 2);

  before(async () => {
    host = await HostClient.start({ XDG_CACHE_HOME: tmp });
    await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cpu' });
  });
  after(async () => {
    await host?.stop();
  });

  it('a FIFO is refused at once, and the requests queued behind it are served', async () => {
    const fifo = path.join(tmp, 'pipe.png');
    execFileSync('mkfifo', [fifo]);
    const [refused, next] = await Promise.allSettled([
      segment({ image: { path: fifo } }),
      segment({ maxNewTokens: 2 }),
    ]);
    assert.equal(refused.status, 'rejected');
    const e = (refused as PromiseRejectedResult).reason;
    assert.equal(e.code, RpcErrorCode.ImageUnreadable);
    assert.match(e.message, /named pipe/);
    assert.equal(next.status, 'fulfilled');
  });

  for (const device of ['/dev/zero', '/dev/urandom']) {
    it(`${device} is refused without reading it`, async () => {
      const e = await rpcError(segment({ image: { path: device } }));
      assert.equal(e.code, RpcErrorCode.ImageUnreadable);
      assert.match(e.message, /character device/);
      await stillServes();
    });
  }

  it('a folder is refused as a folder', async () => {
    const e = await rpcError(segment({ image: { path: tmp } }));
    assert.match(e.message, /is a folder/);
  });

  it('a tiny SVG with a huge canvas and a blur is refused before rasterising', async () => {
    const svg = path.join(tmp, 'bomb.svg');
    writeFileSync(
      svg,
      '<svg xmlns="http://www.w3.org/2000/svg" width="9900" height="9900"><filter id="b"><feGaussianBlur stdDeviation="900"/></filter><rect width="9900" height="9900" filter="url(#b)"/></svg>',
    );
    const named = path.join(tmp, 'bomb.png');
    copyFileSync(svg, named);
    for (const file of [svg, named]) {
      const e = await rpcError(segment({ image: { path: file } }));
      assert.equal(e.code, RpcErrorCode.ImageUnreadable);
      assert.match(e.message, /SVG/);
    }
    await stillServes();
  });

  it('a cancelled queued request is answered before the one ahead of it ends, and never encodes its image', async () => {
    const before = await counters();
    host.deltas.length = 0;
    const ahead = segment({
      image: { path: path.join(BUNDLE, 'images', 'astronaut.png') },
      prompt: 'Describe everything.',
      maxNewTokens: 200,
      requestId: 'ahead',
    });
    let aheadDone = false;
    void ahead.then(
      () => {
        aheadDone = true;
      },
      () => undefined,
    );
    const source = new CancellationTokenSource();
    const queued = segment({ image: { path: path.join(BUNDLE, 'images', 'coffee.png') } }, source);
    source.cancel();
    const e = await rpcError(queued);
    assert.ok(e.code === RpcErrorCode.Cancelled || e.code === -32800, `cancel code ${e.code}`);
    assert.equal(aheadDone, false, 'the queued request was answered while the one ahead still ran');
    await ahead;
    const after = await counters();
    assert.equal(after.visionEncoderRuns - before.visionEncoderRuns, 1, 'only the request ahead encoded its image');
    assert.equal(after.imageDecodes - before.imageDecodes, 1);
  });

  it('"<image>" typed in a prompt or in history is refused as LISA does', async () => {
    for (const params of [
      { prompt: 'What is <image> here?' },
      { history: [{ user: 'hi <image>', assistant: 'ok' }] },
    ]) {
      const e = await rpcError(segment(params));
      assert.equal(e.code, RpcErrorCode.ParamsInvalid);
      assert.match(e.message, /<image>/);
    }
  });

  it('an answer cut by the context limit says so, not max_new_tokens', async () => {
    // The prompt's length in tokens, read from the host's own refusal, fixes how many "cat" tokens leave 3 free.
    const tokensOf = async (n: number) =>
      Number((await rpcError(segment({ prompt: 'cat '.repeat(n) }))).message.match(/is (\d+) tokens/)![1]);
    const [a, b] = [await tokensOf(3000), await tokensOf(4000)];
    const perRepeat = (b - a) / 1000;
    const n = 3000 - Math.ceil((a - (2048 - 3)) / perRepeat);
    const result = await segment({ prompt: 'cat '.repeat(n), maxNewTokens: 50 });
    assert.ok(result.outputIds.length < 50);
    const eos = JSON.parse(readFileSync(path.join(BUNDLE, 'lisa.manifest.json'), 'utf8')).tokens.eos;
    assert.equal(result.stopReason, result.outputIds.at(-1) === eos ? 'eos' : 'context_limit');
  });

  describe('bundles whose graphs do not match their manifest', () => {
    const copy = (name: string) => {
      const dir = path.join(tmp, name);
      cpSync(BUNDLE, dir, { recursive: true });
      return dir;
    };
    /** Rewrites the manifest's checksums, so that only the graphs' own signatures can give the swap away. */
    const rehash = (dir: string) => {
      const mf = path.join(dir, 'lisa.manifest.json');
      const manifest = JSON.parse(readFileSync(mf, 'utf8'));
      for (const rel of Object.keys(manifest.files)) {
        const bytes = readFileSync(path.join(dir, rel));
        manifest.files[rel] = { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length };
      }
      writeFileSync(mf, JSON.stringify(manifest, null, 2));
    };
    const load = (bundle: string) => rpcError(host.request(Methods.loadModel, { bundle, device: 'cpu' }));

    it('a decoder from the 13b layout is refused at load, naming the graph and the mismatch', async () => {
      const dir = copy('swap-13b');
      for (const f of ['decoder.onnx', 'decoder.onnx_data'])
        copyFileSync(path.join(BUNDLE_13B, 'onnx', f), path.join(dir, 'onnx', f));
      rehash(dir);
      const e = await load(dir);
      assert.equal(e.code, RpcErrorCode.BundleInvalid, e.message);
      // logits [1,1,V] since llm.logits "last" (2026-11-30), [1,S,V] before
      assert.match(
        e.message,
        /Graph decoder .* "logits" has shape \[1, (S|1), 1027\], the manifest says \[1, (S|1), 772\]/,
      );
      assert.doesNotMatch(e.message, /\n/);
    });

    it('two graphs swapped within a bundle are refused at load by their input names', async () => {
      const dir = copy('swap-names');
      const onnx = path.join(dir, 'onnx');
      copyFileSync(path.join(BUNDLE, 'onnx', 'embed_tokens.onnx'), path.join(onnx, 'seg_projector.onnx'));
      copyFileSync(path.join(BUNDLE, 'onnx', 'seg_projector.onnx'), path.join(onnx, 'embed_tokens.onnx'));
      rehash(dir);
      const e = await load(dir);
      assert.equal(e.code, RpcErrorCode.BundleInvalid, e.message);
      assert.match(e.message, /Graph embed_tokens .* no input "input_ids"/);
    });

    it('a graph that fails at run time is a bundle error with one line, not an internal error', async () => {
      const dir = copy('bad-preprocess');
      const mf = path.join(dir, 'lisa.manifest.json');
      const manifest = JSON.parse(readFileSync(mf, 'utf8'));
      manifest.sam_preprocess.long_side = 512;
      writeFileSync(mf, JSON.stringify(manifest));
      await host.request(Methods.loadModel, { bundle: dir, device: 'cpu' });
      // An answer with a [SEG]: one without it does not wait for SAM's encoder, which runs beside the language model.
      const e = await rpcError(segment({ assistantPrefix: 'Sure, [SEG].' }));
      assert.equal(e.code, RpcErrorCode.BundleInvalid, e.message);
      assert.match(e.message, /sam_image_encoder graph failed to run/);
      assert.doesNotMatch(e.message, /\n/);
    });

    it('the host then loads the good bundle and serves', async () => {
      await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cpu' });
      await stillServes();
    });
  });
});

describe('hostile input: the CLI', function () {
  this.timeout(180_000);
  const env = { ...process.env, XDG_CACHE_HOME: tmp };
  const cli = (args: string[], input?: string) => {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env, input, timeout: 120_000 });
    return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
  };
  const segmentArgs = ['segment', '--model', BUNDLE, '--image', CHELSEA, '--max-new-tokens', '3', '--json'];

  it('a command line over 29 KB does not crash ONNX Runtime (it used to exit 139)', () => {
    const r = cli([...segmentArgs, '--prompt', 'cat '.repeat(10_000)]);
    assert.equal(r.signal, null);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /tokens long with the image/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });

  it('--prompt-file reads a file or stdin, and answers as --prompt does', () => {
    const prompt = 'What is in this picture?';
    const file = path.join(tmp, 'prompt.txt');
    writeFileSync(file, `${prompt}\n`);
    const direct = JSON.parse(cli([...segmentArgs, '--prompt', prompt]).stdout);
    const fromFile = cli([...segmentArgs, '--prompt-file', file]);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    const fromStdin = cli([...segmentArgs, '--prompt-file', '-'], prompt);
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    for (const r of [fromFile, fromStdin]) {
      assert.equal(JSON.parse(r.stdout).prompt, prompt);
      assert.deepEqual(JSON.parse(r.stdout).outputIds, direct.outputIds);
    }
  });

  it('a blank prompt is refused before loading the model', () => {
    for (const extra of [
      ['--prompt', '  \t '],
      ['--prompt-file', '-'],
    ]) {
      const r = cli([...segmentArgs, ...extra], '\n\n');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /blank/);
      assert.doesNotMatch(r.stderr, /loaded/);
    }
  });

  it('non-files as --image: one line each', () => {
    for (const [image, why] of [
      ['/dev/zero', /character device/],
      [tmp, /folder/],
    ] as const) {
      const r = cli(['segment', '--model', BUNDLE, '--image', image, '--prompt', 'x', '--max-new-tokens', '1']);
      assert.equal(r.code, 1);
      const lines = r.stderr
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('loaded'));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], why);
    }
  });

  describe('batch --out', () => {
    const images = path.join(tmp, 'batch-images');
    before(() => {
      mkdirSync(images, { recursive: true });
      copyFileSync(CHELSEA, path.join(images, 'chelsea.png'));
    });
    const batch = (out: string) =>
      cli(['batch', '--model', BUNDLE, '--images', images, '--prompt', 'cat?', '--max-new-tokens', '2', '--out', out]);

    it('an existing file that is not our results is refused before any work and left untouched', () => {
      const out = path.join(tmp, 'notes.json');
      writeFileSync(out, '{"my": "notes"}');
      const r = batch(out);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /not a Reason Segment batch result; it was left untouched/);
      assert.doesNotMatch(r.stderr, /loaded/);
      assert.equal(readFileSync(out, 'utf8'), '{"my": "notes"}');
    });

    it('an unwritable place is refused before any work', function () {
      if (process.getuid?.() === 0) {
        // root writes anywhere; a missing folder stands in for an unwritable one
        const r = batch(path.join(tmp, 'no-such-dir', 'out.json'));
        assert.equal(r.code, 2);
        assert.match(r.stderr, /cannot write --out .*ENOENT/);
        assert.doesNotMatch(r.stderr, /loaded/);
        return;
      }
      const locked = path.join(tmp, 'locked');
      mkdirSync(locked);
      chmodSync(locked, 0o555);
      const r = batch(path.join(locked, 'out.json'));
      chmodSync(locked, 0o755);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /cannot write --out/);
      assert.doesNotMatch(r.stderr, /loaded/);
    });

    it('results are written whole and leave no temporary file behind', () => {
      const out = path.join(tmp, 'results.json');
      const r = batch(out);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(readFileSync(out, 'utf8')).images.length, 1);
      assert.equal(existsSync(`${out}.${process.pid}.tmp`), false);
      assert.deepEqual(
        readdirSync(tmp).filter((f) => f.endsWith('.tmp')),
        [],
      );
    });
  });
});
