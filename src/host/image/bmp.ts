// A small reader for plain Windows BMP files, because sharp's prebuilt libvips has no BMP loader.
// Supported: BITMAPINFOHEADER or later (40..124-byte headers), uncompressed (BI_RGB) 1/4/8-bit palette, 24-bit, 32-bit
// (alpha, if any, dropped as cv2 and Pillow's convert('RGB') do), and BI_BITFIELDS 16/32-bit; bottom-up and top-down.
// RLE-compressed and OS/2 BMPs are refused with code 'unsupported'.

import { ImageError } from './errors';

export function isBmp(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x42 && buf[1] === 0x4d;
}

export interface BmpHeader {
  width: number;
  height: number;
}

function fail(label: string, code: 'truncated' | 'unsupported', why: string): never {
  const what =
    code === 'truncated'
      ? `${label} is a damaged or truncated BMP (${why}); re-export it, or convert it to PNG or JPEG`
      : `${label} is a BMP variant the host cannot read (${why}); convert it to PNG or JPEG`;
  throw new ImageError(code, what);
}

export function readBmpHeader(
  buf: Buffer,
  label: string,
): BmpHeader & { dib: number; bpp: number; compression: number; topDown: boolean; dataOffset: number } {
  if (buf.length < 26) fail(label, 'truncated', 'file shorter than its header');
  const dataOffset = buf.readUInt32LE(10);
  const dib = buf.readUInt32LE(14);
  if (dib < 40 || dib > 124) fail(label, 'unsupported', `DIB header of ${dib} bytes (OS/2 or unknown)`);
  if (buf.length < 14 + dib) fail(label, 'truncated', 'file shorter than its header');
  const width = buf.readInt32LE(18);
  const rawH = buf.readInt32LE(22);
  const bpp = buf.readUInt16LE(28);
  const compression = buf.readUInt32LE(30);
  if (width <= 0 || rawH === 0) fail(label, 'unsupported', `size ${width}x${rawH}`);
  return { width, height: Math.abs(rawH), topDown: rawH < 0, dib, bpp, compression, dataOffset };
}

function maskShift(mask: number): [number, number] {
  if (mask === 0) return [0, 0];
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift++;
  let bits = 0;
  while (((mask >>> (shift + bits)) & 1) === 1) bits++;
  return [shift, bits];
}

/** Decode to 8-bit RGB. The caller has already checked the pixel limit on readBmpHeader's size. */
export function decodeBmp(buf: Buffer, label: string): { width: number; height: number; data: Uint8Array } {
  const h = readBmpHeader(buf, label);
  const { width, height, bpp, compression, dib, dataOffset, topDown } = h;
  const BI_RGB = 0;
  const BI_BITFIELDS = 3;
  if (!(compression === BI_RGB || (compression === BI_BITFIELDS && (bpp === 16 || bpp === 32)))) {
    fail(label, 'unsupported', `compression ${compression} at ${bpp} bits per pixel`);
  }
  if (![1, 4, 8, 16, 24, 32].includes(bpp)) fail(label, 'unsupported', `${bpp} bits per pixel`);
  const stride = Math.floor((bpp * width + 31) / 32) * 4;
  if (dataOffset + stride * height > buf.length) fail(label, 'truncated', 'pixel data cut short');
  const out = new Uint8Array(width * height * 3);

  let palette: Uint8Array | undefined;
  if (bpp <= 8) {
    const used = buf.readUInt32LE(46) || 1 << bpp;
    const palStart = 14 + dib;
    if (palStart + used * 4 > dataOffset) fail(label, 'truncated', 'palette cut short');
    palette = new Uint8Array(256 * 3);
    for (let i = 0; i < Math.min(used, 256); i++) {
      palette[i * 3] = buf[palStart + i * 4 + 2];
      palette[i * 3 + 1] = buf[palStart + i * 4 + 1];
      palette[i * 3 + 2] = buf[palStart + i * 4];
    }
  }
  let masks: [number, number][] = [];
  if (bpp === 16 || bpp === 32) {
    let m: number[];
    if (compression === BI_BITFIELDS) {
      // masks follow a 40-byte header, or sit inside V4/V5 headers at the same offset
      if (14 + 40 + 12 > buf.length) fail(label, 'truncated', 'bit masks cut short');
      m = [buf.readUInt32LE(54), buf.readUInt32LE(58), buf.readUInt32LE(62)];
    } else {
      m = bpp === 16 ? [0x7c00, 0x03e0, 0x001f] : [0xff0000, 0xff00, 0xff];
    }
    masks = m.map(maskShift);
  }
  for (let y = 0; y < height; y++) {
    const srcRow = dataOffset + (topDown ? y : height - 1 - y) * stride;
    let o = y * width * 3;
    if (bpp === 24) {
      for (let x = 0; x < width; x++, o += 3) {
        const p = srcRow + x * 3;
        out[o] = buf[p + 2];
        out[o + 1] = buf[p + 1];
        out[o + 2] = buf[p];
      }
    } else if (bpp === 32 || bpp === 16) {
      for (let x = 0; x < width; x++, o += 3) {
        const v = bpp === 32 ? buf.readUInt32LE(srcRow + x * 4) : buf.readUInt16LE(srcRow + x * 2);
        for (let c = 0; c < 3; c++) {
          const [shift, bits] = masks[c];
          if (bits === 0) continue;
          const raw = (v >>> shift) & ((1 << bits) - 1);
          // 5/6-bit channels widened as Pillow unpacks BGR;15/16
          out[o + c] = bits >= 8 ? raw >>> (bits - 8) : Math.floor((raw * 255) / ((1 << bits) - 1));
        }
      }
    } else {
      const pal = palette as Uint8Array;
      const perByte = 8 / bpp;
      const mask = (1 << bpp) - 1;
      for (let x = 0; x < width; x++, o += 3) {
        const byte = buf[srcRow + Math.floor(x / perByte)];
        const idx = (byte >> (8 - bpp * ((x % perByte) + 1))) & mask;
        out[o] = pal[idx * 3];
        out[o + 1] = pal[idx * 3 + 1];
        out[o + 2] = pal[idx * 3 + 2];
      }
    }
  }
  return { width, height, data: out };
}
