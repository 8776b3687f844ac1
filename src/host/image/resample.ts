// A resizer for 8-bit RGB that reproduces Pillow's `Image.resize(size, BICUBIC | BILINEAR)` bit for bit.
//
// It follows Pillow's ImagingResample (src/libImaging/Resample.c) step by step:
// - per output index: center = (i + 0.5) * scale, filterscale = max(scale, 1) (antialiasing when downscaling),
//   support = filter.support * filterscale, taps from int(center - support + 0.5) to int(center + support + 0.5)
//   clamped to the image, weights filter((x + xmin - center + 0.5) * (1 / filterscale)) normalised by their sum;
// - weights converted to fixed point with PRECISION_BITS = 32 - 8 - 2 = 22, rounding half away from zero (C truncation
//   of +-0.5 offsets);
// - two passes through a uint8 intermediate, each starting its accumulator at 1 << 21 and clipping `acc >> 22` to
//   0..255; a pass is skipped when its size is unchanged;
// - pass order: the horizontal pass first, always, as in Pillow 9.4.0, the version LISA pins (Pillow 13 runs the
//   vertical pass first when the height shrinks and (inH - outH) > 2 * (inW - outW), moving values by up to 4 levels:
//   tall images for the CLIP resize, some large SAM downscales); test/host/image-resample.test.ts checks against 9.4.0;
// - the default box (0, 0, width, height).
//
// Every output pixel depends only on its own row/column coefficients, so a window of the output (the CLIP centre crop),
// or a band of its rows (one per thread), can be computed alone and is identical to cropping the full result.
//
// The coefficients and the arithmetic are WebAssembly (resample.as: the same doubles, then SIMD on the same integers);
// this file plans the passes and drives the kernels one row at a time, in a small working set:
// each source row needed is horizontally resampled into a ring of `maxTaps` rows, and each output row is the vertical
// pass over the ring rows it needs (rows come in order, so a row leaves the ring only when no later output row reads
// it).
// Source rows reach the kernels either copied one by one into a small ring in the arena (a RowSource that streams from
// any Uint8Array) or from the image already copied into the (shared) arena by a parallel job.

import { type Arena, type Bump, SLACK, withArena } from './arena';

export type ResampleFilter = 'bilinear' | 'bicubic';

/** 8-bit RGB, 3 interleaved channels, row-major. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** A window of the resized image, in output coordinates. */
export interface OutputWindow {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Pillow's precompute_coeffs for output indices [from, from + count), computed by the kernel into the arena. */
function coeffs(
  arena: Arena,
  bump: Bump,
  inSize: number,
  outSize: number,
  filter: ResampleFilter,
  from: number,
  count: number,
): { bounds: number; kk: number; ksize: number } {
  const scale = inSize / outSize;
  const support = (filter === 'bicubic' ? 2.0 : 1.0) * Math.max(scale, 1.0);
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = bump.alloc(count * 8);
  const kk = bump.alloc(count * ksize * 4);
  const w = bump.alloc(ksize * 8);
  arena.k.coeffs(inSize, outSize, filter === 'bicubic' ? 1 : 0, from, count, ksize, bounds, kk, w);
  return { bounds, kk, ksize };
}

/** A pass's coefficients laid out for the kernels, in the arena. */
export interface ResizePlan {
  inW: number;
  inH: number;
  win: OutputWindow;
  /** 'copy': no pass; 'h', 'v': one pass; 'hv': both, horizontal first */
  order: 'copy' | 'h' | 'v' | 'hv';
  /** source columns [x0, x1) that the first pass reads */
  x0: number;
  x1: number;
  /** horizontal pass: hrow's table (see resample.as), its offsets relative to column x0 */
  pb: number;
  /** vertical pass: per window row [first source row, taps] (the driver reads it), the i32 taps in the arena */
  vBounds: Int32Array;
  vk: number;
  vKsize: number;
  /** most taps of any window row of the vertical pass */
  vMaxTaps: number;
}

/**
 * Coefficients and pass order of the resize inW x inH -> outW x outH, window `win`, written into the arena at `bump`.
 * Pillow 9.4.0's pass order (see the top of this file).
 */
export function planResize(
  arena: Arena,
  bump: Bump,
  inW: number,
  inH: number,
  outW: number,
  outH: number,
  filter: ResampleFilter,
  win: OutputWindow,
): ResizePlan {
  const needH = outW !== inW;
  const needV = outH !== inH;
  const plan: ResizePlan = {
    inW,
    inH,
    win,
    order: 'copy',
    x0: win.x,
    x1: win.x + win.width,
    pb: 0,
    vBounds: new Int32Array(0),
    vk: 0,
    vKsize: 0,
    vMaxTaps: 0,
  };
  if (!needH && !needV) return plan;
  if (needV) {
    const cv = coeffs(arena, bump, inH, outH, filter, win.y, win.height);
    plan.vBounds = arena.i32(cv.bounds, win.height * 2).slice();
    plan.vKsize = cv.ksize;
    plan.vk = cv.kk;
    for (let i = 0; i < win.height; i++) plan.vMaxTaps = Math.max(plan.vMaxTaps, plan.vBounds[i * 2 + 1]);
  }
  if (needH) {
    const ch = coeffs(arena, bump, inW, outW, filter, win.x, win.width);
    const b = arena.i32(ch.bounds, win.width * 2);
    plan.x0 = b[0];
    plan.x1 = b[(win.width - 1) * 2] + b[(win.width - 1) * 2 + 1];
    plan.pb = bump.alloc(win.width * 12);
    const pairs = bump.alloc(win.width * ((ch.ksize + 1) >> 1) * 32);
    if (arena.k.htable(ch.bounds, ch.kk, ch.ksize, win.width, plan.x0, plan.pb, pairs) < 0) {
      throw new Error(`resizeRgb: a ${filter} weight of ${inW} -> ${outW} does not fit the kernel's 16-bit halves`);
    }
  }
  plan.order = !needV ? 'h' : !needH ? 'v' : 'hv';
  return plan;
}

/** Where the kernels find source row r (from column plan.x0 on). */
export interface RowSource {
  row(r: number): number;
}

/** Rows [r0, ...) of `width`-pixel RGB already in the arena at `base`, with SLACK bytes after them. */
export function stagedRows(base: number, r0: number, width: number, plan: ResizePlan): RowSource {
  const stride = width * 3;
  const off = base - r0 * stride + plan.x0 * 3;
  return { row: (r) => off + r * stride };
}

/** Rows streamed from `img` into a ring of `slots` rows in the arena, columns [x0, x1) only. */
function streamedRows(arena: Arena, bump: Bump, img: RgbImage, plan: ResizePlan, slots: number): RowSource {
  const bytes = (plan.x1 - plan.x0) * 3;
  const ring = bump.alloc(slots * bytes + SLACK);
  const held = new Int32Array(slots).fill(-1);
  const stride = img.width * 3;
  const data = img.data;
  return {
    row(r) {
      const slot = r % slots;
      const p = ring + slot * bytes;
      if (held[slot] !== r) {
        const s = r * stride + plan.x0 * 3;
        arena.u8.set(data.subarray(s, s + bytes), p);
        held[slot] = r;
      }
      return p;
    },
  };
}

/** Rows of source ring that window rows of `plan` need at once (the horizontal pass takes two rows at a time). */
function sourceSlots(plan: ResizePlan): number {
  return plan.order === 'v' ? plan.vMaxTaps : 2;
}

/**
 * Computes window rows [a, b) of `plan` into `dst` (the window's row 0; row y at dst + y * width * 3), reading source
 * rows from `src`, in steps (advance) that can wait for source rows in between; working buffers come from `bump`.
 * `done(y + 1)` is called after each row y.
 */
export class PlanRunner {
  /** next window row to compute */
  pos: number;
  private readonly rowBytes: number;
  private readonly rowPtrs: number = 0;
  private readonly ptrs: Int32Array = new Int32Array(0);
  /** 'hv': the ring of horizontally resampled rows */
  private readonly tmp: number = 0;
  /** 'hv': first source row not yet in the ring */
  private next: number;

  constructor(
    private readonly arena: Arena,
    bump: Bump,
    private readonly plan: ResizePlan,
    private readonly src: RowSource,
    a: number,
    readonly end: number,
    private readonly dst: number,
    private readonly done?: (end: number) => void,
  ) {
    this.pos = a;
    this.rowBytes = plan.win.width * 3;
    this.next = plan.order === 'hv' && a < end ? plan.vBounds[a * 2] : 0;
    if (plan.order === 'copy' || plan.order === 'h' || a >= end) return;
    this.rowPtrs = bump.alloc(plan.vMaxTaps * 4);
    this.ptrs = arena.i32(this.rowPtrs, plan.vMaxTaps);
    if (plan.order === 'hv') this.tmp = bump.alloc(plan.vMaxTaps * this.rowBytes + SLACK);
  }

  /** End (exclusive) of the source rows that window row y reads. */
  needs(y: number): number {
    const { plan } = this;
    if (plan.order === 'copy' || plan.order === 'h') return plan.win.y + y + 1;
    return plan.vBounds[y * 2] + plan.vBounds[y * 2 + 1];
  }

  /** Computes window rows up to `to` (exclusive, at most `end`). */
  advance(to: number): void {
    const { plan, src, rowBytes, dst, done, ptrs, rowPtrs, tmp } = this;
    const { win, order } = plan;
    const k = this.arena.k;
    const b = Math.min(to, this.end);
    let y = this.pos;
    if (order === 'copy') {
      const u8 = this.arena.u8;
      for (; y < b; y++) {
        u8.copyWithin(dst + y * rowBytes, src.row(win.y + y), src.row(win.y + y) + rowBytes);
        done?.(y + 1);
      }
    } else if (order === 'h') {
      for (; y + 1 < b; y += 2) {
        k.hrow2(
          src.row(win.y + y),
          src.row(win.y + y + 1),
          plan.pb,
          win.width,
          dst + y * rowBytes,
          dst + (y + 1) * rowBytes,
        );
        done?.(y + 2);
      }
      if (y < b) {
        k.hrow(src.row(win.y + y), plan.pb, win.width, dst + y * rowBytes);
        done?.(++y);
      }
    } else if (order === 'v') {
      const vb = plan.vBounds;
      for (; y < b; y++) {
        const ymin = vb[y * 2];
        const n = vb[y * 2 + 1];
        for (let t = 0; t < n; t++) ptrs[t] = src.row(ymin + t);
        k.vrow(rowPtrs, plan.vk + y * plan.vKsize * 4, n, rowBytes, dst + y * rowBytes);
        done?.(y + 1);
      }
    } else {
      // 'hv': horizontal pass of each source row into the ring, vertical pass over the ring
      const vb = plan.vBounds;
      const slots = plan.vMaxTaps;
      let next = this.next;
      for (; y < b; y++) {
        const ymin = vb[y * 2];
        const n = vb[y * 2 + 1];
        if (next < ymin) next = ymin;
        for (; next + 1 < ymin + n; next += 2) {
          k.hrow2(
            src.row(next),
            src.row(next + 1),
            plan.pb,
            win.width,
            tmp + (next % slots) * rowBytes,
            tmp + ((next + 1) % slots) * rowBytes,
          );
        }
        if (next < ymin + n) k.hrow(src.row(next), plan.pb, win.width, tmp + (next++ % slots) * rowBytes);
        for (let t = 0; t < n; t++) ptrs[t] = tmp + ((ymin + t) % slots) * rowBytes;
        k.vrow(rowPtrs, plan.vk + y * plan.vKsize * 4, n, rowBytes, dst + y * rowBytes);
        done?.(y + 1);
      }
      this.next = next;
    }
    this.pos = y;
  }
}

/** PlanRunner in one step. */
export function runPlan(
  arena: Arena,
  bump: Bump,
  plan: ResizePlan,
  src: RowSource,
  a: number,
  b: number,
  dst: number,
  done?: (end: number) => void,
): void {
  new PlanRunner(arena, bump, plan, src, a, b, dst, done).advance(b);
}

/** Bytes of working memory runPlan takes from its Bump (streamed: with the source ring), alignment included. */
export function runPlanBytes(plan: ResizePlan, streamed: boolean): number {
  const rowBytes = plan.win.width * 3;
  let n = 16 + plan.vMaxTaps * 4 + 16;
  if (plan.order === 'hv') n += plan.vMaxTaps * rowBytes + SLACK + 16;
  if (streamed) n += sourceSlots(plan) * (plan.x1 - plan.x0) * 3 + SLACK + 16;
  return n;
}

/** Window rows [a, b) of `plan`, source rows streamed from `img`. */
export function runPlanStreamed(
  arena: Arena,
  bump: Bump,
  plan: ResizePlan,
  img: RgbImage,
  a: number,
  b: number,
  dst: number,
): void {
  if (a >= b) return;
  const src = streamedRows(arena, bump, img, plan, sourceSlots(plan));
  runPlan(arena, bump, plan, src, a, b, dst);
}

export function checkResize(img: RgbImage, outW: number, outH: number, win?: OutputWindow): OutputWindow {
  const { width: inW, height: inH, data } = img;
  if (!(Number.isInteger(outW) && Number.isInteger(outH) && outW > 0 && outH > 0)) {
    throw new RangeError(`resizeRgb: output size must be positive integers, got ${outW}x${outH}`);
  }
  if (data.length !== inW * inH * 3) {
    throw new RangeError(`resizeRgb: data has ${data.length} bytes, expected ${inW}x${inH}x3`);
  }
  const w = win ?? { x: 0, y: 0, width: outW, height: outH };
  if (w.x < 0 || w.y < 0 || w.width <= 0 || w.height <= 0 || w.x + w.width > outW || w.y + w.height > outH) {
    throw new RangeError(`resizeRgb: window ${JSON.stringify(w)} is outside ${outW}x${outH}`);
  }
  return w;
}

/**
 * Resize 8-bit RGB to outW x outH exactly as Pillow's `Image.resize((outW, outH), filter)` does, returning only the
 * output window `win` (default: the whole image). Runs on the calling thread.
 */
export function resizeRgb(
  img: RgbImage,
  outW: number,
  outH: number,
  filter: ResampleFilter,
  win?: OutputWindow,
): RgbImage {
  const w = checkResize(img, outW, outH, win);
  return withArena((arena) => {
    const bump = arena.bump();
    const plan = planResize(arena, bump, img.width, img.height, outW, outH, filter, w);
    const bytes = w.width * w.height * 3;
    const dst = bump.alloc(bytes + SLACK);
    runPlanStreamed(arena, bump, plan, img, 0, w.height, dst);
    return { width: w.width, height: w.height, data: arena.u8.slice(dst, dst + bytes) };
  });
}
