// Runtime validators for what crosses a trust boundary: messages from webviews, payloads coming into the renderer,
// requests coming into the host. The shapes are checked by the validators generated from wire.schema.json (the one
// definition of each wire type; see wire-validators.ts), and this module adds what a schema cannot say: cross-checks
// between members (an RLE against the image size, area and bbox against the RLE, unique segIndex). Each function
// returns a list of problems ("masks[0].bbox: ..."); an empty list means valid. Unknown extra members are allowed
// (newer producers may add some).

import type { ChatTurn, CocoRle, SegmentResult } from './result';
import { countsArea, countsBbox, stringToCounts } from './rle';
import type { SegmentParams } from './rpc';
import * as wire from './wire-validators';

export interface ValidateOptions {
  /**
   * Also parse every RLE counts string and check that it covers exactly h*w pixels and that `area` and `bbox` are
   * what the RLE gives (default true; cheap next to drawing the masks).
   */
  deep?: boolean;
}

/** A value as a problem message names it. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string')
    return v.length > 40 ? `a string (${JSON.stringify(v.slice(0, 40))}...)` : `the string ${JSON.stringify(v)}`;
  if (typeof v === 'number') return String(v);
  return typeof v;
}

function path(base: string, key: string | number): string {
  return typeof key === 'number' ? `${base}[${key}]` : base ? `${base}.${key}` : key;
}

// ---- ajv's errors as one line each -----------------------------------------------------------------------------

interface SchemaError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  schema?: unknown;
  parentSchema?: Record<string, unknown>;
  data?: unknown;
}

type Validator = ((v: unknown) => boolean) & { errors?: SchemaError[] | null };

const TYPE_NAMES: Record<string, string> = {
  object: 'an object',
  array: 'an array',
  string: 'a string',
  number: 'a finite number',
  integer: 'an integer',
  boolean: 'a boolean',
};

function pointerPath(at: string, pointer: string): string {
  let p = at;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    p = path(p, /^\d+$/.test(key) ? Number(key) : key);
  }
  return p;
}

/** What a missing member should have been: "expected a string", "expected a string id"... */
function missingProblem(schema: unknown): string | undefined {
  if (typeof schema !== 'object' || schema === null) return undefined;
  const s = schema as { type?: string; $ref?: string; 'x-problem'?: { required?: string } };
  const custom =
    s['x-problem']?.required ?? (s.$ref ? (wire.refTypeProblems as Record<string, string>)[s.$ref] : undefined);
  if (custom) return custom;
  const t = s.type ?? (s.$ref ? (wire.refTypes as Record<string, string | undefined>)[s.$ref] : undefined);
  return t ? `expected ${TYPE_NAMES[t]}` : undefined;
}

function typeProblem(data: unknown, type: string): string {
  if ((type === 'integer' || type === 'number') && typeof data === 'number' && Number.isFinite(data))
    return `expected an integer, got ${data}`;
  return `expected ${TYPE_NAMES[type] ?? type}, got ${describe(data)}`;
}

function problem(e: SchemaError): string {
  const custom = (e.parentSchema?.['x-problem'] as Record<string, string> | undefined)?.[e.keyword];
  if (custom) {
    if (!custom.startsWith('expected')) return custom;
    return `${custom}, got ${Array.isArray(e.data) ? `${e.data.length} values` : describe(e.data)}`;
  }
  const p = e.params;
  switch (e.keyword) {
    case 'type':
      return typeProblem(e.data, String(p.type));
    case 'enum': {
      const values = (p.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(', ');
      return `expected ${(p.allowedValues as unknown[]).length > 1 ? 'one of ' : ''}${values}, got ${describe(e.data)}`;
    }
    case 'minimum':
      return `must be >= ${p.limit}, got ${describe(e.data)}`;
    case 'maximum':
      return `must be <= ${p.limit}, got ${describe(e.data)}`;
    case 'minLength':
      return p.limit === 1 ? 'must not be empty' : `shorter than ${p.limit} characters`;
    case 'maxLength':
      return `longer than ${p.limit} characters`;
    case 'minItems':
      return `fewer than ${p.limit} items`;
    case 'maxItems':
      return `more than ${p.limit} items`;
    case 'pattern':
      return `does not match ${p.pattern}`;
    default:
      return `fails ${e.keyword} ${JSON.stringify(p)}`;
  }
}

/** The one-line problems of a failed validation, paths below `at`. */
function problems(validate: Validator, v: unknown, at = ''): string[] {
  if (validate(v)) return [];
  const errors = validate.errors ?? [];
  const out: string[] = [];
  // A oneOf (the image forms) is summed up by the branch its data names; the other branches' errors are noise.
  const oneOfs = errors.filter((e) => e.keyword === 'oneOf');
  const owner = (e: SchemaError) =>
    oneOfs.find(
      (o) => e !== o && (e.instancePath === o.instancePath || e.instancePath.startsWith(`${o.instancePath}/`)),
    );
  for (const e of errors) {
    if (owner(e)) continue;
    const where = pointerPath(at, e.instancePath);
    if (e.keyword === 'oneOf') {
      out.push(...oneOfProblems(e, errors, at));
    } else if (e.keyword === 'required') {
      const missing = String(e.params.missingProperty);
      // A missing discriminator tag is reported by the discriminator, with the values it takes.
      if ((e.parentSchema?.discriminator as { propertyName?: string } | undefined)?.propertyName === missing) continue;
      const props = e.parentSchema?.properties as Record<string, unknown> | undefined;
      const want = missingProblem(props?.[missing]);
      out.push(`${path(where, missing)}: ${want ? `${want}, got undefined` : 'is required'}`);
    } else if (e.keyword === 'discriminator') {
      const tag = String(e.params.tag);
      const branches = (e.parentSchema?.oneOf ?? []) as { $ref?: string }[];
      const tags = wire.refTypeTags as Record<string, string[]>;
      const values = branches.flatMap((b) => (b.$ref && tags[b.$ref]) || []).map((x) => JSON.stringify(x));
      out.push(`${path(where, tag)}: expected one of ${values.join(', ')}, got ${describe(e.params.tagValue)}`);
    } else if (e.keyword === 'dependencies') {
      out.push(
        `${path(where, String(e.params.missingProperty))}: required when ${path(where, String(e.params.property))} is present`,
      );
    } else if ((e.keyword !== 'not' || e.parentSchema?.['x-problem']) && e.keyword !== 'anyOf' && e.keyword !== 'if') {
      out.push(`${where || '(root)'}: ${problem(e)}`);
    }
  }
  // Callers read an empty list as valid: a failure this formatting has no words for must still be one.
  if (out.length === 0) out.push(`${pointerPath(at, errors[0]?.instancePath ?? '') || '(root)'}: is not valid`);
  return out;
}

function oneOfProblems(e: SchemaError, errors: SchemaError[], at: string): string[] {
  const where = pointerPath(at, e.instancePath) || '(root)';
  const data = e.data;
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    return [`${where}: expected an object, got ${describe(data)}`];
  const branches = e.schema as { required: string[]; properties: Record<string, unknown> }[];
  const keys = branches.map((b) => b.required[0]);
  const given = keys.filter((k) => (data as Record<string, unknown>)[k] !== undefined);
  if (given.length === 0) return [`${where}: expected one of ${keys.join(', ')}`];
  if (given.length > 1) return [`${where}: give only one of ${keys.join(', ')} (got ${given.join(', ')})`];
  const branch = branches[keys.indexOf(given[0])];
  const inBranch = errors.filter(
    (x) =>
      x.keyword !== 'oneOf' &&
      x.instancePath.startsWith(`${e.instancePath}/`) &&
      Object.hasOwn(branch.properties, x.instancePath.slice(e.instancePath.length + 1).split('/')[0]),
  );
  const found = inBranch.map((x) => `${pointerPath(at, x.instancePath)}: ${problem(x)}`);
  return found.length ? found : [`${where}: is not a valid ${given[0]} form`];
}

// ---- pieces ----------------------------------------------------------------------------------------------------

export function validateChatTurns(v: unknown, at = 'history'): string[] {
  return problems(wire.chatTurns, v, at);
}

/** A COCO RLE in the compressed string form; with `size`, it must be that size. */
export function validateCocoRle(v: unknown, at = 'rle', size?: [number, number], opts: ValidateOptions = {}): string[] {
  const found = problems(wire.cocoRle, v, at);
  if (found.length === 0) rleChecks(found, v as CocoRle, at, size, opts.deep !== false);
  return found;
}

/** Checks of a schema-valid RLE against the image size, then its counts; returns the counts when they add up. */
function rleChecks(
  out: string[],
  rle: CocoRle,
  at: string,
  size: [number, number] | undefined,
  deep: boolean,
): Uint32Array | undefined {
  const [h, w] = rle.size;
  if (size && (h !== size[0] || w !== size[1])) {
    out.push(`${path(at, 'size')}: is [${h}, ${w}] but the image is [${size[0]}, ${size[1]}] (height, width)`);
    return undefined;
  }
  if (!deep) return undefined;
  let cnts: Uint32Array;
  try {
    cnts = stringToCounts(rle.counts);
  } catch (e) {
    out.push(`${path(at, 'counts')}: ${(e as Error).message}`);
    return undefined;
  }
  let total = 0;
  for (let i = 0; i < cnts.length; i++) total += cnts[i];
  if (total !== h * w) {
    out.push(`${path(at, 'counts')}: run lengths add up to ${total}, expected ${h}*${w} = ${h * w}`);
    return undefined;
  }
  return cnts;
}

// ---- SegmentResult ---------------------------------------------------------------------------------------------

export function validateSegmentResult(v: unknown, opts: ValidateOptions = {}): string[] {
  const found = problems(wire.segmentResult, v);
  if (found.some((f) => f.startsWith('(root):'))) return found;
  // The cross-checks below read members the schema vouched for; each one is skipped where the schema found a problem.
  const r = v as SegmentResult;
  const bad = (p: string) => found.some((f) => f.startsWith(`${p}:`) || f.startsWith(`${p}.`) || f.startsWith(`${p}[`));
  const size: [number, number] | undefined = bad('image') ? undefined : [r.image.height, r.image.width];
  const nIds = bad('outputIds') ? -1 : r.outputIds.length;
  if (bad('masks') && !Array.isArray(r.masks)) return found;
  const seen = new Set<number>();
  (r.masks ?? []).forEach((m, i) => {
    const at = path('masks', i);
    if (bad(at)) return;
    if (seen.has(m.segIndex)) found.push(`${path(at, 'segIndex')}: ${m.segIndex} appears twice`);
    seen.add(m.segIndex);
    if (nIds >= 0 && m.tokenIndex >= nIds)
      found.push(`${path(at, 'tokenIndex')}: ${m.tokenIndex} is past the end of outputIds (${nIds} tokens)`);
    if (!size) return;
    const cnts = rleChecks(found, m.rle, path(at, 'rle'), size, opts.deep !== false);
    if (!cnts) return;
    const area = countsArea(cnts);
    if (area !== m.area) found.push(`${path(at, 'area')}: is ${m.area} but the RLE covers ${area} pixels`);
    const bb = countsBbox(cnts, size[0], size[1]);
    if (bb.some((x, k) => x !== m.bbox[k]))
      found.push(`${path(at, 'bbox')}: is [${m.bbox.join(', ')}] but the RLE gives [${bb.join(', ')}]`);
  });
  return found;
}

export function isSegmentResult(v: unknown, opts?: ValidateOptions): v is SegmentResult {
  return validateSegmentResult(v, opts).length === 0;
}

// ---- requests --------------------------------------------------------------------------------------------------

/** Tighter limits than the schema's (100000 prompt characters, 1000 turns); larger ones change nothing. */
export interface ParamsLimits {
  /** Longest prompt accepted, in characters (the host checks the token count too). */
  maxPromptChars?: number;
  /** Most turns of history accepted. */
  maxHistoryTurns?: number;
}

export function validateSegmentParams(v: unknown, limits: ParamsLimits = {}): string[] {
  const found = problems(wire.segmentParams, v);
  if (found.length > 0) return found;
  const p = v as SegmentParams;
  if (limits.maxPromptChars !== undefined && p.prompt.length > limits.maxPromptChars)
    found.push(`prompt: longer than ${limits.maxPromptChars} characters`);
  if (limits.maxHistoryTurns !== undefined && p.history.length > limits.maxHistoryTurns)
    found.push(`history: more than ${limits.maxHistoryTurns} items`);
  return found;
}

export function validateLoadModelParams(v: unknown): string[] {
  return problems(wire.loadModelParams, v);
}

export function validateRefineParams(v: unknown): string[] {
  return problems(wire.refineParams, v);
}

/**
 * Problems with a message that claims to come from the chat webview (src/protocol/chat.ts): unknown `type`s are
 * rejected; strings are size-limited; paths must not hold NUL or line breaks; save files must have a plain file name,
 * the MIME type of their kind and well-formed data.
 */
export function validateWebviewMessage(v: unknown): string[] {
  return problems(wire.webviewMessage, v);
}

/** Throws one Error listing the problems (at most 10), or returns the value typed. */
export function assertValid<T>(v: unknown, problems: string[], what: string): T {
  if (problems.length === 0) return v as T;
  const shown = problems.slice(0, 10).join('; ');
  const more = problems.length > 10 ? ` (and ${problems.length - 10} more)` : '';
  throw new Error(`invalid ${what}: ${shown}${more}`);
}

export type { ChatTurn, CocoRle };
