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
// - pass order: Pillow up to 12 always ran the horizontal pass first. Pillow 13 runs the vertical pass first exactly
//   when the height shrinks and (inH - outH) > 2 * (inW - outW). That rule was measured, not read: Pillow 13's
//   Resample.c was not available, so it was fitted on ~2,500 random size pairs (both filters, 2..1500 px, densely
//   around the boundary) with no exception; test/host/image-resample.test.ts covers both orders on photographs;
// - the default box (0, 0, width, height).
//
// Every output pixel depends only on its own row/column coefficients, so a window of the output (the CLIP centre crop),
// or a band of its rows (one per thread), can be computed alone and is identical to cropping the full result.
//
// The arithmetic runs in WebAssembly SIMD (resample.as, exact same integers); this file computes the coefficients and
// drives the kernels one row at a time, in a small working set:
// - horizontal first: each source row needed is horizontally resampled into a ring of `maxTaps` rows, and each output
//   row is the vertical pass over the ring rows it needs (rows come in order, so a row leaves the ring only when no
//   later output row reads it);
// - vertical first: each output row is the vertical pass over the source rows (only the columns the horizontal pass
//   reads) into one row, then the horizontal pass of that row.
// Source rows reach the kernels either copied one by one into a small ring in the arena (a RowSource that streams from
// any Uint8Array) or from a block of rows already in the (shared) arena (the worker thread's half of a parallel job).

import { Arena, Bump, SLACK, withArena } from './arena';

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

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const ONE = 1 << PRECISION_BITS;

function bilinearFilter(x: number): number {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

function bicubicFilter(x: number): number {
  // a = -0.5, written as Pillow writes it (same operation order, so the same doubles)
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((-0.5 + 2.0) * x - (-0.5 + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0.0;
}

export interface Coeffs {
  ksize: number;
  /** per output index: first input index, number of taps */
  bounds: Int32Array;
  /** fixed-point weights, ksize per output index */
  kk: Int32Array;
}

/**
 * Pillow's precompute_coeffs + normalize_coeffs_8bpc for output indices [from, from + count) of a resize
 * inSize -> outSize (box 0..inSize).
 */
export function precomputeCoeffs(inSize: number, outSize: number, filter: ResampleFilter, from: number, count: number): Coeffs {
  const fn = filter === 'bicubic' ? bicubicFilter : bilinearFilter;
  const baseSupport = filter === 'bicubic' ? 2.0 : 1.0;
  const scale = inSize / outSize; // (double)(in1 - in0) / outSize with in0 = 0, in1 = (float)inSize (exact below 2^24)
  const filterscale = scale < 1.0 ? 1.0 : scale;
  const support = baseSupport * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(count * 2);
  const kk = new Int32Array(count * ksize);
  const w = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let i = 0; i < count; i++) {
    const xx = from + i;
    const center = (xx + 0.5) * scale;
    let ww = 0.0;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    for (let x = 0; x < xmax; x++) {
      const v = fn((x + xmin - center + 0.5) * ss);
      w[x] = v;
      ww += v;
    }
    const base = i * ksize;
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0.0 ? w[x] / ww : w[x];
      kk[base + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    bounds[i * 2] = xmin;
    bounds[i * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

/** A pass's coefficients laid out for the kernels, in the arena. */
export interface ResizePlan {
  inW: number;
  inH: number;
  win: OutputWindow;
  /** 'copy': no pass; 'h', 'v': one pass; 'hv', 'vh': both, in that order */
  order: 'copy' | 'h' | 'v' | 'hv' | 'vh';
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

const HI_LIMIT = 32767;

/** Lays out hrow's table for coefficients `c`: per output pixel its first tap's byte offset from column x0. */
function writeHTable(arena: Arena, bump: Bump, c: Coeffs, outW: number, x0: number): number {
  let pairs = 0;
  for (let x = 0; x < outW; x++) pairs += (c.bounds[x * 2 + 1] + 1) >> 1;
  const pb = bump.alloc(outW * 12);
  const cp0 = bump.alloc(pairs * 32);
  const table = arena.i32(pb, outW * 3);
  const k16 = new Int16Array(arena.memory.buffer, cp0, pairs * 16);
  let j = 0; // i16 index of the next pair
  for (let x = 0; x < outW; x++) {
    const n = c.bounds[x * 2 + 1];
    const np = (n + 1) >> 1;
    table[x * 3] = (c.bounds[x * 2] - x0) * 3;
    table[x * 3 + 1] = np;
    table[x * 3 + 2] = cp0 + j * 2;
    const kb = x * c.ksize;
    for (let t = 0; t < np; t++, j += 16) {
      const ka = c.kk[kb + 2 * t];
      const kb2 = 2 * t + 1 < n ? c.kk[kb + 2 * t + 1] : 0;
      const ha = ka >> 8;
      const hb = kb2 >> 8;
      if (ha > HI_LIMIT || ha < -HI_LIMIT || hb > HI_LIMIT || hb < -HI_LIMIT) {
        // weights are at most ~1.2 after normalisation (2^22 * 1.2 >> 8 < 20000); this would take a weight over 2
        throw new Error(`resizeRgb: coefficient ${Math.max(Math.abs(ka), Math.abs(kb2))} does not fit the kernel's 16-bit halves`);
      }
      for (let ch = 0; ch < 3; ch++) {
        k16[j + 2 * ch] = ha;
        k16[j + 2 * ch + 1] = hb;
        k16[j + 8 + 2 * ch] = ka & 255;
        k16[j + 8 + 2 * ch + 1] = kb2 & 255;
      }
      // lanes 6, 7 and 14, 15: no fourth channel
      k16[j + 6] = 0;
      k16[j + 7] = 0;
      k16[j + 14] = 0;
      k16[j + 15] = 0;
    }
  }
  return pb;
}

/**
 * Coefficients and pass order of the resize inW x inH -> outW x outH, window `win`, written into the arena at `bump`.
 * Pillow 13's pass order (see the top of this file).
 */
export function planResize(
  arena: Arena, bump: Bump, inW: number, inH: number, outW: number, outH: number, filter: ResampleFilter, win: OutputWindow,
): ResizePlan {
  const needH = outW !== inW;
  const needV = outH !== inH;
  const plan: ResizePlan = {
    inW, inH, win, order: 'copy', x0: win.x, x1: win.x + win.width, pb: 0, vBounds: new Int32Array(0), vk: 0, vKsize: 0, vMaxTaps: 0,
  };
  if (!needH && !needV) return plan;
  if (needV) {
    const cv = precomputeCoeffs(inH, outH, filter, win.y, win.height);
    plan.vBounds = cv.bounds;
    plan.vKsize = cv.ksize;
    plan.vk = bump.alloc(cv.kk.length * 4);
    arena.i32(plan.vk, cv.kk.length).set(cv.kk);
    for (let i = 0; i < win.height; i++) plan.vMaxTaps = Math.max(plan.vMaxTaps, cv.bounds[i * 2 + 1]);
  }
  if (needH) {
    const ch = precomputeCoeffs(inW, outW, filter, win.x, win.width);
    plan.x0 = ch.bounds[0];
    plan.x1 = ch.bounds[(win.width - 1) * 2] + ch.bounds[(win.width - 1) * 2 + 1];
    plan.pb = writeHTable(arena, bump, ch, win.width, plan.x0);
  }
  plan.order = !needV ? 'h' : !needH ? 'v' : outH < inH && inH - outH > 2 * (inW - outW) ? 'vh' : 'hv';
  return plan;
}

/** Source rows [first, end) that window rows [a, b) of `plan` read. */
export function sourceRows(plan: ResizePlan, a: number, b: number): [number, number] {
  if (plan.order === 'copy' || plan.order === 'h') return [plan.win.y + a, plan.win.y + b];
  const vb = plan.vBounds;
  return [vb[a * 2], vb[(b - 1) * 2] + vb[(b - 1) * 2 + 1]];
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

/** Rows of source ring that window rows of `plan` need at once. */
function sourceSlots(plan: ResizePlan): number {
  return plan.order === 'v' || plan.order === 'vh' ? plan.vMaxTaps : 1;
}

/**
 * Computes window rows [a, b) of `plan` into `dst` (the window's row 0; row y at dst + y * width * 3), reading source
 * rows from `src`; working buffers come from `bump`.
 */
export function runPlan(arena: Arena, bump: Bump, plan: ResizePlan, src: RowSource, a: number, b: number, dst: number): void {
  if (a >= b) return;
  const { win, order } = plan;
  const k = arena.k;
  const rowBytes = win.width * 3;
  if (order === 'copy') {
    const u8 = arena.u8;
    for (let y = a; y < b; y++) u8.copyWithin(dst + y * rowBytes, src.row(win.y + y), src.row(win.y + y) + rowBytes);
    return;
  }
  if (order === 'h') {
    for (let y = a; y < b; y++) k.hrow(src.row(win.y + y), plan.pb, win.width, dst + y * rowBytes);
    return;
  }
  const vb = plan.vBounds;
  const rowPtrs = bump.alloc(plan.vMaxTaps * 4);
  const ptrs = arena.i32(rowPtrs, plan.vMaxTaps);
  if (order === 'v') {
    for (let y = a; y < b; y++) {
      const ymin = vb[y * 2];
      const n = vb[y * 2 + 1];
      for (let t = 0; t < n; t++) ptrs[t] = src.row(ymin + t);
      k.vrow(rowPtrs, plan.vk + y * plan.vKsize * 4, n, rowBytes, dst + y * rowBytes);
    }
    return;
  }
  if (order === 'vh') {
    const colBytes = (plan.x1 - plan.x0) * 3;
    const tmp = bump.alloc(colBytes + SLACK);
    for (let y = a; y < b; y++) {
      const ymin = vb[y * 2];
      const n = vb[y * 2 + 1];
      for (let t = 0; t < n; t++) ptrs[t] = src.row(ymin + t);
      k.vrow(rowPtrs, plan.vk + y * plan.vKsize * 4, n, colBytes, tmp);
      k.hrow(tmp, plan.pb, win.width, dst + y * rowBytes);
    }
    return;
  }
  // 'hv': horizontal pass of each source row into a ring, vertical pass over the ring
  const slots = plan.vMaxTaps;
  const ring = bump.alloc(slots * rowBytes + SLACK);
  let next = vb[a * 2]; // first source row not yet in the ring
  for (let y = a; y < b; y++) {
    const ymin = vb[y * 2];
    const n = vb[y * 2 + 1];
    if (next < ymin) next = ymin;
    for (; next < ymin + n; next++) k.hrow(src.row(next), plan.pb, win.width, ring + (next % slots) * rowBytes);
    for (let t = 0; t < n; t++) ptrs[t] = ring + ((ymin + t) % slots) * rowBytes;
    k.vrow(rowPtrs, plan.vk + y * plan.vKsize * 4, n, rowBytes, dst + y * rowBytes);
  }
}

/** Bytes of working memory runPlan takes from its Bump (streamed: with the source ring), alignment included. */
export function runPlanBytes(plan: ResizePlan, streamed: boolean): number {
  const rowBytes = plan.win.width * 3;
  let n = 16 + plan.vMaxTaps * 4 + 16;
  if (plan.order === 'vh') n += (plan.x1 - plan.x0) * 3 + SLACK + 16;
  if (plan.order === 'hv') n += plan.vMaxTaps * rowBytes + SLACK + 16;
  if (streamed) n += sourceSlots(plan) * (plan.x1 - plan.x0) * 3 + SLACK + 16;
  return n;
}

/** Window rows [a, b) of `plan`, source rows streamed from `img`. */
export function runPlanStreamed(arena: Arena, bump: Bump, plan: ResizePlan, img: RgbImage, a: number, b: number, dst: number): void {
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
  img: RgbImage, outW: number, outH: number, filter: ResampleFilter, win?: OutputWindow,
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
