// Open Inference Protocol (KServe v2) over HTTP/REST: the wire shapes, and the decoding and encoding of tensors, in
// JSON and in the binary tensor data extension (JSON header, then raw tensors; its length in the
// Inference-Header-Content-Length header). Nothing here knows which model is served.

/** Request header that carries the JSON part's length when tensors follow it in binary. */
export const HEADER_LENGTH = 'inference-header-content-length';

export type Parameters = Record<string, string | number | boolean>;

export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

export interface RequestInput extends TensorMetadata {
  parameters?: Parameters;
  data?: unknown;
}

export interface RequestOutput {
  name: string;
  parameters?: Parameters;
}

export interface InferRequest {
  id?: string;
  parameters?: Parameters;
  inputs: RequestInput[];
  outputs?: RequestOutput[];
}

export interface ResponseOutput extends TensorMetadata {
  parameters?: Parameters;
  data?: unknown[];
}

export interface InferResponse {
  model_name: string;
  model_version?: string;
  id?: string;
  parameters?: Parameters;
  outputs: ResponseOutput[];
}

export interface ServerMetadata {
  name: string;
  version: string;
  extensions: string[];
}

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

/** A refusal with its HTTP status; the body is the protocol's `{"error": message}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** An input tensor, decoded: BYTES elements as buffers, numbers as numbers (bigint types as safe numbers). */
export interface Tensor extends TensorMetadata {
  values: Buffer[] | number[];
  /** It came in the binary extension (else as JSON data). */
  binary: boolean;
  parameters: Parameters;
}

const NUMERIC: Record<string, { size: number; read: (b: Buffer, o: number) => number | bigint }> = {
  BOOL: { size: 1, read: (b, o) => b.readUInt8(o) },
  UINT8: { size: 1, read: (b, o) => b.readUInt8(o) },
  UINT16: { size: 2, read: (b, o) => b.readUInt16LE(o) },
  UINT32: { size: 4, read: (b, o) => b.readUInt32LE(o) },
  UINT64: { size: 8, read: (b, o) => b.readBigUInt64LE(o) },
  INT8: { size: 1, read: (b, o) => b.readInt8(o) },
  INT16: { size: 2, read: (b, o) => b.readInt16LE(o) },
  INT32: { size: 4, read: (b, o) => b.readInt32LE(o) },
  INT64: { size: 8, read: (b, o) => b.readBigInt64LE(o) },
  FP32: { size: 4, read: (b, o) => b.readFloatLE(o) },
  FP64: { size: 8, read: (b, o) => b.readDoubleLE(o) },
};

const elementCount = (shape: number[]) => shape.reduce((n, d) => n * d, 1);

/** The request body: JSON, or (with the header length) a JSON header followed by the binary tensors it announces. */
export function decodeInferRequest(
  body: Buffer,
  headerLength: string | undefined,
): { request: InferRequest; tensors: Tensor[] } {
  let jsonEnd = body.length;
  if (headerLength !== undefined) {
    jsonEnd = Number(headerLength);
    if (!Number.isInteger(jsonEnd) || jsonEnd < 0 || jsonEnd > body.length) {
      throw new HttpError(
        400,
        `Inference-Header-Content-Length is ${headerLength} but the body has ${body.length} bytes`,
      );
    }
  }
  let request: InferRequest;
  try {
    request = JSON.parse(body.subarray(0, jsonEnd).toString('utf8'));
  } catch (e) {
    throw new HttpError(400, `the request is not valid JSON (${(e as Error).message})`);
  }
  if (!request || typeof request !== 'object' || !Array.isArray(request.inputs)) {
    throw new HttpError(400, 'the request must be a JSON object with an "inputs" array');
  }
  if (
    request.outputs !== undefined &&
    (!Array.isArray(request.outputs) || request.outputs.some((o) => typeof o?.name !== 'string'))
  ) {
    throw new HttpError(400, '"outputs" must be an array of {"name": ...} objects');
  }
  let offset = jsonEnd;
  const tensors = request.inputs.map((input): Tensor => {
    checkMetadata(input, 'input');
    const parameters = input.parameters ?? {};
    const size = parameters.binary_data_size;
    if (size === undefined) return { ...meta(input), values: jsonValues(input), binary: false, parameters };
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || offset + size > body.length) {
      throw new HttpError(400, `input ${input.name}: binary_data_size ${size} runs past the end of the body`);
    }
    const bytes = body.subarray(offset, offset + size);
    offset += size;
    return { ...meta(input), values: binaryValues(input, bytes), binary: true, parameters };
  });
  if (offset !== body.length)
    throw new HttpError(400, `${body.length - offset} bytes follow the last binary input; check binary_data_size`);
  return { request, tensors };
}

const meta = (t: TensorMetadata): TensorMetadata => ({ name: t.name, datatype: t.datatype, shape: t.shape });

function checkMetadata(t: RequestInput, what: string): void {
  if (
    !t ||
    typeof t.name !== 'string' ||
    typeof t.datatype !== 'string' ||
    !Array.isArray(t.shape) ||
    !t.shape.every((d) => Number.isInteger(d) && d >= 0)
  ) {
    throw new HttpError(400, `each ${what} needs "name", "datatype" and "shape" (whole numbers)`);
  }
}

function jsonValues(input: RequestInput): Buffer[] | number[] {
  if (input.data === undefined) throw new HttpError(400, `input ${input.name} has neither "data" nor binary_data_size`);
  const flat = Array.isArray(input.data) ? (input.data as unknown[]).flat(Number.POSITIVE_INFINITY) : [input.data];
  if (flat.length !== elementCount(input.shape)) {
    throw new HttpError(
      400,
      `input ${input.name} has ${flat.length} element(s) but shape [${input.shape}] needs ${elementCount(input.shape)}`,
    );
  }
  if (input.datatype === 'BYTES') {
    if (!flat.every((v) => typeof v === 'string'))
      throw new HttpError(400, `input ${input.name} is BYTES: its data must be strings`);
    return (flat as string[]).map((s) => Buffer.from(s, 'utf8'));
  }
  if (!NUMERIC[input.datatype]) throw new HttpError(400, `input ${input.name}: unknown datatype ${input.datatype}`);
  if (!flat.every((v) => typeof v === 'number' || typeof v === 'boolean'))
    throw new HttpError(400, `input ${input.name} is ${input.datatype}: its data must be numbers`);
  return flat.map(Number);
}

function binaryValues(input: RequestInput, bytes: Buffer): Buffer[] | number[] {
  const n = elementCount(input.shape);
  if (input.datatype === 'BYTES') {
    const out: Buffer[] = [];
    let o = 0;
    while (o < bytes.length) {
      if (o + 4 > bytes.length)
        throw new HttpError(400, `input ${input.name}: a BYTES element's 4-byte length is cut off`);
      const len = bytes.readUInt32LE(o);
      if (o + 4 + len > bytes.length)
        throw new HttpError(400, `input ${input.name}: a BYTES element runs past binary_data_size`);
      out.push(bytes.subarray(o + 4, o + 4 + len));
      o += 4 + len;
    }
    if (out.length !== n)
      throw new HttpError(
        400,
        `input ${input.name} has ${out.length} element(s) but shape [${input.shape}] needs ${n}`,
      );
    return out;
  }
  const t = NUMERIC[input.datatype];
  if (!t) throw new HttpError(400, `input ${input.name}: unknown datatype ${input.datatype}`);
  if (bytes.length !== n * t.size)
    throw new HttpError(400, `input ${input.name}: ${bytes.length} bytes for ${n} ${input.datatype} element(s)`);
  return Array.from({ length: n }, (_, i) => Number(t.read(bytes, i * t.size)));
}

/** An output of BYTES elements (strings are sent as UTF-8). */
export interface BytesOutput {
  name: string;
  values: Array<string | Buffer>;
}

/** The response body and its headers: JSON, or JSON + binary when any output was asked for in binary. */
export function encodeInferResponse(
  head: Omit<InferResponse, 'outputs'>,
  outputs: BytesOutput[],
  binaryNames: Set<string>,
): { body: Buffer; headers: Record<string, string> } {
  const tails: Buffer[] = [];
  const wire: ResponseOutput[] = outputs.map((o) => {
    const shape = [o.values.length];
    if (!binaryNames.has(o.name)) {
      return {
        name: o.name,
        datatype: 'BYTES',
        shape,
        data: o.values.map((v) => (typeof v === 'string' ? v : v.toString('utf8'))),
      };
    }
    const bytes = serializeBytes(o.values);
    tails.push(bytes);
    return { name: o.name, datatype: 'BYTES', shape, parameters: { binary_data_size: bytes.length } };
  });
  const json = Buffer.from(JSON.stringify({ ...head, outputs: wire }));
  if (tails.length === 0) return { body: json, headers: { 'content-type': 'application/json' } };
  return {
    body: Buffer.concat([json, ...tails]),
    headers: { 'content-type': 'application/octet-stream', [HEADER_LENGTH]: String(json.length) },
  };
}

/** BYTES in the binary extension: each element as a 4-byte little-endian length, then its bytes. */
export function serializeBytes(values: Array<string | Buffer>): Buffer {
  const parts = values.flatMap((v) => {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    return [len, b];
  });
  return Buffer.concat(parts);
}

/** Which outputs go back in binary: those asked for with binary_data, or all with the request's binary_data_output. */
export function binaryOutputNames(request: InferRequest, names: string[]): Set<string> {
  if (request.parameters?.binary_data_output === true) return new Set(names);
  return new Set((request.outputs ?? []).filter((o) => o.parameters?.binary_data === true).map((o) => o.name));
}
