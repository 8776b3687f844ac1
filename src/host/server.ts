// The inference host as a JSON-RPC server on stdio (LSP framing, via vscode-languageserver so that the extension's
// vscode-languageclient drives it with restart, tracing and cancellation for free). Logs go to stderr only: stdout
// carries framed messages and nothing else.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import {
  AbstractMessageReader,
  AbstractMessageWriter,
  type CancellationToken,
  createConnection,
  type DataCallback,
  Disposable,
  type Message,
  type MessageReader,
  type MessageWriter,
  ResponseError,
} from 'vscode-languageserver/node';
import { RESULT_FORMAT } from '../protocol/result';
import {
  DEVICES,
  type Device,
  type DeviceChoice,
  errorResponse,
  type HostCapabilities,
  type LoadModelParams,
  type LoadModelResult,
  Methods,
  type ModelInfo,
  Notifications,
  PROTOCOL_VERSION,
  type RefineParams,
  type RefineResult,
  RpcErrorCode,
  type SegmentParams,
  type StatusResult,
} from '../protocol/rpc';
import { validateLoadModelParams, validateRefineParams, validateSegmentParams } from '../protocol/validate';
import { HostError, isHostError, oneLine } from './errors';
import { DEFAULT_MAX_PIXELS } from './image/decode';
import { LisaPipeline, newCounters } from './pipeline';
import { fallbackLine } from './sessions';
import type { ToMain, ToWorker } from './stdio-worker';

/** Largest JSON-RPC message read from stdin: room for an inline image of a few hundred MB as base64. */
export const MAX_FRAME_BYTES = 256 << 20;
/** A message begun on stdin and not continued for this long means the client is broken. */
const FRAME_STALL_MS = 10_000;
/** Exit status after a framing error on stdin: the stream is lost, the client restarts the host. */
export const EXIT_FRAMING = 3;

const VERSION: string = require('../../../package.json').version;

export function log(message: string): void {
  process.stderr.write(`[reason-segment host ${new Date().toISOString()}] ${message}\n`);
}

/** Maps anything a handler throws to a JSON-RPC error with a code from the protocol table and a one-line message. */
export function toResponseError(e: unknown): ResponseError<unknown> {
  if (isHostError(e)) {
    const { code, data } = errorResponse(RpcErrorCode[e.kind], e.message);
    return new ResponseError(code, e.message, data);
  }
  log(`internal error: ${(e as Error)?.stack ?? e}`);
  const { code, message, data } = errorResponse(RpcErrorCode.Internal, oneLine((e as Error)?.message ?? String(e)));
  return new ResponseError(code, message, data);
}

function modelInfo(p: LisaPipeline, requestedDevice?: DeviceChoice): ModelInfo {
  const m = p.bundle.manifest;
  return {
    bundle: p.bundle.dir,
    variant: m.variant,
    provider: p.provider as Device,
    requestedDevice,
    fallback: p.sessions.provider.fallback,
    layers: m.llm.num_layers,
    hiddenSize: m.llm.hidden_size,
    vocabSize: m.llm.vocab_size,
    contextLength: m.llm.max_positions,
    imageTokens: m.tokens.num_image_tokens,
    bundleFormat: m.format,
  };
}

/** The stdio thread (./stdio-worker.ts) as vscode-jsonrpc's reader and writer, and the way out once output is flushed. */
class StdioThread {
  readonly reader: MessageReader;
  readonly writer: MessageWriter;
  private readonly worker: Worker;

  constructor() {
    this.worker = new Worker(path.join(__dirname, 'stdio-worker.js'));
    const worker = this.worker;
    let deliver: DataCallback | undefined;
    const early: Message[] = [];
    this.reader = new (class extends AbstractMessageReader {
      listen(callback: DataCallback): Disposable {
        deliver = callback;
        for (const m of early.splice(0)) callback(m);
        return Disposable.create(() => {
          deliver = undefined;
        });
      }
    })();
    this.writer = new (class extends AbstractMessageWriter {
      async write(message: Message): Promise<void> {
        worker.postMessage({ type: 'write', message } satisfies ToWorker);
      }
      end(): void {}
    })();
    worker.on('message', (m: ToMain) => {
      if (m.type === 'message') {
        if (deliver) deliver(m.message);
        else early.push(m.message);
      } else if (m.type === 'log') {
        log(m.line);
      } else if (m.type === 'fatal') {
        log(`framing error on stdin, exiting: ${m.why}`);
        this.exitAfterFlush(EXIT_FRAMING);
      } else if (m.type === 'end') {
        log('stdin closed, exiting');
        this.exitAfterFlush(0);
      }
    });
    worker.on('error', (e) => {
      log(`stdio thread failed, exiting: ${e.message}`);
      process.exit(1);
    });
    worker.postMessage({ type: 'options', maxFrameBytes: MAX_FRAME_BYTES, stallMs: FRAME_STALL_MS } satisfies ToWorker);
  }

  /** Exits once every message written so far is out. */
  exitAfterFlush(code: number): void {
    this.worker.on('message', (m: ToMain) => {
      if (m.type === 'flushed') process.exit(code);
    });
    this.worker.postMessage({ type: 'flush' } satisfies ToWorker);
  }
}

export function startServer(opts: { maxPixels?: number; cacheBytes?: number } = {}): void {
  const stdio = new StdioThread();
  const { reader, writer } = stdio;
  const connection = createConnection(reader, writer);
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  let pipeline: LisaPipeline | undefined;
  /** What the load of `pipeline` asked for ('auto' included). */
  let requestedDevice: DeviceChoice | undefined;
  let loading: Promise<unknown> = Promise.resolve();
  let requests = 0;
  const counters = newCounters();
  let active = 0; // segment requests running or queued
  const started = Date.now();

  const guarded =
    <P, R>(handler: (params: P, token: CancellationToken) => Promise<R>) =>
    async (params: P, token: CancellationToken): Promise<R | ResponseError<unknown>> => {
      try {
        return await handler(params, token);
      } catch (e) {
        return toResponseError(e);
      }
    };

  const invalid = (problems: string[]) => {
    if (problems.length) throw new HostError('ParamsInvalid', problems.slice(0, 3).join('; '));
  };

  connection.onInitialize(() => {
    const capabilities: HostCapabilities = {
      protocol: PROTOCOL_VERSION,
      resultFormat: RESULT_FORMAT,
      version: VERSION,
      providers: DEVICES.filter(
        (d) => d === 'cpu' || ort.listSupportedBackends().some((b) => b.name === d && b.bundled),
      ),
      maxImagePixels: maxPixels,
    };
    return {
      capabilities: { experimental: { reasonSegment: capabilities } },
      serverInfo: { name: 'reason-segment-host', version: VERSION },
    };
  });

  connection.onRequest(
    Methods.loadModel,
    guarded(async (params: LoadModelParams): Promise<LoadModelResult> => {
      invalid(validateLoadModelParams(params));
      const load = loading.then(async () => {
        const old = pipeline;
        pipeline = undefined;
        await old?.dispose();
        const verifyStart = performance.now();
        let hashed = false;
        const p = await LisaPipeline.load(params.bundle, {
          device: params.device,
          allowFallback: params.allowFallback,
          maxPixels,
          cacheBytes: opts.cacheBytes,
          counters,
          onProgress: (message, loaded, total) => {
            if (message.startsWith('verified')) hashed = hashed || performance.now() - verifyStart > 50;
            connection.sendNotification(Notifications.progress, {
              requestId: params.requestId,
              stage: message.startsWith('loading') ? 'load' : 'verify',
              loaded,
              total,
              message,
            });
          },
        });
        pipeline = p;
        const fallback = p.sessions.provider.fallback;
        log(
          `loaded ${p.bundle.manifest.variant} from ${p.bundle.dir} on ${p.provider} (device ${params.device}${fallback ? `: ${fallbackLine(fallback)}` : ''}) in ${p.loadMs.toFixed(0)} ms`,
        );
        requestedDevice = params.device;
        return {
          ...modelInfo(p, requestedDevice),
          requestedDevice: params.device,
          fellBack: fallback !== undefined,
          fallbackReason: fallback && fallbackLine(fallback),
          checksums: hashed ? 'verified' : 'cached',
          loadMs: p.loadMs,
        } satisfies LoadModelResult;
      });
      loading = load.catch(() => undefined);
      return load;
    }),
  );

  connection.onRequest(
    Methods.unloadModel,
    guarded(async () => {
      const old = pipeline;
      pipeline = undefined;
      await old?.dispose();
      return { unloaded: Boolean(old) };
    }),
  );

  connection.onRequest(
    Methods.segment,
    guarded(async (params: SegmentParams, token: CancellationToken) => {
      invalid(validateSegmentParams(params, { maxPromptChars: 100_000 }));
      await loading;
      const p = pipeline;
      if (!p) throw new HostError('ModelNotLoaded', 'No model is loaded; load one with reasonSegment/loadModel first.');
      const image =
        'path' in params.image
          ? { path: params.image.path }
          : 'data' in params.image
            ? { data: Buffer.from(params.image.data, 'base64') }
            : { sha256: params.image.sha256 };
      active++;
      const abort = new AbortController();
      const onCancel = token.onCancellationRequested(() => abort.abort());
      try {
        const result = await p.segment({
          image,
          prompt: params.prompt,
          history: params.history,
          maxNewTokens: params.maxNewTokens,
          includePng: params.includePng ?? false,
          includeOverlay: params.includeOverlay ?? false,
          includeImage: params.includeImage ?? false,
          assistantPrefix: params.assistantPrefix,
          signal: abort.signal,
          onText: (text, tokenIndex) => {
            if (params.requestId)
              connection.sendNotification(Notifications.textDelta, { requestId: params.requestId, text, tokenIndex });
          },
        });
        requests++;
        return result;
      } finally {
        onCancel.dispose();
        active--;
      }
    }),
  );

  // Not queued behind segment requests: it reads the caches and runs its own small session, so a click is answered
  // while a long answer is still decoding.
  connection.onRequest(
    Methods.refine,
    guarded(async (params: RefineParams): Promise<RefineResult> => {
      invalid(validateRefineParams(params));
      await loading;
      const p = pipeline;
      if (!p) throw new HostError('ModelNotLoaded', 'No model is loaded; load one with reasonSegment/loadModel first.');
      return p.refiner.refine(params);
    }),
  );

  connection.onRequest(
    Methods.status,
    guarded(
      async (): Promise<StatusResult> => ({
        state: active > 0 ? 'busy' : pipeline ? 'ready' : 'idle',
        model: pipeline ? modelInfo(pipeline, requestedDevice) : undefined,
        provider: pipeline?.provider as Device | undefined,
        counters: { ...counters, cacheBytes: pipeline?.cache.sizeBytes ?? 0, requests },
        pid: process.pid,
        uptimeMs: Date.now() - started,
      }),
    ),
  );

  const shutdown = async () => {
    await pipeline?.dispose().catch(() => undefined);
    pipeline = undefined;
  };
  connection.onRequest(
    Methods.shutdown,
    guarded(async () => {
      await shutdown();
      setImmediate(() => stdio.exitAfterFlush(0)); // after this response is handed to the stdio thread
      return {};
    }),
  );
  connection.onShutdown(shutdown);
  connection.onExit(() => process.exit(0));
  connection.listen();
  log(`listening on stdio (pid ${process.pid}, version ${VERSION})`);
}

/** Settings the extension and the magic pass by environment (a number of megabytes; anything else is ignored). */
function cacheBytesFromEnv(): number | undefined {
  const mb = Number(process.env.REASON_SEGMENT_CACHE_MB);
  return Number.isFinite(mb) && mb > 0 ? mb * 1024 * 1024 : undefined;
}

if (require.main === module) startServer({ cacheBytes: cacheBytesFromEnv() });
