// Minimal shape check of a result payload before any drawing: a clear message instead of an exception deep inside
// the drawing code. Only what the overlay reads is checked; extra fields are allowed.

import { RESULT_FORMAT, type SegmentResult } from '../protocol/result';

export type Checked = { ok: true; result: SegmentResult } | { ok: false; title: string; detail: string };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNat = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

export function checkResult(value: unknown): Checked {
  const bad = (detail: string): Checked => ({ ok: false, title: 'This Reason Segment result cannot be shown', detail });
  if (!isObj(value)) return bad(`Expected a JSON object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}.`);
  if (value.format !== RESULT_FORMAT) {
    if (typeof value.format === 'string') {
      return {
        ok: false,
        title: 'Unknown result format',
        detail: `This output uses the format "${value.format}"; this version of Reason Segment shows "${RESULT_FORMAT}". ` +
          'Update the extension, or run the cell again with the installed version.',
      };
    }
    return bad(`The "format" field is missing (expected "${RESULT_FORMAT}").`);
  }
  if (typeof value.text !== 'string') return bad('The "text" field (the answer) is missing or not a string.');
  const img = value.image;
  if (!isObj(img) || !isNat(img.width) || !isNat(img.height) || img.width === 0 || img.height === 0) {
    return bad('The "image" field needs positive integer "width" and "height".');
  }
  if (img.data !== undefined && typeof img.data !== 'string') return bad('"image.data" must be base64 text.');
  if (!Array.isArray(value.masks)) return bad('The "masks" field is missing or not an array.');
  for (let i = 0; i < value.masks.length; i++) {
    const m = value.masks[i];
    if (!isObj(m) || !isNat(m.segIndex)) return bad(`Mask ${i + 1} has no integer "segIndex".`);
    const rle = m.rle;
    if (!isObj(rle) || !Array.isArray(rle.size) || rle.size.length !== 2 || !isNat(rle.size[0]) || !isNat(rle.size[1])) {
      return bad(`Mask ${i + 1} has no valid "rle.size" ([height, width]).`);
    }
    if (typeof rle.counts !== 'string' && !Array.isArray(rle.counts)) return bad(`Mask ${i + 1} has no "rle.counts".`);
    if (rle.size[0] !== img.height || rle.size[1] !== img.width) {
      return bad(`Mask ${i + 1} is ${rle.size[1]}x${rle.size[0]} but the image is ${img.width}x${img.height}.`);
    }
  }
  return { ok: true, result: value as unknown as SegmentResult };
}
