// Test harness for the chat panel webview: the page loads dist/webview.js under the strict CSP the extension gives
// the real panel, in Debian's Chromium (playwright-core), served by harness.ts's node http server on 127.0.0.1.
//
// STAND-IN, not the product: `StandInExtension` below plays the VS Code extension's side of src/protocol/chat.ts.
// The real extension (src/extension/) runs only inside VS Code and is tested there; this stand-in exists so the
// webview can be driven against the REAL inference host (`node out/src/host/server.js`, through HostClient): it
// validates every webview message with the protocol's validator, relays `ask` to the host's `segment` with the
// history from `historyOf`, forwards `textDelta` notifications, cancels with a CancellationTokenSource on `stop`,
// sends image bytes from the file as the `image` message, and restarts the host after a crash.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { askWithinContext } from '../../src/extension/fitContext';
import {
  type ChatHostState,
  type Conversation,
  type ExtensionMessage,
  historyOf,
  type ImagePayload,
  type Turn,
  validateWebviewMessage,
  type WebviewMessage,
} from '../../src/protocol/chat';
import type { ChatTurn, SegmentResult } from '../../src/protocol/result';
import {
  errorMessage,
  isCancellation,
  Methods,
  Notifications,
  RpcErrorCode,
  type TextDeltaParams,
} from '../../src/protocol/rpc';
import { CancellationTokenSource, HostClient } from '../helpers/host-client';
import { CHROMIUM, CHROMIUM_ARGS, ROOT, startServer } from './harness';

export const CSP = (nonce: string) =>
  `default-src 'none'; img-src data: blob:; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}'`;

/** The webview page as the extension would write it, with the stand-in for VS Code's webview API. */
function chatPage(nonce: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP(nonce)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Reason Segment chat harness</title>
<style nonce="${nonce}">
  /* A few of the variables VS Code sets on a webview document (Dark Modern values). */
  :root { --vscode-foreground: #cccccc; --vscode-editor-background: #1f1f1f; --vscode-sideBar-background: #181818;
    --vscode-focusBorder: #0078d4; --vscode-font-family: sans-serif; --vscode-font-size: 13px;
    --vscode-button-background: #0078d4; --vscode-button-foreground: #ffffff; }
</style>
<script nonce="${nonce}">
  // Stand-in for VS Code's webview API (acquireVsCodeApi): postMessage goes to the test's StandInExtension through
  // a Playwright binding; getState returns what the test put there (what VS Code keeps for a re-created webview).
  window.__errors = [];
  window.__csp = [];
  window.__posted = [];
  window.__setStateCount = 0;
  window.addEventListener('error', (e) => window.__errors.push(String(e.message)));
  window.addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason)));
  document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
  let acquired = false;
  window.acquireVsCodeApi = () => {
    if (acquired) throw new Error('acquireVsCodeApi may only be called once');
    acquired = true;
    return {
      postMessage(m) { window.__posted.push(m); if (window.__rsToExtension) window.__rsToExtension(m); },
      getState() { return window.__rsState === undefined ? window.__rsInitialState : window.__rsState; },
      setState(s) { window.__rsState = s; window.__setStateCount++; },
    };
  };
</script>
</head>
<body><div id="root"></div>
<script nonce="${nonce}" src="/dist/webview.js"></script>
</body></html>`;
}

export interface ChatHarness {
  context: BrowserContext;
  nonce: string;
  /** Opens the panel page (optionally with a cached getState value) attached to the stand-in. */
  openPanel(ext: StandInExtension, opts?: { initialState?: unknown }): Promise<Page>;
  close(): Promise<void>;
}

export async function startChatHarness(): Promise<ChatHarness> {
  if (!existsSync(path.join(ROOT, 'dist/webview.js')))
    throw new Error('dist/webview.js is missing: run `node esbuild.mjs` first');
  if (!existsSync(CHROMIUM))
    throw new Error(`no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  const nonce = randomBytes(16).toString('base64');
  const pageDir = mkdtempSync(path.join(os.tmpdir(), 'rs-chat-page-'));
  writeFileSync(path.join(pageDir, 'index.html'), chatPage(nonce));
  const server = await startServer({ '/chat/': pageDir });
  const userDataDir = mkdtempSync(path.join(os.tmpdir(), 'rs-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 520, height: 900 },
    deviceScaleFactor: 1,
  });
  return {
    context,
    nonce,
    async openPanel(ext, opts = {}) {
      const page = await context.newPage();
      if (opts.initialState !== undefined) {
        await page.addInitScript((s) => {
          (window as any).__rsInitialState = s;
        }, opts.initialState);
      }
      await ext.attach(page);
      await page.goto(`${server.url}chat/index.html`);
      await page.waitForSelector('.rs-chat');
      return page;
    },
    async close() {
      await context.close();
      await server.close();
      rmSync(userDataDir, { recursive: true, force: true });
      rmSync(pageDir, { recursive: true, force: true });
    },
  };
}

// ---- the stand-in extension ------------------------------------------------------------------------------------

export const TINY_BUNDLE = path.join(ROOT, 'test/fixtures/bundles/tiny-7b');
export const IMAGES = path.join(TINY_BUNDLE, 'images');

interface Running {
  turnId: string;
  cts: CancellationTokenSource;
}

/** STAND-IN for the VS Code extension's chat panel provider (see the note at the top of this file). */
export class StandInExtension {
  host!: HostClient;
  conversations: Conversation[] = [];
  activeId: string | null = null;
  hostState: ChatHostState = 'stopped';
  model?: { variant: string; provider: string };
  /** Every message the webview posted, valid or not. */
  readonly received: unknown[] = [];
  /** Messages refused by validateWebviewMessage, with the problems. */
  readonly rejected: { message: unknown; problems: string[] }[] = [];
  /** The history sent with each segment request, in order. */
  readonly forwardedHistories: ChatTurn[][] = [];
  /** Every result the host returned, in order. */
  readonly results: SegmentResult[] = [];
  /** Errors of failed segment requests. */
  readonly failures: { code?: number; message: string }[] = [];
  /** What the file picker "chooses" on pickImage. */
  pickResult = path.join(IMAGES, 'chelsea.png');
  /** Options for the next segment requests. */
  maxNewTokens = 24;
  assistantPrefix: string | undefined;
  /** When set, `ready` is not answered (to see the webview paint from getState alone). */
  holdReady = false;
  hostStarts = 0;

  private page?: Page;
  private readonly running = new Map<string, Running>();
  private turnCounter = 0;
  private convCounter = 0;
  private stopping = false;
  private restarting: Promise<void> | null = null;
  private readonly tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-standin-'));

  async startHost(): Promise<void> {
    this.hostState = 'starting';
    const host = await HostClient.start({ XDG_CACHE_HOME: this.tmp });
    this.hostStarts++;
    this.host = host;
    // Replaces HostClient's own textDelta handler (one handler per method): keep its log and forward to the panel.
    host.connection.onNotification(Notifications.textDelta, (p: TextDeltaParams) => {
      host.deltas.push(p);
      for (const [conversationId, r] of this.running) {
        if (r.turnId === p.requestId) {
          const turn = this.turn(conversationId, r.turnId);
          if (turn) turn.answer += p.text;
          void this.send({ type: 'textDelta', conversationId, turnId: r.turnId, text: p.text });
        }
      }
    });
    host.child.once('exit', () => {
      if (!this.stopping && this.host === host) void this.onCrash(host);
    });
    const info = await host.request(Methods.loadModel, { bundle: TINY_BUNDLE, device: 'cpu' });
    this.model = { variant: info.variant, provider: info.provider };
    this.hostState = 'ready';
  }

  /** The host child process died: fail the running turns, tell the panel, restart, tell it again. */
  private async onCrash(host: HostClient): Promise<void> {
    this.hostState = 'crashed';
    host.connection.dispose(); // rejects the pending requests, so their turns fail below
    await this.send({
      type: 'hostEvent',
      kind: 'crashed',
      message: 'The inference host stopped unexpectedly. Restarting it; your conversation is kept.',
    });
    this.restarting = (async () => {
      await this.startHost();
      await this.send({
        type: 'hostEvent',
        kind: 'restarted',
        message: `The inference host was restarted (${this.model?.variant}).`,
      });
      await this.sendState();
    })();
    await this.restarting;
    this.restarting = null;
  }

  /** Resolves once a restart after a crash (if any) is complete. */
  async settled(): Promise<void> {
    while (this.restarting) await this.restarting;
  }

  async attach(page: Page): Promise<void> {
    this.page = page;
    await page.exposeFunction('__rsToExtension', (m: unknown) => this.receive(m));
  }

  async send(msg: ExtensionMessage): Promise<void> {
    const page = this.page;
    if (!page || page.isClosed()) return;
    await page
      .evaluate((m) => window.postMessage(m, '*'), msg as unknown as Record<string, unknown>)
      .catch(() => undefined);
  }

  private snapshot(): ExtensionMessage {
    return {
      type: 'state',
      conversations: JSON.parse(JSON.stringify(this.conversations)),
      activeId: this.activeId,
      hostState: this.hostState,
      model: this.model,
    };
  }

  async sendState(withImage = true): Promise<void> {
    await this.send(this.snapshot());
    const c = this.active();
    if (withImage && c?.image) await this.send({ type: 'image', conversationId: c.id, image: readImage(c.image.path) });
  }

  active(): Conversation | undefined {
    return this.conversations.find((c) => c.id === this.activeId);
  }

  turn(conversationId: string, turnId: string): Turn | undefined {
    return this.conversations.find((c) => c.id === conversationId)?.turns.find((t) => t.id === turnId);
  }

  private newConversation(imagePath?: string): Conversation {
    const c: Conversation = { id: `c${++this.convCounter}`, turns: [], createdAt: Date.now() + this.convCounter };
    if (imagePath) c.image = imageInfo(imagePath);
    this.conversations.push(c);
    this.activeId = c.id;
    return c;
  }

  private setImage(p: string): void {
    const c = this.active();
    if (c && c.turns.length === 0) c.image = imageInfo(p);
    else this.newConversation(p);
  }

  receive(m: unknown): void {
    this.received.push(m);
    const problems = validateWebviewMessage(m);
    if (problems.length) {
      this.rejected.push({ message: m, problems });
      return;
    }
    void this.handle(m as WebviewMessage);
  }

  private async handle(m: WebviewMessage): Promise<void> {
    switch (m.type) {
      case 'ready':
        if (!this.holdReady) await this.sendState();
        return;
      case 'pickImage':
        this.setImage(this.pickResult);
        await this.sendState();
        return;
      case 'setImage': {
        const p = m.path.startsWith('file:') ? fileURLToPath(m.path) : m.path;
        if (!/\.(png|jpe?g|webp|bmp|gif|tiff?)$/i.test(p) || !existsSync(p)) return;
        this.setImage(p);
        await this.sendState();
        return;
      }
      case 'newConversation':
        this.newConversation(this.active()?.image?.path);
        await this.sendState();
        return;
      case 'selectConversation':
        if (this.conversations.some((c) => c.id === m.conversationId)) this.activeId = m.conversationId;
        await this.sendState();
        return;
      case 'stop':
        this.running.get(m.conversationId)?.cts.cancel();
        return;
      case 'ask':
        await this.ask(m.conversationId, m.prompt, m.retryOf);
        return;
      case 'exportNotebook':
      case 'save':
        return; // recorded in `received`
    }
  }

  private async ask(conversationId: string, prompt: string, retryOf?: string): Promise<void> {
    await this.settled();
    const c = this.conversations.find((x) => x.id === conversationId);
    const turnId = `t${++this.turnCounter}`;
    if (!c?.image || this.running.has(conversationId)) {
      await this.send({
        type: 'turnFailed',
        conversationId,
        turnId,
        message: 'Choose an image first.',
        cancelled: false,
      });
      return;
    }
    if (retryOf) c.turns = c.turns.filter((t) => t.id !== retryOf);
    const history = historyOf(c);
    this.forwardedHistories.push(history);
    const turn: Turn = { id: turnId, prompt, answer: '', status: 'streaming' };
    c.turns.push(turn);
    const cts = new CancellationTokenSource();
    this.running.set(conversationId, { turnId, cts });
    await this.send({ type: 'turnStarted', conversationId, turnId, prompt });
    this.hostState = 'busy';
    const tooLong = (e: unknown) => (e as { code?: number }).code === RpcErrorCode.PromptTooLong;
    try {
      // As chatView.ts: the oldest turns are left out while the conversation overflows the model's context.
      const { result, trimmed } = await askWithinContext(
        history,
        (fitted) =>
          this.host.request(
            Methods.segment,
            {
              requestId: turnId,
              conversationId,
              image: { path: c.image!.path },
              prompt,
              history: fitted,
              maxNewTokens: this.maxNewTokens,
              ...(this.assistantPrefix !== undefined ? { assistantPrefix: this.assistantPrefix } : {}),
            },
            cts,
          ),
        tooLong,
      );
      this.results.push(result);
      turn.status = 'done';
      turn.result = result;
      turn.answer = result.answer;
      if (trimmed) turn.trimmed = trimmed;
      this.running.delete(conversationId);
      this.hostState = 'ready';
      await this.send({ type: 'turnDone', conversationId, turnId, result, trimmed });
    } catch (e) {
      this.running.delete(conversationId);
      const err = e as { code?: number; message?: string };
      this.failures.push({ code: err.code, message: String(err.message) });
      const cancelled = typeof err.code === 'number' && isCancellation(err.code);
      const crashed =
        (this.hostState as ChatHostState) === 'crashed' ||
        this.host.child.exitCode !== null ||
        this.host.child.signalCode !== null;
      const message = cancelled
        ? 'Stopped.'
        : crashed
          ? 'The inference host stopped while answering. It is being restarted; ask again.'
          : errorMessage(typeof err.code === 'number' ? err.code : RpcErrorCode.Internal, err.message);
      turn.status = cancelled ? 'cancelled' : 'failed';
      turn.error = tooLong(e)
        ? "This instruction does not fit in the model's context even without the earlier turns: shorten it."
        : message;
      if (tooLong(e)) turn.retryable = false;
      if (!crashed) this.hostState = 'ready';
      await this.send({
        type: 'turnFailed',
        conversationId,
        turnId,
        message: turn.error,
        cancelled,
        retryable: turn.retryable,
      });
    }
  }

  /** Kills the host child process (SIGKILL), as a native crash would. */
  killHost(): void {
    this.host.child.kill('SIGKILL');
  }

  async dispose(): Promise<void> {
    this.stopping = true;
    await this.settled().catch(() => undefined);
    await this.host?.stop().catch(() => undefined);
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

function imageInfo(p: string): Conversation['image'] {
  const { width, height } = pngSize(readFileSync(p));
  return { path: p, name: path.basename(p), width, height };
}

/** The `image` message payload: the file's bytes, base64 (never a file or webview URI). */
export function readImage(p: string): ImagePayload {
  const bytes = readFileSync(p);
  const { width, height } = pngSize(bytes);
  return { name: path.basename(p), width, height, data: bytes.toString('base64'), mimeType: 'image/png' };
}

function pngSize(b: Buffer): { width: number; height: number } {
  if (b.length < 24 || b.readUInt32BE(0) !== 0x89504e47) throw new Error('not a PNG');
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}
