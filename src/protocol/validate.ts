// Runtime validators for what crosses a trust boundary: messages from webviews, payloads coming into the renderer,
// requests coming into the host. Hand-written, no dependencies. Each returns a list of problems ("masks[0].bbox: ...");
// an empty list means valid. Unknown extra members are allowed (newer producers may add some).

import { DEVICES, type LoadModelParams, type SegmentParams } from './rpc';
import { RESULT_FORMAT, type ChatTurn, type CocoRle, type SegmentResult } from './result';
import { countsArea, countsBbox, stringToCounts } from './rle';

const STOP_REASONS = ['eos', 'max_new_tokens', 'context_limit', 'cancelled'] as const;
const TIMING_NUMBERS = [
  'decodeImageMs', 'preprocessMs', 'clipMs', 'samEncoderMs', 'prefillMs', 'decodeMs', 'maskDecoderMs', 'totalMs', 'onnxMs',
] as const;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const SHA256 = /^[0-9a-f]{64}$/;

export interface ValidateOptions {
  /**
   * Also parse every RLE counts string and check that it covers exactly h*w pixels and that `area` and `bbox` are
   * what the RLE gives (default true; cheap next to drawing the masks).
   */
  deep?: boolean;
}

class Problems {
  readonly list: string[] = [];
  add(path: string, msg: string): void {
    this.list.push(`${path || '(root)'}: ${msg}`);
  }
  object(v: unknown, path: string): v is Record<string, unknown> {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return true;
    this.add(path, `expected an object, got ${describe(v)}`);
    return false;
  }
  array(v: unknown, path: string): v is unknown[] {
    if (Array.isArray(v)) return true;
    this.add(path, `expected an array, got ${describe(v)}`);
    return false;
  }
  string(v: unknown, path: string, opts: { nonEmpty?: boolean; optional?: boolean; maxLength?: number } = {}): boolean {
    if (v === undefined && opts.optional) return true;
    if (typeof v !== 'string') {
      this.add(path, `expected a string, got ${describe(v)}`);
      return false;
    }
    if (opts.nonEmpty && v.length === 0) {
      this.add(path, 'must not be empty');
      return false;
    }
    if (opts.maxLength !== undefined && v.length > opts.maxLength) {
      this.add(path, `longer than ${opts.maxLength} characters`);
      return false;
    }
    return true;
  }
  number(v: unknown, path: string, opts: { integer?: boolean; min?: number; max?: number; optional?: boolean } = {}): boolean {
    if (v === undefined && opts.optional) return true;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      this.add(path, `expected a finite number, got ${describe(v)}`);
      return false;
    }
    if (opts.integer && !Number.isInteger(v)) {
      this.add(path, `expected an integer, got ${v}`);
      return false;
    }
    if (opts.min !== undefined && v < opts.min) {
      this.add(path, `must be >= ${opts.min}, got ${v}`);
      return false;
    }
    if (opts.max !== undefined && v > opts.max) {
      this.add(path, `must be <= ${opts.max}, got ${v}`);
      return false;
    }
    return true;
  }
  boolean(v: unknown, path: string, optional = false): boolean {
    if (v === undefined && optional) return true;
    if (typeof v === 'boolean') return true;
    this.add(path, `expected a boolean, got ${describe(v)}`);
    return false;
  }
  oneOf<T>(v: unknown, path: string, values: readonly T[]): boolean {
    if (values.includes(v as T)) return true;
    this.add(path, `expected one of ${values.map((x) => JSON.stringify(x)).join(', ')}, got ${describe(v)}`);
    return false;
  }
  base64(v: unknown, path: string, optional = false): boolean {
    if (!this.string(v, path, { optional })) return false;
    if (typeof v === 'string' && (v.length % 4 !== 0 || !BASE64.test(v))) {
      this.add(path, 'is not base64');
      return false;
    }
    return true;
  }
}

/** A value as a problem message names it. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return v.length > 40 ? `a string (${JSON.stringify(v.slice(0, 40))}...)` : `the string ${JSON.stringify(v)}`;
  if (typeof v === 'number') return String(v);
  return typeof v;
}

function path(base: string, key: string | number): string {
  return typeof key === 'number' ? `${base}[${key}]` : base ? `${base}.${key}` : key;
}

// ---- pieces ----------------------------------------------------------------------------------------------------

export function validateChatTurns(v: unknown, at = 'history'): string[] {
  const p = new Problems();
  chatTurns(p, v, at);
  return p.list;
}

function chatTurns(p: Problems, v: unknown, at: string): void {
  if (!p.array(v, at)) return;
  v.forEach((t, i) => {
    const ti = path(at, i);
    if (!p.object(t, ti)) return;
    p.string(t.user, path(ti, 'user'));
    p.string(t.assistant, path(ti, 'assistant'));
  });
}

/** A COCO RLE in the compressed string form; with `size`, it must be that size. */
export function validateCocoRle(v: unknown, at = 'rle', size?: [number, number], opts: ValidateOptions = {}): string[] {
  const p = new Problems();
  cocoRle(p, v, at, size, opts.deep !== false);
  return p.list;
}

/** Returns the parsed counts when deep checking succeeded. */
function cocoRle(p: Problems, v: unknown, at: string, size: [number, number] | undefined, deep: boolean): Uint32Array | undefined {
  if (!p.object(v, at)) return undefined;
  const s = v.size;
  let sizeOk = false;
  if (p.array(s, path(at, 'size'))) {
    if (s.length !== 2) p.add(path(at, 'size'), `expected [height, width], got ${s.length} values`);
    else {
      sizeOk = p.number(s[0], path(at, 'size[0]'), { integer: true, min: 0 }) &&
        p.number(s[1], path(at, 'size[1]'), { integer: true, min: 0 });
      if (sizeOk && size && (s[0] !== size[0] || s[1] !== size[1])) {
        p.add(path(at, 'size'), `is [${s[0]}, ${s[1]}] but the image is [${size[0]}, ${size[1]}] (height, width)`);
        sizeOk = false;
      }
    }
  }
  if (!p.string(v.counts, path(at, 'counts'))) return undefined;
  if (!deep || !sizeOk) return undefined;
  const [h, w] = s as [number, number];
  let cnts: Uint32Array;
  try {
    cnts = stringToCounts(v.counts as string);
  } catch (e) {
    p.add(path(at, 'counts'), (e as Error).message);
    return undefined;
  }
  let total = 0;
  for (let i = 0; i < cnts.length; i++) total += cnts[i];
  if (total !== h * w) {
    p.add(path(at, 'counts'), `run lengths add up to ${total}, expected ${h}*${w} = ${h * w}`);
    return undefined;
  }
  return cnts;
}

function bbox(p: Problems, v: unknown, at: string): boolean {
  if (!p.array(v, at)) return false;
  if (v.length !== 4) {
    p.add(at, `expected [x, y, width, height], got ${v.length} values`);
    return false;
  }
  let ok = true;
  v.forEach((x, i) => (ok = p.number(x, path(at, i), { min: 0 }) && ok));
  return ok;
}

// ---- SegmentResult ---------------------------------------------------------------------------------------------

export function validateSegmentResult(v: unknown, opts: ValidateOptions = {}): string[] {
  const deep = opts.deep !== false;
  const p = new Problems();
  if (!p.object(v, '')) return p.list;
  if (v.format !== RESULT_FORMAT) p.add('format', `expected ${JSON.stringify(RESULT_FORMAT)}, got ${describe(v.format)}`);
  if (p.object(v.model, 'model')) {
    p.string(v.model.variant, 'model.variant');
    p.string(v.model.bundle, 'model.bundle');
  }
  p.string(v.provider, 'provider');
  p.string(v.prompt, 'prompt');
  chatTurns(p, v.history, 'history');
  p.string(v.text, 'text');
  let nIds = -1;
  if (p.array(v.outputIds, 'outputIds')) {
    nIds = v.outputIds.length;
    const bad = v.outputIds.findIndex((x) => typeof x !== 'number' || !Number.isInteger(x) || x < 0);
    if (bad >= 0) p.add(path('outputIds', bad), `expected a token id (integer >= 0), got ${describe(v.outputIds[bad])}`);
  }
  let size: [number, number] | undefined;
  if (p.object(v.image, 'image')) {
    const im = v.image;
    const okW = p.number(im.width, 'image.width', { integer: true, min: 1 });
    const okH = p.number(im.height, 'image.height', { integer: true, min: 1 });
    if (okW && okH) size = [im.height as number, im.width as number];
    if (p.string(im.sha256, 'image.sha256') && !SHA256.test(im.sha256 as string)) p.add('image.sha256', 'expected 64 lowercase hex digits');
    p.string(im.source, 'image.source', { optional: true });
    p.base64(im.data, 'image.data', true);
    p.string(im.mimeType, 'image.mimeType', { optional: true });
    if (im.data !== undefined && im.mimeType === undefined) p.add('image.mimeType', 'required when image.data is present');
  }
  if (p.array(v.masks, 'masks')) {
    const seen = new Set<number>();
    v.masks.forEach((m, i) => {
      const at = path('masks', i);
      if (!p.object(m, at)) return;
      if (p.number(m.segIndex, path(at, 'segIndex'), { integer: true, min: 0 })) {
        if (seen.has(m.segIndex as number)) p.add(path(at, 'segIndex'), `${m.segIndex} appears twice`);
        seen.add(m.segIndex as number);
      }
      if (p.number(m.tokenIndex, path(at, 'tokenIndex'), { integer: true, min: -1 }) && nIds >= 0 && (m.tokenIndex as number) >= nIds) {
        p.add(path(at, 'tokenIndex'), `${m.tokenIndex} is past the end of outputIds (${nIds} tokens)`);
      }
      const cnts = cocoRle(p, m.rle, path(at, 'rle'), size, deep);
      p.base64(m.png, path(at, 'png'), true);
      const bboxOk = bbox(p, m.bbox, path(at, 'bbox'));
      const areaOk = p.number(m.area, path(at, 'area'), { integer: true, min: 0 });
      p.number(m.score, path(at, 'score'));
      if (cnts && size) {
        const area = countsArea(cnts);
        if (areaOk && area !== m.area) p.add(path(at, 'area'), `is ${m.area} but the RLE covers ${area} pixels`);
        const bb = countsBbox(cnts, size[0], size[1]);
        const got = m.bbox as number[];
        if (bboxOk && bb.some((x, k) => x !== got[k])) p.add(path(at, 'bbox'), `is [${got.join(', ')}] but the RLE gives [${bb.join(', ')}]`);
      }
    });
  }
  p.base64(v.overlayPng, 'overlayPng', true);
  if (p.object(v.timings, 'timings')) {
    const t = v.timings;
    for (const k of TIMING_NUMBERS) p.number(t[k], path('timings', k), { min: 0 });
    p.number(t.newTokens, 'timings.newTokens', { integer: true, min: 0 });
    p.boolean(t.cacheHit, 'timings.cacheHit');
  }
  p.oneOf(v.stopReason, 'stopReason', STOP_REASONS);
  return p.list;
}

export function isSegmentResult(v: unknown, opts?: ValidateOptions): v is SegmentResult {
  return validateSegmentResult(v, opts).length === 0;
}

// ---- requests --------------------------------------------------------------------------------------------------

export interface ParamsLimits {
  /** Longest prompt accepted, in characters (the host checks the token count too). Default 100000. */
  maxPromptChars?: number;
  /** Most turns of history accepted. Default 1000. */
  maxHistoryTurns?: number;
}

export function validateSegmentParams(v: unknown, limits: ParamsLimits = {}): string[] {
  const p = new Problems();
  if (!p.object(v, '')) return p.list;
  p.string(v.requestId, 'requestId', { optional: true, nonEmpty: true, maxLength: 200 });
  if (p.object(v.image, 'image')) {
    const im = v.image;
    const kinds = (['path', 'data', 'sha256'] as const).filter((k) => im[k] !== undefined);
    if (kinds.length !== 1) {
      p.add('image', kinds.length ? `give only one of path, data, sha256 (got ${kinds.join(', ')})` : 'expected one of path, data, sha256');
    } else if (kinds[0] === 'path') {
      p.string(im.path, 'image.path', { nonEmpty: true });
    } else if (kinds[0] === 'data') {
      if (p.base64(im.data, 'image.data') && (im.data as string).length === 0) p.add('image.data', 'must not be empty');
      p.string(im.mimeType, 'image.mimeType', { optional: true });
      p.string(im.name, 'image.name', { optional: true });
    } else if (p.string(im.sha256, 'image.sha256') && !SHA256.test(im.sha256 as string)) {
      p.add('image.sha256', 'expected 64 lowercase hex digits');
    }
  }
  if (p.string(v.prompt, 'prompt', { maxLength: limits.maxPromptChars ?? 100000 }) && (v.prompt as string).trim() === '') {
    p.add('prompt', 'must not be blank');
  }
  chatTurns(p, v.history, 'history');
  const maxTurns = limits.maxHistoryTurns ?? 1000;
  if (Array.isArray(v.history) && v.history.length > maxTurns) p.add('history', `more than ${maxTurns} turns`);
  p.number(v.maxNewTokens, 'maxNewTokens', { optional: true, integer: true, min: 1, max: 1 << 20 });
  p.string(v.conversationId, 'conversationId', { optional: true, maxLength: 200 });
  p.boolean(v.includeImage, 'includeImage', true);
  p.boolean(v.includePng, 'includePng', true);
  return p.list;
}

export function isSegmentParams(v: unknown, limits?: ParamsLimits): v is SegmentParams {
  return validateSegmentParams(v, limits).length === 0;
}

export function validateLoadModelParams(v: unknown): string[] {
  const p = new Problems();
  if (!p.object(v, '')) return p.list;
  p.string(v.bundle, 'bundle', { nonEmpty: true });
  p.oneOf(v.device, 'device', DEVICES);
  p.boolean(v.allowFallback, 'allowFallback', true);
  p.string(v.requestId, 'requestId', { optional: true, nonEmpty: true, maxLength: 200 });
  return p.list;
}

export function isLoadModelParams(v: unknown): v is LoadModelParams {
  return validateLoadModelParams(v).length === 0;
}

/** Throws one Error listing the problems (at most 10), or returns the value typed. */
export function assertValid<T>(v: unknown, problems: string[], what: string): T {
  if (problems.length === 0) return v as T;
  const shown = problems.slice(0, 10).join('; ');
  const more = problems.length > 10 ? ` (and ${problems.length - 10} more)` : '';
  throw new Error(`invalid ${what}: ${shown}${more}`);
}

export type { ChatTurn, CocoRle };
