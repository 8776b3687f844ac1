// Refining a mask by clicking: how long one refine takes (goal: <= 100 ms on the CPU for a ViT-H-sized decoder).
//   1. the committed tiny bundle over the real host process: reasonSegment/refine round trips on stdio JSON-RPC
//      (request -> mask as COCO RLE back, and with the PNG too), the decoder's share, and the transport: the round
//      trip less the host's own time in the refine (its totalMs: decoder, upsampling, RLE), i.e. JSON-RPC over stdio;
//   2. a mask decoder at SAM ViT-H's prompt-side dims (every SAM variant's: transformer dim 256, 2 two-way blocks,
//      MLP 2048, 8 heads, image embedding 256x64x64) with random weights, exported by the project's exporter
//      (`python -m lisa_export.refine --vit-h-decoder`, cached), run through the host's own refine code (Refiner) at
//      two image sizes; its round trip is that plus the stdio transport measured in 1.
// Run: npm run build && node out/bench/refine.js [--rounds N]
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Bundle } from '../src/host/bundle';
import { EmbeddingCache } from '../src/host/embedding-cache';
import { Refiner } from '../src/host/refine';
import { Methods } from '../src/protocol/rpc';
import { HostClient } from '../test/helpers/host-client';

const REPO = path.resolve(__dirname, '..', '..');
const VENV = path.join(REPO, 'models', 'export', 'venv');
const CACHE = path.join(
  process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'),
  'reason-segment',
  'bench-refine',
);
const TINY = path.join(REPO, 'test', 'fixtures', 'bundles', 'tiny-7b');
const ROUNDS = Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 40;

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const line = (what: string, xs: number[]) =>
  `${what}: p50 ${pct(xs, 50).toFixed(1)} ms, p95 ${pct(xs, 95).toFixed(1)} ms, min ${Math.min(...xs).toFixed(1)} ms (${xs.length} runs)`;

/** The k-th prompt of a run: one to three points wandering over the image, every third with a box. */
function promptAt(k: number, w: number, h: number) {
  const n = 1 + (k % 3);
  const points = Array.from({ length: n }, (_, j): [number, number] => [
    Math.round(((k * 37 + j * 101) % 97) * (w / 97)),
    Math.round(((k * 53 + j * 67) % 89) * (h / 89)),
  ]);
  const labels = points.map((_, j) => (j === 1 ? 0 : 1) as 0 | 1);
  return k % 3 === 2
    ? { points, labels, box: [w * 0.1, h * 0.1, w * 0.8, h * 0.9] as [number, number, number, number] }
    : { points, labels };
}

async function tinyOverStdio(): Promise<{ rle: number[]; png: number[]; decoder: number[]; transport: number[] }> {
  const host = await HostClient.start();
  try {
    await host.request(Methods.loadModel, { bundle: TINY, device: 'cpu' });
    const r = await host.request(Methods.segment, {
      image: { path: path.join(TINY, 'images', 'coffee.png') },
      prompt: 'Segment the cup.',
      history: [],
      assistantPrefix: 'Sure, [SEG].',
      maxNewTokens: 4,
    });
    if (!r.resultId) throw new Error('the tiny bundle gave no mask to refine');
    const { width: w, height: h } = r.image;
    const out = { rle: [] as number[], png: [] as number[], decoder: [] as number[], transport: [] as number[] };
    for (let k = -3; k < ROUNDS; k++) {
      for (const includePng of [false, true]) {
        const t0 = performance.now();
        const a = await host.request(Methods.refine, {
          resultId: r.resultId,
          maskIndex: 0,
          prompt: promptAt(k + 3, w, h),
          includePng,
        });
        const ms = performance.now() - t0;
        if (k < 0) continue; // warm-up (the first refine creates the session)
        (includePng ? out.png : out.rle).push(ms);
        if (!includePng) {
          out.decoder.push(a.decoderMs);
          out.transport.push(ms - a.totalMs);
        }
      }
    }
    return out;
  } finally {
    await host.stop();
  }
}

async function vitHInProcess(width: number, height: number): Promise<{ total: number[]; decoder: number[] }> {
  // The name changes with the graph (v2: no `masks` output; v3: cross attentions folded onto the tokens; both
  // 2026-11-30), so an older cached export is not timed as the current one.
  const graph = path.join(CACHE, 'vit-h-prompt-decoder-v3.onnx');
  if (!existsSync(graph)) {
    console.log(`exporting a ViT-H-sized prompt decoder (random weights) to ${graph} ...`);
    execFileSync(VENV, ['run', '-m', 'lisa_export.refine', '--vit-h-decoder', graph], { cwd: REPO, stdio: 'inherit' });
  }
  const C = 256;
  const bundle = {
    dir: CACHE,
    manifest: { graphs: { sam_prompt_decoder: { file: path.basename(graph) } }, sam: { threshold: 0 } },
    resolve: (f: string) => path.join(CACHE, f),
  } as unknown as Bundle;
  const cache = new EmbeddingCache(1 << 30);
  const rnd = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
  const scale = 1024 / Math.max(width, height);
  cache.put({
    sha256: 'bench',
    width,
    height,
    clipFeatures: new Float32Array(0),
    samEmbedding: rnd(C * 64 * 64),
    resizeSize: [Math.floor(height * scale + 0.5), Math.floor(width * scale + 0.5)],
    rgb: new Uint8Array(0),
  });
  const refiner = new Refiner(bundle, 'cpu', cache);
  const resultId = refiner.results.remember({
    sha256: 'bench',
    width,
    height,
    segEmbeddings: rnd(C),
    tokenIndices: [0],
  });
  const total: number[] = [];
  const decoder: number[] = [];
  try {
    for (let k = -3; k < ROUNDS; k++) {
      const t0 = performance.now();
      const a = await refiner.refine({ resultId, maskIndex: 0, prompt: promptAt(k + 3, width, height) });
      if (k < 0) continue;
      total.push(performance.now() - t0);
      decoder.push(a.decoderMs);
    }
  } finally {
    await refiner.release();
  }
  return { total, decoder };
}

async function main(): Promise<void> {
  console.log(
    `refine benchmark on ${os.cpus()[0]?.model ?? 'this CPU'} x${os.cpus().length}, load ${os.loadavg()[0].toFixed(1)}`,
  );
  const tiny = await tinyOverStdio();
  console.log(line('tiny-7b, refine round trip over stdio, mask as RLE', tiny.rle));
  console.log(line('tiny-7b, refine round trip over stdio, RLE + PNG', tiny.png));
  console.log(line('tiny-7b, inside the mask decoder graph', tiny.decoder));
  console.log(line('tiny-7b, stdio transport (round trip less the host refine)', tiny.transport));
  const transport = pct(tiny.transport, 50);
  for (const [w, h] of [
    [1024, 768],
    [4032, 3024],
  ]) {
    const v = await vitHInProcess(w, h);
    console.log(line(`ViT-H-sized decoder, ${w}x${h} image, host refine code (decoder, upsampling, RLE)`, v.total));
    console.log(line(`ViT-H-sized decoder, ${w}x${h} image, inside the mask decoder graph`, v.decoder));
    console.log(
      `ViT-H-sized decoder, ${w}x${h} image, round trip estimate (host refine p50 + stdio transport p50 ${transport.toFixed(1)} ms): ${(pct(v.total, 50) + transport).toFixed(1)} ms (goal <= 100 ms)`,
    );
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
