// A ChatController (src/extension/chatController.ts, the chat's logic) in this Node process on the REAL inference host
// (`node out/src/host/server.js`, through HostClient), with what VS Code supplies in the extension (chatView.ts's
// ports) played by plain code: a file "picker", an in-memory workspace state, the host process's lifecycle (a crash
// restarts it, as the language client does) and the extension's l10n bundle as the translator. What the controller
// posts is recorded, and delivered to a Chromium page when one is attached (test/browser/chat-harness.ts).

import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import {
  ChatController,
  type ChatPorts,
  type HostProcessState,
  type StoredChats,
} from '../../src/extension/chatController';
import { describeHostError } from '../../src/extension/hostError';
import type { Translate } from '../../src/extension/hostStatus';
import { imageSize, MIME_BY_EXT } from '../../src/extension/imageHeader';
import { RenditionStore } from '../../src/extension/renditions';
import { IMAGE_EXTENSIONS, isImagePath } from '../../src/extension/settings';
import type { ChatTurn, Conversation, ExtensionMessage, ImagePayload, WebviewMessage } from '../../src/protocol/chat';
import { validateWebviewMessage } from '../../src/protocol/chat';
import type { SegmentResult } from '../../src/protocol/result';
import { Methods, Notifications, type TextDeltaParams } from '../../src/protocol/rpc';
import { FIXTURE_BUNDLES, REPO } from './bundles';
import { CancellationTokenSource, HostClient } from './host-client';

export const TINY_BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-7b');
export const IMAGES = path.join(TINY_BUNDLE, 'images');

/** The extension's translator for `lang`: vscode.l10n.t's lookup in l10n/bundle.l10n.<lang>.json, English keys. */
export function extensionTranslator(lang: string): Translate {
  const file = path.join(REPO, 'l10n', `bundle.l10n.${lang}.json`);
  const table: Record<string, string> = lang !== 'en' && existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  return (m, ...a) =>
    (table[m] ?? m).replace(/\{(\d+)\}/g, (x, i: string) => (a[Number(i)] !== undefined ? String(a[Number(i)]) : x));
}

/** The image file's bytes for a webview, as imageFiles.ts's readImagePayload reads them. */
export function readImage(p: string): ImagePayload {
  const bytes = readFileSync(p);
  const size = imageSize(bytes);
  return {
    name: path.basename(p),
    width: size?.width ?? 0,
    height: size?.height ?? 0,
    data: bytes.toString('base64'),
    mimeType: MIME_BY_EXT[path.extname(p).slice(1).toLowerCase()] ?? 'application/octet-stream',
  };
}

/**
 * A ChatController on a real host, attached to a page. Records what passes through its ports for the tests: every
 * message the page posted, the history of each segment request, every result and failure, the notifications.
 */
export class ChatBridge {
  host!: HostClient;
  readonly controller: ChatController;
  /** Every message the webview posted, valid or not. */
  readonly received: unknown[] = [];
  /** Messages refused by validateWebviewMessage, with the problems. */
  readonly rejected: { message: unknown; problems: string[] }[] = [];
  readonly forwardedHistories: ChatTurn[][] = [];
  readonly results: SegmentResult[] = [];
  readonly failures: { code?: number; message: string }[] = [];
  /** Notifications the controller asked for (showError). */
  readonly notifications: { message: string; code?: number }[] = [];
  /** Results the side bar asked to open beside the image (openResult). */
  readonly opened: { conversationId: string; turnId: string }[] = [];
  /** Every message the controller posted, in order. */
  readonly posted: ExtensionMessage[] = [];
  /** What the file picker "chooses" on pickImage. */
  pickResult = path.join(IMAGES, 'chelsea.png');
  /** Options the extension's settings would add to each segment request. */
  maxNewTokens = 24;
  assistantPrefix: string | undefined;
  /** When set, `ready` is not answered (to see the webview paint from getState alone). */
  holdReady = false;
  hostStarts = 0;
  stored: StoredChats | undefined;

  private page?: Page;
  private state: HostProcessState = 'stopped';
  private bundle: string | null = TINY_BUNDLE;
  private stopping = false;
  private restarting: Promise<void> | null = null;
  private readonly tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-bridge-'));

  /** The extension's storage folder for TIFF renditions; a bridge made to stand for a reloaded window shares it. */
  readonly renditionDir: string;

  constructor(
    readonly lang = 'en',
    stored?: StoredChats,
    renditionDir?: string,
  ) {
    this.stored = stored;
    this.renditionDir = renditionDir ?? path.join(this.tmp, 'renditions');
    const t = extensionTranslator(lang);
    const ports: ChatPorts = {
      segment: (params, signal) => this.segment(params, signal),
      describeError: (e) => describeHostError(e, t),
      hostState: () => this.state,
      model: () => this.model,
      readImage: async (p) => readImage(p),
      renditions: new RenditionStore(this.renditionDir),
      checkImage: async (p) => {
        const file = p.startsWith('file:') ? fileURLToPath(p) : p;
        if (!isImagePath(file))
          throw new Error(t('{0} is not an image file ({1}).', path.basename(file), IMAGE_EXTENSIONS.join(', ')));
        if (statSync(file).isDirectory()) throw new Error(t('{0} is a folder, not an image file.', file));
        return { path: file, name: path.basename(file) };
      },
      pickImage: async () => this.pickResult,
      load: () => this.stored && JSON.parse(JSON.stringify(this.stored)),
      store: (s) => {
        this.stored = JSON.parse(JSON.stringify(s));
      },
      post: (m) => void this.send(m),
      t,
      log: () => undefined,
      showError: (message, code) => this.notifications.push({ message, code }),
      exportNotebook: async () => undefined,
      save: async () => undefined,
      openResult: async (c, turnId) => {
        this.opened.push({ conversationId: c.id, turnId });
      },
    };
    this.controller = new ChatController(ports);
  }

  model: { variant: string; provider: string } | undefined;

  get conversations(): readonly Conversation[] {
    return this.controller.conversations;
  }

  get activeId(): string | null {
    return this.controller.active()?.id ?? null;
  }

  active(): Conversation | undefined {
    return this.controller.active();
  }

  private async segment(params: Parameters<ChatPorts['segment']>[0], signal: AbortSignal): Promise<SegmentResult> {
    this.forwardedHistories.push(params.history);
    const cts = new CancellationTokenSource();
    const onAbort = () => cts.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const r = await this.host.request(
        Methods.segment,
        {
          maxNewTokens: this.maxNewTokens,
          ...(this.assistantPrefix !== undefined ? { assistantPrefix: this.assistantPrefix } : {}),
          ...params,
        },
        cts,
      );
      this.results.push(r);
      return r;
    } catch (e) {
      const err = e as { code?: number; message?: string };
      this.failures.push({ code: err.code, message: String(err.message) });
      throw e;
    } finally {
      signal.removeEventListener('abort', onAbort);
      cts.dispose();
    }
  }

  /** Starts the host and loads `bundle`; with null no model is loaded (as when none is chosen). */
  async startHost(bundle: string | null = TINY_BUNDLE): Promise<void> {
    this.bundle = bundle;
    this.state = 'starting';
    this.controller.hostStateChanged();
    const host = await HostClient.start({ XDG_CACHE_HOME: this.tmp });
    this.hostStarts++;
    this.host = host;
    // Replaces HostClient's own textDelta handler (one handler per method): keep its log and pass to the controller.
    host.connection.onNotification(Notifications.textDelta, (p: TextDeltaParams) => {
      host.deltas.push(p);
      this.controller.textDelta(p.requestId, p.text);
    });
    host.child.once('exit', () => {
      if (!this.stopping && this.host === host) void this.onCrash(host);
    });
    if (bundle) {
      const info = await host.request(Methods.loadModel, { bundle, device: 'cpu' });
      this.model = { variant: info.variant, provider: info.provider };
    }
    this.state = 'running';
    this.controller.hostEvent({ kind: 'started' });
  }

  /** The host process died: what the language client does in the extension (host.ts's onClosed, then a restart). */
  private async onCrash(host: HostClient): Promise<void> {
    this.state = 'crashed';
    host.connection.dispose(); // rejects the pending requests, so their turns fail
    this.controller.hostEvent({
      kind: 'crashed',
      message: extensionTranslator(this.lang)(
        'The Reason Segment inference host stopped unexpectedly and was restarted. The model is loaded again on the next request; your conversations are kept.',
      ),
    });
    this.restarting = this.startHost(this.bundle);
    await this.restarting;
    this.restarting = null;
  }

  /** Resolves once a restart after a crash (if any) is complete. */
  async settled(): Promise<void> {
    while (this.restarting) await this.restarting;
  }

  async attach(page: Page): Promise<void> {
    this.page = page;
    await page.exposeFunction('__rsToExtension', (m: unknown) => void this.receive(m));
  }

  private delivered: Promise<void> = Promise.resolve();

  /** Records a message and delivers it to the page, after the ones before it (postMessage keeps order too). */
  private send(msg: ExtensionMessage): Promise<void> {
    // A copy, as postMessage's structured clone makes: later changes to the controller's objects do not show in it.
    const copy = JSON.parse(JSON.stringify(msg));
    this.posted.push(copy);
    this.delivered = this.delivered.then(async () => {
      const page = this.page;
      if (!page || page.isClosed()) return;
      await page.evaluate((m) => window.postMessage(m, '*'), copy).catch(() => undefined);
    });
    return this.delivered;
  }

  /** Resolves once every message posted so far has been handled by the page. */
  async settledPage(): Promise<void> {
    await this.delivered;
    // window.postMessage dispatches in a later task: let it run.
    await this.page?.evaluate(() => new Promise((r) => setTimeout(r, 0))).catch(() => undefined);
  }

  /** The whole state and the active image again (what the extension sends on `ready`). */
  async sendState(): Promise<void> {
    await this.controller.resync();
    await this.settledPage();
  }

  /** A message as the webview would post it. */
  receive(m: unknown): Promise<void> {
    this.received.push(m);
    const problems = validateWebviewMessage(m);
    if (problems.length) this.rejected.push({ message: m, problems });
    if ((m as WebviewMessage | null)?.type === 'ready' && this.holdReady) return Promise.resolve();
    return this.controller.receive(m);
  }

  /** Kills the host child process (SIGKILL), as a native crash would. */
  killHost(): void {
    this.host.child.kill('SIGKILL');
  }

  async dispose(): Promise<void> {
    this.stopping = true;
    this.controller.dispose();
    await this.settled().catch(() => undefined);
    await this.host?.stop().catch(() => undefined);
    rmSync(this.tmp, { recursive: true, force: true });
  }
}
