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
import { Arena, acquireArena, type Bump, releaseArena, SLACK, STAGE_MAX_BYTES } from './arena';
import type { DecodedImage } from './decode';
import {
  checkResize,
  type OutputWindow,
  PlanRunner,
  planResize,
  type ResampleFilter,
  type ResizePlan,
  type RgbImage,
  type RowSource,
  resizeRgb,
  runPlan,
  runPlanBytes,
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
  if (r !== 'bicubic' && r !== 'bilinear')
    throw new Error(`${where}.resample "${r}" is not supported (bicubic, bilinear)`);
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

function clipGeometry(
  h: number,
  w: number,
  spec: ClipPreprocessSpec,
): { size: [number, number]; win: OutputWindow; filter: ResampleFilter } {
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

function samGeometry(
  h: number,
  w: number,
  spec: SamPreprocessSpec,
): { size: [number, number]; filter: ResampleFilter } {
  return { size: samResizeSize(h, w, spec.long_side), filter: checkFilter(spec.resample, 'sam_preprocess') };
}

/** The resized uint8 image that the SAM tensor is made from, and its size. */
export function samResized(img: RgbImage, spec: SamPreprocessSpec): RgbImage {
  const {
    size: [nh, nw],
    filter,
  } = samGeometry(img.height, img.width, spec);
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
function samTensorRows(
  src: Uint8Array,
  rw: number,
  a: number,
  b: number,
  out: Float32Array,
  spec: SamPreprocessSpec,
): void {
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
export function preprocessImage(
  img: DecodedImage,
  clip: ClipPreprocessSpec,
  sam: SamPreprocessSpec,
): PreprocessedImage {
  return {
    clip: clipPixelValues(img, clip),
    sam: samPixelValues(img, sam),
    origSize: [img.height, img.width],
    sha256: img.sha256,
  };
}

// ---- both tensors at once on two threads ----
//
// Both threads work in one shared arena (./arena.ts). The main thread asks the worker to allocate the SAM tensor and
// touch its pages (a fresh 12 MB array costs ~5 ms of page faults), writes the coefficient tables and posts the job,
// then copies the image's rows in, a few at a time, counting them in the STAGED flag; then it computes its own band (the lower rows of the CLIP
// crop, then of the SAM resize), counting finished rows in the CLIP and SAM flags. The worker meanwhile computes the
// upper rows of both resizes as their source rows arrive, normalises its SAM rows, then the CLIP crop and the main
// thread's SAM rows as they are finished, and transfers both tensors back. Each thread writes only its own rows, so
// the results are those of preprocessImage bit for bit.

/** Share of the output rows the worker computes (it also does the normalisation; the main thread copies the image in) */
const WORKER_SHARE = 0.45;
/** Rows resized (SAM) between two updates of the flag */
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
  /** the worker's working memory starts here (runPlanBytes of its two tasks are reserved) */
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
    if (Atomics.wait(flags, i, v, WAIT_MS) === 'timed-out')
      throw new Error(`timed out waiting for the main thread (flag ${i})`);
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

/** Sent ahead of a job: the worker allocates a SAM tensor of that size and maps its pages while the main thread plans. */
export interface WorkerPrepare {
  prepare: true;
  long_side: number;
}

let spare: Float32Array | undefined;

export function prepareWorkerJob(m: WorkerPrepare): void {
  const L = m.long_side;
  if (spare?.length === 3 * L * L) return;
  spare = new Float32Array(3 * L * L).fill(0); // fill: map the pages now, not while the job runs
}

/** The worker's side of a job (runs in preprocess-worker.js). */
export function runWorkerJob(job: WorkerJob): { clip: Float32Array; sam: Float32Array } {
  const arena = new Arena(job.memory);
  const flags = new Int32Array(job.memory.buffer, job.flags, FLAGS);
  const L = job.sam.spec.long_side;
  const sam = spare?.length === 3 * L * L ? spare : new Float32Array(3 * L * L);
  spare = undefined;
  const u8 = () => arena.u8;
  const samSrc = () => u8().subarray(job.sam.src, job.sam.src + job.sam.width * job.sam.height * 3);
  // both resizes advance together as the main thread copies the image's rows in, and the SAM rows are normalised as
  // they are done
  const bump = arena.bump(job.scratch);
  const [clipRun, samRun] = job.tasks.map(
    (t) => new PlanRunner(arena, bump, t.plan, arrivingRows(job, flags, t.plan), t.a, t.b, t.dst),
  );
  let normalised = 0;
  for (;;) {
    const ready = Atomics.load(flags, FLAG_STAGED);
    if (ready === ABORT) throw new Error('cancelled');
    let moved = false;
    for (const r of [clipRun, samRun]) {
      let e = r.pos;
      while (e < r.end && r.needs(e) <= ready) e++;
      if (e > r.pos) {
        r.advance(e);
        moved = true;
      }
    }
    if (samRun.pos > normalised) {
      samTensorRows(samSrc(), job.sam.width, normalised, samRun.pos, sam, job.sam.spec);
      normalised = samRun.pos;
    }
    if (clipRun.pos >= clipRun.end && samRun.pos >= samRun.end) break;
    if (!moved) waitFor(flags, FLAG_STAGED, ready + 1);
  }
  const c = job.clip;
  waitFor(flags, FLAG_CLIP, c.height);
  const clip = clipTensor(u8().subarray(c.src, c.src + c.width * c.height * 3), c.width, c.height, c.spec).data;
  for (let y = job.sam.workerRows; y < job.sam.height; ) {
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

interface Job {
  id: number;
  w: Worker;
  flags: Int32Array;
  reply: Promise<WorkerReply>;
  /** the main thread's band (none when the worker takes every row) */
  main: () => void;
  clipDims: [1, 3, number, number];
  samDims: [1, 3, number, number];
  resizeSize: [number, number];
}

/** Plans a job in `arena` (the image's rows to be copied to `base`), posts it to `w`, and returns it. */
function startJob(
  w: Worker,
  arena: Arena,
  bump: Bump,
  img: RgbImage,
  base: number,
  clip: ClipPreprocessSpec,
  sam: SamPreprocessSpec,
): Job {
  checkClip(clip);
  checkSam(sam);
  const W = img.width;
  const H = img.height;
  const cg = clipGeometry(H, W, clip);
  const [nh, nw] = samGeometry(H, W, sam).size;
  checkResize(img, cg.size[1], cg.size[0], cg.win);
  checkResize(img, nw, nh, undefined);
  const id = nextId++;
  w.postMessage({ prepare: true, long_side: sam.long_side } satisfies WorkerPrepare);
  const flagsPtr = bump.alloc(FLAGS * 4);
  const clipPlan = planResize(arena, bump, W, H, cg.size[1], cg.size[0], cg.filter, cg.win);
  const samPlan = planResize(arena, bump, W, H, nw, nh, samGeometry(H, W, sam).filter, {
    x: 0,
    y: 0,
    width: nw,
    height: nh,
  });
  const ch = cg.win.height;
  const clipDst = bump.alloc(cg.win.width * ch * 3);
  const samDst = bump.alloc(nw * nh * 3);
  const cSplit = Math.round(ch * WORKER_SHARE);
  const sSplit = Math.round(nh * WORKER_SHARE);
  const workerScratch = bump.alloc(runPlanBytes(clipPlan, false) + runPlanBytes(samPlan, false));
  const mainScratch = bump.alloc(Math.max(runPlanBytes(clipPlan, false), runPlanBytes(samPlan, false)));
  const flags = arena.i32(flagsPtr, FLAGS);
  flags[FLAG_STAGED] = 0;
  flags[FLAG_CLIP] = cSplit;
  flags[FLAG_SAM] = sSplit;
  const job: WorkerJob = {
    id,
    memory: arena.memory,
    flags: flagsPtr,
    staged: { base, width: W },
    scratch: workerScratch,
    tasks: [
      { plan: clipPlan, a: 0, b: cSplit, dst: clipDst },
      { plan: samPlan, a: 0, b: sSplit, dst: samDst },
    ],
    clip: { spec: clip, src: clipDst, width: cg.win.width, height: ch },
    sam: { spec: sam, src: samDst, width: nw, height: nh, workerRows: sSplit },
  };
  const reply = new Promise<WorkerReply>((resolve, reject) => pending.set(id, { resolve, reject }));
  w.ref(); // keep the process alive while a job is out; unref'd again when the last reply arrives
  w.postMessage(job);
  const publish = (i: number, end: number) => {
    Atomics.store(flags, i, end);
    Atomics.notify(flags, i);
  };
  const main = () => {
    runPlan(arena, arena.bump(mainScratch), clipPlan, stagedRows(base, 0, W, clipPlan), cSplit, ch, clipDst);
    publish(FLAG_CLIP, ch);
    runPlan(arena, arena.bump(mainScratch), samPlan, stagedRows(base, 0, W, samPlan), sSplit, nh, samDst, (end) => {
      if (end === nh || (end - sSplit) % SAM_ROWS === 0) publish(FLAG_SAM, end);
    });
  };
  const L = sam.long_side;
  return { id, w, flags, reply, main, clipDims: [1, 3, ch, cg.win.width], samDims: [1, 3, L, L], resizeSize: [nh, nw] };
}

/** Bytes copied between two updates of STAGED */
const STAGE_CHUNK = 256 * 1024;

/** Copies the image's rows into the arena at `base`, counting them in the job's STAGED flag as they land. */
function stageRows(arena: Arena, img: RgbImage, base: number, job: Job): void {
  const u8 = arena.u8;
  const data = img.data;
  const stride = img.width * 3;
  for (let o = 0; o < data.length; o += STAGE_CHUNK) {
    const end = Math.min(o + STAGE_CHUNK, data.length);
    u8.set(data.subarray(o, end), base + o);
    Atomics.store(job.flags, FLAG_STAGED, Math.floor(end / stride));
    Atomics.notify(job.flags, FLAG_STAGED);
  }
}

/** Releases the worker if it waits on this thread; the job's reply then settles (with an error). */
function abortJob(job: Job): void {
  for (let i = 0; i < FLAGS; i++) {
    Atomics.store(job.flags, i, ABORT);
    Atomics.notify(job.flags, i);
  }
}

type Tensors = Pick<PreprocessedImage, 'clip' | 'sam'>;

function tensorsOf(job: Job, r: WorkerReply): Tensors {
  return {
    clip: { data: r.clip as Float32Array, dims: job.clipDims },
    sam: { data: r.sam as Float32Array, dims: job.samDims, resizeSize: job.resizeSize },
  };
}

/**
 * preprocessImage on two threads (see above). Same results bit for bit; runs on this thread alone when no worker can
 * run (one CPU, no worker file). A call made while another one is out works in a temporary arena.
 */
export async function preprocessImageParallel(
  img: DecodedImage,
  clip: ClipPreprocessSpec,
  sam: SamPreprocessSpec,
): Promise<PreprocessedImage> {
  checkClip(clip);
  checkSam(sam);
  const cg = clipGeometry(img.height, img.width, clip);
  const [nh, nw] = samGeometry(img.height, img.width, sam).size;
  checkResize(img, cg.size[1], cg.size[0], cg.win);
  checkResize(img, nw, nh, undefined);
  const w = img.data.length <= STAGE_MAX_BYTES ? preprocessWorker() : null;
  if (!w) return preprocessImage(img, clip, sam);
  const arena = acquireArena();
  let job: Job | undefined;
  try {
    // the image's rows are copied in below while the worker starts on the first ones
    const bump = arena.bump();
    const base = bump.alloc(img.data.length + SLACK);
    job = startJob(w, arena, bump, img, base, clip, sam);
    stageRows(arena, img, base, job);
    job.main();
    return { ...tensorsOf(job, await job.reply), origSize: [img.height, img.width], sha256: img.sha256 };
  } catch (e) {
    if (job) {
      abortJob(job);
      await job.reply.catch(() => undefined); // the worker is done with the arena before it is reused
    }
    throw e;
  } finally {
    releaseArena(arena);
  }
}
