// The side bar chat's VS Code side: a WebviewViewProvider for `reasonSegment.chat` that adapts ChatController
// (chatController.ts: the chat's logic, which does not import vscode) to VS Code: workspace state for storage, the
// HostManager for requests, the webview for messages, dialogs and notifications for the user.
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Conversation, ExtensionMessage } from '../protocol/chat';
import type { SegmentResult } from '../protocol/result';
import { RpcErrorCode } from '../protocol/rpc';
import { ChatController, type StoredChats } from './chatController';
import { describeError, type HostManager } from './host';
import { checkImage, readImagePayload, saveFileWithDialog, toUri } from './imageFiles';
import { RenditionStore } from './renditions';
import { IMAGE_EXTENSIONS } from './settings';
import { webviewHtml, webviewOptions } from './webviewHtml';

// notebookExport.ts imports these from here.
export { MIME_BY_EXT, toUri } from './imageFiles';

const STORE_KEY = 'reasonSegment.chat.v1';

export class ChatViewProvider implements vscode.WebviewViewProvider, vscode.Disposable {
  static readonly viewId = 'reasonSegment.chat';
  readonly controller: ChatController;
  private view: vscode.WebviewView | undefined;
  private ready = false;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly context: vscode.ExtensionContext,
    host: HostManager,
    log: vscode.OutputChannel,
    exportNotebook: (c: Conversation, overlays: ReadonlyMap<string, string>) => Promise<void>,
    openResult: (c: Conversation, turnId: string) => Promise<void>,
  ) {
    this.controller = new ChatController({
      segment: async (params, signal) => {
        const cts = new vscode.CancellationTokenSource();
        signal.addEventListener('abort', () => cts.cancel(), { once: true });
        const image = 'path' in params.image ? { path: toUri(params.image.path).fsPath } : params.image;
        try {
          return await vscode.window.withProgress(
            { location: { viewId: ChatViewProvider.viewId }, title: vscode.l10n.t('Answering…') },
            () => host.segment({ ...params, image }, cts.token),
          );
        } finally {
          cts.dispose();
        }
      },
      describeError,
      hostState: () => host.state,
      model: () => (host.model ? { variant: host.model.variant, provider: host.model.provider } : undefined),
      readImage: readImagePayload,
      renditions: new RenditionStore(path.join(context.globalStorageUri.fsPath, 'renditions')),
      checkImage,
      pickImage: async () => {
        const picked = await vscode.window.showOpenDialog({
          canSelectMany: false,
          openLabel: vscode.l10n.t('Choose Image'),
          filters: { [vscode.l10n.t('Images')]: [...IMAGE_EXTENSIONS] },
        });
        return picked?.[0]?.toString();
      },
      load: () => context.workspaceState.get<StoredChats>(STORE_KEY),
      store: (s) => void context.workspaceState.update(STORE_KEY, s),
      post: (m) => this.post(m),
      t: (m, ...a) => vscode.l10n.t(m, ...a),
      log: (line) => log.appendLine(line),
      showError: (message, code) => showHostError(message, code),
      exportNotebook,
      save: saveFileWithDialog,
      openResult,
    });
    this.disposables.push(
      host.onDidChangeState(() => this.controller.hostStateChanged()),
      host.onHostEvent((e) => this.controller.hostEvent(e)),
      host.onTextDelta((d) => this.controller.textDelta(d.requestId, d.text)),
    );
  }

  get conversations(): readonly Conversation[] {
    return this.controller.conversations;
  }

  active(): Conversation | undefined {
    return this.controller.active();
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    this.ready = false;
    const ext = this.context.extensionUri;
    view.webview.options = webviewOptions(ext);
    view.webview.html = webviewHtml(view.webview, ext, vscode.env.language || 'en', 'chat');
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
    view.webview.onDidReceiveMessage(
      (m: unknown) => {
        if ((m as { type?: unknown } | null)?.type === 'ready') this.ready = true;
        void this.controller.receive(m);
      },
      null,
      this.disposables,
    );
  }

  private post(m: ExtensionMessage): void {
    if (this.view && this.ready) void this.view.webview.postMessage(m);
  }

  /** Opens the chat on `uri` in a new conversation and asks `prompt` (the "Segment Image…" command). */
  async segmentFile(uri: vscode.Uri, prompt: string): Promise<SegmentResult | undefined> {
    await vscode.commands.executeCommand(`${ChatViewProvider.viewId}.focus`);
    const c = await this.controller.setImage(uri.scheme === 'file' ? uri.fsPath : uri.toString());
    return this.controller.runTurn(c, prompt);
  }

  dispose(): void {
    this.controller.dispose();
    for (const d of this.disposables) d.dispose();
  }
}

/** A host error as a notification; without a model it offers to choose one. */
export function showHostError(message: string, code?: number): void {
  if (code !== RpcErrorCode.ModelNotLoaded) {
    void vscode.window.showErrorMessage(message);
    return;
  }
  const pick = vscode.l10n.t('Select Model…');
  void vscode.window
    .showErrorMessage(message, pick)
    .then((a) => a === pick && vscode.commands.executeCommand('reasonSegment.selectModel'));
}
