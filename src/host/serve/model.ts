// The reason-segment model as the inference protocol sees it: named input tensors -> a pipeline request, and a result
// -> output tensors. Inputs are BYTES of one element unless said; IMAGE_SHA256 refers to an image sent before (the
// embedding cache keeps it), so a follow-up turn need not send the image again.
import type { ChatTurn, SegmentResult } from '../../protocol/result';
import { validateChatTurns } from '../../protocol/validate';
import type { SegmentRequest } from '../pipeline';
import { HttpError, type ModelMetadata, type Parameters, type Tensor, type TensorMetadata } from './oip';

export const MODEL_NAME = 'reason-segment';
export const MODEL_VERSION = '1';

const bytes = (name: string): TensorMetadata => ({ name, datatype: 'BYTES', shape: [1] });

const INPUTS: TensorMetadata[] = [
  bytes('IMAGE'),
  bytes('PROMPT'),
  bytes('HISTORY'),
  bytes('ASSISTANT_PREFIX'),
  { name: 'MAX_NEW_TOKENS', datatype: 'INT32', shape: [1] },
  bytes('IMAGE_SHA256'),
];
const REQUIRED = new Set(['PROMPT']);

/** TEXT: this turn's answer (what a follow-up re-feeds as history). RESULT: the whole result JSON, masks as COCO RLE. */
const OUTPUTS: TensorMetadata[] = [bytes('TEXT'), bytes('RESULT')];
export const OUTPUT_NAMES = OUTPUTS.map((o) => o.name);

export function modelMetadata(platform: string): ModelMetadata {
  return { name: MODEL_NAME, versions: [MODEL_VERSION], platform, inputs: INPUTS, outputs: OUTPUTS };
}

/** What a request carries besides the image and the text: everything the pipeline needs, nothing about transport. */
export type ModelRequest = Omit<SegmentRequest, 'signal' | 'onText'>;

/**
 * Input tensors -> pipeline request. BYTES given as JSON strings are UTF-8 text, except IMAGE, which as JSON must be
 * base64 with `"parameters": {"content_type": "base64"}` (JSON strings cannot carry raw image bytes).
 */
export function requestFromTensors(tensors: Tensor[]): ModelRequest {
  const byName = new Map<string, Tensor>();
  for (const t of tensors) {
    const spec = INPUTS.find((i) => i.name === t.name);
    if (!spec)
      throw new HttpError(400, `unknown input ${t.name}; this model takes ${INPUTS.map((i) => i.name).join(', ')}`);
    if (byName.has(t.name)) throw new HttpError(400, `input ${t.name} is given twice`);
    if (t.datatype !== spec.datatype)
      throw new HttpError(400, `input ${t.name} is ${spec.datatype}, not ${t.datatype}`);
    if (t.values.length !== 1)
      throw new HttpError(400, `input ${t.name} takes one element (shape [1]); batch by sending more requests`);
    byName.set(t.name, t);
  }
  for (const name of REQUIRED) if (!byName.has(name)) throw new HttpError(400, `input ${name} is required`);
  const text = (name: string): string | undefined => {
    const t = byName.get(name);
    return t ? (t.values[0] as Buffer).toString('utf8') : undefined;
  };

  const prompt = text('PROMPT') as string;
  if (prompt.trim() === '') throw new HttpError(400, 'PROMPT is blank; write a question or an instruction');
  const image = imageOf(byName.get('IMAGE'), text('IMAGE_SHA256'));
  const history = historyOf(text('HISTORY'));
  const max = byName.get('MAX_NEW_TOKENS')?.values[0] as number | undefined;
  if (max !== undefined && !(Number.isInteger(max) && max >= 1))
    throw new HttpError(400, `MAX_NEW_TOKENS must be a positive whole number, not ${max}`);
  return { image, prompt, history, assistantPrefix: text('ASSISTANT_PREFIX'), maxNewTokens: max, includePng: false };
}

function imageOf(image: Tensor | undefined, sha256: string | undefined): SegmentRequest['image'] {
  if (image && sha256 !== undefined) throw new HttpError(400, 'give IMAGE or IMAGE_SHA256, not both');
  if (sha256 !== undefined) {
    if (!/^[0-9a-f]{64}$/.test(sha256))
      throw new HttpError(400, 'IMAGE_SHA256 must be 64 lowercase hex digits (the sha256 of the image file)');
    return { sha256 };
  }
  if (!image)
    throw new HttpError(
      400,
      'input IMAGE (the encoded image file) is required, or IMAGE_SHA256 for an image sent before',
    );
  let data = image.values[0] as Buffer;
  if (!image.binary) {
    if (image.parameters.content_type !== 'base64') {
      throw new HttpError(
        400,
        'IMAGE sent as JSON must be base64 with "parameters": {"content_type": "base64"}; or send it in binary (binary_data_size)',
      );
    }
    data = Buffer.from(data.toString('latin1'), 'base64');
  }
  if (data.length === 0) throw new HttpError(400, 'IMAGE is empty');
  return { data };
}

function historyOf(json: string | undefined): ChatTurn[] {
  if (json === undefined || json.trim() === '') return [];
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new HttpError(
      400,
      `HISTORY is not JSON (${(e as Error).message}); send [{"user": ..., "assistant": ...}, ...]`,
    );
  }
  const problems = validateChatTurns(raw, 'HISTORY');
  if (problems.length)
    throw new HttpError(400, `${problems.slice(0, 3).join('; ')}; send [{"user": ..., "assistant": ...}, ...]`);
  return (raw as ChatTurn[]).map((t) => ({ user: t.user, assistant: t.assistant }));
}

/** The result as the protocol returns it: no PNGs (masks are COCO RLE), no server paths. */
export function publicResult(result: SegmentResult): SegmentResult {
  return {
    ...result,
    model: { variant: result.model.variant, bundle: MODEL_NAME },
    image: { ...result.image, source: undefined },
  };
}

export function outputValues(result: SegmentResult): Record<string, string> {
  return { TEXT: result.answer, RESULT: JSON.stringify(publicResult(result)) };
}

/**
 * The generate extension's body: input names as keys (`text_input` stands for PROMPT), each a value or a one-element
 * array; IMAGE is base64 there (JSON carries no raw bytes). `id` and `parameters` are the protocol's own.
 */
export function requestFromGenerate(body: unknown): {
  request: ModelRequest;
  id?: string;
  parameters: Record<string, unknown>;
} {
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw new HttpError(400, 'the request must be a JSON object of input names and values');
  const { id, parameters, ...inputs } = body as Record<string, unknown>;
  const tensors: Tensor[] = Object.entries(inputs).map(([key, raw]) => {
    const name = key === 'text_input' ? 'PROMPT' : key;
    const spec = INPUTS.find((i) => i.name === name);
    if (!spec)
      throw new HttpError(
        400,
        `unknown input ${key}; this model takes ${INPUTS.map((i) => i.name).join(', ')} (text_input for PROMPT)`,
      );
    const value = Array.isArray(raw) && raw.length === 1 ? raw[0] : raw;
    if (spec.datatype === 'BYTES') {
      if (typeof value !== 'string') throw new HttpError(400, `${key} must be a string`);
      return {
        ...spec,
        values: [Buffer.from(value, 'utf8')],
        binary: false,
        parameters: (name === 'IMAGE' ? { content_type: 'base64' } : {}) as Parameters,
      };
    }
    if (typeof value !== 'number') throw new HttpError(400, `${key} must be a number`);
    return { ...spec, values: [value], binary: false, parameters: {} };
  });
  const params =
    parameters && typeof parameters === 'object' && !Array.isArray(parameters)
      ? (parameters as Record<string, unknown>)
      : {};
  return { request: requestFromTensors(tensors), id: id === undefined ? undefined : String(id), parameters: params };
}
