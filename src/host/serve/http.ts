// `reason-segment serve`: one loaded pipeline behind the Open Inference Protocol's HTTP/REST endpoints (health,
// metadata, infer), the provisional generate extension (generate, generate_stream as Server-Sent Events) and our own
// refine extension (a mask of a result again, with clicked points and a box), on node:http. Routing, auth, body
// limits, timeouts and cancel-on-disconnect live here; tensors in oip.ts, the model's signature in model.ts, fairness
// in queue.ts.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RefineParams } from '../../protocol/rpc';
import { validateRefineParams } from '../../protocol/validate';
import { HostError, isHostError, oneLine } from '../errors';
import type { LisaPipeline } from '../pipeline';
import { isLoopback, readTokens, tokenIndex } from './auth';
import {
  MODEL_NAME,
  MODEL_VERSION,
  type ModelRequest,
  modelMetadata,
  OUTPUT_NAMES,
  outputValues,
  publicResult,
  requestFromGenerate,
  requestFromTensors,
} from './model';
import {
  binaryOutputNames,
  decodeInferRequest,
  encodeInferResponse,
  HEADER_LENGTH,
  HttpError,
  type InferRequest,
  type ServerMetadata,
} from './oip';
import { FairQueue } from './queue';

const VERSION: string = require('../../../../package.json').version;

export interface ServeOptions {
  host: string;
  port: number;
  /** Bearer tokens; empty means no auth (loopback only). */
  tokens: string[];
  maxBodyBytes: number;
  /** Longest a request may take, queueing included; a client may ask for less (Triton's `timeout`, microseconds). */
  timeoutMs: number;
  /** Most requests waiting (beyond the one running); more are refused with 503. */
  maxQueue: number;
}

export const DEFAULTS = { host: '127.0.0.1', port: 8000, maxBodyMb: 32, timeoutS: 300, maxQueue: 64 };

/** The serve command's options, checked before the model loads: a refusal costs nothing. */
export async function serveOptions(o: {
  host?: string;
  port?: string;
  tokenFile?: string;
  maxRequestMb?: string;
  requestTimeout?: string;
  maxQueue?: string;
}): Promise<ServeOptions> {
  const host = o.host ?? DEFAULTS.host;
  const number = (v: string | undefined, dflt: number, flag: string, min: number) => {
    const n = v === undefined ? dflt : Number(v);
    if (!Number.isFinite(n) || n < min)
      throw new HostError('ParamsInvalid', `${flag} takes a number of at least ${min}, not ${v}`);
    return n;
  };
  const port = number(o.port, DEFAULTS.port, '--port', 0);
  if (!Number.isInteger(port) || port > 65535)
    throw new HostError('ParamsInvalid', `--port takes a port number (0-65535), not ${o.port}`);
  let tokens: string[] = [];
  if (o.tokenFile !== undefined) {
    try {
      tokens = await readTokens(o.tokenFile);
    } catch (e) {
      throw new HostError('ParamsInvalid', (e as Error).message);
    }
  }
  if (tokens.length === 0 && !isLoopback(host)) {
    throw new HostError(
      'ParamsInvalid',
      `--host ${host} would let other machines use the model without a password; give --token-file FILE (one bearer token a line) or bind 127.0.0.1`,
    );
  }
  return {
    host,
    port,
    tokens,
    maxBodyBytes: Math.round(number(o.maxRequestMb, DEFAULTS.maxBodyMb, '--max-request-mb', 0.001) * 1024 * 1024),
    timeoutMs: number(o.requestTimeout, DEFAULTS.timeoutS, '--request-timeout', 0.001) * 1000,
    maxQueue: number(o.maxQueue, DEFAULTS.maxQueue, '--max-queue', 1),
  };
}

export function log(message: string): void {
  process.stderr.write(`[reason-segment serve ${new Date().toISOString()}] ${message}\n`);
}

type Action = 'metadata' | 'ready' | 'infer' | 'generate' | 'generate_stream' | 'refine';
const ROUTE = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(?:\/(ready|infer|generate|generate_stream|refine))?$/;

class InferenceServer {
  readonly http: http.Server;
  private readonly queue: FairQueue;
  private nextId = 1;

  constructor(
    private readonly pipeline: LisaPipeline,
    private readonly opts: ServeOptions,
  ) {
    this.queue = new FairQueue(opts.maxQueue);
    this.http = http.createServer((req, res) => {
      this.route(req, res).catch((e) => this.afterBody(req, e, () => this.fail(res, e)));
    });
    this.http.requestTimeout = 0; // per-request timeouts are ours (inference time), not node's (which counts the upload)
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.opts.port, this.opts.host, () => resolve(this.http.address() as AddressInfo));
    });
  }

  /** Stops taking requests and ends the open ones (their clients see the connection close; running work is cancelled). */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.http.closeAllConnections();
    return closed;
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://host').pathname.replace(/\/+$/, '');
    if (path === '/v2/health/live' || path === '/v2/health/ready') {
      // Open to probes (Kubernetes liveness/readiness) without a token; the model is loaded before the port opens.
      method(req, 'GET');
      return json(res, 200, path.endsWith('live') ? { live: true } : { ready: true });
    }
    const client = this.authorise(req);
    if (path === '/v2') {
      method(req, 'GET');
      const meta: ServerMetadata = {
        name: MODEL_NAME,
        version: VERSION,
        extensions: ['binary_tensor_data', 'generate', 'refine'],
      };
      return json(res, 200, meta);
    }
    const m = ROUTE.exec(path);
    if (!m) throw new HttpError(404, `no such endpoint ${path}; see GET /v2/models/${MODEL_NAME}`);
    if (m[1] !== MODEL_NAME) throw new HttpError(404, `unknown model ${m[1]}; this server serves ${MODEL_NAME}`);
    if (m[2] !== undefined && m[2] !== MODEL_VERSION)
      throw new HttpError(404, `unknown version ${m[2]} of ${MODEL_NAME}; it has version ${MODEL_VERSION}`);
    const action = (m[3] ?? 'metadata') as Action;
    switch (action) {
      case 'metadata':
        method(req, 'GET');
        return json(res, 200, modelMetadata(this.pipeline.bundle.manifest.format));
      case 'ready':
        method(req, 'GET');
        return json(res, 200, { name: MODEL_NAME, ready: true });
      case 'infer':
        method(req, 'POST');
        return this.infer(req, res, client);
      case 'generate':
      case 'generate_stream':
        method(req, 'POST');
        return this.generate(req, res, client, action === 'generate_stream');
      case 'refine':
        method(req, 'POST');
        return this.refine(req, res);
    }
  }

  /**
   * Our refine extension, the host's reasonSegment/refine over HTTP: SAM's mask decoder again for one mask of a result
   * this server gave (its `resultId`), on the image embedding it still holds, with clicked points and a box. The body
   * is the refine params as JSON, the answer the refine result. As in the host, not queued behind segment requests: a
   * click (a small decoder run) is answered while long answers decode, instead of after the whole queue.
   */
  private async refine(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const params = await this.readJson(req);
    const problems = validateRefineParams(params);
    if (problems.length)
      throw new HttpError(
        400,
        `${problems.slice(0, 3).join('; ')}; send {"resultId", "maskIndex", "prompt": {"points", "labels", "box"}}`,
      );
    try {
      return json(res, 200, await this.pipeline.refiner.refine(params as RefineParams));
    } catch (e) {
      // A result the server no longer remembers is gone like an evicted image: 404, run the request again.
      if (isHostError(e, 'ImageUnreadable')) throw new HttpError(404, e.message);
      throw e;
    }
  }

  private async readJson(req: http.IncomingMessage): Promise<unknown> {
    const body = await readBody(req, this.opts.maxBodyBytes);
    try {
      return JSON.parse(body.toString('utf8'));
    } catch (e) {
      throw new HttpError(400, `the request is not valid JSON (${(e as Error).message})`);
    }
  }

  /** The fairness lane of a request: its token when there are tokens, else its connection. */
  private authorise(req: http.IncomingMessage): string {
    if (this.opts.tokens.length === 0) return `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    const i = tokenIndex(req.headers.authorization, this.opts.tokens);
    if (i < 0)
      throw new HttpError(
        401,
        req.headers.authorization
          ? 'the bearer token is not valid'
          : 'this server needs "Authorization: Bearer <token>"',
      );
    return `token ${i}`;
  }

  private async infer(req: http.IncomingMessage, res: http.ServerResponse, client: string): Promise<void> {
    const body = await readBody(req, this.opts.maxBodyBytes);
    const header = req.headers[HEADER_LENGTH];
    const { request, tensors } = decodeInferRequest(body, Array.isArray(header) ? header[0] : header);
    for (const o of request.outputs ?? []) {
      if (!OUTPUT_NAMES.includes(o.name))
        throw new HttpError(400, `unknown output ${o.name}; this model has ${OUTPUT_NAMES.join(', ')}`);
    }
    const modelReq = requestFromTensors(tensors);
    const result = await this.run(req, res, client, modelReq, request.parameters ?? {}, undefined);
    const values = outputValues(result);
    const names = request.outputs?.length ? request.outputs.map((o) => o.name) : OUTPUT_NAMES;
    const { body: out, headers } = encodeInferResponse(
      {
        model_name: MODEL_NAME,
        model_version: MODEL_VERSION,
        ...(request.id !== undefined ? { id: String(request.id) } : {}),
      },
      names.map((name) => ({ name, values: [values[name]] })),
      binaryOutputNames(request as InferRequest, names),
    );
    res.writeHead(200, { ...headers, 'content-length': out.length });
    res.end(out);
  }

  private async generate(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    client: string,
    stream: boolean,
  ): Promise<void> {
    const { request: modelReq, id, parameters } = requestFromGenerate(await this.readJson(req));
    const head = { model_name: MODEL_NAME, model_version: MODEL_VERSION, ...(id !== undefined ? { id } : {}) };
    if (!stream) {
      const result = await this.run(req, res, client, modelReq, parameters, undefined);
      return json(res, 200, { ...head, text_output: result.answer, TEXT: result.answer, RESULT: publicResult(result) });
    }
    // Headers go out with the first event, so a request refused before inference gets a plain JSON error and status.
    const event = (data: unknown) => {
      if (!res.headersSent)
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
      res.write(`data: ${JSON.stringify(data)}\n\n`);
    };
    try {
      const result = await this.run(req, res, client, modelReq, parameters, (delta) =>
        event({ ...head, text_output: delta }),
      );
      event({ ...head, text_output: '', TEXT: result.answer, RESULT: publicResult(result) });
      res.end();
    } catch (e) {
      if (!res.headersSent) throw e;
      if (!res.destroyed) {
        event({ error: this.describe(e).message });
        res.end();
      }
    }
  }

  /**
   * One request through the fair queue and the pipeline, with its timeout and cancel-on-disconnect. Request
   * parameters: `timeout` (microseconds, as Triton's), and `include_overlay`, `include_png`, `include_image` (booleans:
   * the result then carries the overlay PNG, each mask as PNG, the image itself, as a notebook shows them).
   */
  private async run(
    _req: http.IncomingMessage,
    res: http.ServerResponse,
    client: string,
    request: ModelRequest,
    parameters: Record<string, unknown>,
    onText: ((delta: string) => void) | undefined,
  ) {
    const id = this.nextId++;
    const modelReq: ModelRequest = { ...request };
    for (const [key, field] of [
      ['include_overlay', 'includeOverlay'],
      ['include_png', 'includePng'],
      ['include_image', 'includeImage'],
    ] as const) {
      const v = parameters[key];
      if (v === undefined) continue;
      if (typeof v !== 'boolean') throw new HttpError(400, `parameters.${key} is true or false`);
      modelReq[field] = v;
    }
    if ('sha256' in modelReq.image && !this.pipeline.cache.get(modelReq.image.sha256)) {
      throw new HttpError(
        404,
        `the image ${modelReq.image.sha256} is not in the server's cache (it restarted or evicted it); send IMAGE again`,
      );
    }
    const requestedTimeoutUs = parameters.timeout;
    let timeoutMs = this.opts.timeoutMs;
    if (requestedTimeoutUs !== undefined) {
      if (typeof requestedTimeoutUs !== 'number' || !(requestedTimeoutUs > 0))
        throw new HttpError(400, 'parameters.timeout is in microseconds and must be positive');
      timeoutMs = Math.min(timeoutMs, requestedTimeoutUs / 1000);
    }
    const ac = new AbortController();
    let why: 'timeout' | 'disconnect' | undefined;
    let deltas = 0;
    const timer = setTimeout(() => {
      why ??= 'timeout';
      ac.abort();
    }, timeoutMs);
    const onClose = () => {
      if (res.writableFinished) return;
      why ??= 'disconnect';
      ac.abort();
    };
    res.on('close', onClose);
    try {
      return await this.queue.run(
        client,
        () =>
          this.pipeline.segment({
            ...modelReq,
            signal: ac.signal,
            onText:
              onText &&
              ((delta) => {
                deltas++;
                onText(delta);
              }),
          }),
        ac.signal,
      );
    } catch (e) {
      if (isHostError(e, 'Cancelled') && why === 'timeout') {
        log(`request ${id} timed out after ${timeoutMs / 1000} s`);
        throw new HttpError(
          504,
          `the request did not finish within ${timeoutMs / 1000} s (the server's --request-timeout or the request's timeout)`,
        );
      }
      if (isHostError(e, 'Cancelled') && why === 'disconnect') {
        log(`request ${id} cancelled: the client disconnected (after ${deltas} text deltas)`);
      }
      throw e;
    } finally {
      clearTimeout(timer);
      res.off('close', onClose);
    }
  }

  private describe(e: unknown): HttpError {
    if (e instanceof HttpError) return e;
    if (isHostError(e)) {
      const status =
        e.kind === 'Internal' || e.kind === 'ProviderUnavailable'
          ? 500
          : e.kind === 'ModelNotLoaded'
            ? 503
            : e.kind === 'Cancelled'
              ? 499
              : 400;
      return new HttpError(status, e.message);
    }
    log(`internal error: ${(e as Error)?.stack ?? e}`);
    return new HttpError(500, `internal error: ${oneLine((e as Error)?.message ?? String(e))}`);
  }

  /**
   * Reads and drops what is left of a refused request's body (up to the body limit) before answering: most HTTP
   * clients send the whole body before they read the answer, and an answer sent while they are still sending reaches
   * them as a broken pipe instead of its status (a 401 for a wrong token, say). A body over the limit is not read.
   */
  private afterBody(req: http.IncomingMessage, e: unknown, answer: () => void): void {
    if (req.complete || req.destroyed || (e instanceof HttpError && e.status === 413)) {
      answer();
      return;
    }
    let size = 0;
    let answered = false;
    const once = () => {
      if (!answered) {
        answered = true;
        answer();
      }
    };
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > this.opts.maxBodyBytes) once();
    });
    req.once('end', once);
    req.once('close', once);
    req.once('error', once);
    req.resume();
  }

  private fail(res: http.ServerResponse, e: unknown): void {
    const err = this.describe(e);
    if (res.destroyed) return;
    if (res.headersSent) {
      res.end();
      return;
    }
    const headers: Record<string, string> = {};
    if (err.status === 401) headers['www-authenticate'] = 'Bearer';
    if (err.status === 413) headers.connection = 'close'; // the rest of the body is not read
    if (err.status === 503) headers['retry-after'] = '5';
    json(res, err.status, { error: err.message }, headers);
  }
}

function method(req: http.IncomingMessage, want: 'GET' | 'POST'): void {
  if (req.method !== want && !(want === 'GET' && req.method === 'HEAD'))
    throw new HttpError(405, `${req.url} takes ${want}, not ${req.method}`);
}

function json(res: http.ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}

function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  const tooLarge = () =>
    new HttpError(
      413,
      `the request is larger than ${Math.round((max / 1024 / 1024) * 1000) / 1000} MB (--max-request-mb)`,
    );
  if (Number(req.headers['content-length']) > max) return Promise.reject(tooLarge());
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding !== 'identity') {
    return Promise.reject(
      new HttpError(415, `Content-Encoding ${encoding} is not supported; send the body uncompressed`),
    );
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Binds and serves until SIGTERM or SIGINT; then closes (cancelling open requests) and releases the model. */
export async function serve(pipeline: LisaPipeline, opts: ServeOptions): Promise<number> {
  const server = new InferenceServer(pipeline, opts);
  let addr: AddressInfo;
  try {
    addr = await server.listen();
  } catch (e) {
    throw new HostError(
      'ParamsInvalid',
      `cannot listen on ${opts.host}:${opts.port} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); choose another --host or --port`,
    );
  }
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  log(
    `serving ${pipeline.bundle.manifest.variant} as ${MODEL_NAME} on http://${host}:${addr.port}/v2 (${opts.tokens.length ? `${opts.tokens.length} token(s)` : 'no auth, loopback only'})`,
  );
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log(`${signal}: closing`);
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await server.close();
  await pipeline.dispose();
  return 0;
}
