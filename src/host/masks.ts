// Host side of the masks: SAM logits -> binary masks -> the result payload's masks (COCO RLE, bbox, area, PNG) and
// the overlay image. RLE, bbox and area come from src/protocol/rle.ts (pycocotools-exact); colours from
// src/protocol/palette.ts, so the overlay PNG and the browser surfaces agree.
import sharp from 'sharp';
import { maskColor, PALETTE, type Rgb } from '../protocol/palette';
import type { CocoRle, ResultMask } from '../protocol/result';
import { countsArea, countsBbox, countsToString, decodeRle, maskToCounts } from '../protocol/rle';

/**
 * Thresholds SAM's upscaled mask logits, laid out [n, h, w] (row-major, the mask decoder's output at the original
 * image size), into n row-major 0/1 masks: `logit > threshold`, as LISA's `pred_mask > 0`.
 */
export function masksFromLogits(logits: Float32Array, n: number, h: number, w: number, threshold = 0): Uint8Array[] {
  const hw = h * w;
  if (logits.length < n * hw)
    throw new RangeError(`mask logits have ${logits.length} values, expected ${n}*${h}*${w} = ${n * hw}`);
  const out: Uint8Array[] = [];
  for (let k = 0; k < n; k++) {
    const m = new Uint8Array(hw);
    const base = k * hw;
    for (let i = 0; i < hw; i++) m[i] = logits[base + i] > threshold ? 1 : 0;
    out.push(m);
  }
  return out;
}

/** RGB PNG of row-major RGB pixels. */
export function rgbPng(rgb: Uint8Array, w: number, h: number): Promise<Buffer> {
  return sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toBuffer();
}

/** Single-channel 8-bit PNG (0 outside, 255 inside) of a row-major mask. */
export async function maskPng(mask: Uint8Array, h: number, w: number): Promise<Buffer> {
  const g = Buffer.allocUnsafe(h * w);
  for (let i = 0; i < g.length; i++) g[i] = mask[i] ? 255 : 0;
  // Without toColourspace('b-w') sharp writes an RGB PNG (colour type 2) from one-channel raw input.
  return sharp(g, { raw: { width: w, height: h, channels: 1 } })
    .toColourspace('b-w')
    .png({ compressionLevel: 6, adaptiveFiltering: false })
    .toBuffer();
}

export interface BuildMasksOptions {
  /** Also encode each mask as a single-channel PNG (base64) in `png`. */
  png: boolean;
}

/**
 * The payload's masks, one per [SEG] in order: `segIndex` i, `tokenIndex` segTokenIndices[i] (-1 when the [SEG]
 * stood in the prompt), COCO RLE, bbox and area exactly as pycocotools computes them, the decoder's score, and the
 * PNG when asked for.
 */
export async function buildResultMasks(
  masks: Uint8Array[],
  h: number,
  w: number,
  scores: ArrayLike<number>,
  segTokenIndices: ArrayLike<number>,
  opts: BuildMasksOptions = { png: true },
): Promise<ResultMask[]> {
  return Promise.all(
    masks.map((mask, i) =>
      resultMaskOfCounts(
        maskToCounts(mask, h, w),
        h,
        w,
        i,
        i < segTokenIndices.length ? segTokenIndices[i] : -1,
        i < scores.length ? scores[i] : 0,
        opts.png ? mask : undefined,
      ),
    ),
  );
}

/** One payload mask (see buildResultMasks) from its column-major run lengths; `pngOf`, when given, is the same mask
 * row-major, encoded as the PNG. */
export async function resultMaskOfCounts(
  cnts: Uint32Array,
  h: number,
  w: number,
  segIndex: number,
  tokenIndex: number,
  score: number,
  pngOf?: Uint8Array,
): Promise<ResultMask> {
  const rle: CocoRle = { size: [h, w], counts: countsToString(cnts) };
  const r: ResultMask = {
    segIndex,
    tokenIndex,
    rle,
    bbox: countsBbox(cnts, h, w),
    area: countsArea(cnts),
    score: Number.isFinite(score) ? score : 0,
  };
  if (pngOf) r.png = (await maskPng(pngOf, h, w)).toString('base64');
  return r;
}

/**
 * The image with every mask blended in, as an RGB PNG: LISA's display rule, pixel = floor(0.5 * RGB + 0.5 * colour)
 * on mask pixels (numpy's truncation when LISA stores the float result into its uint8 image), the original
 * elsewhere. Mask i gets palette[i % palette.length]. Where masks overlap, the later mask's colour is blended with the
 * original pixel (masks do not compound), so every mask pixel follows the formula with one colour.
 * `rgb` is row-major, 3 bytes a pixel; masks are row-major 0/1 (or COCO RLEs of the same size).
 */
export async function overlayPng(
  rgb: Uint8Array,
  w: number,
  h: number,
  masks: readonly (Uint8Array | CocoRle)[],
  palette: readonly Rgb[] = PALETTE,
): Promise<Buffer> {
  return rgbPng(overlayRgb(rgb, w, h, masks, palette), w, h);
}

/** The overlay's pixels (RGB, row-major), without PNG encoding. */
export function overlayRgb(
  rgb: Uint8Array,
  w: number,
  h: number,
  masks: readonly (Uint8Array | CocoRle)[],
  palette: readonly Rgb[] = PALETTE,
): Buffer {
  const n = w * h;
  if (rgb.length < n * 3) throw new RangeError(`image has ${rgb.length} bytes, expected ${w}*${h}*3 = ${n * 3}`);
  // Which mask (1-based, last wins) covers each pixel; 0 = none.
  const owner = masks.length < 255 ? new Uint8Array(n) : new Uint16Array(n);
  masks.forEach((m, k) => {
    let mm: Uint8Array;
    if (m instanceof Uint8Array) {
      mm = m;
    } else {
      if (m.size[0] !== h || m.size[1] !== w)
        throw new RangeError(`mask ${k} is ${m.size[0]}x${m.size[1]}, the image ${h}x${w}`);
      mm = decodeRle(m);
    }
    if (mm.length < n) throw new RangeError(`mask ${k} has ${mm.length} values, expected ${n}`);
    for (let i = 0; i < n; i++) if (mm[i]) owner[i] = k + 1;
  });
  const out = Buffer.from(rgb.buffer, rgb.byteOffset, n * 3);
  const res = Buffer.allocUnsafe(n * 3);
  out.copy(res);
  const colours = masks.map((_, k) => maskColor(k, palette));
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    const o = owner[i];
    if (o === 0) continue;
    const c = colours[o - 1];
    res[j] = (res[j] + c[0]) >> 1;
    res[j + 1] = (res[j + 1] + c[1]) >> 1;
    res[j + 2] = (res[j + 2] + c[2]) >> 1;
  }
  return res;
}
