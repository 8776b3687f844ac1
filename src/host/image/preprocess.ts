// The two pre-processing paths of the reference (shared/design/lisa-pipeline.md section 2), both computed from one
// DecodedImage. Constants come from the manifest (docs/bundle-format.md: clip_preprocess, sam_preprocess).
//
// CLIP (transformers CLIPImageProcessor): shortest edge -> S, long edge int(S * long / short) (truncated), PIL resize
// with the spec's filter (bicubic), centre crop with offsets (h - ch) // 2 and (w - cw) // 2, then in float32 as numpy
// does it: x = f32(v * rescale); x = (x - f32(mean)) / f32(std); NCHW.
// SAM (segment_anything ResizeLongestSide + Sam.preprocess): scale = L / max(H, W), newh = int(H * scale + 0.5),
// neww = int(W * scale + 0.5), PIL resize (bilinear, antialiased), uint8 kept; then float32 (v - mean) / std in 0..255
// units; zeros to the right and bottom up to L x L, after normalisation; NCHW.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { acquireArena, Arena, releaseArena, SLACK, STAGE_MAX_BYTES } from './arena';
import type { DecodedImage } from './decode';
import {
  checkResize, OutputWindow, planResize, ResampleFilter, ResizePlan, resizeRgb, RgbImage, RowSource, runPlan, runPlanBytes,
  stagedRows,
} from './resample';

export interface ClipPreprocessSpec {
  shortest_edge: number;
  resample: ResampleFilter;
  /** [height, width] of the centre crop */
  crop: [number, number];
  rescale: number;
  mean: [number, number, number] | number[];
  std: [number, number, number] | number[];
}

export interface SamPreprocessSpec {
  long_side: number;
  resample: ResampleFilter;
  mean: [number, number, number] | number[];
  std: [number, number, number] | number[];
  pad: 'bottom-right-zero';
}

export interface ClipPixelValues {
  data: Float32Array;
  dims: [1, 3, number, number];
}

export interface SamPixelValues {
  data: Float32Array;
  dims: [1, 3, number, number];
  /** [newh, neww]: the resized image's size inside the padded square */
  resizeSize: [number, number];
}

function checkFilter(r: string, where: string): ResampleFilter {
  if (r !== 'bicubic' && r !== 'bilinear') throw new Error(`${where}.resample "${r}" is not supported (bicubic, bilinear)`);
  return r;
}

function check3(v: number[], name: string): void {
  if (!Array.isArray(v) || v.length !== 3 || v.some((x) => typeof x !== 'number' || !Number.isFinite(x))) {
    throw new Error(`${name} must be 3 finite numbers`);
  }
}

/** transformers get_resize_output_image_size(shortest_edge) -> [h, w]. */
export function clipResizeSize(h: number, w: number, shortest: number): [number, number] {
  const [short, long] = w <= h ? [w, h] : [h, w];
  const newLong = Math.trunc((shortest * long) / short);
  return w <= h ? [newLong, shortest] : [shortest, newLong];
}

/** ResizeLongestSide.get_preprocess_shape -> [newh, neww]. */
export function samResizeSize(h: number, w: number, longSide: number): [number, number] {
  const scale = longSide / Math.max(h, w);
  return [Math.trunc(h * scale + 0.5), Math.trunc(w * scale + 0.5)];
}

function clipGeometry(h: number, w: number, spec: ClipPreprocessSpec): { size: [number, number]; win: OutputWindow; filter: ResampleFilter } {
  const filter = checkFilter(spec.resample, 'clip_preprocess');
  const [ch, cw] = spec.crop;
  const [rh, rw] = clipResizeSize(h, w, spec.shortest_edge);
  if (rh < ch || rw < cw) {
    // transformers would pad here; with shortest_edge >= crop it never happens
    throw new Error(`clip_preprocess: crop ${ch}x${cw} is larger than the resized ${rh}x${rw}`);
  }
  const top = Math.floor((rh - ch) / 2);
  const left = Math.floor((rw - cw) / 2);
  return { size: [rh, rw], win: { x: left, y: top, width: cw, height: ch }, filter };
}

/** The resized and centre-cropped uint8 image that the CLIP tensor is made from. */
export function clipResizedCrop(img: RgbImage, spec: ClipPreprocessSpec): RgbImage {
  const g = clipGeometry(img.height, img.width, spec);
  return resizeRgb(img, g.size[1], g.size[0], g.filter, g.win);
}

function checkClip(spec: ClipPreprocessSpec): void {
  check3(spec.mean, 'clip_preprocess.mean');
  check3(spec.std, 'clip_preprocess.std');
}

/** CLIP `pixel_values` from the uint8 crop (w x h RGB at `src`). */
function clipTensor(src: Uint8Array, w: number, h: number, spec: ClipPreprocessSpec): ClipPixelValues {
  const plane = w * h;
  const out = new Float32Array(3 * plane);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const mean = f(spec.mean[c]);
    const std = f(spec.std[c]);
    // lookup table per channel: 256 possible inputs, computed with numpy's float32 steps
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = f(f(f(v * spec.rescale) - mean) / std);
    const base = c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = lut[src[i * 3 + c]];
  }
  return { data: out, dims: [1, 3, h, w] };
}

/** CLIP `pixel_values` [1, 3, crop_h, crop_w], float32, RGB. */
export function clipPixelValues(img: RgbImage, spec: ClipPreprocessSpec): ClipPixelValues {
  checkClip(spec);
  const crop = clipResizedCrop(img, spec);
  return clipTensor(crop.data, crop.width, crop.height, spec);
}

function samGeometry(h: number, w: number, spec: SamPreprocessSpec): { size: [number, number]; filter: ResampleFilter } {
  return { size: samResizeSize(h, w, spec.long_side), filter: checkFilter(spec.resample, 'sam_preprocess') };
}

/** The resized uint8 image that the SAM tensor is made from, and its size. */
export function samResized(img: RgbImage, spec: SamPreprocessSpec): RgbImage {
  const { size: [nh, nw], filter } = samGeometry(img.height, img.width, spec);
  return resizeRgb(img, nw, nh, filter);
}

function checkSam(spec: SamPreprocessSpec): void {
  check3(spec.mean, 'sam_preprocess.mean');
  check3(spec.std, 'sam_preprocess.std');
  if (spec.pad !== 'bottom-right-zero') throw new Error(`sam_preprocess.pad "${spec.pad}" is not supported`);
}

/**
 * Rows [a, b) of the SAM tensor `out` ([3, L, L], zeros beyond the image) from the uint8 resize (`rw` wide, row y at
 * src[y * rw * 3]).
 */
function samTensorRows(src: Uint8Array, rw: number, a: number, b: number, out: Float32Array, spec: SamPreprocessSpec): void {
  const L = spec.long_side;
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const mean = f(spec.mean[c]);
    const std = f(spec.std[c]);
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = f(f(v - mean) / std);
    const base = c * L * L;
    for (let y = a; y < b; y++) {
      const o = base + y * L;
      let s = y * rw * 3 + c;
      for (let x = 0; x < rw; x++, s += 3) out[o + x] = lut[src[s]];
    }
  }
}

/** SAM `pixel_values` [1, 3, L, L], float32, RGB, normalised then zero-padded bottom/right. */
export function samPixelValues(img: RgbImage, spec: SamPreprocessSpec): SamPixelValues {
  checkSam(spec);
  const L = spec.long_side;
  const r = samResized(img, spec);
  const out = new Float32Array(3 * L * L); // zeros: the padding
  samTensorRows(r.data, r.width, 0, r.height, out, spec);
  return { data: out, dims: [1, 3, L, L], resizeSize: [r.height, r.width] };
}

export interface PreprocessedImage {
  clip: ClipPixelValues;
  sam: SamPixelValues;
  /** [H, W] of the decoded image */
  origSize: [number, number];
  sha256: string;
}

/** Both tensors from one decoded image, on this thread. */
export function preprocessImage(img: DecodedImage, clip: ClipPreprocessSpec, sam: SamPreprocessSpec): PreprocessedImage {
  return {
    clip: clipPixelValues(img, clip),
    sam: samPixelValues(img, sam),
    origSize: [img.height, img.width],
    sha256: img.sha256,
  };
}

// ---- both tensors at once on two threads ----
//
// Both threads work in one shared arena (./arena.ts), where decodeImage normally left the image's rows. The main
// thread asks the worker to allocate the SAM tensor and touch its pages (a fresh 12 MB array costs ~5 ms of page
// faults), writes the coefficient tables and posts the job (if the image is not in the arena, it then copies its rows
// in, a few at a time, counting them in the STAGED flag); then it computes its own band (the lower rows of the CLIP
// crop, then of the SAM resize), counting finished rows in the CLIP and SAM flags. The worker meanwhile computes the
// upper rows of both resizes as their source rows arrive, normalises its SAM rows, then the CLIP crop and the main
// thread's SAM rows as they are finished, and transfers both tensors back. Each thread writes only its own rows, so the results are those
// of preprocessImage bit for bit.

/** Share of the output rows the worker computes (it also does the normalisation) when the image is staged already. */
const WORKER_SHARE = 0.4;
/** ... and when the main thread copies the image in first */
const WORKER_SHARE_COPYING = 0.45;
/** Rows copied (STAGED) or resized (SAM) between two updates of the flag */
const STAGE_ROWS = 32;
const SAM_ROWS = 16;
/** i32 flags, each the end of the rows that are ready, or ABORT */
const FLAG_STAGED = 0;
const FLAG_CLIP = 1;
const FLAG_SAM = 2;
const FLAGS = 3;
const ABORT = -1;

export interface WorkerTask {
  plan: ResizePlan;
  /** window rows [a, b) */
  a: number;
  b: number;
  dst: number;
}

export interface WorkerJob {
  id: number;
  memory: WebAssembly.Memory;
  /** the i32 flags (FLAG_STAGED, FLAG_CLIP, FLAG_SAM) at this byte offset */
  flags: number;
  /** the image's rows [0, STAGED) at `base`, `width` pixels wide */
  staged: { base: number; width: number };
  /** the worker's working memory starts here (runPlanBytes of its largest task is reserved) */
  scratch: number;
  tasks: WorkerTask[];
  clip: { spec: ClipPreprocessSpec; src: number; width: number; height: number };
  sam: { spec: SamPreprocessSpec; src: number; width: number; height: number; workerRows: number };
}

interface WorkerReply {
  id: number;
  clip?: Float32Array;
  sam?: Float32Array;
  error?: string;
}

const WAIT_MS = 60_000;

/** Waits until flag i reaches `end`; returns its value. */
function waitFor(flags: Int32Array, i: number, end: number): number {
  for (;;) {
    const v = Atomics.load(flags, i);
    if (v === ABORT) throw new Error('cancelled');
    if (v >= end) return v;
    if (Atomics.wait(flags, i, v, WAIT_MS) === 'timed-out') throw new Error(`timed out waiting for the main thread (flag ${i})`);
  }
}

/** stagedRows that waits until the main thread has copied the row in. */
function arrivingRows(job: WorkerJob, flags: Int32Array, plan: ResizePlan): RowSource {
  const rows = stagedRows(job.staged.base, 0, job.staged.width, plan);
  let ready = 0;
  return {
    row(r) {
      if (r >= ready) ready = waitFor(flags, FLAG_STAGED, r + 1);
      return rows.row(r);
    },
  };
}

/** The worker's side of a job (runs in preprocess-worker.js). */
/** The first message of a job, sent before the main thread plans it: the SAM tensor's size. */
export interface WorkerPrepare {
  prepare: number;
  long_side: number;
  rows: number;
}

let prepared: { id: number; sam: Float32Array } | undefined;

/** Allocates the SAM tensor of job `m.prepare` and maps the pages of its image rows (the rest stays zero, unmapped). */
export function prepareWorkerJob(m: WorkerPrepare): void {
  const L = m.long_side;
  const sam = new Float32Array(3 * L * L);
  for (let c = 0; c < 3; c++) sam.fill(0, c * L * L, c * L * L + m.rows * L);
  prepared = { id: m.prepare, sam };
}

export function runWorkerJob(job: WorkerJob): { clip: Float32Array; sam: Float32Array } {
  const arena = new Arena(job.memory);
  const flags = new Int32Array(job.memory.buffer, job.flags, FLAGS);
  const L = job.sam.spec.long_side;
  if (prepared?.id !== job.id) prepareWorkerJob({ prepare: job.id, long_side: L, rows: job.sam.height });
  const sam = (prepared as { sam: Float32Array }).sam;
  prepared = undefined;
  for (const t of job.tasks) runPlan(arena, arena.bump(job.scratch), t.plan, arrivingRows(job, flags, t.plan), t.a, t.b, t.dst);
  const u8 = () => arena.u8;
  const samSrc = () => u8().subarray(job.sam.src, job.sam.src + job.sam.width * job.sam.height * 3);
  samTensorRows(samSrc(), job.sam.width, 0, job.sam.workerRows, sam, job.sam.spec);
  const c = job.clip;
  waitFor(flags, FLAG_CLIP, c.height);
  const clip = clipTensor(u8().subarray(c.src, c.src + c.width * c.height * 3), c.width, c.height, c.spec).data;
  for (let y = job.sam.workerRows; y < job.sam.height;) {
    const end = waitFor(flags, FLAG_SAM, y + 1);
    samTensorRows(samSrc(), job.sam.width, y, end, sam, job.sam.spec);
    y = end;
  }
  return { clip, sam };
}

let worker: Worker | null | undefined; // undefined: not tried yet; null: unavailable, run on this thread
const pending = new Map<number, { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }>();
let nextId = 1;

function preprocessWorker(): Worker | null {
  if (worker !== undefined) return worker;
  worker = null;
  const file = path.join(__dirname, 'preprocess-worker.js');
  if (os.cpus().length < 2 || !fs.existsSync(file)) return null;
  try {
    const w = new Worker(file);
    w.unref(); // never keeps the host process alive
    w.on('message', (m: WorkerReply) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (pending.size === 0) w.unref();
      if (m.error !== undefined || !m.clip || !m.sam) p.reject(new Error(`pre-processing worker: ${m.error}`));
      else p.resolve(m);
    });
    const fail = (e: Error) => {
      if (worker === w) worker = undefined; // the next call starts a fresh worker
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`pre-processing worker exited (${code})`)));
    worker = w;
  } catch {
    worker = null;
  }
  return worker;
}

/** Stops the helper thread (tests, shutdown). A later call starts a new one. */
export async function stopPreprocessWorker(): Promise<void> {
  const w = worker;
  worker = undefined;
  if (w) await w.terminate();
}

/**
 * preprocessImage on two threads (see above). Same results bit for bit; runs on this thread alone when no worker can
 * run (one CPU, no worker file). A call made while another one is out works in a temporary arena.
 */
export async function preprocessImageParallel(
  img: DecodedImage, clip: ClipPreprocessSpec, sam: SamPreprocessSpec,
): Promise<PreprocessedImage> {
  checkClip(clip);
  checkSam(sam);
  const cg = clipGeometry(img.height, img.width, clip);
  const sg = samGeometry(img.height, img.width, sam);
  const [nh, nw] = sg.size;
  checkResize(img, cg.size[1], cg.size[0], cg.win);
  checkResize(img, nw, nh, undefined);
  const w = img.data.length <= STAGE_MAX_BYTES ? preprocessWorker() : null;
  if (!w) return preprocessImage(img, clip, sam);
  const id = nextId++;
  w.postMessage({ prepare: id, long_side: sam.long_side, rows: nh } satisfies WorkerPrepare);
  const arena = acquireArena();
  let flags: Int32Array | undefined;
  let reply: Promise<WorkerReply> | undefined;
  try {
    // the image's rows: staged by decodeImage, or copied in below while the worker starts on the first ones
    let base = arena.stagedAt(img.data);
    const prestaged = base !== undefined;
    if (!prestaged) arena.staged = undefined;
    const bump = arena.bump();
    if (base === undefined) base = bump.alloc(img.data.length + SLACK);
    const flagsPtr = bump.alloc(FLAGS * 4);
    const W = img.width;
    const H = img.height;
    const clipPlan = planResize(arena, bump, W, H, cg.size[1], cg.size[0], cg.filter, cg.win);
    const samPlan = planResize(arena, bump, W, H, nw, nh, sg.filter, { x: 0, y: 0, width: nw, height: nh });
    const ch = cg.win.height;
    const clipDst = bump.alloc(cg.win.width * ch * 3);
    const samDst = bump.alloc(nw * nh * 3);
    const share = prestaged ? WORKER_SHARE : WORKER_SHARE_COPYING;
    const cSplit = Math.round(ch * share);
    const sSplit = Math.round(nh * share);
    const scratch = Math.max(runPlanBytes(clipPlan, false), runPlanBytes(samPlan, false));
    const workerScratch = bump.alloc(scratch);
    const mainScratch = bump.alloc(scratch);
    flags = arena.i32(flagsPtr, FLAGS);
    flags[FLAG_STAGED] = prestaged ? H : 0;
    flags[FLAG_CLIP] = cSplit;
    flags[FLAG_SAM] = sSplit;

    const job: WorkerJob = {
      id, memory: arena.memory, flags: flagsPtr, staged: { base, width: W }, scratch: workerScratch,
      tasks: [{ plan: clipPlan, a: 0, b: cSplit, dst: clipDst }, { plan: samPlan, a: 0, b: sSplit, dst: samDst }],
      clip: { spec: clip, src: clipDst, width: cg.win.width, height: ch },
      sam: { spec: sam, src: samDst, width: nw, height: nh, workerRows: sSplit },
    };
    reply = new Promise<WorkerReply>((resolve, reject) => pending.set(job.id, { resolve, reject }));
    w.ref(); // keep the process alive while a job is out; unref'd again when the last reply arrives
    w.postMessage(job);

    if (!prestaged) {
      const u8 = arena.u8;
      const stride = W * 3;
      for (let r = 0; r < H; r += STAGE_ROWS) {
        const e = Math.min(r + STAGE_ROWS, H);
        u8.set(img.data.subarray(r * stride, e * stride), base + r * stride);
        Atomics.store(flags, FLAG_STAGED, e);
        Atomics.notify(flags, FLAG_STAGED);
      }
      arena.staged = { image: new WeakRef(img.data), base, bytes: img.data.length };
    }

    const f = flags;
    const publish = (i: number, end: number) => {
      Atomics.store(f, i, end);
      Atomics.notify(f, i);
    };
    runPlan(arena, arena.bump(mainScratch), clipPlan, stagedRows(base, 0, W, clipPlan), cSplit, ch, clipDst);
    publish(FLAG_CLIP, ch);
    runPlan(arena, arena.bump(mainScratch), samPlan, stagedRows(base, 0, W, samPlan), sSplit, nh, samDst, (end) => {
      if (end === nh || (end - sSplit) % SAM_ROWS === 0) publish(FLAG_SAM, end);
    });

    const r = await reply;
    const L = sam.long_side;
    return {
      clip: { data: r.clip as Float32Array, dims: [1, 3, ch, cg.win.width] },
      sam: { data: r.sam as Float32Array, dims: [1, 3, L, L], resizeSize: [nh, nw] },
      origSize: [img.height, img.width],
      sha256: img.sha256,
    };
  } catch (e) {
    if (flags) {
      // release the worker if it waits on us, and let it finish before the arena is reused
      for (let i = 0; i < FLAGS; i++) {
        Atomics.store(flags, i, ABORT);
        Atomics.notify(flags, i);
      }
    }
    await reply?.catch(() => undefined);
    throw e;
  } finally {
    releaseArena(arena);
  }
}
