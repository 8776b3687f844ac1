// Results in the editor area: one webview panel per conversation, opened beside the active editor (the image), that
// shows a turn's result as large as the editor allows (src/webview/result.ts: zoom, pan, explanation, mask list, the
// shared overlay). It follows its conversation: when a follow-up answers, the panel shows the new result.
import * as vscode from 'vscode';
import {
  type Conversation,
  type ConversationImage,
  type ImagePayload,
  type RefineMessage,
  type Turn,
  validateWebviewMessage,
  type WebviewMessage,
} from '../protocol/chat';
import type { RefineParams, RefineResult } from '../protocol/rpc';
import { resultMessageOf } from './chatController';
import { describeError } from './host';
import { saveFileWithDialog } from './imageFiles';
import { webviewHtml, webviewOptions } from './webviewHtml';

interface Open {
  panel: vscode.WebviewPanel;
  conversation: Conversation;
  turnId: string;
  ready: boolean;
}

export class ResultPanels implements vscode.Disposable {
  static readonly viewType = 'reasonSegment.result';
  private readonly open = new Map<string, Open>();

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly log: vscode.OutputChannel,
    private readonly refine: (params: RefineParams) => Promise<RefineResult>,
    /** The chat's side of the panel: the picture for a webview (ChatController.webviewImage) and the kept masks. */
    private readonly chat: {
      webviewImage(image: ConversationImage): Promise<ImagePayload>;
      receive(message: unknown): Promise<void>;
    },
  ) {}

  /** Shows turn `turnId` of `c` in its conversation's panel (created beside the active editor when needed). */
  async show(c: Conversation, turnId: string): Promise<void> {
    const turn = c.turns.find((t) => t.id === turnId && t.status === 'done' && t.result);
    if (!turn) throw new Error(vscode.l10n.t('That answer has no result to show.'));
    let o = this.open.get(c.id);
    if (!o) {
      const panel = vscode.window.createWebviewPanel(
        ResultPanels.viewType,
        title(c),
        { viewColumn: vscode.ViewColumn.Beside, preserveFocus: false },
        { ...webviewOptions(this.extensionUri), retainContextWhenHidden: true },
      );
      panel.iconPath = vscode.Uri.joinPath(this.extensionUri, 'media', 'icon-activity.svg');
      panel.webview.html = webviewHtml(panel.webview, this.extensionUri, vscode.env.language || 'en', 'result');
      const opened: Open = { panel, conversation: c, turnId, ready: false };
      this.open.set(c.id, opened);
      panel.onDidDispose(() => this.open.delete(c.id));
      panel.webview.onDidReceiveMessage((m: unknown) => void this.receive(opened, m));
      o = opened;
    } else {
      o.conversation = c;
      o.turnId = turnId;
      o.panel.title = title(c);
      o.panel.reveal(undefined, false);
    }
    if (o.ready) await this.post(o);
  }

  /** A turn finished: its conversation's panel, if open, shows it. */
  follow(c: Conversation, t: Turn): void {
    const o = this.open.get(c.id);
    if (!o || !t.result) return;
    o.conversation = c;
    o.turnId = t.id;
    o.panel.title = title(c);
    if (o.ready) void this.post(o);
  }

  private async receive(o: Open, raw: unknown): Promise<void> {
    const problems = validateWebviewMessage(raw);
    const m = raw as WebviewMessage;
    if (problems.length || !['ready', 'save', 'refine', 'keepMask'].includes(m.type)) {
      this.log.appendLine(`[result] ignored a message from the results panel: ${problems.slice(0, 3).join('; ')}`);
      return;
    }
    try {
      if (m.type === 'ready') {
        o.ready = true;
        await this.post(o);
      } else if (m.type === 'save') {
        await saveFileWithDialog(m);
      } else if (m.type === 'refine') {
        await this.answerRefine(o, m);
      } else if (m.type === 'keepMask') {
        await this.chat.receive(m); // the chat controller stores it in the conversation
      }
    } catch (e) {
      void vscode.window.showErrorMessage((e as Error).message);
    }
  }

  /** A refine request from the panel, to the host; the answer (or one line why not) goes back as `refined`. */
  private async answerRefine(o: Open, m: RefineMessage): Promise<void> {
    const resultId = o.conversation.turns.find((t) => t.id === m.turnId)?.result?.resultId;
    try {
      if (!resultId)
        throw new Error(vscode.l10n.t('This result cannot be refined (it was made before refining existed).'));
      const r = await this.refine({ resultId, maskIndex: m.maskIndex, prompt: m.prompt });
      void o.panel.webview.postMessage({ type: 'refined', requestId: m.requestId, mask: r.mask });
    } catch (e) {
      void o.panel.webview.postMessage({ type: 'refined', requestId: m.requestId, error: describeError(e).message });
    }
  }

  private async post(o: Open): Promise<void> {
    const c = o.conversation;
    if (!c.image) return;
    try {
      const m = resultMessageOf(c, o.turnId, await this.chat.webviewImage(c.image));
      if (m) void o.panel.webview.postMessage(m);
    } catch (e) {
      void vscode.window.showErrorMessage((e as Error).message);
    }
  }

  dispose(): void {
    for (const o of this.open.values()) o.panel.dispose();
    this.open.clear();
  }
}

function title(c: Conversation): string {
  return vscode.l10n.t('Result: {0}', c.image?.name ?? '');
}
