// The inference host's lifecycle, through vscode-languageclient: the host (out/src/host/server.js) is a child Node
// process speaking LSP-framed JSON-RPC on stdio. Nothing starts at activation: the first request starts the host and
// loads the model from the settings. A crash restarts it (a few times in a row at most) and tells the user; the
// model is loaded again on the next request. The host's stderr goes to the "Reason Segment Host" output channel.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  CloseAction,
  type CloseHandlerResult,
  ErrorAction,
  type ErrorHandlerResult,
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  State,
  TransportKind,
} from 'vscode-languageclient/node';
import type { SegmentResult } from '../protocol/result';
import {
  type LoadModelResult,
  Methods,
  Notifications,
  type ProgressParams,
  type RefineParams,
  type RefineResult,
  RpcErrorCode,
  type SegmentParams,
  type StatusResult,
  type TextDeltaParams,
} from '../protocol/rpc';
import { describeHostError, HostRequestError } from './hostError';
import { type RemoteImage, refineRemote, segmentRemote } from './remote';
import { isInside, readSettings, resolveModelPath, type Settings } from './settings';

/** SecretStorage key of the bearer token for `reasonSegment.server`. */
export const SERVER_TOKEN_SECRET = 'reasonSegment.serverToken';

export type HostState = 'stopped' | 'starting' | 'running' | 'crashed';

export interface HostEvent {
  kind: 'starting' | 'started' | 'stopped' | 'crashed' | 'restarting' | 'modelLoading' | 'modelLoaded' | 'modelFailed';
  message?: string;
  model?: LoadModelResult;
}

export { HostRequestError };

export function describeError(e: unknown): HostRequestError {
  return describeHostError(e, (m, ...a) => vscode.l10n.t(m, ...a));
}

const MAX_RESTARTS = 4;
const RESTART_WINDOW_MS = 3 * 60_000;

export class HostManager implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private starting: Promise<LanguageClient> | undefined;
  private loaded: { key: string; result: LoadModelResult } | undefined;
  private loadingModel: Promise<LoadModelResult> | undefined;
  private crashes: number[] = [];
  private stoppingOnPurpose = false;
  private readonly disposables: vscode.Disposable[] = [];
  private readonly stateEmitter = new vscode.EventEmitter<HostState>();
  private readonly eventEmitter = new vscode.EventEmitter<HostEvent>();
  private readonly deltaEmitter = new vscode.EventEmitter<TextDeltaParams>();
  private readonly progressEmitter = new vscode.EventEmitter<ProgressParams>();
  readonly onDidChangeState = this.stateEmitter.event;
  readonly onHostEvent = this.eventEmitter.event;
  readonly onTextDelta = this.deltaEmitter.event;
  readonly onProgress = this.progressEmitter.event;
  state: HostState = 'stopped';
  /** Host starts since activation (1 after the first start; more after restarts). */
  starts = 0;

  constructor(
    private readonly context: vscode.ExtensionContext,
    readonly hostLog: vscode.OutputChannel,
    private readonly log: vscode.OutputChannel,
  ) {}

  get serverModule(): string {
    return this.context.asAbsolutePath(path.join('out', 'src', 'host', 'server.js'));
  }

  get model(): LoadModelResult | undefined {
    return this.loaded?.result;
  }

  get running(): boolean {
    return this.state === 'running';
  }

  private setState(s: HostState): void {
    if (this.state === s) return;
    this.state = s;
    this.stateEmitter.fire(s);
  }

  settings(): Settings {
    const c = vscode.workspace.getConfiguration('reasonSegment');
    return readSettings((k) => c.get(k));
  }

  /** Starts the host if it is not running; resolves once `initialize` has been answered. */
  start(): Promise<LanguageClient> {
    if (this.client && this.client.state === State.Running) return Promise.resolve(this.client);
    if (this.starting) return this.starting;
    this.starting = this.doStart().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async doStart(): Promise<LanguageClient> {
    if (!this.client) {
      const s = this.settings();
      const module = this.serverModule;
      const env = { ...process.env, REASON_SEGMENT_CACHE_MB: String(s.cacheSizeMB), ELECTRON_RUN_AS_NODE: '1' };
      const serverOptions: ServerOptions = {
        run: { module, transport: TransportKind.stdio, options: { env } },
        debug: { module, transport: TransportKind.stdio, options: { env } },
      };
      const clientOptions: LanguageClientOptions = {
        documentSelector: [],
        outputChannel: this.hostLog,
        errorHandler: {
          error: (): ErrorHandlerResult => ({ action: ErrorAction.Continue, handled: true }),
          closed: (): CloseHandlerResult => this.onClosed(),
        },
        initializationFailedHandler: () => false,
      };
      this.client = new LanguageClient(
        'reasonSegment.host',
        vscode.l10n.t('Reason Segment Host'),
        serverOptions,
        clientOptions,
      );
      this.disposables.push(
        this.client.onDidChangeState((e) => {
          if (e.newState === State.Running) {
            this.stoppingOnPurpose = false;
            this.starts++;
            this.setState('running');
            this.eventEmitter.fire({ kind: 'started' });
          } else if (e.newState === State.Starting) {
            this.loaded = undefined;
            this.setState('starting');
            this.eventEmitter.fire({ kind: 'starting' });
          } else if (e.newState === State.Stopped) {
            this.loaded = undefined;
            if (this.state !== 'crashed') this.setState('stopped');
          }
        }),
        this.client.onNotification(Notifications.textDelta, (p: TextDeltaParams) => this.deltaEmitter.fire(p)),
        this.client.onNotification(Notifications.progress, (p: ProgressParams) => this.progressEmitter.fire(p)),
      );
    }
    const t0 = Date.now();
    this.setState('starting');
    await this.client.start();
    this.log.appendLine(`[host] started in ${Date.now() - t0} ms (${this.serverModule})`);
    return this.client;
  }

  private onClosed(): CloseHandlerResult {
    this.loaded = undefined;
    if (this.stoppingOnPurpose) return { action: CloseAction.DoNotRestart, handled: true };
    const now = Date.now();
    this.crashes = this.crashes.filter((t) => now - t < RESTART_WINDOW_MS);
    this.crashes.push(now);
    this.setState('crashed');
    const show = vscode.l10n.t('Show Host Log');
    if (this.crashes.length > MAX_RESTARTS) {
      const msg = vscode.l10n.t(
        'The Reason Segment inference host stopped {0} times in 3 minutes and will not be restarted. Run "Reason Segment: Restart Host" after checking the log.',
        this.crashes.length,
      );
      this.log.appendLine(`[host] ${msg}`);
      this.eventEmitter.fire({ kind: 'stopped', message: msg });
      void vscode.window.showErrorMessage(msg, show).then((a) => a === show && this.hostLog.show());
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    const msg = vscode.l10n.t(
      'The Reason Segment inference host stopped unexpectedly and was restarted. The model is loaded again on the next request; your conversations are kept.',
    );
    this.log.appendLine(`[host] crashed (${this.crashes.length} in 3 min); restarting`);
    this.eventEmitter.fire({ kind: 'crashed', message: msg });
    void vscode.window.showWarningMessage(msg, show).then((a) => a === show && this.hostLog.show());
    return { action: CloseAction.Restart, handled: true };
  }

  /** The model path from the settings, checked against workspace trust; throws a HostRequestError for the user. */
  modelPath(): string {
    const s = this.settings();
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const resolved = resolveModelPath(
      s.model,
      process.env.HOME ?? process.env.USERPROFILE ?? '',
      folder,
      path.join,
      path.isAbsolute,
    );
    if (!resolved)
      throw new HostRequestError(
        vscode.l10n.t('No model is selected. Run "Reason Segment: Select Model" or "Reason Segment: Add Model".'),
        false,
        RpcErrorCode.ModelNotLoaded,
      );
    const abs = path.resolve(resolved);
    if (!vscode.workspace.isTrusted) {
      for (const f of vscode.workspace.workspaceFolders ?? []) {
        if (isInside(abs, path.resolve(f.uri.fsPath), path.sep)) {
          throw new HostRequestError(
            vscode.l10n.t(
              'The model {0} lies inside this workspace, which is not trusted. Trust the workspace to load a model from it.',
              abs,
            ),
          );
        }
      }
    }
    return abs;
  }

  /** Loads the model from the settings unless it is loaded already (same path, device, fallback). */
  async ensureModel(token?: vscode.CancellationToken): Promise<LoadModelResult> {
    const bundle = this.modelPath();
    const s = this.settings();
    const key = JSON.stringify([bundle, s.device, s.allowFallback]);
    const client = await this.start();
    if (this.loaded?.key === key) return this.loaded.result;
    if (this.loadingModel) {
      try {
        await this.loadingModel;
      } catch {
        /* loaded below */
      }
      if (this.loaded?.key === key) return this.loaded.result;
    }
    this.eventEmitter.fire({ kind: 'modelLoading' });
    const run = vscode.window.withProgress(
      {
        location: vscode.ProgressLocation.Notification,
        title: vscode.l10n.t('Reason Segment: loading {0}', path.basename(bundle)),
        cancellable: true,
      },
      async (progress, cancel) => {
        const requestId = `load-${Date.now()}`;
        const sub = this.onProgress((p) => {
          if (p.requestId === requestId) progress.report({ message: p.message });
        });
        const both = new vscode.CancellationTokenSource();
        const subs = [
          cancel.onCancellationRequested(() => both.cancel()),
          token?.onCancellationRequested(() => both.cancel()),
        ];
        try {
          const t0 = Date.now();
          const r = (await client.sendRequest(
            Methods.loadModel,
            { bundle, device: s.device, allowFallback: s.allowFallback, requestId },
            both.token,
          )) as LoadModelResult;
          this.log.appendLine(
            `[host] loaded ${r.variant} on ${r.provider} (device ${r.requestedDevice}, ${r.checksums} checksums) in ${Date.now() - t0} ms${r.fallbackReason ? `: ${r.fallbackReason}` : ''}`,
          );
          // 'auto' says why in the status bar; a device chosen by name that cannot run deserves a message
          if (r.fellBack && r.requestedDevice !== 'auto') {
            void vscode.window.showWarningMessage(
              vscode.l10n.t(
                '{0} is not available ({1}); running on the CPU.',
                r.requestedDevice,
                r.fallbackReason ?? '',
              ),
            );
          }
          return r;
        } finally {
          sub.dispose();
          for (const x of subs) x?.dispose();
          both.dispose();
        }
      },
    );
    this.loadingModel = Promise.resolve(run);
    try {
      const result = await this.loadingModel;
      this.loaded = { key, result };
      this.eventEmitter.fire({ kind: 'modelLoaded', model: result });
      return result;
    } catch (e) {
      const err = describeError(e);
      this.eventEmitter.fire({ kind: 'modelFailed', message: err.message });
      throw err;
    } finally {
      this.loadingModel = undefined;
    }
  }

  /** Runs one segment request (starting the host and loading the model first when needed). */
  async segment(params: SegmentParams, token?: vscode.CancellationToken): Promise<SegmentResult> {
    if (this.settings().server) return this.segmentRemote(params, token);
    await this.ensureModel(token);
    const client = await this.start();
    const s = this.settings();
    try {
      const p: SegmentParams = {
        maxNewTokens: s.maxNewTokens,
        ...(s.assistantPrefix ? { assistantPrefix: s.assistantPrefix } : {}),
        ...params,
      };
      return (await (token
        ? client.sendRequest(Methods.segment, p, token)
        : client.sendRequest(Methods.segment, p))) as SegmentResult;
    } catch (e) {
      throw describeError(e);
    }
  }

  /** One segment request answered by the `reasonSegment.server` server instead of the local host. */
  private async segmentRemote(params: SegmentParams, token?: vscode.CancellationToken): Promise<SegmentResult> {
    const s = this.settings();
    const p: SegmentParams = {
      maxNewTokens: s.maxNewTokens,
      ...(s.assistantPrefix ? { assistantPrefix: s.assistantPrefix } : {}),
      ...params,
    };
    const abort = new AbortController();
    const sub = token?.onCancellationRequested(() => abort.abort());
    try {
      const image: RemoteImage =
        'sha256' in p.image
          ? { sha256: p.image.sha256 }
          : 'data' in p.image
            ? { data: Buffer.from(p.image.data, 'base64') }
            : { data: await fs.readFile(p.image.path) };
      const bearer = await this.context.secrets.get(SERVER_TOKEN_SECRET);
      return await segmentRemote(
        s.server,
        bearer,
        p,
        image,
        (text) => this.deltaEmitter.fire({ requestId: p.requestId ?? '', text, tokenIndex: -1 }),
        abort.signal,
      );
    } catch (e) {
      throw describeError(e);
    } finally {
      sub?.dispose();
    }
  }

  /** Refines one mask of a result the host (or the server that gave it) still remembers (reasonSegment/refine). */
  async refine(params: RefineParams): Promise<RefineResult> {
    const s = this.settings();
    if (s.server) {
      try {
        return await refineRemote(s.server, await this.context.secrets.get(SERVER_TOKEN_SECRET), params);
      } catch (e) {
        throw describeError(e);
      }
    }
    await this.ensureModel();
    const client = await this.start();
    try {
      return (await client.sendRequest(Methods.refine, params)) as RefineResult;
    } catch (e) {
      throw describeError(e);
    }
  }

  /** The host's status, or undefined when it is not running (never starts it). */
  async status(): Promise<StatusResult | undefined> {
    if (!this.client || this.client.state !== State.Running) return undefined;
    return (await this.client.sendRequest(Methods.status, {})) as StatusResult;
  }

  async restart(): Promise<void> {
    this.crashes = [];
    this.loaded = undefined;
    if (this.client && this.client.state !== State.Stopped) {
      // Cleared when the new host runs, not when stop() returns: the old connection's close can come later, and must
      // not read as a crash.
      this.stoppingOnPurpose = true;
      this.log.appendLine('[host] restarting on request');
      try {
        await this.client.stop(5000);
      } catch (e) {
        this.log.appendLine(`[host] the old host did not stop cleanly (${(e as Error).message}); starting a new one`);
      }
    }
    this.eventEmitter.fire({ kind: 'restarting' });
    await this.start();
  }

  async stop(): Promise<void> {
    if (!this.client) return;
    this.stoppingOnPurpose = true;
    try {
      if (this.client.state !== State.Stopped) await this.client.stop(3000);
    } catch {
      /* the host is gone either way */
    }
  }

  dispose(): void {
    void this.stop();
    for (const d of this.disposables) d.dispose();
    this.stateEmitter.dispose();
    this.eventEmitter.dispose();
    this.deltaEmitter.dispose();
    this.progressEmitter.dispose();
  }
}
