// `npm run bench`: every speed figure the project reports, each measured side by side in this one run.
//   1. host overhead: end-to-end request time / time inside ONNX Runtime, per request (tiny and 1B models);
//   2. ours vs the PyTorch reference runner on the same >= 1B-parameter random-weight model, same prompt and tokens,
//      against the reference with its KV cache and without (how LISA's chat.py decodes), for the fp32 bundle and the
//      w8a8 bundle (int8 weights and activations); the reference is also timed with torch's own dynamic int8;
//   3. pre-processing a 12 MP JPEG vs sharp's own decode and resize;
//   4. decode-step time vs this machine's measured memory bandwidth for the decoder's weight bytes;
//   5. a follow-up turn's time to first token with the conversation's KV rows kept vs a full re-prefill of it;
//   6. time to first token and to the mask with SAM's image encoder on its own thread (concurrent) vs before the prefill.
// The 1B model is built and exported once per weight type (GBs, cached under ~/.cache/reason-segment/bench-1b).
// --device webgpu: only the WebGPU decode comparison (bench/webgpu.ts).
// Options: --quick skips the 1B model; --host-speed runs only 5 and 6 (--bundle DIR: on that bundle only);
// --new-tokens N (default 16); --weights int8|int4 also times our host on a MatMulNBits export of the same model
// (tokens may differ from fp32: agreement is printed); --shape 7b|13b measures the real-size random bundles instead
// (bench/shape.ts).
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { stopPreprocessWorker } from '../src/host/image/preprocess';
import { LisaPipeline, type SegmentRequest } from '../src/host/pipeline';
import { benchPreprocess } from './preprocess';
import { benchShape } from './shape';
import { benchWebgpu } from './webgpu';

const REPO = path.resolve(__dirname, '..', '..');
const VENV = path.join(REPO, 'models', 'export', 'venv');
const CACHE = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'reason-segment', 'bench-1b');
const TINY = path.join(REPO, 'test', 'fixtures', 'bundles', 'tiny-7b');
const IMAGE = path.join(TINY, 'images', 'coffee.png');
const PROMPT = 'Which object in this picture would keep a drink warm the longest? Please output segmentation mask.';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
};
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

/** memcpy bandwidth (bytes read + bytes written per second) over a buffer far larger than the caches. */
function memoryBandwidth(): number {
  const n = 512 * 1024 * 1024;
  const a = Buffer.alloc(n, 1);
  const b = Buffer.alloc(n);
  a.copy(b);
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    a.copy(b);
    best = Math.min(best, performance.now() - t0);
  }
  return (2 * n) / (best / 1000);
}

interface RequestFigures {
  totalMs: number;
  onnxMs: number;
  prefillMs: number;
  decodeMs: number;
  newTokens: number;
  outputIds: number[];
}

async function timeOurs(bundle: string, newTokens: number, runs: number): Promise<RequestFigures[]> {
  const p = await LisaPipeline.load(bundle, { verifyCacheFile: null });
  try {
    const out: RequestFigures[] = [];
    for (let i = 0; i < runs; i++) {
      p.cache.clear(); // every request pays for both image encoders, as the reference does
      const r = await p.segment({ image: { path: IMAGE }, prompt: PROMPT, maxNewTokens: newTokens, includePng: true });
      out.push({
        totalMs: r.timings.totalMs,
        onnxMs: r.timings.onnxMs,
        prefillMs: r.timings.prefillMs,
        decodeMs: r.timings.decodeMs,
        newTokens: r.timings.newTokens,
        outputIds: r.outputIds,
      });
    }
    return out;
  } finally {
    await p.dispose();
  }
}

function overheadLine(label: string, runs: RequestFigures[]): void {
  const ratios = runs.map((r) => r.totalMs / r.onnxMs);
  console.log(
    `  ${label}: end-to-end / onnxruntime = ${ratios.map(f2).join(', ')} (goal <= 1.10); ` +
      `end-to-end ${runs.map((r) => f1(r.totalMs)).join(', ')} ms`,
  );
}

/** One request's time to its first streamed text and to its result (masks included), in ms. */
async function timed(
  p: LisaPipeline,
  req: SegmentRequest,
): Promise<{ firstToken: number; done: number; samMs: number }> {
  const t0 = performance.now();
  let firstToken = 0;
  const r = await p.segment({ ...req, onText: () => void (firstToken ||= performance.now() - t0) });
  return { firstToken: firstToken || r.timings.totalMs, done: performance.now() - t0, samMs: r.timings.samEncoderMs };
}

const FOLLOW_UP = 'And what would you use to carry it? Explain why.';

/** 5: the same follow-up with the first turn's KV rows kept, and with nothing kept (a full re-prefill). */
async function followUp(label: string, bundle: string, newTokens: number): Promise<void> {
  const p = await LisaPipeline.load(bundle, { verifyCacheFile: null });
  try {
    const image = { path: IMAGE };
    const first = await p.segment({ image, prompt: PROMPT, maxNewTokens: newTokens }); // also warms up
    const req = { image, prompt: FOLLOW_UP, history: [{ user: PROMPT, assistant: first.answer }], maxNewTokens: 4 };
    const kept: number[] = [];
    const full: number[] = [];
    let reused = 0;
    let positions = 0;
    for (let i = 0; i < 2; i++) {
      p.kvStore.clear();
      await p.segment({ image, prompt: PROMPT, maxNewTokens: newTokens }); // the first turn, kept
      const before = { ...p.counters };
      kept.push((await timed(p, req)).firstToken);
      reused = p.counters.reusedPositions - before.reusedPositions;
      positions = reused + p.counters.prefillPositions - before.prefillPositions;
      p.kvStore.clear();
      full.push((await timed(p, req)).firstToken);
    }
    const k = Math.min(...kept);
    const f = Math.min(...full);
    console.log(
      `  ${label}: follow-up time to first token ${f1(k)} ms with the first turn's KV rows kept (${reused} of ${positions} positions) ` +
        `vs ${f1(f)} ms re-prefilling the conversation: ${f2(k / f)} (goal <= 0.25)`,
    );
  } finally {
    await p.dispose();
  }
}

/** 6: the first request on an image (both encoders run) with SAM's encoder concurrent and serial. */
async function samSchedule(label: string, bundle: string, newTokens: number): Promise<void> {
  const out: Record<string, { firstToken: number; done: number; samMs: number }> = {};
  for (const schedule of ['concurrent', 'serial'] as const) {
    const p = await LisaPipeline.load(bundle, { verifyCacheFile: null, samSchedule: schedule });
    try {
      const runs = [];
      for (let i = 0; i < 3; i++) {
        p.cache.clear();
        p.kvStore.clear();
        const req = {
          image: { path: IMAGE },
          prompt: PROMPT,
          assistantPrefix: 'Sure, [SEG] .',
          maxNewTokens: newTokens,
        };
        runs.push(await timed(p, req));
      }
      runs.shift(); // warm-up
      out[schedule] = runs.reduce((a, b) => (b.done < a.done ? b : a));
    } finally {
      await p.dispose();
    }
  }
  const c = out.concurrent;
  const s = out.serial;
  console.log(
    `  ${label}, ${newTokens} tokens: time to first token concurrent ${f1(c.firstToken)} ms vs serial ${f1(s.firstToken)} ms (${f2(c.firstToken / s.firstToken)}); ` +
      `to the mask ${f1(c.done)} vs ${f1(s.done)} ms (${f2(c.done / s.done)}); SAM encoder ${f1(s.samMs)} ms serial, ${f1(c.samMs)} ms on its thread; ` +
      `without SAM at all (serial less its encoder: what skipping it for an answer with no [SEG] would give): ` +
      `first token ${f1(s.firstToken - s.samMs)} ms, result ${f1(s.done - s.samMs)} ms`,
  );
}

async function main(): Promise<void> {
  if (arg('--device') === 'webgpu') return benchWebgpu(process.argv);
  const newTokens = Number(arg('--new-tokens') ?? 16);
  const quick = process.argv.includes('--quick');
  if (process.argv.includes('--host-speed')) {
    await hostSpeed(quick, newTokens);
    return;
  }
  console.log(
    `Reason Segment benchmark on ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${f1(os.totalmem() / 2 ** 30)} GiB, node ${process.version}\n`,
  );

  const bw = memoryBandwidth();
  console.log(`memory bandwidth (memcpy, read + write): ${f1(bw / 1e9)} GB/s\n`);
  const shape = arg('--shape');
  if (shape) {
    await benchShape(shape, bw, Number(arg('--new-tokens') ?? 8));
    return;
  }

  console.log('1. host overhead, tiny-7b bundle (first request includes warm-up):');
  overheadLine('tiny-7b, 40 tokens', await timeOurs(TINY, 40, 4));

  if (!quick) {
    console.log(
      `\n2. ours vs the PyTorch reference, >= 1B-parameter random LISA, ${newTokens} new tokens (building it once may take minutes):`,
    );
    const reference = (...args: string[]) =>
      JSON.parse(
        execFileSync(VENV, ['run', path.join(REPO, 'bench', 'reference_1b.py'), ...args, '--root', CACHE], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'inherit'],
          maxBuffer: 1 << 26,
        })
          .trim()
          .split('\n')
          .pop()!,
      );
    const fastest = (runs: RequestFigures[]) => runs.reduce((a, b) => (b.totalMs < a.totalMs ? b : a));
    const fp32Bundle: string = reference('build').bundle;
    const w8a8Bundle: string = reference('build', '--weights', 'w8a8').bundle;
    const fp32Runs = await timeOurs(fp32Bundle, newTokens, 2);
    const w8a8Runs = await timeOurs(w8a8Bundle, newTokens, 2);
    const fp32 = fastest(fp32Runs);
    const w8a8 = fastest(w8a8Runs);
    const ref = reference('time', '--image', IMAGE, '--prompt', PROMPT, '--new-tokens', String(newTokens), '--w8a8');
    const agreeing = (ids: number[], want: number[]) => `${ids.filter((t, i) => t === want[i]).length}/${want.length}`;
    const s = (ms: number) => `${f2(ms / 1000)} s`;
    console.log(
      `  model: ${(ref.llm_parameters / 1e9).toFixed(2)} B LLM parameters, prompt ${ref.prompt_tokens} positions with the image; torch threads ${ref.torch_threads}`,
    );
    console.log(`  reference fp32, KV cache on:                    ${f2(ref.cached_s)} s`);
    console.log(`  reference fp32, no KV cache (LISA chat.py):     ${f2(ref.no_cache_s)} s`);
    console.log(
      `  reference w8a8 (torch quantize_dynamic), cache: ${f2(ref.w8a8_cached_s)} s   tokens agreeing with reference fp32 ${agreeing(ref.w8a8_output_ids, ref.output_ids)}`,
    );
    console.log(
      `  ours fp32:  ${s(fp32.totalMs)}   / reference fp32 cached = ${f2(fp32.totalMs / 1000 / ref.cached_s)}, / no cache = ${f2(fp32.totalMs / 1000 / ref.no_cache_s)}; ` +
        `tokens agreeing with reference fp32 ${agreeing(fp32.outputIds, ref.output_ids)}`,
    );
    console.log(
      `  ours w8a8:  ${s(w8a8.totalMs)}   / reference fp32 cached = ${f2(w8a8.totalMs / 1000 / ref.cached_s)} (goal <= 0.5), / no cache = ${f2(w8a8.totalMs / 1000 / ref.no_cache_s)}, ` +
        `/ reference w8a8 cached = ${f2(w8a8.totalMs / 1000 / ref.w8a8_cached_s)}; tokens agreeing with reference fp32 ${agreeing(w8a8.outputIds, ref.output_ids)}, ` +
        `with reference w8a8 ${agreeing(w8a8.outputIds, ref.w8a8_output_ids)}; teacher-forced (fp32 answer fed) ${agreeing(ref.w8a8_bundle_teacher_forced, ref.output_ids)}`,
    );
    overheadLine('1B fp32', fp32Runs);
    overheadLine('1B w8a8', w8a8Runs);

    const quantised = arg('--weights');
    if (quantised && quantised !== 'float32' && quantised !== 'w8a8') {
      const runs = await timeOurs(reference('build', '--weights', quantised).bundle, newTokens, 2);
      const qb = fastest(runs);
      console.log(
        `  ours ${quantised}:  ${s(qb.totalMs)}   / reference fp32 cached = ${f2(qb.totalMs / 1000 / ref.cached_s)}; ` +
          `tokens agreeing with reference fp32 ${agreeing(qb.outputIds, ref.output_ids)}`,
      );
    }

    console.log('\n4. decode step vs memory bandwidth:');
    for (const [label, bundle, r] of [
      ['fp32', fp32Bundle, fp32],
      ['w8a8', w8a8Bundle, w8a8],
    ] as const) {
      const weightBytes = statSync(path.join(bundle, 'onnx', 'decoder.onnx_data')).size;
      const stepMs = r.decodeMs / Math.max(1, r.newTokens - 1);
      const achieved = weightBytes / (stepMs / 1000);
      console.log(
        `  ${label}: ${f1(stepMs)} ms for ${f2(weightBytes / 1e9)} GB of decoder weights = ${f1(achieved / 1e9)} GB/s, ` +
          `${f2(achieved / bw)} of the measured memcpy bandwidth (read+write), ${f2(achieved / (bw / 2))} of its read half; prefill ${s(r.prefillMs)}`,
      );
    }
  }

  await hostSpeed(quick, newTokens);

  console.log('\n3. pre-processing a 12 MP JPEG:');
  const pre = await benchPreprocess(5);
  console.log(
    `  ours ${f1(pre.ours.total)} ms (decode ${f1(pre.ours.decode)}, tensors ${f1(pre.ours.tensors)}) vs sharp decode-once + resizes ${f1(pre.sharpDecodeOnce)} ms: ratio ${f2(pre.ratioVsSharpDecodeOnce)} (goal <= 1.5); ` +
      `vs sharp shrink-on-load ${f1(pre.sharpFromFile)} ms: ratio ${f2(pre.ratioVsSharpFromFile)}`,
  );
  await stopPreprocessWorker();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});

/** 5 and 6, on the tiny bundle and (unless --quick) the 1B bench model's bundles as built. */
async function hostSpeed(quick: boolean, newTokens: number): Promise<void> {
  const only = arg('--bundle');
  const bundles: Array<[string, string]> = only ? [[path.basename(only), only]] : [['tiny-7b', TINY]];
  if (!quick && !only)
    for (const [label, dir] of [
      ['1B fp32', 'bundle'],
      ['1B w8a8', 'bundle-w8a8'],
    ])
      if (existsSync(path.join(CACHE, dir, 'lisa.manifest.json'))) bundles.push([label, path.join(CACHE, dir)]);
  console.log('\n5. follow-up turn, KV rows kept vs full re-prefill (image embeddings cached in both):');
  for (const [label, dir] of bundles) await followUp(label, dir, newTokens);
  console.log("\n6. SAM's image encoder concurrent with the language model vs before it (a new image each time):");
  for (const [label, dir] of bundles) await samSchedule(label, dir, newTokens);
}
