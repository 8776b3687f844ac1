// Pure pixel work for the overlay (no DOM): each mask's RLE is decoded once into a row-major alpha layer, and the
// coloured sprites drawn from it (fill, outline band) are built once, cropped to the mask's bounding box, and cached.
// Re-compositing after a toggle, a mode switch or a hover only draws those sprites; an opacity change touches no
// pixels at all (the overlay canvas's CSS opacity does it).

import type { ResultMask } from '../protocol/result';
import { decodeRle, rleBbox } from '../protocol/rle';
import type { Rgb } from './colors';

export type Box = readonly [number, number, number, number];

/** RGBA pixels of a bbox-sized sprite, ready for `new ImageData(data, w, h)`. */
export interface Sprite {
  x: number;
  y: number;
  w: number;
  h: number;
  data: Uint8ClampedArray;
}

export class MaskLayer {
  readonly width: number;
  readonly height: number;
  /** [x, y, w, h] of the decoded mask ([0,0,0,0] when empty). */
  readonly box: Box;
  /** Row-major 0/1, width*height. Decoded once. */
  readonly alpha: Uint8Array;
  private outlines = new Map<number, Uint32Array>();

  constructor(
    readonly mask: ResultMask,
    imageWidth: number,
    imageHeight: number,
  ) {
    const [h, w] = mask.rle.size;
    if (h !== imageHeight || w !== imageWidth) {
      throw new Error(`mask ${mask.segIndex + 1} is ${w}x${h} but the image is ${imageWidth}x${imageHeight}`);
    }
    this.width = w;
    this.height = h;
    this.alpha = decodeRle(mask.rle);
    this.box = rleBbox(mask.rle);
  }

  get empty(): boolean {
    return this.box[2] === 0 || this.box[3] === 0;
  }

  contains(x: number, y: number): boolean {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return false;
    return this.alpha[y * this.width + x] !== 0;
  }

  /**
   * Indices (y*width+x) of the mask pixels whose chessboard distance to the nearest pixel outside the mask (the
   * image border counts as outside) is at most `thickness`. thickness 1 = pixels with an 8-neighbour outside.
   */
  outline(thickness: number): Uint32Array {
    const t = Math.max(1, Math.min(250, Math.round(thickness)));
    let o = this.outlines.get(t);
    if (!o) {
      o = outlineBand(this.alpha, this.width, this.height, this.box, t);
      this.outlines.set(t, o);
    }
    return o;
  }

  /** The mask in `color`, opaque, transparent elsewhere, cropped to the bbox. */
  fillSprite(color: Rgb): Sprite {
    const [bx, by, bw, bh] = this.box;
    const data = new Uint8ClampedArray(bw * bh * 4);
    const px = new Uint32Array(data.buffer);
    const c = packRgba(color[0], color[1], color[2], 255);
    const w = this.width;
    const a = this.alpha;
    for (let y = 0; y < bh; y++) {
      const src = (by + y) * w + bx;
      const dst = y * bw;
      for (let x = 0; x < bw; x++) if (a[src + x]) px[dst + x] = c;
    }
    return { x: bx, y: by, w: bw, h: bh, data };
  }

  /** The outline band in `color`, cropped to the bbox. */
  outlineSprite(color: Rgb, thickness: number): Sprite {
    const [bx, by, bw, bh] = this.box;
    const data = new Uint8ClampedArray(bw * bh * 4);
    const px = new Uint32Array(data.buffer);
    const c = packRgba(color[0], color[1], color[2], 255);
    const idx = this.outline(thickness);
    const w = this.width;
    for (let k = 0; k < idx.length; k++) {
      const i = idx[k];
      const y = (i / w) | 0;
      const x = i - y * w;
      px[(y - by) * bw + (x - bx)] = c;
    }
    return { x: bx, y: by, w: bw, h: bh, data };
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** One RGBA pixel as a Uint32 in the platform's byte order (for Uint32Array views over ImageData). */
export function packRgba(r: number, g: number, b: number, a: number): number {
  return LITTLE_ENDIAN ? ((a << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | a) >>> 0;
}

/** Two-pass chessboard distance transform inside the bbox (padded by one outside pixel), thresholded at t. */
export function outlineBand(alpha: Uint8Array, w: number, _h: number, box: Box, t: number): Uint32Array {
  const [bx, by, bw, bh] = box;
  if (bw === 0 || bh === 0) return new Uint32Array(0);
  const pw = bw + 2;
  const ph = bh + 2;
  const d = new Uint8Array(pw * ph); // 0 outside the mask (and in the padding), 255 = far inside
  for (let y = 0; y < bh; y++) {
    const src = (by + y) * w + bx;
    const dst = (y + 1) * pw + 1;
    for (let x = 0; x < bw; x++) if (alpha[src + x]) d[dst + x] = 255;
  }
  // Forward pass: neighbours above and to the left.
  for (let y = 1; y < ph - 1; y++) {
    for (let x = 1; x < pw - 1; x++) {
      const i = y * pw + x;
      let v = d[i];
      if (v === 0) continue;
      const up = i - pw;
      let m = d[up - 1];
      if (d[up] < m) m = d[up];
      if (d[up + 1] < m) m = d[up + 1];
      if (d[i - 1] < m) m = d[i - 1];
      if (m + 1 < v) d[i] = v = m + 1;
    }
  }
  // Backward pass: neighbours below and to the right.
  let count = 0;
  for (let y = ph - 2; y >= 1; y--) {
    for (let x = pw - 2; x >= 1; x--) {
      const i = y * pw + x;
      let v = d[i];
      if (v === 0) continue;
      const dn = i + pw;
      let m = d[dn - 1];
      if (d[dn] < m) m = d[dn];
      if (d[dn + 1] < m) m = d[dn + 1];
      if (d[i + 1] < m) m = d[i + 1];
      if (m + 1 < v) d[i] = v = m + 1;
      if (v <= t) count++;
    }
  }
  const out = new Uint32Array(count);
  let k = 0;
  for (let y = 1; y < ph - 1; y++) {
    for (let x = 1; x < pw - 1; x++) {
      const v = d[y * pw + x];
      if (v !== 0 && v <= t) out[k++] = (by + y - 1) * w + (bx + x - 1);
    }
  }
  return out;
}

/** Outline thickness in image pixels so an outline stays visible when a big image is shown small. */
export function outlineThickness(imageWidth: number, imageHeight: number): number {
  return Math.max(1, Math.round(Math.max(imageWidth, imageHeight) / 640));
}

/** The topmost (last drawn) visible mask under image pixel (x, y), or -1. */
export function hitTest(layers: readonly MaskLayer[], visible: readonly boolean[], x: number, y: number): number {
  for (let i = layers.length - 1; i >= 0; i--) if (visible[i] && layers[i].contains(x, y)) return i;
  return -1;
}
