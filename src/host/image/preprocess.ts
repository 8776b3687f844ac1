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
import type { DecodedImage } from './decode';
import { ResampleFilter, RgbImage, resizeRgb } from './resample';

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

/** The resized and centre-cropped uint8 image that the CLIP tensor is made from. */
export function clipResizedCrop(img: RgbImage, spec: ClipPreprocessSpec): RgbImage {
  const filter = checkFilter(spec.resample, 'clip_preprocess');
  const [ch, cw] = spec.crop;
  const [rh, rw] = clipResizeSize(img.height, img.width, spec.shortest_edge);
  if (rh < ch || rw < cw) {
    // transformers would pad here; with shortest_edge >= crop it never happens
    throw new Error(`clip_preprocess: crop ${ch}x${cw} is larger than the resized ${rh}x${rw}`);
  }
  const top = Math.floor((rh - ch) / 2);
  const left = Math.floor((rw - cw) / 2);
  return resizeRgb(img, rw, rh, filter, { x: left, y: top, width: cw, height: ch });
}

/** CLIP `pixel_values` [1, 3, crop_h, crop_w], float32, RGB. */
export function clipPixelValues(img: RgbImage, spec: ClipPreprocessSpec): ClipPixelValues {
  check3(spec.mean, 'clip_preprocess.mean');
  check3(spec.std, 'clip_preprocess.std');
  const crop = clipResizedCrop(img, spec);
  const plane = crop.width * crop.height;
  const out = new Float32Array(3 * plane);
  const f = Math.fround;
  const src = crop.data;
  for (let c = 0; c < 3; c++) {
    const mean = f(spec.mean[c]);
    const std = f(spec.std[c]);
    // lookup table per channel: 256 possible inputs, computed with numpy's float32 steps
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = f(f(f(v * spec.rescale) - mean) / std);
    const base = c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = lut[src[i * 3 + c]];
  }
  return { data: out, dims: [1, 3, crop.height, crop.width] };
}

/** The resized uint8 image that the SAM tensor is made from, and its size. */
export function samResized(img: RgbImage, spec: SamPreprocessSpec): RgbImage {
  const filter = checkFilter(spec.resample, 'sam_preprocess');
  const [nh, nw] = samResizeSize(img.height, img.width, spec.long_side);
  return resizeRgb(img, nw, nh, filter);
}

/** SAM `pixel_values` [1, 3, L, L], float32, RGB, normalised then zero-padded bottom/right. */
export function samPixelValues(img: RgbImage, spec: SamPreprocessSpec): SamPixelValues {
  check3(spec.mean, 'sam_preprocess.mean');
  check3(spec.std, 'sam_preprocess.std');
  if (spec.pad !== 'bottom-right-zero') throw new Error(`sam_preprocess.pad "${spec.pad}" is not supported`);
  const L = spec.long_side;
  const r = samResized(img, spec);
  const out = new Float32Array(3 * L * L); // zeros: the padding
  const f = Math.fround;
  const src = r.data;
  const rw = r.width;
  for (let c = 0; c < 3; c++) {
    const mean = f(spec.mean[c]);
    const std = f(spec.std[c]);
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = f(f(v - mean) / std);
    const base = c * L * L;
    for (let y = 0; y < r.height; y++) {
      const o = base + y * L;
      let s = y * rw * 3 + c;
      for (let x = 0; x < rw; x++, s += 3) out[o + x] = lut[src[s]];
    }
  }
  return { data: out, dims: [1, 3, L, L], resizeSize: [r.height, r.width] };
}

export interface PreprocessedImage {
  clip: ClipPixelValues;
  sam: SamPixelValues;
  /** [H, W] of the decoded image */
  origSize: [number, number];
  sha256: string;
}

/** Both tensors from one decoded image. */
export function preprocessImage(img: DecodedImage, clip: ClipPreprocessSpec, sam: SamPreprocessSpec): PreprocessedImage {
  return {
    clip: clipPixelValues(img, clip),
    sam: samPixelValues(img, sam),
    origSize: [img.height, img.width],
    sha256: img.sha256,
  };
}

// ---- both tensors at once on two threads ----

interface WorkerReply {
  id: number;
  data?: Float32Array;
  dims?: [1, 3, number, number];
  error?: string;
}

let worker: Worker | null | undefined; // undefined: not tried yet; null: unavailable, run on this thread
const pending = new Map<number, { resolve: (r: ClipPixelValues) => void; reject: (e: Error) => void }>();
let nextId = 1;

function clipWorker(): Worker | null {
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
      if (m.error !== undefined || !m.data || !m.dims) p.reject(new Error(`CLIP pre-processing worker: ${m.error}`));
      else p.resolve({ data: m.data, dims: m.dims });
    });
    const fail = (e: Error) => {
      if (worker === w) worker = undefined; // the next call starts a fresh worker
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`CLIP pre-processing worker exited (${code})`)));
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
 * preprocessImage with the CLIP tensor computed on a worker thread while this thread computes the SAM tensor. Same
 * results bit for bit; falls back to one thread when no worker can run (one CPU, bundled without the worker file).
 */
export async function preprocessImageParallel(
  img: DecodedImage, clip: ClipPreprocessSpec, sam: SamPreprocessSpec,
): Promise<PreprocessedImage> {
  const w = img.data.buffer instanceof SharedArrayBuffer ? clipWorker() : null;
  if (!w) return preprocessImage(img, clip, sam);
  const id = nextId++;
  const clipDone = new Promise<ClipPixelValues>((resolve, reject) => pending.set(id, { resolve, reject }));
  w.ref(); // keep the process alive while a job is out; unref'd again when the last reply arrives
  w.postMessage({ id, width: img.width, height: img.height, data: img.data, spec: clip });
  let samOut: SamPixelValues;
  try {
    samOut = samPixelValues(img, sam);
  } catch (e) {
    await clipDone.catch(() => undefined);
    throw e;
  }
  return { clip: await clipDone, sam: samOut, origSize: [img.height, img.width], sha256: img.sha256 };
}
