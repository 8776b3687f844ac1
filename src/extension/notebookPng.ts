// The small overlay PNG an exported notebook carries for frontends without the renderer, as the %%segment magic
// writes it (src/kernel/reason_segment/png.py, the same rule in the kernel's Python): at most MAX_SIDE pixels a side,
// "NO MASK" written across the top-left corner when the result has no mask. Node only (node:zlib): the extension
// does not load sharp.
import { deflateSync, inflateSync } from 'node:zlib';

export const MAX_SIDE = 640;
const SIG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };
const GLYPHS: Record<string, string[]> = {
  N: ['10001', '11001', '10101', '10011', '10001', '10001', '10001'],
  O: ['01110', '10001', '10001', '10001', '10001', '10001', '01110'],
  M: ['10001', '11011', '10101', '10101', '10001', '10001', '10001'],
  A: ['01110', '10001', '10001', '11111', '10001', '10001', '10001'],
  S: ['01111', '10000', '10000', '01110', '00001', '00001', '11110'],
  K: ['10001', '10010', '10100', '11000', '10100', '10010', '10001'],
  ' ': Array(7).fill('00000'),
};

interface Rgb {
  w: number;
  h: number;
  px: Uint8Array; // row-major RGB
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** An 8-bit, non-interlaced PNG (grey, RGB, with or without alpha) as RGB pixels; alpha is dropped. */
export function decodePng(png: Uint8Array): Rgb {
  const buf = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  if (!buf.subarray(0, 8).equals(SIG)) throw new Error('not a PNG');
  let pos = 8;
  let w = 0;
  let h = 0;
  let bpp = 0;
  let ctype = 0;
  const idat: Buffer[] = [];
  while (pos + 8 <= buf.length) {
    const len = buf.readUInt32BE(pos);
    const kind = buf.toString('latin1', pos + 4, pos + 8);
    const body = buf.subarray(pos + 8, pos + 8 + len);
    if (kind === 'IHDR') {
      w = body.readUInt32BE(0);
      h = body.readUInt32BE(4);
      ctype = body[9];
      if (body[8] !== 8 || body[12] !== 0 || !(ctype in CHANNELS))
        throw new Error(`unsupported PNG (depth ${body[8]}, colour type ${ctype}, interlace ${body[12]})`);
      bpp = CHANNELS[ctype];
    } else if (kind === 'IDAT') idat.push(body);
    else if (kind === 'IEND') break;
    pos += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = w * bpp;
  const cur = new Uint8Array(stride);
  let prev = new Uint8Array(stride);
  const px = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const f = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? cur[i - bpp] : 0;
      const b = prev[i];
      const c = i >= bpp ? prev[i - bpp] : 0;
      const pred = f === 1 ? a : f === 2 ? b : f === 3 ? (a + b) >> 1 : f === 4 ? paeth(a, b, c) : 0;
      cur[i] = (line[i] + pred) & 255;
    }
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      const s = x * bpp;
      if (bpp >= 3) px.set(cur.subarray(s, s + 3), o);
      else px.fill(cur[s], o, o + 3);
    }
    prev = Uint8Array.from(cur);
  }
  return { w, h, px };
}

function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

export function encodePng({ w, h, px }: Rgb): Buffer {
  const chunk = (kind: string, body: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(body.length, 0);
    head.write(kind, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])), 0);
    return Buffer.concat([head, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const raw = Buffer.alloc(h * (w * 3 + 1));
  for (let y = 0; y < h; y++) raw.set(px.subarray(y * w * 3, (y + 1) * w * 3), y * (w * 3 + 1) + 1);
  return Buffer.concat([SIG, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** Nearest-pixel resize to at most `maxSide` on the longer side (the same sampling as the kernel's png.py). */
export function downscale(img: Rgb, maxSide: number): Rgb {
  const scale = Math.max(img.w, img.h) / maxSide;
  if (scale <= 1) return img;
  const w = Math.max(1, Math.round(img.w / scale));
  const h = Math.max(1, Math.round(img.h / scale));
  const px = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(img.h - 1, Math.floor(((y + 0.5) * img.h) / h));
    for (let x = 0; x < w; x++) {
      const sx = Math.min(img.w - 1, Math.floor(((x + 0.5) * img.w) / w));
      px.set(img.px.subarray((sy * img.w + sx) * 3, (sy * img.w + sx) * 3 + 3), (y * w + x) * 3);
    }
  }
  return { w, h, px };
}

/** White `text` on a black band across the top-left corner, as large as the image allows. */
export function stampLabel(img: Rgb, text = 'NO MASK'): void {
  const cols = 6 * text.length + 1;
  const k = Math.max(1, Math.min(Math.floor(img.w / (cols + 2)), Math.floor(img.h / 24), 6));
  const bandW = Math.min(img.w, (cols + 1) * k);
  const bandH = Math.min(img.h, 9 * k);
  for (let y = 0; y < bandH; y++) img.px.fill(0, y * img.w * 3, (y * img.w + bandW) * 3);
  [...text].forEach((ch, n) => {
    GLYPHS[ch].forEach((bits, gy) => {
      [...bits].forEach((bit, gx) => {
        if (bit !== '1') return;
        const x0 = (1 + 6 * n + gx) * k;
        const y0 = (1 + gy) * k;
        for (let y = y0; y < Math.min(y0 + k, bandH); y++)
          img.px.fill(255, (y * img.w + x0) * 3, (y * img.w + Math.min(x0 + k, bandW)) * 3);
      });
    });
  });
}

/** The notebook's PNG of an overlay (base64 in, base64 out). */
export function notebookPng(overlayB64: string, noMask: boolean, maxSide = MAX_SIDE): string {
  const img = downscale(decodePng(Buffer.from(overlayB64, 'base64')), maxSide);
  if (noMask) stampLabel(img);
  return encodePng(img).toString('base64');
}
