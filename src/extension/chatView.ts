// The chat panel's extension side (a WebviewViewProvider for `reasonSegment.chat`): keeps every conversation in
// workspace state (the source of truth; survives window reloads and host crashes), validates every message from the
// webview with src/protocol/chat.ts before use, runs turns on the host and streams their text to the webview. Image
// bytes go to the webview by message (works on Remote-SSH); the webview gets no file access at all.
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  type ChatHostState,
  type Conversation,
  type ExtensionMessage,
  historyOf,
  type ImagePayload,
  type Turn,
  validateWebviewMessage,
  type WebviewMessage,
} from '../protocol/chat';
import type { SegmentResult } from '../protocol/result';
import { RpcErrorCode, type SegmentParams } from '../protocol/rpc';
import { askWithinContext } from './fitContext';
import { describeError, type HostManager } from './host';
import { IMAGE_EXTENSIONS, isImagePath } from './settings';

const STORE_KEY = 'reasonSegment.chat.v1';
const MAX_CONVERSATIONS = 30;
/** Overlay PNGs kept in the stored state only below this size (they make exported notebooks show in plain Jupyter). */
const MAX_STORED_OVERLAY = 1.5 * 1024 * 1024;

export const MIME_BY_EXT: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  bmp: 'image/bmp',
  gif: 'image/gif',
  tif: 'image/tiff',
  tiff: 'image/tiff',
};

interface Stored {
  conversations: Conversation[];
  activeId: string | null;
}

export function newId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

export function nonce(): string {
  return randomBytes(18).toString('base64').replace(/[+/=]/g, '');
}

/** The webview's HTML: strict CSP, one nonce'd script from dist/, styles only by nonce or from the extension. */
export function chatHtml(webview: vscode.Webview, extensionUri: vscode.Uri, lang: string): string {
  const n = nonce();
  const script = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview.js'));
  const csp = [
    "default-src 'none'",
    `img-src ${webview.cspSource} data: blob:`,
    `style-src ${webview.cspSource} 'nonce-${n}'`,
    `font-src ${webview.cspSource}`,
    `script-src 'nonce-${n}'`,
    "connect-src 'none'",
    "frame-src 'none'",
    "form-action 'none'",
    "base-uri 'none'",
  ].join('; ');
  return `<!doctype html>
<html lang="${lang}"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="reason-segment-nonce" content="${n}">
<title>Reason Segment</title>
</head><body>
<div id="root"></div>
<script nonce="${n}" src="${script.toString()}"></script>
</body></html>`;
}

export class ChatViewProvider implements vscode.WebviewViewProvider, vscode.Disposable {
  static readonly viewId = 'reasonSegment.chat';
  private view: vscode.WebviewView | undefined;
  private ready = false;
  private store: Stored;
  private readonly running = new Map<string, { turnId: string; cts: vscode.CancellationTokenSource }>();
  /** Overlay PNGs of this session's turns (not all are persisted, see MAX_STORED_OVERLAY). */
  private readonly overlays = new Map<string, string>();
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly host: HostManager,
    private readonly log: vscode.OutputChannel,
    private readonly exportNotebook: (c: Conversation, overlays: Map<string, string>) => Promise<void>,
  ) {
    this.store = this.load();
    this.disposables.push(
      host.onDidChangeState(() =>
        this.post({ type: 'hostState', hostState: this.hostState(), model: this.modelInfo() }),
      ),
      host.onHostEvent((e) => {
        if (e.kind === 'crashed' || e.kind === 'stopped') {
          this.post({
            type: 'hostEvent',
            kind: 'crashed',
            message: e.message ?? vscode.l10n.t('The inference host stopped.'),
          });
        } else if (e.kind === 'started') {
          // After a crash or a Restart Host: tell the panel and resend the whole state.
          if (this.hadCrash) {
            this.hadCrash = false;
            this.post({
              type: 'hostEvent',
              kind: 'restarted',
              message: vscode.l10n.t('The inference host was restarted; your conversation is kept.'),
            });
          }
          this.postState();
        } else if (e.kind === 'modelLoaded') {
          this.post({ type: 'hostState', hostState: this.hostState(), model: this.modelInfo() });
        }
        if (e.kind === 'crashed' || e.kind === 'restarting') this.hadCrash = true;
      }),
      host.onTextDelta((d) => this.onDelta(d.requestId, d.text)),
    );
  }

  private hadCrash = false;

  // ---- storage -------------------------------------------------------------------------------------------------

  private load(): Stored {
    const s = this.context.workspaceState.get<Stored>(STORE_KEY);
    const conversations = Array.isArray(s?.conversations) ? s!.conversations : [];
    // A turn that was streaming when the window closed will never finish.
    for (const c of conversations) {
      for (const t of c.turns) {
        if (t.status === 'streaming') {
          t.status = 'failed';
          t.error = vscode.l10n.t('Interrupted when the window was closed.');
        }
      }
    }
    return {
      conversations,
      activeId:
        s?.activeId && conversations.some((c) => c.id === s.activeId) ? s.activeId : (conversations.at(-1)?.id ?? null),
    };
  }

  private save(): void {
    if (this.store.conversations.length > MAX_CONVERSATIONS)
      this.store.conversations = this.store.conversations.slice(-MAX_CONVERSATIONS);
    void this.context.workspaceState.update(STORE_KEY, this.store);
  }

  get conversations(): readonly Conversation[] {
    return this.store.conversations;
  }

  active(): Conversation | undefined {
    return this.store.conversations.find((c) => c.id === this.store.activeId);
  }

  // ---- webview ---------------------------------------------------------------------------------------------------

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    this.ready = false;
    const ext = this.context.extensionUri;
    view.webview.options = {
      enableScripts: true,
      enableCommandUris: false,
      localResourceRoots: [vscode.Uri.joinPath(ext, 'dist'), vscode.Uri.joinPath(ext, 'media')],
    };
    view.webview.html = chatHtml(view.webview, ext, vscode.env.language || 'en');
    view.onDidDispose(
      () => {
        if (this.view === view) {
          this.view = undefined;
          this.ready = false;
        }
      },
      null,
      this.disposables,
    );
    view.webview.onDidReceiveMessage((m: unknown) => this.onMessage(m), null, this.disposables);
  }

  private post(m: ExtensionMessage): void {
    if (this.view && this.ready) void this.view.webview.postMessage(m);
  }

  private hostState(): ChatHostState {
    if (this.running.size > 0 && this.host.state === 'running') return 'busy';
    return this.host.state === 'running' ? 'ready' : this.host.state;
  }

  private modelInfo() {
    const m = this.host.model;
    return m ? { variant: m.variant, provider: m.provider } : undefined;
  }

  private postState(): void {
    this.post({
      type: 'state',
      conversations: this.store.conversations,
      activeId: this.store.activeId,
      hostState: this.hostState(),
      model: this.modelInfo(),
    });
  }

  private async postImage(c: Conversation | undefined): Promise<void> {
    if (!c?.image || !this.view || !this.ready) return;
    try {
      const payload = await this.readImage(c.image.path);
      this.post({
        type: 'image',
        conversationId: c.id,
        image: { ...payload, width: c.image.width ?? payload.width, height: c.image.height ?? payload.height },
      });
    } catch (e) {
      this.log.appendLine(`[chat] cannot read ${c.image.path}: ${(e as Error).message}`);
    }
  }

  private async readImage(p: string): Promise<ImagePayload> {
    const uri = toUri(p);
    const bytes = await vscode.workspace.fs.readFile(uri);
    const ext = path.extname(uri.path).slice(1).toLowerCase();
    const size = imageSize(bytes);
    return {
      name: path.basename(uri.path),
      width: size?.width ?? 0,
      height: size?.height ?? 0,
      data: Buffer.from(bytes).toString('base64'),
      mimeType: MIME_BY_EXT[ext] ?? 'application/octet-stream',
    };
  }

  private async onMessage(raw: unknown): Promise<void> {
    const problems = validateWebviewMessage(raw);
    if (problems.length) {
      this.log.appendLine(`[chat] ignored an invalid message from the webview: ${problems.slice(0, 3).join('; ')}`);
      return;
    }
    const m = raw as WebviewMessage;
    try {
      switch (m.type) {
        case 'ready':
          this.ready = true;
          this.postState();
          await this.postImage(this.active());
          break;
        case 'pickImage': {
          const picked = await vscode.window.showOpenDialog({
            canSelectMany: false,
            openLabel: vscode.l10n.t('Choose Image'),
            filters: { [vscode.l10n.t('Images')]: [...IMAGE_EXTENSIONS] },
          });
          if (picked?.[0]) await this.setImage(picked[0]);
          break;
        }
        case 'setImage':
          await this.setImage(toUri(m.path));
          break;
        case 'ask': {
          const c = this.store.conversations.find((x) => x.id === m.conversationId);
          if (!c) return;
          if (m.retryOf)
            c.turns = c.turns.filter((t) => t.id !== m.retryOf || t.status === 'done' || t.status === 'streaming');
          await this.runTurn(c, m.prompt);
          break;
        }
        case 'stop':
          this.running.get(m.conversationId)?.cts.cancel();
          break;
        case 'newConversation':
          this.newConversation(this.active()?.image);
          break;
        case 'selectConversation':
          if (this.store.conversations.some((c) => c.id === m.conversationId)) {
            this.store.activeId = m.conversationId;
            this.save();
            this.postState();
            await this.postImage(this.active());
          }
          break;
        case 'exportNotebook': {
          const c = this.store.conversations.find((x) => x.id === m.conversationId);
          if (c) await this.exportNotebook(c, this.overlays);
          break;
        }
        case 'save':
          await saveFileWithDialog(m);
          break;
      }
    } catch (e) {
      void vscode.window.showErrorMessage(describeError(e).message);
    }
  }

  // ---- conversations ---------------------------------------------------------------------------------------------

  private newConversation(image?: Conversation['image']): Conversation {
    const c: Conversation = { id: newId('c'), image, turns: [], createdAt: Date.now() };
    this.store.conversations.push(c);
    this.store.activeId = c.id;
    this.save();
    this.postState();
    void this.postImage(c);
    return c;
  }

  /** Sets the image of the active conversation when it has no turns yet; otherwise starts a new conversation. */
  async setImage(uri: vscode.Uri): Promise<Conversation> {
    if (!isImagePath(uri.path))
      throw new Error(
        vscode.l10n.t('{0} is not an image file ({1}).', path.basename(uri.path), IMAGE_EXTENSIONS.join(', ')),
      );
    const stat = await vscode.workspace.fs.stat(uri);
    if (stat.type & vscode.FileType.Directory)
      throw new Error(vscode.l10n.t('{0} is a folder, not an image file.', uri.fsPath));
    const image = { path: uri.scheme === 'file' ? uri.fsPath : uri.toString(), name: path.basename(uri.path) };
    const a = this.active();
    if (a && a.turns.length === 0 && !this.running.has(a.id)) {
      a.image = image;
      this.save();
      this.postState();
      void this.postImage(a);
      return a;
    }
    return this.newConversation(image);
  }

  /** Opens the panel on `uri` in a new conversation and asks `prompt` (the "Segment Image…" command). */
  async segmentFile(uri: vscode.Uri, prompt: string): Promise<SegmentResult | undefined> {
    await vscode.commands.executeCommand(`${ChatViewProvider.viewId}.focus`);
    const c = await this.setImage(uri);
    return this.runTurn(c, prompt);
  }

  private onDelta(requestId: string, text: string): void {
    for (const [cid, r] of this.running) {
      if (r.turnId !== requestId) continue;
      const t = this.store.conversations.find((c) => c.id === cid)?.turns.find((x) => x.id === requestId);
      if (t) t.answer += text;
      this.post({ type: 'textDelta', conversationId: cid, turnId: requestId, text });
    }
  }

  async runTurn(c: Conversation, prompt: string): Promise<SegmentResult | undefined> {
    if (!c.image) throw new Error(vscode.l10n.t('Choose an image first.'));
    if (this.running.has(c.id))
      throw new Error(vscode.l10n.t('This conversation is still answering; stop it or wait.'));
    const history = historyOf(c);
    const lastSha = [...c.turns].reverse().find((t) => t.status === 'done' && t.result)?.result?.image.sha256;
    const turn: Turn = { id: newId('t'), prompt, answer: '', status: 'streaming' };
    c.turns.push(turn);
    this.store.activeId = c.id;
    const cts = new vscode.CancellationTokenSource();
    this.running.set(c.id, { turnId: turn.id, cts });
    this.save();
    this.post({ type: 'turnStarted', conversationId: c.id, turnId: turn.id, prompt });
    this.post({ type: 'hostState', hostState: 'busy', model: this.modelInfo() });
    const imagePath = c.image.path;
    const tooLong = (e: unknown) => describeError(e).code === RpcErrorCode.PromptTooLong;
    try {
      const { result, trimmed } = await vscode.window.withProgress(
        { location: { viewId: ChatViewProvider.viewId }, title: vscode.l10n.t('Answering…') },
        () =>
          askWithinContext(
            history,
            async (fitted) => {
              const base: Omit<SegmentParams, 'image'> = {
                requestId: turn.id,
                prompt,
                history: fitted,
                conversationId: c.id,
                includeOverlay: true,
                includeImage: /\.(tiff?)$/i.test(imagePath),
              };
              if (lastSha) {
                // A follow-up: the host still holds the decoded image and both embeddings under its hash.
                try {
                  return await this.host.segment({ ...base, image: { sha256: lastSha } }, cts.token);
                } catch (e) {
                  const err = describeError(e);
                  if (
                    err.cancelled ||
                    (err.code !== RpcErrorCode.ImageUnreadable && err.code !== RpcErrorCode.ParamsInvalid)
                  )
                    throw err;
                  turn.answer = '';
                }
              }
              return this.host.segment({ ...base, image: { path: toUri(imagePath).fsPath } }, cts.token);
            },
            tooLong,
          ),
      );
      const stored: SegmentResult = { ...result, image: { ...result.image } };
      if (result.image.data && /\.(tiff?)$/i.test(imagePath)) {
        this.post({
          type: 'image',
          conversationId: c.id,
          image: {
            name: c.image.name,
            width: result.image.width,
            height: result.image.height,
            data: result.image.data,
            mimeType: result.image.mimeType ?? 'image/png',
          },
        });
      }
      delete stored.image.data;
      if (result.overlayPng) this.overlays.set(turn.id, result.overlayPng);
      if (!result.overlayPng || result.overlayPng.length > MAX_STORED_OVERLAY) delete stored.overlayPng;
      c.image.width = result.image.width;
      c.image.height = result.image.height;
      turn.result = stored;
      turn.answer = result.answer;
      turn.status = 'done';
      if (trimmed) turn.trimmed = trimmed;
      this.save();
      this.post({ type: 'turnDone', conversationId: c.id, turnId: turn.id, result: stored, trimmed });
      if (trimmed) this.log.appendLine(`[chat] left out the ${trimmed} oldest turn(s) to fit the model's context`);
      this.log.appendLine(
        `[chat] turn done in ${result.timings.totalMs.toFixed(0)} ms (cacheHit ${result.timings.cacheHit}, ${result.masks.length} masks)`,
      );
      return result;
    } catch (e) {
      const err = describeError(e);
      turn.status = err.cancelled ? 'cancelled' : 'failed';
      turn.error = err.message;
      // Too long even with every earlier turn left out: only a shorter instruction can help, not the same again.
      if (tooLong(err)) {
        turn.retryable = false;
        turn.error = vscode.l10n.t(
          "This instruction does not fit in the model's context even without the earlier turns: shorten it.",
        );
      }
      this.save();
      this.post({
        type: 'turnFailed',
        conversationId: c.id,
        turnId: turn.id,
        message: turn.error,
        cancelled: err.cancelled,
        retryable: turn.retryable,
      });
      if (!err.cancelled) this.log.appendLine(`[chat] turn failed: ${err.message}`);
      if (err.code === RpcErrorCode.ModelNotLoaded) {
        const pick = vscode.l10n.t('Select Model…');
        void vscode.window
          .showErrorMessage(err.message, pick)
          .then((a) => a === pick && vscode.commands.executeCommand('reasonSegment.selectModel'));
      }
      return undefined;
    } finally {
      this.running.delete(c.id);
      cts.dispose();
      this.post({ type: 'hostState', hostState: this.hostState(), model: this.modelInfo() });
    }
  }

  dispose(): void {
    for (const r of this.running.values()) r.cts.cancel();
    for (const d of this.disposables) d.dispose();
  }
}

/** A path or URI string from a message, as a Uri (never used as a write target). */
export function toUri(p: string): vscode.Uri {
  return /^[a-zA-Z][\w+.-]+:\/\//.test(p) && !/^[a-zA-Z]:[\\/]/.test(p)
    ? vscode.Uri.parse(p, true)
    : vscode.Uri.file(p);
}

/** Width and height from a PNG, GIF, BMP or JPEG header (0 when unknown: the webview reads it from the image). */
export function imageSize(b: Uint8Array): { width: number; height: number } | undefined {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length > 24 && b[0] === 0x89 && b[1] === 0x50) return { width: dv.getUint32(16), height: dv.getUint32(20) };
  if (b.length > 10 && b[0] === 0x47 && b[1] === 0x49)
    return { width: dv.getUint16(6, true), height: dv.getUint16(8, true) };
  if (b.length > 26 && b[0] === 0x42 && b[1] === 0x4d)
    return { width: dv.getInt32(18, true), height: Math.abs(dv.getInt32(22, true)) };
  if (b.length > 4 && b[0] === 0xff && b[1] === 0xd8) {
    let i = 2;
    while (i + 9 < b.length) {
      if (b[i] !== 0xff) return undefined;
      const marker = b[i + 1];
      const len = dv.getUint16(i + 2);
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { height: dv.getUint16(i + 5), width: dv.getUint16(i + 7) };
      }
      i += 2 + len;
    }
  }
  return undefined;
}

/** Writes a file the user saves from the chat panel or the renderer, to a place the user picks in a save dialog. */
export async function saveFileWithDialog(f: {
  fileName: string;
  encoding: 'base64' | 'utf8';
  data: string;
  mimeType: string;
}): Promise<void> {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
  const name = path.basename(f.fileName);
  const target = await vscode.window.showSaveDialog({
    defaultUri: folder ? vscode.Uri.joinPath(folder, name) : undefined,
    saveLabel: vscode.l10n.t('Save'),
    filters: f.mimeType === 'application/json' ? { JSON: ['json'] } : { PNG: ['png'] },
  });
  if (!target) return;
  const bytes = f.encoding === 'base64' ? Buffer.from(f.data, 'base64') : Buffer.from(f.data, 'utf8');
  await vscode.workspace.fs.writeFile(target, bytes);
  void vscode.window.showInformationMessage(vscode.l10n.t('Saved {0}.', path.basename(target.path)));
}
