// `node out/bench/serve.js [--model <bundle>]... [--requests N] [--new-tokens N] [--rounds N] [--clients 1,4,16]`:
// throughput of one `reason-segment serve` (images per minute) with 1, 4 and 16 concurrent clients, and the same
// requests through the pipeline in this process, for each bundle (by default the tiny-7b fixture and the 1B w8a8 bench
// bundle that `npm run bench` builds), measured in one run and printed side by side; one copy of a model is loaded at
// a time. Every request carries a new image (a photo with a unique tail after its end marker, so its sha256 and the
// embedding cache miss): each pays for decoding and both image encoders, as in a batch. Requests go in the binary
// tensor data extension, as tritonclient sends them.
import { existsSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { stopPreprocessWorker } from '../src/host/image/preprocess';
import { LisaPipeline } from '../src/host/pipeline';
import { serializeBytes } from '../src/host/serve/oip';
import { REPO } from '../test/helpers/bundles';
import { request, startServer } from '../test/helpers/oip';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
};
const args = (name: string) => process.argv.flatMap((a, i) => (a === name ? [process.argv[i + 1]] : []));
const BENCH_1B = path.join(
  process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'),
  'reason-segment',
  'bench-1b',
  'bundle-w8a8',
);
const BUNDLES = (
  args('--model').length ? args('--model') : [path.join(REPO, 'test', 'fixtures', 'bundles', 'tiny-7b'), BENCH_1B]
).map((b) => path.resolve(b));
/** Requests per setting; at least one per client, so that 16 clients are 16 at once. */
const REQUESTS = Number(arg('--requests') ?? 12);
const NEW_TOKENS = Number(arg('--new-tokens') ?? 16);
const ROUNDS = Number(arg('--rounds') ?? 3);
const PROMPT = 'Which object in this picture would keep a drink warm the longest? Please output segmentation mask.';
const PREFIX = 'Sure, [SEG].';
const PHOTOS = ['coffee.jpg', 'chelsea.jpg', 'rocket.jpg'].map((f) =>
  readFileSync(path.join(REPO, 'test', 'fixtures', 'images', f)),
);

let serial = 0;
/** A photo no request has sent before: bytes after the JPEG's end marker are ignored by decoders but change the hash. */
const freshImage = () =>
  Buffer.concat([PHOTOS[serial % PHOTOS.length], Buffer.from(`bench-${process.pid}-${serial++}`)]);

function inferBody(image: Buffer): { body: Buffer; headerLength: number } {
  const tensors: Array<[string, Buffer]> = [
    ['IMAGE', image],
    ['PROMPT', Buffer.from(PROMPT)],
    ['ASSISTANT_PREFIX', Buffer.from(PREFIX)],
  ];
  const blobs = tensors.map(([, v]) => serializeBytes([v]));
  const tokens = Buffer.alloc(4);
  tokens.writeInt32LE(NEW_TOKENS);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        ...tensors.map(([name], i) => ({
          name,
          shape: [1],
          datatype: 'BYTES',
          parameters: { binary_data_size: blobs[i].length },
        })),
        { name: 'MAX_NEW_TOKENS', shape: [1], datatype: 'INT32', parameters: { binary_data_size: 4 } },
      ],
      outputs: [{ name: 'RESULT' }],
    }),
  );
  return { body: Buffer.concat([header, ...blobs, tokens]), headerLength: header.length };
}

const perMinute = (n: number, ms: number) => (n / ms) * 60_000;

async function throughput(
  port: number,
  clients: number,
  requests: number,
): Promise<{ perMin: number; cacheHits: number }> {
  let next = 0;
  let cacheHits = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      while (next < requests) {
        next++;
        const { body, headerLength } = inferBody(freshImage());
        const reply = await request(
          port,
          'POST',
          '/v2/models/reason-segment/infer',
          body,
          { 'inference-header-content-length': String(headerLength) },
          agent,
        );
        if (reply.status !== 200) throw new Error(`infer answered ${reply.status}: ${reply.body}`);
        const result = JSON.parse(JSON.parse(reply.body.toString()).outputs[0].data[0]);
        if (result.timings.cacheHit) cacheHits++;
      }
      agent.destroy();
    }),
  );
  return { perMin: perMinute(requests, performance.now() - t0), cacheHits };
}

async function inProcess(p: LisaPipeline, requests: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < requests; i++) {
    await p.segment({
      image: { data: freshImage() },
      prompt: PROMPT,
      assistantPrefix: PREFIX,
      maxNewTokens: NEW_TOKENS,
      includePng: false,
    });
  }
  return perMinute(requests, performance.now() - t0);
}

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** Concurrent clients of the server, `--clients 1,4,16` (a 1B bundle on a busy machine may need fewer settings). */
const CLIENTS = (arg('--clients') ?? '1,4,16').split(',').map(Number);
const IN_PROCESS = 'in-process pipeline';
const label = (clients: number) => `server, ${String(clients).padStart(2)} client(s)`;

/**
 * Every setting's images per minute, ROUNDS times. Within a round the server's settings run, then the in-process
 * pipeline's: one copy of the model is loaded at a time (a 1B fp32 bundle is 4 GB), each warmed up after loading.
 */
async function measure(bundle: string): Promise<Map<string, number[]>> {
  const figures = new Map<string, number[]>([
    ...CLIENTS.map((c): [string, number[]] => [label(c), []]),
    [IN_PROCESS, []],
  ]);
  const note = (l: string, round: number, x: number) => {
    figures.get(l)!.push(x);
    console.log(`  ${path.basename(bundle)} round ${round + 1}: ${l} ${x.toFixed(1)} images/min`);
  };
  for (let round = 0; round < ROUNDS; round++) {
    // A 1B fp32 bundle's checksums and sessions take minutes on a busy machine, and one request can take over the
    // server's default 300 s there (seen at load 37).
    const server = await startServer(
      ['--model', bundle, '--max-queue', '64', '--request-timeout', '3600'],
      process.env,
      15 * 60_000,
    );
    try {
      await throughput(server.port, 1, 1); // warm-up
      for (const clients of CLIENTS) {
        const { perMin, cacheHits } = await throughput(server.port, clients, Math.max(REQUESTS, clients));
        if (cacheHits)
          throw new Error(`${cacheHits} requests hit the embedding cache; the images were meant to be new`);
        note(label(clients), round, perMin);
      }
    } finally {
      await server.stop();
    }
    const local = await LisaPipeline.load(bundle, { verifyCacheFile: null });
    try {
      await inProcess(local, 1); // warm-up
      note(IN_PROCESS, round, await inProcess(local, REQUESTS));
    } finally {
      await local.dispose();
    }
  }
  return figures;
}

async function main(): Promise<void> {
  const missing = BUNDLES.filter((b) => !existsSync(path.join(b, 'lisa.manifest.json')));
  if (missing.length) {
    throw new Error(
      `no bundle at ${missing.join(', ')}; build the 1B bench bundles with \`npm run bench\` (once), or name bundles with --model`,
    );
  }
  console.log(
    `reason-segment serve throughput on ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}, load average ${os.loadavg()[0].toFixed(1)}`,
  );
  console.log(
    `${REQUESTS} requests per setting (at least one per client), each a new image, ${NEW_TOKENS} new tokens, one [SEG]; ` +
      `${ROUNDS} round(s) (the server's settings, then in-process), median shown\n`,
  );
  const results: Array<[string, Map<string, number[]>]> = [];
  for (const bundle of BUNDLES) results.push([path.relative(REPO, bundle) || bundle, await measure(bundle)]);
  await stopPreprocessWorker();

  const width = Math.max(...results.map(([name]) => name.length), 22);
  console.log(`\nimages/min (rounds)      ${results.map(([name]) => name.padEnd(width)).join('  ')}`);
  for (const l of [...CLIENTS.map(label), IN_PROCESS]) {
    const cells = results.map(([, f]) => {
      const xs = f.get(l)!;
      return `${median(xs).toFixed(1)} (${xs.map((x) => x.toFixed(1)).join(', ')})`.padEnd(width);
    });
    console.log(`  ${l.padEnd(22)} ${cells.join('  ')}`);
  }
  const overhead = results.map(([, f]) => {
    const one = median(f.get(label(1))!);
    const inproc = median(f.get(IN_PROCESS)!);
    return `${(inproc / one).toFixed(3)}, ${(60_000 / one - 60_000 / inproc).toFixed(0)} ms/image`.padEnd(width);
  });
  console.log(`  ${'server / in-process'.padEnd(22)} ${overhead.join('  ')}`);
  console.log(
    '\n  server / in-process: server time per image with 1 client over the in-process time, and the difference (HTTP, tensor coding, result JSON)',
  );
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
