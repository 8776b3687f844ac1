// `node out/bench/serve.js [--model <bundle>] [--requests N] [--new-tokens N] [--rounds N]`: throughput of one `reason-segment
// serve` (images per minute) with 1, 4 and 16 concurrent clients, and the same requests through the pipeline in this
// process, measured side by side in one run. Every request carries a new image (a photo with a unique tail after its
// end marker, so its sha256 and the embedding cache miss): each pays for decoding and both image encoders, as in a
// batch. Requests go in the binary tensor data extension, as tritonclient sends them.
import { readFileSync } from 'node:fs';
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
const BUNDLE = path.resolve(arg('--model') ?? path.join(REPO, 'test', 'fixtures', 'bundles', 'tiny-7b'));
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

async function main(): Promise<void> {
  console.log(
    `reason-segment serve throughput on ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}, load average ${os.loadavg()[0].toFixed(1)}`,
  );
  console.log(
    `bundle ${path.relative(REPO, BUNDLE) || BUNDLE}, ${REQUESTS} requests per setting, each a new image, ${NEW_TOKENS} new tokens, one [SEG]; ` +
      `${ROUNDS} rounds, settings interleaved, median shown\n`,
  );
  const server = await startServer(['--model', BUNDLE, '--max-queue', '64']);
  const local = await LisaPipeline.load(BUNDLE, { verifyCacheFile: null });
  const settings: Array<[string, () => Promise<number>]> = [
    ...[1, 4, 16].map((clients): [string, () => Promise<number>] => [
      `server, ${String(clients).padStart(2)} client(s)`,
      async () => {
        const { perMin, cacheHits } = await throughput(server.port, clients, REQUESTS);
        if (cacheHits)
          throw new Error(`${cacheHits} requests hit the embedding cache; the images were meant to be new`);
        return perMin;
      },
    ]),
    ['in-process pipeline', () => inProcess(local, REQUESTS)],
  ];
  const figures = new Map<string, number[]>(settings.map(([label]) => [label, []]));
  try {
    await throughput(server.port, 1, 2); // warm-up, both
    await inProcess(local, 2);
    for (let round = 0; round < ROUNDS; round++) {
      for (const [label, measure] of settings) figures.get(label)!.push(await measure());
    }
  } finally {
    await server.stop();
    await local.dispose();
  }
  for (const [label, xs] of figures) {
    console.log(
      `  ${label.padEnd(24)} ${median(xs).toFixed(1).padStart(7)} images/min   (rounds: ${xs.map((x) => x.toFixed(1)).join(', ')})`,
    );
  }
  const one = median(figures.get(settings[0][0])!);
  const inproc = median(figures.get('in-process pipeline')!);
  console.log(
    `\n  server overhead, 1 client: server time per image / in-process = ${(inproc / one).toFixed(3)} ` +
      `(${(60_000 / one - 60_000 / inproc).toFixed(1)} ms per image: HTTP, tensor coding, result JSON)`,
  );
  await stopPreprocessWorker();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
