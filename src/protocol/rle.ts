// COCO run-length encoding of binary masks, byte-for-byte compatible with pycocotools (maskApi.c).
//
// Pure code with no imports and no side effects: the inference host encodes with it and the browser surfaces
// (notebook renderer, chat panel) decode with the same module.
//
// Layout rules, as pycocotools has them:
// - run lengths walk the mask in column-major (Fortran) order, starting with a run of zeros (which may be 0 long);
// - the compressed string (`rleToString` in maskApi.c) writes each count, minus the count two places back when its
//   index is > 2 (sic: not >= 2), as little-endian 5-bit groups with a continuation bit (0x20) and a sign bit (0x10)
//   in the last group, each group + 48 as an ASCII character.

import type { CocoRle } from './result';

/** Run lengths with no compression, as COCO JSON writes crowd annotations (`{"size": [h, w], "counts": [...]}`). */
export interface UncompressedRle {
  size: [number, number];
  counts: number[] | Uint32Array;
}

export type AnyRle = CocoRle | UncompressedRle;

/** Column-major run lengths of a row-major mask (nonzero = in). The first run counts zeros. */
export function maskToCounts(mask: ArrayLike<number>, h: number, w: number): Uint32Array {
  checkSize(h, w);
  if (mask.length < h * w) throw new RangeError(`mask has ${mask.length} values, expected ${h}*${w} = ${h * w}`);
  if (mask instanceof Uint8Array && h > 1 && w > 1) {
    const r = countsFromRowDiffs(mask, h, w);
    if (r) return r;
  }
  return countsStrided(mask, h, w);
}

/** The plain column-by-column walk (strided reads): simple, and fast for noisy masks. */
function countsStrided(mask: ArrayLike<number>, h: number, w: number): Uint32Array {
  const n = h * w;
  // At most n + 1 runs; grow a scratch buffer instead of allocating n + 1 up front for big, simple masks.
  let cnts: Uint32Array = new Uint32Array(Math.min(n + 1, 1024));
  let k = 0;
  let prev = 0;
  let c = 0;
  for (let x = 0; x < w; x++) {
    for (let i = x, end = x + n; i < end; i += w) {
      const v = mask[i] !== 0 ? 1 : 0;
      if (v !== prev) {
        if (k === cnts.length) cnts = grow(cnts, n + 1);
        cnts[k++] = c;
        c = 0;
        prev = v;
      }
      c++;
    }
  }
  if (k === cnts.length) cnts = grow(cnts, n + 1);
  cnts[k++] = c;
  return cnts.slice(0, k);
}

/**
 * Object-like masks in sequential (row-major) reads: find where each pixel differs from the one above (whole 4-byte
 * words at a time where they are equal), keep those rows per column in linked lists, then read the transitions in
 * column-major order. Returns undefined when the mask turns out to be noisy (then the strided walk is as fast).
 */
function countsFromRowDiffs(mask: Uint8Array, h: number, w: number): Uint32Array | undefined {
  const n = h * w;
  const limit = Math.max(4096, n >>> 4);
  let rows = new Int32Array(Math.min(limit, 4096)); // row of each transition
  let next = new Int32Array(rows.length); // next transition of the same column, -1 at the end
  const head = new Int32Array(w).fill(-1);
  const tail = new Int32Array(w).fill(-1);
  let t = 0;
  const add = (x: number, y: number): boolean => {
    if (t === rows.length) {
      if (t >= limit) return false;
      const size = Math.min(limit, t * 2);
      const r2 = new Int32Array(size);
      r2.set(rows);
      rows = r2;
      const n2 = new Int32Array(size);
      n2.set(next);
      next = n2;
    }
    rows[t] = y;
    next[t] = -1;
    if (tail[x] < 0) head[x] = t;
    else next[tail[x]] = t;
    tail[x] = t++;
    return true;
  };
  // Row 0: each column's first pixel against the last pixel of the column before (0 before the first column).
  for (let x = 0; x < w; x++) {
    const before = x === 0 ? false : mask[(h - 1) * w + x - 1] !== 0;
    if ((mask[x] !== 0) !== before && !add(x, 0)) return undefined;
  }
  const words =
    mask.byteOffset % 4 === 0 && w % 4 === 0 ? new Uint32Array(mask.buffer, mask.byteOffset, n >>> 2) : undefined;
  const w4 = w >>> 2;
  for (let y = 1; y < h; y++) {
    const row = y * w;
    if (words) {
      const wr = row >>> 2;
      for (let q = 0; q < w4; q++) {
        if (words[wr + q] === words[wr - w4 + q]) continue;
        for (let x = q * 4, i = row + x, e = x + 4; x < e; x++, i++) {
          if ((mask[i] !== 0) !== (mask[i - w] !== 0) && !add(x, y)) return undefined;
        }
      }
    } else {
      for (let x = 0, i = row; x < w; x++, i++) {
        if ((mask[i] !== 0) !== (mask[i - w] !== 0) && !add(x, y)) return undefined;
      }
    }
  }
  const cnts = new Uint32Array(t + 1);
  let k = 0;
  let last = 0;
  for (let x = 0; x < w; x++) {
    for (let j = head[x]; j >= 0; j = next[j]) {
      const p = x * h + rows[j];
      cnts[k++] = p - last;
      last = p;
    }
  }
  cnts[k++] = n - last;
  return cnts;
}

function grow(a: Uint32Array, max: number): Uint32Array {
  const b = new Uint32Array(Math.min(max, a.length * 2));
  b.set(a);
  return b;
}

/** pycocotools' `rleToString`: run lengths to the compressed counts string. */
export function countsToString(cnts: ArrayLike<number>): string {
  const out: number[] = [];
  const parts: string[] = [];
  for (let i = 0; i < cnts.length; i++) {
    let x = cnts[i];
    if (i > 2) x -= cnts[i - 2];
    let more = true;
    while (more) {
      let c: number;
      if (x >= -0x40000000 && x < 0x40000000) {
        c = x & 0x1f;
        x >>= 5;
      } else {
        c = ((x % 32) + 32) % 32;
        x = Math.floor(x / 32);
      }
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      out.push(c + 48);
    }
    if (out.length >= 8192) {
      parts.push(String.fromCharCode.apply(null, out));
      out.length = 0;
    }
  }
  parts.push(String.fromCharCode.apply(null, out));
  return parts.join('');
}

/** pycocotools' `rleFrString`: the compressed counts string to run lengths. Throws on a malformed string. */
export function stringToCounts(s: string): Uint32Array {
  const cnts = new Uint32Array(s.length);
  let m = 0;
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let scale = 1;
    let more = true;
    while (more) {
      if (p >= s.length) throw new Error(`RLE counts string ends inside a number at character ${p}`);
      const c = s.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new Error(`RLE counts string has an invalid character at ${p}`);
      x += (c & 0x1f) * scale;
      scale *= 32;
      more = (c & 0x20) !== 0;
      p++;
      if (!more && c & 0x10) x -= scale;
    }
    if (m > 2) x += cnts[m - 2];
    if (x < 0 || x > 0xffffffff) throw new Error(`RLE counts string decodes to an invalid run length (${x})`);
    cnts[m++] = x;
  }
  return cnts.slice(0, m);
}

/** Encodes a row-major mask (h*w values, nonzero = in) as pycocotools does `mask.encode(np.asfortranarray(m))`. */
export function encodeMask(mask: ArrayLike<number>, h: number, w: number): CocoRle {
  return { size: [h, w], counts: countsToString(maskToCounts(mask, h, w)) };
}

/** Compresses run lengths into the pycocotools string form. */
export function compressRle(rle: AnyRle): CocoRle {
  return {
    size: [rle.size[0], rle.size[1]],
    counts: typeof rle.counts === 'string' ? rle.counts : countsToString(rle.counts),
  };
}

/** Run lengths of either RLE form, checked against the size (they must add up to h*w). */
export function rleCounts(rle: AnyRle): Uint32Array {
  const [h, w] = rle.size;
  checkSize(h, w);
  const cnts = typeof rle.counts === 'string' ? stringToCounts(rle.counts) : Uint32Array.from(rle.counts);
  let total = 0;
  for (let i = 0; i < cnts.length; i++) total += cnts[i];
  if (total !== h * w) throw new Error(`RLE run lengths add up to ${total}, expected ${h}*${w} = ${h * w}`);
  return cnts;
}

/** Decodes to a row-major mask of 0/1 bytes (h*w). */
export function decodeRle(rle: AnyRle, out?: Uint8Array): Uint8Array {
  const [h, w] = rle.size;
  const n = h * w;
  const cnts = rleCounts(rle);
  const m = out ?? new Uint8Array(n);
  if (m.length < n) throw new RangeError(`output has ${m.length} values, expected ${n}`);
  if (out) m.fill(0, 0, n);
  forEachRun(cnts, h, w, (x, y0, y1) => {
    for (let i = y0 * w + x, end = y1 * w + x; i < end; i += w) m[i] = 1;
  });
  return m;
}

/**
 * Paints `rgba` into an RGBA buffer (ImageData.data, w*h*4, row-major) at every pixel of the mask, leaving the
 * others untouched: the browser's per-frame path, with no row-major mask copy. Pass the run lengths from
 * `rleCounts` to skip parsing the string again. With `blend` in 0..1 the colour is mixed over what is there
 * (`out = (1 - blend) * out + blend * rgb`, alpha set to rgba[3]) instead of replacing it.
 */
export function paintRle(
  rle: AnyRle | { size: [number, number]; runs: Uint32Array },
  out: Uint8ClampedArray | Uint8Array,
  rgba: readonly [number, number, number, number],
  blend?: number,
): void {
  const [h, w] = rle.size;
  if (out.length < h * w * 4) throw new RangeError(`RGBA buffer has ${out.length} bytes, expected ${h * w * 4}`);
  const cnts = 'runs' in rle ? rle.runs : rleCounts(rle);
  const [r, g, b, a] = rgba;
  const stride = w * 4;
  if (blend === undefined) {
    forEachRun(cnts, h, w, (x, y0, y1) => {
      for (let i = (y0 * w + x) * 4, end = (y1 * w + x) * 4; i < end; i += stride) {
        out[i] = r;
        out[i + 1] = g;
        out[i + 2] = b;
        out[i + 3] = a;
      }
    });
  } else {
    const k = 1 - blend;
    const br = blend * r,
      bg = blend * g,
      bb = blend * b;
    forEachRun(cnts, h, w, (x, y0, y1) => {
      for (let i = (y0 * w + x) * 4, end = (y1 * w + x) * 4; i < end; i += stride) {
        out[i] = k * out[i] + br;
        out[i + 1] = k * out[i + 1] + bg;
        out[i + 2] = k * out[i + 2] + bb;
        out[i + 3] = a;
      }
    });
  }
}

/**
 * Calls `fn(x, y0, y1)` for every vertical segment [y0, y1) of column x covered by the mask, in column-major order.
 * Zero-length runs are skipped.
 */
export function forEachRun(
  cnts: ArrayLike<number>,
  h: number,
  w: number,
  fn: (x: number, y0: number, y1: number) => void,
): void {
  if (h === 0 || w === 0) return;
  let pos = 0;
  for (let j = 0; j < cnts.length; j++) {
    const c = cnts[j];
    if (j % 2 === 1 && c > 0) {
      let p = pos;
      const end = pos + c;
      while (p < end) {
        const x = Math.floor(p / h);
        const y0 = p - x * h;
        const colEnd = (x + 1) * h;
        const stop = Math.min(end, colEnd);
        fn(x, y0, y0 + (stop - p));
        p = stop;
      }
    }
    pos += c;
  }
}

/** Number of pixels in the mask. */
export function rleArea(rle: AnyRle): number {
  return countsArea(rleCounts(rle));
}

export function countsArea(cnts: ArrayLike<number>): number {
  let a = 0;
  for (let j = 1; j < cnts.length; j += 2) a += cnts[j];
  return a;
}

/** COCO bbox [x, y, width, height] exactly as pycocotools `toBbox` computes it ([0, 0, 0, 0] for an empty mask). */
export function rleBbox(rle: AnyRle): [number, number, number, number] {
  return countsBbox(rleCounts(rle), rle.size[0], rle.size[1]);
}

export function countsBbox(cnts: ArrayLike<number>, h: number, w: number): [number, number, number, number] {
  const m = Math.floor(cnts.length / 2) * 2;
  if (m === 0 || h === 0) return [0, 0, 0, 0];
  let xs = w,
    ys = h,
    xe = 0,
    ye = 0,
    cc = 0,
    xp = 0;
  for (let j = 0; j < m; j++) {
    cc += cnts[j];
    const t = cc - (j % 2);
    const y = t % h;
    const x = (t - y) / h;
    if (j % 2 === 0) xp = x;
    else if (xp < x) {
      ys = 0;
      ye = h - 1;
    }
    if (x < xs) xs = x;
    if (x > xe) xe = x;
    if (y < ys) ys = y;
    if (y > ye) ye = y;
  }
  return [xs, ys, xe - xs + 1, ye - ys + 1];
}

/**
 * Intersection over union of two masks of the same size, as pycocotools `iou(dt, gt, [0])`: 0 when the boxes do
 * not overlap or the intersection is empty (so two empty masks give 0). Throws when the sizes differ
 * (pycocotools returns -1 there).
 */
export function rleIou(a: AnyRle, b: AnyRle): number {
  if (a.size[0] !== b.size[0] || a.size[1] !== b.size[1]) {
    throw new Error(`cannot compare masks of different sizes: ${a.size.join('x')} and ${b.size.join('x')}`);
  }
  const ca = rleCounts(a);
  const cb = rleCounts(b);
  const [h, w] = a.size;
  if (bboxIou(countsBbox(ca, h, w), countsBbox(cb, h, w)) <= 0) return 0;
  const { inter, union } = countsIntersectUnion(ca, cb);
  return inter === 0 ? 0 : inter / union;
}

/** Intersection and union areas of two run-length lists over the same pixels. */
function countsIntersectUnion(ca: ArrayLike<number>, cb: ArrayLike<number>): { inter: number; union: number } {
  let ia = 0,
    ib = 0;
  let ra = ca.length ? ca[0] : 0,
    rb = cb.length ? cb[0] : 0;
  let va = false,
    vb = false;
  let inter = 0,
    union = 0;
  for (;;) {
    // Skip exhausted runs.
    while (ra === 0 && ia + 1 < ca.length) {
      ra = ca[++ia];
      va = !va;
    }
    while (rb === 0 && ib + 1 < cb.length) {
      rb = cb[++ib];
      vb = !vb;
    }
    if (ra === 0 || rb === 0) break;
    const c = Math.min(ra, rb);
    if (va || vb) {
      union += c;
      if (va && vb) inter += c;
    }
    ra -= c;
    rb -= c;
  }
  return { inter, union };
}

function bboxIou(a: [number, number, number, number], b: [number, number, number, number]): number {
  const w = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  if (w <= 0) return 0;
  const h = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  if (h <= 0) return 0;
  const i = w * h;
  return i / (a[2] * a[3] + b[2] * b[3] - i);
}

function checkSize(h: number, w: number): void {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 0 || w < 0)
    throw new RangeError(`invalid mask size ${h}x${w}`);
}
