// The chat panel UI: image header (thumbnail, name, "Choose image…", drop zone), conversation picker and actions, the
// conversation (prompt bubbles; answers that stream in, then the shared overlay view with the turn's masks), host
// notices, and the composer (Enter sends, Shift+Enter new line, Stop while an answer streams, Esc stops too).
// DOM only; talks to the extension through the webview API's postMessage only. Every control is a real button,
// select or textarea with a label, so the panel works from the keyboard and with a screen reader.

import { domHelpers } from '../overlay/dom';
import { type Translate, translator } from '../overlay/l10n';
import { createSegmentView, type SaveFile, type SegmentView } from '../overlay/view';
import {
  type AskMessage,
  type Conversation,
  type ExtensionMessage,
  type Turn,
  validateExtensionMessage,
  type WebviewMessage,
} from '../protocol/chat';
import type { SegmentResult } from '../protocol/result';
import {
  activeConversation,
  apply,
  type ChatState,
  emptyState,
  fromCached,
  isBusy,
  type Notice,
  toCached,
} from './state';
import { ensureChatStyles } from './styles';

/** The object `acquireVsCodeApi()` returns in a webview. */
export interface VsCodeApi {
  postMessage(message: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
}

export interface ChatApp {
  readonly state: ChatState;
  /** Applies a message from the extension (what the window 'message' listener calls). */
  receive(message: unknown): void;
  dispose(): void;
}

const HOST_STATE_TEXT: Record<ChatState['hostState'], string> = {
  stopped: 'Host not started',
  starting: 'Host starting…',
  ready: 'Host ready',
  busy: 'Host busy',
  crashed: 'Host crashed',
};

export function createChatApp(root: HTMLElement, api: VsCodeApi, opts: { nonce?: string } = {}): ChatApp {
  const doc = root.ownerDocument;
  const tr = translator(doc.documentElement.lang);
  ensureChatStyles(doc, opts.nonce);
  const abort = new AbortController();
  const { on, el } = domHelpers(doc, abort.signal);
  const button = (text: string, cls = '', label?: string): HTMLButtonElement => {
    const b = el('button', cls, text);
    b.type = 'button';
    if (label) b.setAttribute('aria-label', label);
    return b;
  };
  const post = (m: WebviewMessage) => api.postMessage(m);

  let state: ChatState = fromCached(api.getState()) ?? emptyState();

  // ---- shell (built once; parts are updated in place so focus and typed text survive updates) ----
  const app = el('div', 'rs-chat');
  app.setAttribute('role', 'region');
  app.setAttribute('aria-label', tr('Reason Segment chat'));

  const header = el('section', 'rs-header');
  header.setAttribute('aria-label', tr('Image'));
  const thumb = el('img', 'rs-thumb');
  thumb.alt = '';
  const thumbEmpty = el('span', 'rs-thumb rs-thumb-empty');
  thumbEmpty.setAttribute('aria-hidden', 'true');
  const imageName = el('div', 'rs-image-name');
  imageName.id = 'rs-image-name';
  const chooseBtn = button(tr('Choose image…'), 'rs-secondary');
  chooseBtn.title = tr('Choose an image file to ask about');
  header.append(thumbEmpty, imageName, chooseBtn);

  const drop = el('div', 'rs-drop', tr('Drop an image from the Explorer here (hold Shift while dragging)'));
  drop.setAttribute('aria-label', tr('Drop zone for an image file'));

  const toolbar = el('div', 'rs-toolbar-row');
  const convLabel = el('label', 'rs-sr', tr('Conversation'));
  convLabel.htmlFor = 'rs-conversation';
  const convSelect = el('select');
  convSelect.id = 'rs-conversation';
  const newBtn = button(tr('New conversation'), 'rs-secondary');
  const exportBtn = button(tr('Export to notebook'), 'rs-secondary');
  const hostStatus = el('span', 'rs-status');
  hostStatus.setAttribute('role', 'status');
  toolbar.append(convLabel, convSelect, newBtn, exportBtn, hostStatus);

  const log = el('ol', 'rs-log');
  log.setAttribute('aria-label', tr('Conversation'));
  const empty = el('p', 'rs-empty');

  const composer = el('form', 'rs-composer');
  composer.setAttribute('aria-label', tr('Ask'));
  const inputLabel = el('label', 'rs-sr', tr('Ask about the image'));
  inputLabel.htmlFor = 'rs-prompt';
  const input = el('textarea');
  input.id = 'rs-prompt';
  input.rows = 2;
  input.placeholder = tr('Ask about the image (Enter to send, Shift+Enter for a new line)');
  const actions = el('div', 'rs-composer-actions');
  const hint = el('span', 'rs-hint');
  hint.id = 'rs-hint';
  input.setAttribute('aria-describedby', 'rs-hint');
  const stopBtn = button(tr('Stop'), 'rs-secondary');
  stopBtn.title = tr('Stop the answer (Esc)');
  const sendBtn = button(tr('Send'));
  sendBtn.type = 'submit';
  actions.append(hint, stopBtn, sendBtn);
  composer.append(inputLabel, input, actions);

  app.append(header, drop, toolbar, log, empty, composer);
  root.replaceChildren(app);

  // ---- events ----
  on(chooseBtn, 'click', () => post({ type: 'pickImage' }));
  on(newBtn, 'click', () => post({ type: 'newConversation' }));
  on(exportBtn, 'click', () => state.activeId && post({ type: 'exportNotebook', conversationId: state.activeId }));
  on(convSelect, 'change', () => {
    const id = convSelect.value;
    if (!id || id === state.activeId) return;
    state.activeId = id;
    changed({ kind: 'all' });
    post({ type: 'selectConversation', conversationId: id });
  });
  on(composer, 'submit', (e) => {
    e.preventDefault();
    send();
  });
  on(input, 'keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    } else if (e.key === 'Escape' && isBusy(state, state.activeId)) {
      e.preventDefault();
      stop();
    }
  });
  on(stopBtn, 'click', () => stop());
  on(drop, 'dragover', (e) => {
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
    drop.classList.add('rs-dragover');
  });
  on(drop, 'dragleave', () => drop.classList.remove('rs-dragover'));
  on(drop, 'drop', (e) => {
    e.preventDefault();
    drop.classList.remove('rs-dragover');
    const path = droppedPath(e.dataTransfer);
    if (path) post({ type: 'setImage', path });
    else
      drop.textContent = tr(
        'That drop held no file path: drag an image from the Explorer (hold Shift), or use Choose image…',
      );
  });

  function send(): void {
    const prompt = input.value;
    const id = state.activeId;
    if (!id || prompt.trim() === '' || isBusy(state, id) || !activeConversation(state)?.image) return;
    ask({ type: 'ask', conversationId: id, prompt });
    input.value = '';
  }
  function ask(m: AskMessage): void {
    state.pending = { conversationId: m.conversationId, prompt: m.prompt, retryOf: m.retryOf };
    post(m);
    changed({ kind: 'all' });
  }
  function stop(): void {
    if (state.activeId) post({ type: 'stop', conversationId: state.activeId });
    stopBtn.disabled = true;
  }

  // ---- rendering ----
  interface TurnEntry {
    key: string;
    li: HTMLElement;
    answer?: HTMLElement;
    view?: SegmentView;
  }
  const turnEls = new Map<string, TurnEntry>();
  const noticeEls = new Map<number, HTMLElement>();

  function render(): void {
    const c = activeConversation(state);
    renderHeader(c);
    renderToolbar(c);
    renderLog(c);
    renderComposer(c);
  }

  function renderHeader(c: Conversation | undefined): void {
    const img = c ? state.images[c.id] : undefined;
    if (img && c) {
      const src = `data:${img.mimeType};base64,${img.data}`;
      if (thumb.getAttribute('src') !== src) thumb.src = src;
      thumb.alt = tr('Thumbnail of {0}', c.image?.name ?? img.name);
      if (!thumb.isConnected) thumbEmpty.replaceWith(thumb);
    } else if (thumb.isConnected) {
      thumb.replaceWith(thumbEmpty);
    }
    const im = c?.image;
    imageName.textContent = im
      ? `${im.name}${im.width && im.height ? ` (${im.width}×${im.height})` : ''}`
      : tr('No image chosen');
    imageName.title = im?.path ?? '';
  }

  function renderToolbar(c: Conversation | undefined): void {
    const convs = [...state.conversations].sort((a, b) => b.createdAt - a.createdAt);
    convSelect.hidden = convs.length < 2;
    convLabel.hidden = convs.length < 2;
    const want = convs.map((x) => `${x.id}\u0000${conversationTitle(x, tr, doc.documentElement.lang)}`).join('\u0001');
    if (convSelect.dataset.key !== want) {
      convSelect.replaceChildren(
        ...convs.map((x) => {
          const o = el('option', undefined, conversationTitle(x, tr, doc.documentElement.lang));
          o.value = x.id;
          return o;
        }),
      );
      convSelect.dataset.key = want;
    }
    if (c) convSelect.value = c.id;
    exportBtn.disabled = !c?.turns.some((t) => t.status === 'done');
    const model = state.model ? ` · ${state.model.variant} (${state.model.provider})` : '';
    hostStatus.textContent = `${tr(HOST_STATE_TEXT[state.hostState])}${model}`;
  }

  function renderLog(c: Conversation | undefined): void {
    const wanted: HTMLElement[] = [];
    const keep = new Set<string>();
    const notices = state.notices.filter((n) => n.conversationId === (c?.id ?? null));
    const turns = c?.turns ?? [];
    const pushNotices = (after: number) => {
      for (const n of notices) if (Math.min(n.afterTurns, turns.length) === after) wanted.push(noticeEl(n));
    };
    pushNotices(0);
    turns.forEach((t, i) => {
      const id = `${c!.id}/${t.id}`;
      keep.add(id);
      const key = turnKey(c!, t);
      let entry = turnEls.get(id);
      if (!entry || entry.key !== key) {
        entry?.view?.dispose();
        entry = buildTurn(c!, t, key);
        turnEls.set(id, entry);
      }
      wanted.push(entry.li);
      pushNotices(i + 1);
    });
    if (state.pending && c && state.pending.conversationId === c.id) wanted.push(pendingEl(state.pending.prompt));
    for (const [id, entry] of turnEls) {
      if (!keep.has(id)) {
        entry.view?.dispose();
        turnEls.delete(id);
      }
    }
    // Reorder / replace children only where they differ (keeps focus inside unchanged turns).
    wanted.forEach((node, i) => {
      if (log.children[i] !== node) log.insertBefore(node, log.children[i] ?? null);
    });
    while (log.children.length > wanted.length) log.lastElementChild!.remove();
    empty.hidden = turns.length > 0 || !!state.pending;
    empty.textContent = !c?.image
      ? tr('Choose an image (button above, drag and drop, or "Segment Image…" in the Explorer), then ask about it.')
      : tr('Ask about the image: for example "Segment the object a driver reads the speed from."');
  }

  function renderComposer(c: Conversation | undefined): void {
    const busy = isBusy(state, c?.id ?? null);
    const streaming = !!c?.turns.some((t) => t.status === 'streaming');
    stopBtn.hidden = !busy;
    stopBtn.disabled = !streaming;
    sendBtn.disabled = busy || !c?.image;
    hint.textContent = !c?.image ? tr('Choose an image first.') : busy ? tr('Answering… (Esc to stop)') : '';
  }

  function turnKey(c: Conversation, t: Turn): string {
    const hasImage = !!state.images[c.id] || !!t.result?.image?.data;
    // A mask refined in the results panel (or set back by an undo) is stored in the turn: its prompts are in the key.
    const refined = t.result?.masks.map((m) => (m.refined ? JSON.stringify(m.refined) : '')).join(';') ?? '';
    return `${t.status}|${t.status === 'done' && hasImage ? 'img' : ''}|${t.error ?? ''}|${refined}`;
  }

  function buildTurn(c: Conversation, t: Turn, key: string): TurnEntry {
    const li = el('li', 'rs-turn');
    li.dataset.turnId = t.id;
    li.dataset.status = t.status;
    const user = el('div', 'rs-bubble rs-user');
    user.append(el('span', 'rs-who', tr('You')), el('div', 'rs-msg', t.prompt));
    const bot = el('div', 'rs-bubble rs-assistant');
    bot.append(el('span', 'rs-who', tr('Reason Segment')));
    li.append(user, bot);
    const entry: TurnEntry = { key, li };

    if (t.status === 'streaming') {
      const answer = el('div', 'rs-answer', t.answer);
      answer.setAttribute('aria-live', 'polite');
      answer.setAttribute('aria-busy', 'true');
      answer.setAttribute('aria-label', tr('Answer, streaming'));
      bot.append(answer);
      entry.answer = answer;
      return entry;
    }
    if (t.status === 'done' && t.result) {
      const result = withImage(t.result, state.images[c.id]);
      if (result.masks.length > 0 && result.image.data) {
        const holder = el('div', 'rs-result');
        bot.append(holder);
        try {
          entry.view = createSegmentView(holder, result, {
            styleNonce: opts.nonce,
            t: tr,
            save: (file: SaveFile) => post({ type: 'save', conversationId: c.id, turnId: t.id, ...file }),
          });
        } catch (e) {
          holder.append(
            el('div', 'rs-answer', t.answer),
            el('div', 'rs-turn-error', tr('The masks cannot be shown: {0}', (e as Error).message)),
          );
        }
      } else {
        bot.append(el('div', 'rs-answer', t.answer));
        if (result.masks.length > 0)
          bot.append(el('div', 'rs-turn-note', tr('{0} mask(s); the image is loading…', result.masks.length)));
      }
      const n = t.result.masks.length;
      const ms = t.result.timings?.totalMs;
      if (t.trimmed)
        bot.append(
          el(
            'div',
            'rs-turn-note rs-trimmed',
            tr("The {0} oldest turn(s) were left out so that this one fits the model's context.", t.trimmed),
          ),
        );
      bot.append(
        el(
          'div',
          'rs-turn-note',
          `${n === 0 ? tr('No masks') : n === 1 ? tr('1 mask') : tr('{0} masks', n)}${typeof ms === 'number' ? ` · ${(ms / 1000).toFixed(1)} s` : ''}` +
            `${t.result.timings?.cacheHit ? ` · ${tr('image encoders skipped (cached)')}` : ''}`,
        ),
      );
      const row = el('div', 'rs-turn-actions');
      const open = button(tr('Open beside'), 'rs-secondary rs-open-beside', tr('Open this result beside the image'));
      open.title = tr('Open this result beside the image');
      on(open, 'click', () => post({ type: 'openResult', conversationId: c.id, turnId: t.id }));
      row.append(open);
      bot.append(row);
      return entry;
    }
    if (t.status === 'done') {
      bot.append(el('div', 'rs-answer', t.answer));
      return entry;
    }
    // failed or cancelled
    if (t.answer) bot.append(el('div', 'rs-answer', t.answer));
    const msg = el(
      'div',
      t.status === 'failed' ? 'rs-turn-error' : 'rs-turn-note',
      t.status === 'cancelled' ? tr('Stopped.') : (t.error ?? tr('The answer failed.')),
    );
    if (t.status === 'failed') msg.setAttribute('role', 'alert');
    bot.append(msg);
    if (t.retryable === false) return entry;
    const row = el('div', 'rs-turn-actions');
    const retry = button(tr('Retry'), 'rs-secondary', tr('Retry: {0}', t.prompt.slice(0, 80)));
    on(retry, 'click', () => {
      if (!isBusy(state, c.id) && t.prompt) ask({ type: 'ask', conversationId: c.id, prompt: t.prompt, retryOf: t.id });
    });
    row.append(retry);
    bot.append(row);
    return entry;
  }

  let pendingNode: HTMLElement | null = null;
  function pendingEl(prompt: string): HTMLElement {
    if (!pendingNode || pendingNode.dataset.prompt !== prompt) {
      pendingNode = el('li', 'rs-turn');
      pendingNode.dataset.prompt = prompt;
      pendingNode.dataset.status = 'pending';
      const user = el('div', 'rs-bubble rs-user');
      user.append(el('span', 'rs-who', tr('You')), el('div', 'rs-msg', prompt));
      const bot = el('div', 'rs-bubble rs-assistant');
      bot.append(el('span', 'rs-who', tr('Reason Segment')), el('div', 'rs-turn-note', tr('Waiting for the host…')));
      pendingNode.append(user, bot);
    }
    return pendingNode;
  }

  function noticeEl(n: Notice): HTMLElement {
    let li = noticeEls.get(n.id);
    if (!li) {
      li = el('li', `rs-notice rs-${n.kind}`, n.message);
      li.setAttribute('role', n.kind === 'crashed' ? 'alert' : 'status');
      li.dataset.notice = n.kind;
      noticeEls.set(n.id, li);
    }
    return li;
  }

  // ---- state updates ----
  let saveTimer: ReturnType<typeof setTimeout> | undefined;
  function persist(): void {
    if (saveTimer !== undefined) return;
    saveTimer = setTimeout(() => {
      saveTimer = undefined;
      api.setState(toCached(state));
    }, 200);
  }

  function changed(ch: ReturnType<typeof apply>): void {
    if (ch.kind === 'none') return;
    // Follow the newest text while the reader is at the bottom; leave them where they are if they scrolled up.
    const se = doc.scrollingElement;
    const atBottom = !!se && se.scrollHeight - se.scrollTop - se.clientHeight < 60;
    if (ch.kind === 'text') {
      const entry = turnEls.get(`${ch.conversationId}/${ch.turnId}`);
      const turn = state.conversations.find((x) => x.id === ch.conversationId)?.turns.find((x) => x.id === ch.turnId);
      if (entry?.answer && turn) entry.answer.textContent = turn.answer;
      else render();
    } else {
      render();
    }
    if (atBottom && se) se.scrollTop = se.scrollHeight;
    persist();
  }

  function receive(message: unknown): void {
    const problems = validateExtensionMessage(message);
    if (problems.length) {
      console.warn(`Reason Segment chat: ignored a message (${problems.slice(0, 3).join('; ')})`);
      return;
    }
    changed(apply(state, message as ExtensionMessage));
  }

  render();

  return {
    get state() {
      return state;
    },
    receive,
    dispose() {
      abort.abort();
      for (const e of turnEls.values()) e.view?.dispose();
      turnEls.clear();
      if (saveTimer !== undefined) clearTimeout(saveTimer);
      root.replaceChildren();
      state = emptyState();
    },
  };
}

function withImage(result: SegmentResult, image: { data: string; mimeType: string } | undefined): SegmentResult {
  if (result.image?.data || !image) return result;
  return { ...result, image: { ...result.image, data: image.data, mimeType: image.mimeType } };
}

function conversationTitle(c: Conversation, tr: Translate, lang?: string): string {
  const first = c.turns[0]?.prompt.trim();
  const when = new Date(c.createdAt);
  const time = Number.isFinite(when.getTime()) ? when.toLocaleString(lang || undefined) : '';
  const what = first
    ? first.length > 40
      ? `${first.slice(0, 40)}…`
      : first
    : (c.image?.name ?? tr('New conversation'));
  return time ? `${what} (${time})` : what;
}

/** The first path from a drop: VS Code's URI list, a plain URI list, or plain text (a path). */
export function droppedPath(dt: DataTransfer | null): string | undefined {
  if (!dt) return undefined;
  for (const type of ['application/vnd.code.uri-list', 'text/uri-list', 'text/plain']) {
    let data = '';
    try {
      data = dt.getData(type);
    } catch {
      continue;
    }
    const line = data
      .split(/\r?\n/)
      .map((x) => x.trim())
      .find((x) => x && !x.startsWith('#'));
    if (line) return line;
  }
  return undefined;
}
