// reason-segment eval: a bundle on a ReasonSeg-format folder (image.jpg + image.json), scored as LISA's validate()
// (train_ds.py) scores it: gIoU is the mean over images of the per-image IoU, cIoU is the summed intersections over the
// summed unions, both from intersectionAndUnionGPU on the binarised masks with `ignore` regions (255) left out.
//
// Two protocols. `lisa` (the default) is validate()'s own: the first text of each image, wrapped as ValDataset wraps it
// (" {text} Please output segmentation mask." or " What is {text} in this image? Please output segmentation mask."),
// the answer forced to "[SEG]." and the first mask scored. `answer` lets the model write its own answer to the same
// prompt and scores the union of the masks of all its [SEG]s (an answer without [SEG] is an empty prediction); when
// the JSON carries `keywords` (lisa_export/shapes.py writes them) it also counts the answers that name every one.
//
// Resumable: one CSV row per scored sample, appended as it is scored; a second run with the same settings skips what
// the CSV holds and adds its counts back in, so the report is the same as one uninterrupted run's.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { decodeRle } from '../protocol/rle';
import { isHostError } from './errors';
import { LisaPipeline } from './pipeline';
import type { Device } from './sessions';

export const EVAL_USAGE = `usage: reason-segment eval --model <bundle> --data <folder> [--split val] [--out report.json] [--csv rows.csv]
                          [--protocol lisa|answer] [--all-texts] [--limit N] [--max-new-tokens N] [--device ...]
  --data is a ReasonSeg-format folder (<name>.jpg + <name>.json); with --split, its <split>/ subfolder`;

// ---------------------------------------------------------------------------------------------------------------------
// Ground truth: LISA's utils/data_processing.py get_mask_from_json

export interface ReasonSegShape {
  label: string;
  points: number[][];
}

export interface ReasonSegAnno {
  text: string[];
  is_sentence: boolean;
  shapes: ReasonSegShape[];
  /** lisa_export/shapes.py: per text, the words a correct answer contains. */
  keywords?: string[][];
}

/** One line of an 8-connected Bresenham line, both ends included (cv2.polylines, thickness 1). */
function linePixels(x0: number, y0: number, x1: number, y1: number, fn: (x: number, y: number) => void): void {
  const dx = Math.abs(x1 - x0);
  const dy = -Math.abs(y1 - y0);
  const sx = x0 < x1 ? 1 : -1;
  const sy = y0 < y1 ? 1 : -1;
  let err = dx + dy;
  for (;;) {
    fn(x0, y0);
    if (x0 === x1 && y0 === y1) return;
    const e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

/**
 * 1 on the closed polygon's outline and inside it, row-major h*w: a pixel centre (x, y) is inside when an odd number
 * of the edges' crossings of row y lie at or left of x. Points are truncated to integers first, as
 * np.array(points, dtype=np.int32) does. The same rule as lisa_export/shapes.py polygon_mask (a test holds them equal);
 * OpenCV's fillPoly can differ from it by a pixel along slanted edges.
 */
export function polygonMask(points: number[][], h: number, w: number): Uint8Array {
  const pts = points.map(([x, y]) => [Math.trunc(x), Math.trunc(y)]);
  const n = pts.length;
  const toggle = new Int32Array(h * (w + 1));
  for (let i = 0; i < n; i++) {
    const [a, b] = pts[i];
    const [c, d] = pts[(i + 1) % n];
    if (b === d) continue;
    for (let y = Math.max(Math.min(b, d), 0); y < Math.min(Math.max(b, d), h); y++) {
      const xc = Math.ceil(a + ((y - b) * (c - a)) / (d - b));
      toggle[y * (w + 1) + Math.min(Math.max(xc, 0), w)]++;
    }
  }
  const m = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) {
    let acc = 0;
    for (let x = 0; x < w; x++) {
      acc += toggle[y * (w + 1) + x];
      m[y * w + x] = acc & 1;
    }
  }
  for (let i = 0; i < n; i++) {
    const [a, b] = pts[i];
    const [c, d] = pts[(i + 1) % n];
    linePixels(a, b, c, d, (x, y) => {
      if (x >= 0 && x < w && y >= 0 && y < h) m[y * w + x] = 1;
    });
  }
  return m;
}

/** get_mask_from_json: polygons painted largest first, 1 for targets, 255 where the label contains "ignore";
 *  "flag" shapes skipped. */
export function maskFromJson(anno: ReasonSegAnno, h: number, w: number): Uint8Array {
  const polys = anno.shapes
    .filter((s) => s.label.toLowerCase() !== 'flag')
    .map((s) => ({ s, m: polygonMask(s.points, h, w) }));
  const area = (m: Uint8Array) => m.reduce((n, v) => n + v, 0);
  // np.argsort(areas)[::-1]: a stable ascending sort, reversed (equal areas: the later polygon first)
  const order = polys
    .map((p, i) => ({ i, a: area(p.m) }))
    .sort((x, y) => x.a - y.a || x.i - y.i)
    .reverse();
  const out = new Uint8Array(h * w);
  for (const { i } of order) {
    const v = polys[i].s.label.toLowerCase().includes('ignore') ? 255 : 1;
    const m = polys[i].m;
    for (let k = 0; k < m.length; k++) if (m[k]) out[k] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------------
// The metric: utils/utils.py intersectionAndUnionGPU and validate()'s meters

/** intersectionAndUnionGPU(output, target, K, ignore_index): per-class intersection, union and target areas, pixels
 *  where the target is ignore_index left out (histc drops the 255 it writes there). */
export function intersectionAndUnion(
  output: Uint8Array,
  target: Uint8Array,
  K = 2,
  ignoreIndex = 255,
): { intersection: number[]; union: number[]; target: number[] } {
  if (output.length !== target.length) throw new Error(`output has ${output.length} pixels, target ${target.length}`);
  const inter = new Array(K).fill(0);
  const out = new Array(K).fill(0);
  const tgt = new Array(K).fill(0);
  for (let i = 0; i < output.length; i++) {
    const t = target[i];
    if (t === ignoreIndex) continue;
    const o = output[i];
    if (o < K) out[o]++;
    if (t < K) tgt[t]++;
    if (o === t && o < K) inter[o]++;
  }
  return { intersection: inter, union: out.map((v, k) => v + tgt[k] - inter[k]), target: tgt };
}

/** validate()'s intersection_meter, union_meter and acc_iou_meter (class 1 is the object). */
export class ReasonSegMeter {
  intersection = [0, 0];
  union = [0, 0];
  accIouSum = [0, 0];
  count = 0;

  /** One image: acc_iou = intersection / (union + 1e-5), plus 1 where the union is empty (no object, none found). */
  add(intersection: number[], union: number[]): number {
    const acc = intersection.map((v, k) => v / (union[k] + 1e-5) + (union[k] === 0 ? 1 : 0));
    for (let k = 0; k < 2; k++) {
      this.intersection[k] += intersection[k];
      this.union[k] += union[k];
      this.accIouSum[k] += acc[k];
    }
    this.count++;
    return acc[1];
  }

  get giou(): number {
    return this.count ? this.accIouSum[1] / this.count : 0;
  }

  get ciou(): number {
    return this.intersection[1] / (this.union[1] + 1e-10);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Reading a folder

export interface Sample {
  name: string;
  image: string;
  anno: ReasonSegAnno;
}

export async function readReasonSeg(dir: string): Promise<Sample[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (e) {
    throw new EvalInputError(
      `--data ${dir} cannot be read (${(e as NodeJS.ErrnoException).code}); pass a ReasonSeg-format folder`,
    );
  }
  const jsons = names.filter((n) => n.endsWith('.json')).sort();
  const images = new Set(names);
  const out: Sample[] = [];
  for (const j of jsons) {
    const base = j.slice(0, -'.json'.length);
    if (!images.has(`${base}.jpg`)) continue; // LISA reads <name>.jpg beside <name>.json; other JSON is not a sample
    let anno: ReasonSegAnno;
    try {
      anno = JSON.parse(await fs.readFile(path.join(dir, j), 'utf8'));
    } catch (e) {
      throw new EvalInputError(`${path.join(dir, j)}: ${(e as Error).message}; fix or remove that file`);
    }
    if (!Array.isArray(anno.text) || anno.text.length === 0 || !Array.isArray(anno.shapes)) {
      throw new EvalInputError(
        `${path.join(dir, j)} has no "text" list or no "shapes" list; it is not a ReasonSeg annotation`,
      );
    }
    out.push({ name: base, image: path.join(dir, `${base}.jpg`), anno });
  }
  if (out.length === 0)
    throw new EvalInputError(
      `${dir} has no <name>.jpg + <name>.json pairs; pass a ReasonSeg-format folder (or its parent with --split)`,
    );
  return out;
}

/** ValDataset's user message after "<image>\n". */
export function lisaPrompt(text: string, isSentence: boolean): string {
  const t = text.trim();
  return isSentence
    ? ` ${t} Please output segmentation mask.`
    : ` What is ${t} in this image? Please output segmentation mask.`;
}

export function namesAll(answer: string, keywords: string[]): boolean {
  const a = answer.toLowerCase();
  return keywords.every((k) => a.includes(k.toLowerCase()));
}

// ---------------------------------------------------------------------------------------------------------------------
// The command

class EvalInputError extends Error {}

export interface EvalOptions {
  protocol: 'lisa' | 'answer';
  allTexts: boolean;
  limit?: number;
  maxNewTokens?: number;
  onProgress?: (done: number, total: number, label: string) => void;
}

export interface EvalReport {
  format: 'reason-segment-eval/1';
  model: string;
  data: string;
  protocol: 'lisa' | 'answer';
  texts: 'first' | 'all';
  samples: number;
  giou: number;
  ciou: number;
  /** answer protocol with keywords: answers that name every target, and how many were checked */
  named?: number;
  namedChecked?: number;
  failures: { name: string; text: number; error: string }[];
}

const CSV_HEADER = 'name,text,iou,intersection,union,target_area,pred_area,masks,named,answer';

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function parseCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/** Scores every sample not yet in the CSV, appending a row for each; returns the report over all rows. */
export async function evaluate(
  pipeline: LisaPipeline,
  samples: Sample[],
  csvFile: string,
  settings: string,
  opts: EvalOptions,
  signal?: AbortSignal,
): Promise<Omit<EvalReport, 'model' | 'data'>> {
  const meter = new ReasonSegMeter();
  let named = 0;
  let namedChecked = 0;
  const done = new Set<string>();
  let existing: string | undefined;
  try {
    existing = await fs.readFile(csvFile, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new EvalInputError(`--csv ${csvFile} cannot be read (${(e as NodeJS.ErrnoException).code})`);
  }
  const settingsLine = `# ${settings}`;
  if (existing !== undefined && existing.trim() !== '') {
    const lines = existing.split('\n').filter((l) => l !== '');
    if (lines[0] !== settingsLine || lines[1] !== CSV_HEADER) {
      throw new EvalInputError(
        `${csvFile} holds rows of another evaluation (${lines[0]}); remove it or pass another --csv`,
      );
    }
    for (const line of lines.slice(2)) {
      const f = parseCsvLine(line);
      done.add(`${f[0]}#${f[1]}`);
      meter.add([0, Number(f[3])], [0, Number(f[4])]);
      if (f[8] !== '') {
        namedChecked++;
        if (f[8] === '1') named++;
      }
    }
  } else {
    await fs.writeFile(csvFile, `${settingsLine}\n${CSV_HEADER}\n`);
  }

  const jobs: { s: Sample; t: number }[] = [];
  for (const s of samples.slice(0, opts.limit ?? samples.length)) {
    const n = opts.allTexts ? s.anno.text.length : 1;
    for (let t = 0; t < n; t++) jobs.push({ s, t });
  }
  const failures: EvalReport['failures'] = [];
  let finished = done.size;
  for (const { s, t } of jobs) {
    if (signal?.aborted) break;
    if (done.has(`${s.name}#${t}`)) continue;
    opts.onProgress?.(finished, jobs.length, s.name);
    const prompt = lisaPrompt(s.anno.text[t], s.anno.is_sentence);
    let row: string;
    try {
      const r = await pipeline.segment({
        image: { path: s.image },
        prompt,
        includePng: false,
        signal,
        ...(opts.protocol === 'lisa'
          ? { assistantPrefix: '[SEG].', maxNewTokens: 1 }
          : { maxNewTokens: opts.maxNewTokens ?? 64 }),
      });
      const { width: w, height: h } = r.image;
      const target = maskFromJson(s.anno, h, w);
      const pred = new Uint8Array(h * w);
      const used = opts.protocol === 'lisa' ? r.masks.slice(0, 1) : r.masks; // validate() zips one GT with the first
      for (const m of used) {
        const d = decodeRle(m.rle);
        for (let i = 0; i < d.length; i++) pred[i] |= d[i];
      }
      const iu = intersectionAndUnion(pred, target);
      const iou = meter.add(iu.intersection, iu.union);
      let namedField = '';
      const kw = s.anno.keywords?.[t];
      if (opts.protocol === 'answer' && kw) {
        const ok = namesAll(r.answer, kw);
        namedChecked++;
        if (ok) named++;
        namedField = ok ? '1' : '0';
      }
      const predArea = pred.reduce((n, v) => n + v, 0);
      row = [
        s.name,
        String(t),
        iou.toFixed(6),
        String(iu.intersection[1]),
        String(iu.union[1]),
        String(iu.target[1]),
        String(predArea),
        String(r.masks.length),
        namedField,
        csvField(r.answer),
      ].join(',');
    } catch (e) {
      if (isHostError(e, 'Cancelled')) break;
      if (!isHostError(e)) throw e;
      failures.push({ name: s.name, text: t, error: e.message });
      continue;
    }
    await fs.appendFile(csvFile, `${row}\n`);
    finished++;
  }
  opts.onProgress?.(finished, jobs.length, '');
  return {
    format: 'reason-segment-eval/1',
    protocol: opts.protocol,
    texts: opts.allTexts ? 'all' : 'first',
    samples: meter.count,
    giou: meter.giou,
    ciou: meter.ciou,
    ...(namedChecked ? { named: named / namedChecked, namedChecked } : {}),
    failures,
  };
}

const EVAL_OPTIONS = {
  model: { type: 'string' },
  data: { type: 'string' },
  split: { type: 'string' },
  out: { type: 'string' },
  csv: { type: 'string' },
  protocol: { type: 'string', default: 'lisa' },
  'all-texts': { type: 'boolean', default: false },
  limit: { type: 'string' },
  'max-new-tokens': { type: 'string' },
  device: { type: 'string', default: 'cpu' },
  'allow-fallback': { type: 'boolean', default: false },
  verbose: { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
} as const;

const parseEvalArgs = (argv: string[]) =>
  parseArgs({ args: argv, strict: true, allowPositionals: false, options: EVAL_OPTIONS }).values;

export async function evalMain(argv: string[]): Promise<number> {
  let a: ReturnType<typeof parseEvalArgs>;
  try {
    a = parseEvalArgs(argv);
  } catch (e) {
    process.stderr.write(`reason-segment eval: ${(e as Error).message}\n${EVAL_USAGE}\n`);
    return 2;
  }
  if (a.help) {
    process.stdout.write(`${EVAL_USAGE}\n`);
    return 0;
  }
  const usage = (msg: string) => {
    process.stderr.write(`reason-segment eval: ${msg}\n${EVAL_USAGE}\n`);
    return 2;
  };
  if (!a.model) return usage('--model is required');
  if (!a.data) return usage('--data is required');
  if (a.protocol !== 'lisa' && a.protocol !== 'answer') return usage('--protocol is lisa or answer');
  const count = (v: string | undefined, name: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new EvalInputError(`--${name} must be a whole number of at least 1`);
    return n;
  };
  try {
    const limit = count(a.limit, 'limit');
    const maxNewTokens = count(a['max-new-tokens'], 'max-new-tokens');
    const dir = a.split ? path.join(a.data, a.split) : a.data;
    const samples = await readReasonSeg(dir);
    const csvFile = a.csv ?? (a.out ? `${a.out.replace(/\.json$/i, '')}.csv` : 'eval.csv');
    const pipeline = await LisaPipeline.load(a.model, {
      device: a.device as Device,
      allowFallback: a['allow-fallback'],
    });
    process.stderr.write(
      `loaded ${pipeline.bundle.manifest.variant} on ${pipeline.provider}; ${samples.length} image(s) in ${dir}\n`,
    );
    const settings =
      `model=${pipeline.bundle.manifest.variant} data=${path.resolve(dir)} protocol=${a.protocol} texts=${a['all-texts'] ? 'all' : 'first'}` +
      ` limit=${limit ?? 'none'} max_new_tokens=${maxNewTokens ?? 'default'}`;
    const interrupt = new AbortController();
    const onSigint = () => interrupt.abort();
    process.on('SIGINT', onSigint);
    let report: EvalReport;
    try {
      const r = await evaluate(
        pipeline,
        samples,
        csvFile,
        settings,
        {
          protocol: a.protocol,
          allTexts: a['all-texts'],
          limit,
          maxNewTokens,
          onProgress: (done, total, label) => {
            const width = 30;
            const filled = Math.round((width * done) / Math.max(total, 1));
            process.stderr.write(
              `\r\x1b[K[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${label}`,
            );
          },
        },
        interrupt.signal,
      );
      report = { ...r, model: path.resolve(a.model), data: path.resolve(dir) };
    } finally {
      process.off('SIGINT', onSigint);
      await pipeline.dispose();
    }
    process.stderr.write('\n');
    if (a.out) await fs.writeFile(a.out, `${JSON.stringify(report, null, 1)}\n`);
    process.stdout.write(
      `gIoU ${report.giou.toFixed(4)}  cIoU ${report.ciou.toFixed(4)}  samples ${report.samples}` +
        `${report.named !== undefined ? `  named ${(100 * report.named).toFixed(1)}% of ${report.namedChecked}` : ''}` +
        `${report.failures.length ? `  failed ${report.failures.length}` : ''}  (protocol ${report.protocol}; rows in ${csvFile})\n`,
    );
    if (interrupt.signal.aborted) {
      process.stderr.write('interrupted: run the same command again to resume\n');
      return 130;
    }
    return 0;
  } catch (e) {
    if (e instanceof EvalInputError || isHostError(e)) {
      process.stderr.write(`reason-segment eval: ${(e as Error).message}\n`);
      return 1;
    }
    process.stderr.write(
      `reason-segment eval: internal error: ${(e as Error).message}${a.verbose ? `\n${(e as Error).stack}` : ' (run with --verbose for details)'}\n`,
    );
    return 1;
  }
}
