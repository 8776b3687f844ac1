// `npm run bench -- --shape 7b|13b`: the host on random-weight bundles at LISA's real dimensions (not in CI).
// Each bundle is measured in its own Node process, so its peak RSS is its own: load time and RSS, time to first
// token, ms per decode step against the machine's memory bandwidth over the decoder's weight bytes, the SAM ViT-H
// encoder, time to first mask, and a follow-up turn's time to first token. Bundles come from
// `npm run export:random -- --shape 7b --seed 1 --weights w8a8|int4 --out <cache>/7b-<weights>` (the bench says the
// command when one is missing). The PyTorch reference in bf16 (bench/reference_shape.py) runs where it fits in memory.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LisaPipeline } from '../src/host/pipeline';

export const SHAPE_CACHE = path.join(
  process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'),
  'reason-segment',
  'big',
);
const REPO = path.resolve(__dirname, '..', '..');
const VENV = path.join(REPO, 'models', 'export', 'venv');
const IMAGE = path.join(REPO, 'test', 'fixtures', 'bundles', 'tiny-7b', 'images', 'coffee.png');
const PROMPT = 'Which object in this picture would keep a drink warm the longest? Please output segmentation mask.';
// random weights never choose [SEG] by themselves: the answer is forced to start with one, so a mask is made
const PREFIX = 'Sure, [SEG].';
// bf16 LISA-7B: 6.7 B LLM + 0.64 B SAM + 0.30 B CLIP parameters, 2 bytes each, plus activations
const REFERENCE_BYTES: Record<string, number> = { '7b': 16e9, '13b': 29e9 };

interface OneFigures {
  loadMs: number;
  rssAfterLoad: number;
  peakRss: number;
  ttftMs: number;
  stepMs: number;
  stepBesideSamMs: number;
  samEncoderMs: number;
  firstMaskMs: number;
  followupTtftMs: number;
  newTokens: number;
  weightBytes: number;
  bundleBytes: number;
}

const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Bytes of the bundle's graph files whose names start with `prefix` ('' for every graph). */
function graphBytes(bundle: string, prefix: string): number {
  const dir = path.join(bundle, 'onnx');
  return readdirSync(dir)
    .filter((f) => f.startsWith(prefix))
    .reduce((n, f) => n + statSync(path.join(dir, f)).size, 0);
}

/** One bundle, in this process: what OneFigures lists. */
async function measureOne(bundle: string, newTokens: number): Promise<OneFigures> {
  const t0 = performance.now();
  const p = await LisaPipeline.load(bundle, { verifyCacheFile: null });
  const loadMs = performance.now() - t0;
  const rssAfterLoad = process.memoryUsage().rss;
  try {
    const turn = async (history: { user: string; assistant: string }[]) => {
      let first = 0;
      const start = performance.now();
      const r = await p.segment({
        image: { path: IMAGE },
        prompt: PROMPT,
        history,
        assistantPrefix: PREFIX,
        maxNewTokens: newTokens,
        onText: () => {
          if (!first) first = performance.now() - start;
        },
      });
      return { r, ttftMs: first || r.timings.totalMs, totalMs: performance.now() - start };
    };
    const a = await turn([]);
    const b = await turn([{ user: PROMPT, assistant: a.r.text }]);
    return {
      loadMs,
      rssAfterLoad,
      peakRss: highWaterRss(),
      ttftMs: a.ttftMs,
      // the follow-up's decode runs alone (its image's SAM embedding is cached); the first turn's beside SAM's encoder
      stepMs: b.r.timings.decodeMs / Math.max(1, b.r.timings.newTokens - 1),
      stepBesideSamMs: a.r.timings.decodeMs / Math.max(1, a.r.timings.newTokens - 1),
      samEncoderMs: a.r.timings.samEncoderMs,
      firstMaskMs: a.totalMs,
      followupTtftMs: b.ttftMs,
      newTokens: a.r.timings.newTokens,
      weightBytes: graphBytes(bundle, 'decoder.onnx'),
      bundleBytes: graphBytes(bundle, ''),
    };
  } finally {
    await p.dispose();
  }
}

export async function benchShape(shape: string, bandwidth: number, newTokens: number): Promise<void> {
  console.log(`Real-size bundles, shape ${shape} (random weights at LISA's dimensions), ${newTokens} new tokens:`);
  const rows: Array<[string, OneFigures]> = [];
  for (const weights of ['w8a8', 'int4']) {
    const bundle = path.join(SHAPE_CACHE, `${shape}-${weights}`);
    if (!existsSync(path.join(bundle, 'lisa.manifest.json'))) {
      console.log(
        `  ${weights}: no bundle at ${bundle}; make it with: npm run export:random -- --shape ${shape} --seed 1 --weights ${weights} --out ${bundle}`,
      );
      continue;
    }
    const out = execFileSync(process.execPath, [__filename, '--one', bundle, '--new-tokens', String(newTokens)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 1 << 24,
    });
    rows.push([weights, JSON.parse(out.trim().split('\n').pop()!) as OneFigures]);
  }
  for (const [weights, f] of rows) {
    const achieved = f.weightBytes / (f.stepMs / 1000);
    console.log(
      `  ours ${weights}: decoder weights ${gb(f.weightBytes)}, all graphs ${gb(f.bundleBytes)}; load ${s(f.loadMs)}, ` +
        `RSS after load ${gb(f.rssAfterLoad)} (all graphs + ${gb(f.rssAfterLoad - f.bundleBytes)}), peak RSS ${gb(f.peakRss)}; time to first token ${s(f.ttftMs)}; ` +
        `${f.stepMs.toFixed(0)} ms per decode step = ${gb(achieved)}/s, ${(achieved / (bandwidth / 2)).toFixed(2)} of the ` +
        `measured read bandwidth (${f.stepBesideSamMs.toFixed(0)} ms in the first turn, beside SAM's encoder); SAM ViT-H encoder ${s(f.samEncoderMs)}; first mask at ${s(f.firstMaskMs)}; ` +
        `follow-up time to first token ${s(f.followupTtftMs)}`,
    );
  }
  reference(shape, bandwidth, newTokens, rows);
}

/** This process's own peak RSS (VmHWM). getrusage's maxRSS is not: it keeps the parent's RSS at the fork, here the
 * bench's bandwidth buffers. */
function highWaterRss(): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;
}

/** MemAvailable: free memory plus the page cache the kernel can drop (os.freemem() counts MemFree only on some Nodes). */
function availableBytes(): number {
  const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : os.freemem();
}

/** The PyTorch reference in bf16 with its KV cache (LISA's chat.py `--precision bf16` on a CPU), on the checkpoint the
 * bundles were exported from, where it fits in memory; and ours against it. */
function reference(shape: string, bandwidth: number, newTokens: number, rows: Array<[string, OneFigures]>): void {
  const checkpoint = ['w8a8', 'int4']
    .map((w) => path.join(SHAPE_CACHE, `${shape}-${w}.checkpoint`))
    .find((c) => existsSync(path.join(c, 'lisa', 'config.json')));
  const need = REFERENCE_BYTES[shape] ?? 0;
  if (!checkpoint || availableBytes() < need) {
    console.log(
      `  PyTorch reference bf16 with KV cache: not run (${checkpoint ? `it needs about ${gb(need)}, ${gb(availableBytes())} available now` : `no checkpoint in ${SHAPE_CACHE}`})`,
    );
    return;
  }
  const out = execFileSync(
    VENV,
    [
      'run',
      path.join(REPO, 'bench', 'reference_shape.py'),
      ...['--checkpoint', path.join(checkpoint, 'lisa'), '--clip', path.join(checkpoint, 'clip')],
      ...['--image', IMAGE, '--prompt', PROMPT, '--prefix', PREFIX, '--new-tokens', String(newTokens)],
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 },
  );
  const r = JSON.parse(out.trim().split('\n').pop()!) as Omit<
    OneFigures,
    'rssAfterLoad' | 'followupTtftMs' | 'bundleBytes' | 'stepBesideSamMs'
  >;
  const achieved = r.weightBytes / (r.stepMs / 1000);
  console.log(
    `  PyTorch reference bf16 with KV cache: weights read per step ${gb(r.weightBytes)}; load ${s(r.loadMs)}, peak RSS ${gb(r.peakRss)}; ` +
      `time to first token ${s(r.ttftMs)}; ${r.stepMs.toFixed(0)} ms per decode step = ${gb(achieved)}/s, ` +
      `${(achieved / (bandwidth / 2)).toFixed(2)} of the measured read bandwidth; SAM ViT-H encoder ${s(r.samEncoderMs)}; ` +
      `first mask at ${s(r.firstMaskMs)}; no follow-up turn (chat.py keeps no history, so a follow-up is a full prefill)`,
  );
  for (const [weights, f] of rows) {
    console.log(
      `  ours ${weights} / reference bf16: time to first token ${(f.ttftMs / r.ttftMs).toFixed(2)}, decode step ` +
        `${(f.stepMs / r.stepMs).toFixed(2)}, SAM ViT-H encoder ${(f.samEncoderMs / r.samEncoderMs).toFixed(2)}, ` +
        `first mask ${(f.firstMaskMs / r.firstMaskMs).toFixed(2)}`,
    );
  }
}

if (require.main === module && process.argv.includes('--one')) {
  const bundle = process.argv[process.argv.indexOf('--one') + 1];
  const i = process.argv.indexOf('--new-tokens');
  const n = i < 0 ? 8 : Number(process.argv[i + 1]);
  measureOne(bundle, n)
    .then((f) => console.log(JSON.stringify(f)))
    .catch((e) => {
      console.error(e);
      process.exitCode = 1;
    });
}
