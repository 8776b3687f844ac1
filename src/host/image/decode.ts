// Decoding an image file into the 8-bit RGB array the reference works on.
//
// The reference reads with cv2.imread(path, IMREAD_COLOR) and converts BGR -> RGB. What that means, case by case, and
// what this module does (each checked against cv2.imread of OpenCV 4.8, the version LISA pins, in
// test/host/image-decode.test.ts):
// - ICC profiles: ignored, as OpenCV ignores them (sharp would convert Adobe RGB, Display P3... to sRGB, moving
//   values by tens of levels) -> sharp's ignoreIcc. The tensors see the stored values; only a picture shown to a
//   person may be colour-managed.
// - EXIF orientation: applied to JPEG, PNG and TIFF (OpenCV applies it by default for IMREAD_COLOR), not to WebP
//   (OpenCV 4.8 does not read WebP's EXIF) -> sharp autoOrient() except for WebP.
// - Alpha: dropped without compositing (IMREAD_COLOR keeps the colour channels; Pillow's convert('RGB') does the same)
//   -> sharp removeAlpha(), never flatten(). Fully transparent pixels keep their stored colour.
// - Grayscale: replicated to three equal channels.
// - 16 bits per channel: the high byte (v >> 8), which is what libpng's png_set_strip_16 gives cv2 for PNG, and what
//   OpenCV gives for 16-bit grey TIFF (so a 16-bit file holding values under 256 decodes to black, as in LISA; Pillow's
//   convert('RGB') clips at 255 instead); sharp/libvips produce the same. A 16-bit colour TIFF is the exception: OpenCV
//   scales it, round(v / 257).
// - Palette: expanded; its transparency, like any alpha, dropped.
// - CMYK (JPEG, Adobe inverted or not): the raw CMYK (0 = no ink) through OpenCV's own formula, no ICC profile:
//   c' = (255 - k) - ((c * (255 - k)) >> 8). sharp's default would colour-manage it through an ICC profile, which
//   OpenCV does not.
// - Animated GIF/WebP: the first frame (sharp's default pages = 1).
// - BMP: read by ./bmp.ts (sharp has no BMP loader).
// The pixel limit is checked on the header's width x height before any pixel is decoded (decompression bombs), by
// sharp's limitInputPixels and again here with the header's numbers for the message.

import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { FileReadError, readRegularFile } from '../read-file';
import { decodeBmp, isBmp, readBmpHeader } from './bmp';
import { ImageError } from './errors';

export type { ImageErrorCode } from './errors';
export { ImageError } from './errors';

export interface DecodedImage {
  width: number;
  height: number;
  /** 8-bit RGB, 3 interleaved channels, row-major, width * height * 3 bytes. */
  data: Uint8Array;
  /**
   * sha256 (hex) of the image file's bytes, the embedding caches' key. Hashing the file (1 MB for a 12 MP JPEG) instead
   * of its pixels (36 MB) keeps the hash off the pre-processing's critical path, and lets a cache be asked before
   * decoding; the same picture saved twice with different bytes is simply encoded twice.
   */
  sha256: string;
  /** The container format as detected ('jpeg', 'png', 'webp', 'gif', 'tiff', 'bmp', ...). */
  format: string;
}

export interface DecodeOptions {
  /** Largest width * height accepted; checked from the header before decoding. */
  maxPixels: number;
}

/** Default pixel limit: 100 MP (a 12 MP photo decodes to 36 MB; 100 MP to 300 MB). */
export const DEFAULT_MAX_PIXELS = 100_000_000;

const READABLE = 'PNG, JPEG, WebP, GIF, TIFF, AVIF, BMP';

/**
 * The most bytes read from an image file: a 16-bit RGBA picture at the pixel limit, uncompressed (8 bytes a pixel),
 * plus room for metadata. No real file of an accepted size is larger; /dev/zero and friends are refused before this.
 */
const BYTES_PER_PIXEL = 8;
export const maxFileBytes = (maxPixels: number): number => maxPixels * BYTES_PER_PIXEL + (16 << 20);

/** Seconds one sharp pipeline may run (sharp's timeout); decoding 100 MP takes a few seconds, so this is generous. */
export const DECODE_TIMEOUT_S = 30;

/**
 * The container, from its magic bytes, among those the host decodes; 'svg' for anything that looks like XML, which
 * libvips would rasterise (at any canvas size, with filters) and LISA cannot read at all. Only these reach sharp.
 */
function sniffContainer(b: Buffer): 'jpeg' | 'png' | 'gif' | 'webp' | 'tiff' | 'heif' | 'bmp' | 'svg' | undefined {
  const ascii = (from: number, to: number) => b.subarray(from, to).toString('latin1');
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (ascii(0, 8) === '\x89PNG\r\n\x1a\n') return 'png';
  if (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a') return 'gif';
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  if (['II*\0', 'MM\0*', 'II+\0', 'MM\0+'].includes(ascii(0, 4))) return 'tiff';
  if (ascii(4, 8) === 'ftyp') return 'heif';
  if (isBmp(b)) return 'bmp';
  if (/^(\xef\xbb\xbf)?\s*</.test(ascii(0, 256))) return 'svg';
  return undefined;
}

function describe(input: string | Buffer): string {
  return typeof input === 'string' ? `"${input}"` : `the image data (${input.length} bytes)`;
}

/** sha256 (hex) of a file's bytes, as sha256sum prints it. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function checkPixels(label: string, width: number, height: number, maxPixels: number): void {
  if (width * height > maxPixels) {
    throw new ImageError(
      'too_large',
      `${label} is ${width}x${height} (${((width * height) / 1e6).toFixed(1)} MP), over the ${(maxPixels / 1e6).toFixed(1)} MP ` +
        'pixel limit; downscale it before segmenting, or raise the image pixel limit setting if the file is genuine',
    );
  }
}

/** OpenCV's icvCvt_CMYK2BGR_8u_C4C3R on raw CMYK (0 = no ink), 4 bytes per pixel -> RGB. */
function cmykToRgb(cmyk: Uint8Array, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  for (let i = 0, j = 0; i < pixels; i++, j += 4) {
    const nk = 255 - cmyk[j + 3];
    for (let c = 0; c < 3; c++) out[i * 3 + c] = nk - ((cmyk[j + c] * nk) >> 8);
  }
  return out;
}

/** OpenCV's 16-bit colour TIFF -> 8 bits: round(v / 257), 3 or 4 channels of raw 16-bit -> RGB. */
function tiff16ToRgb(raw: Buffer, pixels: number, channels: number): Uint8Array {
  const v = new Uint16Array(raw.buffer, raw.byteOffset, pixels * channels);
  const out = new Uint8Array(pixels * 3);
  for (let i = 0, j = 0; i < pixels; i++, j += channels) {
    for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.round(v[j + c] / 257);
  }
  return out;
}

/** WebP (RIFF....WEBP): OpenCV 4.8 leaves its EXIF orientation unapplied. */
function isWebp(buf: Buffer): boolean {
  return buf.length >= 12 && buf.toString('latin1', 0, 4) === 'RIFF' && buf.toString('latin1', 8, 12) === 'WEBP';
}

/**
 * Any 1..4-channel 8-bit raw buffer -> 3-channel RGB (grey replicated, alpha dropped). Three channels are returned as
 * they are, without a copy: a 12 MP image is 36 MB, and a fresh buffer of that size costs more to fill than sharp
 * takes to decode half the file.
 */
function toRgb(raw: Buffer, pixels: number, channels: number): Uint8Array {
  if (channels === 3) return new Uint8Array(raw.buffer, raw.byteOffset, pixels * 3);
  const out = new Uint8Array(pixels * 3);
  if (channels === 1 || channels === 2) {
    for (let i = 0, j = 0; i < pixels; i++, j += channels) {
      const g = raw[j];
      out[i * 3] = g;
      out[i * 3 + 1] = g;
      out[i * 3 + 2] = g;
    }
  } else if (channels === 4) {
    for (let i = 0, j = 0; i < pixels; i++, j += 4) {
      out[i * 3] = raw[j];
      out[i * 3 + 1] = raw[j + 1];
      out[i * 3 + 2] = raw[j + 2];
    }
  } else {
    throw new ImageError('unsupported', `decoder returned ${channels} channels; convert the image to RGB PNG or JPEG`);
  }
  return out;
}

/**
 * Decode a file path or an in-memory file into 8-bit RGB as the reference sees it (see the top of this file).
 * Throws ImageError with code 'empty' | 'not_found' | 'not_an_image' | 'truncated' | 'too_large' | 'unsupported'.
 */
export async function decodeImage(input: string | Buffer, opts: DecodeOptions): Promise<DecodedImage> {
  const label = describe(input);
  const maxPixels = opts.maxPixels;
  if (!(maxPixels > 0)) throw new RangeError(`decodeImage: maxPixels must be positive, got ${maxPixels}`);
  let buf: Buffer;
  if (typeof input === 'string') {
    try {
      buf = await readRegularFile(
        input,
        maxFileBytes(maxPixels),
        label,
        `${BYTES_PER_PIXEL} bytes per pixel of the ${(maxPixels / 1e6).toFixed(1)} MP pixel limit`,
      );
    } catch (e) {
      if (!(e instanceof FileReadError)) throw e;
      throw new ImageError(e.reason === 'too_big' ? 'too_large' : 'not_found', e.message);
    }
  } else {
    buf = input;
  }
  if (buf.length === 0) {
    throw new ImageError('empty', `${label} is empty (0 bytes); the file may still be downloading or failed to save`);
  }
  const container = sniffContainer(buf);
  if (container === 'svg') {
    throw new ImageError(
      'unsupported',
      `${label} is an SVG drawing; LISA reads raster images only (cv2.imread cannot read SVG), so export it as PNG first`,
    );
  }
  if (!container) {
    throw new ImageError(
      'not_an_image',
      `${label} is not an image sharp can read (${READABLE}); check that the file is a picture`,
    );
  }

  if (isBmp(buf)) {
    const hdr = readBmpHeader(buf, label);
    checkPixels(label, hdr.width, hdr.height, maxPixels);
    const bmp = decodeBmp(buf, label);
    return { width: bmp.width, height: bmp.height, data: bmp.data, sha256: sha256Hex(buf), format: 'bmp' };
  }

  // The header (format, size, colour space) and the decode are read at once. The decode needs no header first: sharp
  // refuses an image over the pixel limit from its header too, before decoding a pixel (the header read has no limit,
  // so that a bomb gets our own message below). A CMYK file or a 16-bit colour TIFF, both rare, is decoded again with
  // its own pipeline.
  const pipeOpts = { limitInputPixels: maxPixels, failOn: 'truncated', pages: 1, page: 0, ignoreIcc: true } as const;
  const start = () => {
    const img = sharp(buf, pipeOpts).timeout({ seconds: DECODE_TIMEOUT_S });
    return isWebp(buf) ? img : img.autoOrient();
  };
  const decoding = start().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  decoding.catch(() => undefined); // awaited below, when the header says it is the one wanted
  const sha256 = sha256Hex(buf); // while sharp decodes on its own thread
  let meta: sharp.Metadata;
  try {
    meta = await sharp(buf, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw new ImageError(
      'not_an_image',
      `${label} is not an image sharp can read (${READABLE}?): ${(e as Error).message}; check that the file is a picture`,
    );
  }
  const w0 = meta.width ?? 0;
  const h0 = meta.pageHeight ?? meta.height ?? 0;
  if (!(w0 > 0 && h0 > 0)) {
    throw new ImageError(
      'unsupported',
      `${label} (${meta.format}) has no pixel size in its header; convert it to PNG or JPEG`,
    );
  }
  checkPixels(label, w0, h0, maxPixels);

  const isCmyk = meta.space === 'cmyk';
  const isTiff16 = meta.format === 'tiff' && meta.depth === 'ushort' && (meta.channels ?? 0) >= 3;
  try {
    const { data: raw, info } = isCmyk
      ? await start()
          .pipelineColourspace('cmyk')
          .toColourspace('cmyk')
          .raw({ depth: 'uchar' })
          .toBuffer({ resolveWithObject: true })
      : isTiff16
        ? await start().toColourspace('rgb16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true })
        : await decoding;
    const pixels = info.width * info.height;
    const rgb =
      isCmyk && info.channels === 4
        ? cmykToRgb(raw, pixels)
        : isTiff16
          ? tiff16ToRgb(raw, pixels, info.channels)
          : toRgb(raw, pixels, info.channels);
    return { width: info.width, height: info.height, data: rgb, sha256, format: meta.format ?? 'unknown' };
  } catch (e) {
    if (e instanceof ImageError) throw e;
    const msg = (e as Error).message;
    if (/timeout/i.test(msg)) {
      throw new ImageError(
        'too_large',
        `${label} took over ${DECODE_TIMEOUT_S} s to decode (${msg.trim()}); re-save it as an ordinary PNG or JPEG`,
      );
    }
    if (/pixel limit/i.test(msg)) {
      throw new ImageError(
        'too_large',
        `${label} is over the ${(maxPixels / 1e6).toFixed(1)} MP pixel limit; downscale it`,
      );
    }
    // libvips's own words are left out: they come from a process-wide error buffer, so the same file can read
    // "premature end of JPEG image" in one process and "Unknown error" in another, and results must not depend on that.
    throw new ImageError(
      'truncated',
      `${label} is a damaged or truncated ${meta.format?.toUpperCase() ?? 'image'}; re-download or re-export the file`,
    );
  }
}
