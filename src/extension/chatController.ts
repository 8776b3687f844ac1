// The chat's logic, without VS Code: conversations (stored through a port; the source of truth, surviving reloads and
// host crashes), turns and follow-ups (history by `historyOf`, the cached image by its hash), fitting the context,
// retry and stop, host errors turned into the one line the webview shows. Every message from the webview is checked
// with src/protocol/chat.ts's validator before use. chatView.ts adapts it to a WebviewView; the tests drive it with a
// real host process and the real webview bundle in Chromium.
import { randomBytes } from 'node:crypto';
import {
  type ChatHostState,
  type ChatModelInfo,
  type ChatSaveMessage,
  type Conversation,
  type ConversationImage,
  type ExtensionMessage,
  historyOf,
  type ImagePayload,
  type KeepMaskMessage,
  type ResultMessage,
  type Turn,
  validateWebviewMessage,
  type WebviewMessage,
} from '../protocol/chat';
import type { SegmentResult } from '../protocol/result';
import { RpcErrorCode, type SegmentParams } from '../protocol/rpc';
import { askWithinContext } from './fitContext';
import type { HostRequestError } from './hostError';
import type { Translate } from './hostStatus';
import type { RenditionStore } from './renditions';

const MAX_CONVERSATIONS = 30;
/** Overlay PNGs kept in the stored state only below this size (they make exported notebooks show in plain Jupyter). */
const MAX_STORED_OVERLAY = 1.5 * 1024 * 1024;

export interface StoredChats {
  conversations: Conversation[];
  activeId: string | null;
}

/** The host process as the extension sees it. */
export type HostProcessState = 'stopped' | 'starting' | 'running' | 'crashed';

/** A change to the host that the chat tells the user about (a subset of host.ts's HostEvent). */
export interface ChatHostEvent {
  kind: 'started' | 'stopped' | 'crashed' | 'restarting' | 'modelLoaded' | string;
  message?: string;
}

/** What the controller needs from its surroundings (VS Code in the extension; plain Node in the tests). */
export interface ChatPorts {
  /** One segment request to the host; rejects with anything `describeError` understands. */
  segment(params: SegmentParams, signal: AbortSignal): Promise<SegmentResult>;
  describeError(e: unknown): HostRequestError;
  hostState(): HostProcessState;
  model(): ChatModelInfo | undefined;
  /** The image's bytes for the webview. */
  readImage(path: string): Promise<ImagePayload>;
  /** Where TIFF images' PNG renditions are kept across window reloads (the extension's storage). */
  renditions: RenditionStore;
  /** Checks that `path` (a path or URI string from a message) is an image file; throws a message for the user. */
  checkImage(path: string): Promise<ConversationImage>;
  /** The user's choice of an image file, or undefined. */
  pickImage(): Promise<string | undefined>;
  load(): StoredChats | undefined;
  store(s: StoredChats): void;
  post(m: ExtensionMessage): void;
  t: Translate;
  log(line: string): void;
  /** A message for the user outside the webview (a notification); `code` lets the adapter add an action. */
  showError(message: string, code?: number): void;
  exportNotebook(c: Conversation, overlays: ReadonlyMap<string, string>): Promise<void>;
  save(m: ChatSaveMessage): Promise<void>;
  /** Shows a turn's result in the editor area ("Open beside"). */
  openResult?(c: Conversation, turnId: string): Promise<void>;
}

const isTiff = (p: string) => /\.tiff?$/i.test(p);

export function newId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

export class ChatController {
  private store: StoredChats;
  private readonly running = new Map<string, { turnId: string; abort: AbortController }>();
  /** Overlay PNGs of this session's turns (not all are persisted, see MAX_STORED_OVERLAY). */
  readonly overlays = new Map<string, string>();
  private readonly turnListeners = new Set<(c: Conversation, t: Turn) => void>();
  private hadCrash = false;

  constructor(private readonly p: ChatPorts) {
    this.store = this.restore();
  }

  get conversations(): readonly Conversation[] {
    return this.store.conversations;
  }

  active(): Conversation | undefined {
    return this.store.conversations.find((c) => c.id === this.store.activeId);
  }

  /** Called after each turn that finished with a result (the results panel follows its conversation). */
  onTurnDone(f: (c: Conversation, t: Turn) => void): { dispose(): void } {
    this.turnListeners.add(f);
    return { dispose: () => this.turnListeners.delete(f) };
  }

  // ---- storage -------------------------------------------------------------------------------------------------

  private restore(): StoredChats {
    const s = this.p.load();
    const conversations = Array.isArray(s?.conversations) ? s.conversations : [];
    // A turn that was streaming when the window closed will never finish.
    for (const c of conversations) {
      for (const t of c.turns) {
        if (t.status === 'streaming') {
          t.status = 'failed';
          t.error = this.p.t('Interrupted when the window was closed.');
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
    this.p.store(this.store);
  }

  // ---- host --------------------------------------------------------------------------------------------------------

  private chatHostState(): ChatHostState {
    const s = this.p.hostState();
    if (this.running.size > 0 && s === 'running') return 'busy';
    return s === 'running' ? 'ready' : s;
  }

  private postHostState(): void {
    this.p.post({ type: 'hostState', hostState: this.chatHostState(), model: this.p.model() });
  }

  hostStateChanged(): void {
    this.postHostState();
  }

  hostEvent(e: ChatHostEvent): void {
    if (e.kind === 'crashed' || e.kind === 'stopped') {
      this.p.post({
        type: 'hostEvent',
        kind: 'crashed',
        message: e.message ?? this.p.t('The inference host stopped.'),
      });
    } else if (e.kind === 'started') {
      // After a crash or a Restart Host: tell the panel and resend the whole state.
      if (this.hadCrash) {
        this.hadCrash = false;
        this.p.post({
          type: 'hostEvent',
          kind: 'restarted',
          message: this.p.t('The inference host was restarted; your conversation is kept.'),
        });
      }
      this.postState();
    } else if (e.kind === 'modelLoaded') {
      this.postHostState();
    }
    if (e.kind === 'crashed' || e.kind === 'restarting') this.hadCrash = true;
  }

  /** A streamed piece of the answer of request `requestId`. */
  textDelta(requestId: string, text: string): void {
    for (const [cid, r] of this.running) {
      if (r.turnId !== requestId) continue;
      const t = this.store.conversations.find((c) => c.id === cid)?.turns.find((x) => x.id === requestId);
      if (t) t.answer += text;
      this.p.post({ type: 'textDelta', conversationId: cid, turnId: requestId, text });
    }
  }

  // ---- webview -----------------------------------------------------------------------------------------------------

  /** The whole state, then the active conversation's image (what a new or reloaded webview needs). */
  async resync(): Promise<void> {
    this.postState();
    await this.postImage(this.active());
  }

  private postState(): void {
    this.p.post({
      type: 'state',
      conversations: this.store.conversations,
      activeId: this.store.activeId,
      hostState: this.chatHostState(),
      model: this.p.model(),
    });
  }

  /**
   * A conversation's picture for a webview (the side bar and the results panel): the file's bytes, or for a TIFF, which no
   * webview decodes, the host's PNG rendition of it from its last turn (kept across window reloads; until a turn has
   * run on it, a TIFF has none and its picture is missing).
   */
  async webviewImage(image: ConversationImage): Promise<ImagePayload> {
    return (isTiff(image.path) && (await this.p.renditions.get(image.path))) || this.p.readImage(image.path);
  }

  private async postImage(c: Conversation | undefined): Promise<void> {
    if (!c?.image) return;
    try {
      const payload = await this.webviewImage(c.image);
      this.p.post({
        type: 'image',
        conversationId: c.id,
        image: { ...payload, width: c.image.width ?? payload.width, height: c.image.height ?? payload.height },
      });
    } catch (e) {
      this.p.log(`[chat] cannot read ${c.image.path}: ${(e as Error).message}`);
    }
  }

  /** A message from the webview: checked, then acted on. Errors become a notification, never a throw. */
  async receive(raw: unknown): Promise<void> {
    const problems = validateWebviewMessage(raw);
    if (problems.length) {
      this.p.log(`[chat] ignored an invalid message from the webview: ${problems.slice(0, 3).join('; ')}`);
      return;
    }
    const m = raw as WebviewMessage;
    try {
      switch (m.type) {
        case 'ready':
          await this.resync();
          break;
        case 'pickImage': {
          const picked = await this.p.pickImage();
          if (picked) await this.setImage(picked);
          break;
        }
        case 'setImage':
          await this.setImage(m.path);
          break;
        case 'ask': {
          const c = this.find(m.conversationId);
          if (!c) return;
          if (m.retryOf)
            c.turns = c.turns.filter((t) => t.id !== m.retryOf || t.status === 'done' || t.status === 'streaming');
          await this.runTurn(c, m.prompt);
          break;
        }
        case 'stop':
          this.running.get(m.conversationId)?.abort.abort();
          break;
        case 'newConversation':
          this.newConversation(this.active()?.image);
          break;
        case 'selectConversation':
          if (this.find(m.conversationId)) {
            this.store.activeId = m.conversationId;
            this.save();
            await this.resync();
          }
          break;
        case 'exportNotebook': {
          const c = this.find(m.conversationId);
          if (c) await this.p.exportNotebook(...this.forExport(c));
          break;
        }
        case 'openResult': {
          const c = this.find(m.conversationId);
          if (c && this.p.openResult) await this.p.openResult(c, m.turnId);
          break;
        }
        case 'save':
          await this.p.save(m);
          break;
        case 'keepMask':
          this.keepMask(m);
          break;
      }
    } catch (e) {
      const err = this.p.describeError(e);
      this.p.showError(err.message, err.code);
    }
  }

  /**
   * The results panel now shows `m.mask` for a turn's mask (a refine answered, an undo, a redo): that is the mask the
   * user keeps, so it replaces the stored one, and the side bar, the panel reopened and exports show it (a refined
   * mask carries `refined`, its prompts). Undoing back to the answer's mask stores that again.
   */
  private keepMask(m: KeepMaskMessage): void {
    const turn = this.find(m.conversationId)?.turns.find((t) => t.id === m.turnId && t.status === 'done');
    const old = turn?.result?.masks[m.maskIndex];
    if (!turn?.result || !old || old.segIndex !== m.mask.segIndex) {
      this.p.log(`[chat] ignored a kept mask for a mask that does not exist (${m.turnId} #${m.maskIndex})`);
      return;
    }
    if (JSON.stringify(old) === JSON.stringify(m.mask)) return;
    // A new masks array: results already handed out (a panel's message) keep theirs.
    turn.result = { ...turn.result, masks: turn.result.masks.map((x, k) => (k === m.maskIndex ? m.mask : x)) };
    this.save();
    this.postState();
  }

  /** A conversation as exported (Export to notebook): a turn with a refined mask leaves out the host's overlay PNG,
   *  which shows the masks as answered, not as kept. */
  forExport(c: Conversation): [Conversation, Map<string, string>] {
    const overlays = new Map(this.overlays);
    const turns = c.turns.map((t) => {
      if (!t.result?.masks.some((x) => x.refined)) return t;
      overlays.delete(t.id);
      const { overlayPng: _stale, ...result } = t.result;
      return { ...t, result };
    });
    return [{ ...c, turns }, overlays];
  }

  private find(id: string): Conversation | undefined {
    return this.store.conversations.find((c) => c.id === id);
  }

  // ---- conversations -----------------------------------------------------------------------------------------------

  private newConversation(image?: ConversationImage): Conversation {
    const c: Conversation = { id: newId('c'), image, turns: [], createdAt: Date.now() };
    this.store.conversations.push(c);
    this.store.activeId = c.id;
    this.save();
    this.postState();
    void this.postImage(c);
    return c;
  }

  /** Sets the image of the active conversation when it has no turns yet; otherwise starts a new conversation. */
  async setImage(path: string): Promise<Conversation> {
    const image = await this.p.checkImage(path);
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

  /** Asks `prompt` in conversation `c` (a follow-up when it has done turns); resolves with the result, or undefined
   *  when the turn failed or was stopped (the webview has been told either way). */
  async runTurn(c: Conversation, prompt: string): Promise<SegmentResult | undefined> {
    const t = this.p.t;
    if (!c.image) throw new Error(t('Choose an image first.'));
    if (this.running.has(c.id)) throw new Error(t('This conversation is still answering; stop it or wait.'));
    const history = historyOf(c);
    const lastSha = [...c.turns].reverse().find((x) => x.status === 'done' && x.result)?.result?.image.sha256;
    const turn: Turn = { id: newId('t'), prompt, answer: '', status: 'streaming' };
    c.turns.push(turn);
    this.store.activeId = c.id;
    const abort = new AbortController();
    this.running.set(c.id, { turnId: turn.id, abort });
    this.save();
    this.p.post({ type: 'turnStarted', conversationId: c.id, turnId: turn.id, prompt });
    this.p.post({ type: 'hostState', hostState: 'busy', model: this.p.model() });
    const imagePath = c.image.path;
    const tiff = isTiff(imagePath);
    const tooLong = (e: unknown) => this.p.describeError(e).code === RpcErrorCode.PromptTooLong;
    try {
      const { result, trimmed } = await askWithinContext(
        history,
        async (fitted) => {
          const base: Omit<SegmentParams, 'image'> = {
            requestId: turn.id,
            prompt,
            history: fitted,
            conversationId: c.id,
            includeOverlay: true,
            includeImage: tiff,
          };
          if (lastSha) {
            // A follow-up: the host still holds the decoded image and both embeddings under its hash.
            try {
              return await this.p.segment({ ...base, image: { sha256: lastSha } }, abort.signal);
            } catch (e) {
              const err = this.p.describeError(e);
              if (
                err.cancelled ||
                (err.code !== RpcErrorCode.ImageUnreadable && err.code !== RpcErrorCode.ParamsInvalid)
              )
                throw err;
              turn.answer = '';
            }
          }
          return this.p.segment({ ...base, image: { path: imagePath } }, abort.signal);
        },
        tooLong,
      );
      const stored: SegmentResult = { ...result, image: { ...result.image } };
      if (result.image.data && tiff) {
        // Webviews cannot show a TIFF: they get the host's PNG re-encoding instead of the file.
        const rendition: ImagePayload = {
          name: c.image.name,
          width: result.image.width,
          height: result.image.height,
          data: result.image.data,
          mimeType: result.image.mimeType ?? 'image/png',
        };
        await this.p.renditions.put(imagePath, rendition);
        this.p.post({ type: 'image', conversationId: c.id, image: rendition });
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
      this.p.post({ type: 'turnDone', conversationId: c.id, turnId: turn.id, result: stored, trimmed });
      if (trimmed) this.p.log(`[chat] left out the ${trimmed} oldest turn(s) to fit the model's context`);
      this.p.log(
        `[chat] turn done in ${result.timings.totalMs.toFixed(0)} ms (cacheHit ${result.timings.cacheHit}, ${result.masks.length} masks)`,
      );
      for (const f of this.turnListeners) f(c, turn);
      return result;
    } catch (e) {
      const err = this.p.describeError(e);
      turn.status = err.cancelled ? 'cancelled' : 'failed';
      turn.error = err.message;
      // Too long even with every earlier turn left out: only a shorter instruction can help, not the same again.
      if (tooLong(err)) {
        turn.retryable = false;
        turn.error = t(
          "This instruction does not fit in the model's context even without the earlier turns: shorten it.",
        );
      }
      this.save();
      this.p.post({
        type: 'turnFailed',
        conversationId: c.id,
        turnId: turn.id,
        message: turn.error,
        cancelled: err.cancelled,
        retryable: turn.retryable,
      });
      if (!err.cancelled) this.p.log(`[chat] turn failed: ${err.message}`);
      if (err.code === RpcErrorCode.ModelNotLoaded) this.p.showError(err.message, err.code);
      return undefined;
    } finally {
      this.running.delete(c.id);
      this.postHostState();
    }
  }

  dispose(): void {
    for (const r of this.running.values()) r.abort.abort();
    this.turnListeners.clear();
  }
}

/** What the results panel shows for turn `turnId` of `c`: its result with the image bytes, and where it stands among
 *  the conversation's answers. Undefined when that turn has no result. */
export function resultMessageOf(c: Conversation, turnId: string, image: ImagePayload): ResultMessage | undefined {
  const turn = c.turns.find((t) => t.id === turnId);
  if (!turn?.result) return undefined;
  const done = c.turns.filter((t) => t.status === 'done' && t.result);
  return {
    type: 'result',
    conversationId: c.id,
    turnId: turn.id,
    prompt: turn.prompt,
    imageName: c.image?.name ?? image.name,
    turnIndex: done.indexOf(turn) + 1,
    turnCount: done.length,
    result: { ...turn.result, image: { ...turn.result.image, data: image.data, mimeType: image.mimeType } },
  };
}
