// A resizer for 8-bit RGB that reproduces Pillow's `Image.resize(size, BICUBIC | BILINEAR)` bit for bit.
//
// It follows Pillow's ImagingResample (src/libImaging/Resample.c) step by step:
// - per output index: center = (i + 0.5) * scale, filterscale = max(scale, 1) (antialiasing when downscaling),
//   support = filter.support * filterscale, taps from int(center - support + 0.5) to int(center + support + 0.5)
//   clamped to the image, weights filter((x + xmin - center + 0.5) * (1 / filterscale)) normalised by their sum;
// - weights converted to fixed point with PRECISION_BITS = 32 - 8 - 2 = 22, rounding half away from zero (C truncation
//   of +-0.5 offsets);
// - two passes through a uint8 intermediate, each starting its accumulator at 1 << 21 and clipping `acc >> 22` to
//   0..255; a pass is skipped when its size is unchanged. The intermediate only holds the rows (or columns) the second
//   pass reads;
// - pass order: Pillow up to 12 always ran the horizontal pass first. Pillow 13 runs the vertical pass first exactly
//   when the height shrinks and (inH - outH) > 2 * (inW - outW). That rule was measured, not read: Pillow 13's
//   Resample.c was not available, so it was fitted on ~2,500 random size pairs (both filters, 2..1500 px, densely
//   around the boundary) with no exception; test/host/image-resample.test.ts covers both orders on photographs;
// - the default box (0, 0, width, height).
//
// Every output pixel depends only on its own row/column coefficients, so a window of the output (the CLIP centre crop)
// can be computed alone and is identical to cropping the full result. All buffers are typed arrays sized once per call.

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

interface Coeffs {
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
function precomputeCoeffs(inSize: number, outSize: number, filter: ResampleFilter, from: number, count: number): Coeffs {
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

/**
 * Horizontal pass over rows [y0, y0 + rows) of `src` (`srcW` pixels wide, whose first column is source column
 * `colShift`), writing `outW` columns (coefficients `c`) into `dst`.
 */
function horizontalPass(
  src: Uint8Array | Uint8ClampedArray, srcW: number, colShift: number, y0: number, rows: number, c: Coeffs, outW: number,
  dst: Uint8ClampedArray,
): void {
  const { ksize, bounds, kk } = c;
  const srcStride = srcW * 3;
  let o = 0;
  for (let yy = 0; yy < rows; yy++) {
    const rowBase = (yy + y0) * srcStride - colShift * 3;
    for (let xx = 0; xx < outW; xx++) {
      const n = bounds[xx * 2 + 1];
      const kb = xx * ksize;
      let p = rowBase + bounds[xx * 2] * 3;
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      for (let x = 0; x < n; x++) {
        const k = kk[kb + x];
        s0 = (s0 + Math.imul(src[p], k)) | 0;
        s1 = (s1 + Math.imul(src[p + 1], k)) | 0;
        s2 = (s2 + Math.imul(src[p + 2], k)) | 0;
        p += 3;
      }
      dst[o] = s0 >> PRECISION_BITS; // Uint8ClampedArray clips the integer to 0..255 like clip8
      dst[o + 1] = s1 >> PRECISION_BITS;
      dst[o + 2] = s2 >> PRECISION_BITS;
      o += 3;
    }
  }
}

/**
 * Vertical pass: output row i uses rows bounds[2i] - rowShift .. of `src` (stride `srcStride` bytes, starting at byte
 * column `colOffset`), `rowBytes` bytes per row.
 */
function verticalPass(
  src: Uint8Array | Uint8ClampedArray, srcStride: number, colOffset: number, rowShift: number, c: Coeffs, outRows: number,
  rowBytes: number, dst: Uint8ClampedArray,
): void {
  const { ksize, bounds, kk } = c;
  const acc = new Int32Array(rowBytes);
  for (let yy = 0; yy < outRows; yy++) {
    acc.fill(HALF);
    const ymin = bounds[yy * 2] - rowShift;
    const n = bounds[yy * 2 + 1];
    const kb = yy * ksize;
    for (let y = 0; y < n; y++) {
      const k = kk[kb + y];
      const rb = (ymin + y) * srcStride + colOffset;
      for (let i = 0; i < rowBytes; i++) acc[i] = (acc[i] + Math.imul(src[rb + i], k)) | 0;
    }
    const ob = yy * rowBytes;
    for (let i = 0; i < rowBytes; i++) dst[ob + i] = acc[i] >> PRECISION_BITS;
  }
}

/**
 * Resize 8-bit RGB to outW x outH exactly as Pillow's `Image.resize((outW, outH), filter)` does, returning only the
 * output window `win` (default: the whole image).
 */
export function resizeRgb(
  img: RgbImage, outW: number, outH: number, filter: ResampleFilter, win?: OutputWindow,
): RgbImage {
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
  const needH = outW !== inW;
  const needV = outH !== inH;
  const rowBytes = w.width * 3;
  const out = new Uint8ClampedArray(rowBytes * w.height);
  const asU8 = () => ({ width: w.width, height: w.height, data: new Uint8Array(out.buffer) });

  if (!needH && !needV) {
    for (let y = 0; y < w.height; y++) {
      const s = ((w.y + y) * inW + w.x) * 3;
      out.set(data.subarray(s, s + rowBytes), y * rowBytes);
    }
    return asU8();
  }
  const cv = needV ? precomputeCoeffs(inH, outH, filter, w.y, w.height) : undefined;
  const ch = needH ? precomputeCoeffs(inW, outW, filter, w.x, w.width) : undefined;
  if (!ch) {
    // vertical pass only, straight from the source columns of the window
    verticalPass(data, inW * 3, w.x * 3, 0, cv as Coeffs, w.height, rowBytes, out);
    return asU8();
  }
  if (!cv) {
    horizontalPass(data, inW, 0, w.y, w.height, ch, w.width, out);
    return asU8();
  }
  const verticalFirst = outH < inH && inH - outH > 2 * (inW - outW);
  if (!verticalFirst) {
    // rows of the source the vertical pass reads
    const yFirst = cv.bounds[0];
    const yLast = cv.bounds[(w.height - 1) * 2] + cv.bounds[(w.height - 1) * 2 + 1];
    const rows = yLast - yFirst;
    const tmp = new Uint8ClampedArray(rowBytes * rows);
    horizontalPass(data, inW, 0, yFirst, rows, ch, w.width, tmp);
    verticalPass(tmp, rowBytes, 0, yFirst, cv, w.height, rowBytes, out);
  } else {
    // columns of the source the horizontal pass reads
    const xFirst = ch.bounds[0];
    const xLast = ch.bounds[(w.width - 1) * 2] + ch.bounds[(w.width - 1) * 2 + 1];
    const cols = xLast - xFirst;
    const tmp = new Uint8ClampedArray(cols * 3 * w.height);
    verticalPass(data, inW * 3, xFirst * 3, 0, cv, w.height, cols * 3, tmp);
    horizontalPass(tmp, cols, xFirst, 0, w.height, ch, w.width, out);
  }
  return asU8();
}
