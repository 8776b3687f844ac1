// The chat panel's state and how each message from the extension changes it. Pure (no DOM): the app renders from
// this, and caches it with the webview API's setState so a re-created webview paints at once. The extension stays the
// source of truth: a `state` message replaces the conversations wholesale.

import {
  CHAT_HOST_STATES,
  type ChatHostState,
  type ChatModelInfo,
  type Conversation,
  type ExtensionMessage,
  type ImagePayload,
  type Turn,
} from '../protocol/chat';

export interface Notice {
  id: number;
  conversationId: string | null;
  /** Shown after this many turns of its conversation. */
  afterTurns: number;
  kind: 'crashed' | 'restarted';
  message: string;
}

/** An ask posted to the extension and not yet answered with turnStarted/turnFailed. */
export interface Pending {
  conversationId: string;
  prompt: string;
  retryOf?: string;
}

export interface ChatState {
  version: 1;
  conversations: Conversation[];
  activeId: string | null;
  hostState: ChatHostState;
  model?: ChatModelInfo;
  /** Image bytes by conversation id (from `image` messages). */
  images: Record<string, ImagePayload>;
  notices: Notice[];
  pending: Pending | null;
}

/** What a message changed, so the app can repaint only that (a streaming delta touches one text node). */
export type Change = { kind: 'none' } | { kind: 'all' } | { kind: 'text'; conversationId: string; turnId: string };

export function emptyState(): ChatState {
  return {
    version: 1,
    conversations: [],
    activeId: null,
    hostState: 'stopped',
    images: {},
    notices: [],
    pending: null,
  };
}

export function activeConversation(s: ChatState): Conversation | undefined {
  return s.conversations.find((c) => c.id === s.activeId);
}

export function findTurn(s: ChatState, conversationId: string, turnId: string): Turn | undefined {
  return s.conversations.find((c) => c.id === conversationId)?.turns.find((t) => t.id === turnId);
}

/** True while a turn of the conversation streams or an ask for it waits for turnStarted. */
export function isBusy(s: ChatState, conversationId: string | null): boolean {
  if (!conversationId) return false;
  if (s.pending?.conversationId === conversationId) return true;
  const c = s.conversations.find((x) => x.id === conversationId);
  return !!c?.turns.some((t) => t.status === 'streaming');
}

let noticeCounter = 0;

/** Applies one message from the extension (already shape-checked) to `s` in place. */
export function apply(s: ChatState, msg: ExtensionMessage): Change {
  switch (msg.type) {
    case 'state': {
      s.conversations = msg.conversations.map(stripImageData);
      s.activeId = msg.activeId ?? null;
      s.hostState = msg.hostState;
      s.model = msg.model;
      const ids = new Set(s.conversations.map((c) => c.id));
      for (const k of Object.keys(s.images)) if (!ids.has(k)) delete s.images[k];
      s.notices = s.notices.filter((n) => n.conversationId === null || ids.has(n.conversationId));
      if (s.pending) {
        const c = s.conversations.find((x) => x.id === s.pending!.conversationId);
        if (!c || c.turns.some((t) => t.status === 'streaming')) s.pending = null;
      }
      return { kind: 'all' };
    }
    case 'image': {
      s.images[msg.conversationId] = msg.image;
      const c = s.conversations.find((x) => x.id === msg.conversationId);
      if (c?.image) {
        c.image.width ??= msg.image.width;
        c.image.height ??= msg.image.height;
      }
      return { kind: 'all' };
    }
    case 'turnStarted': {
      const c = s.conversations.find((x) => x.id === msg.conversationId);
      if (!c) return { kind: 'none' };
      if (s.pending?.conversationId === msg.conversationId) {
        const retryOf = s.pending.retryOf;
        if (retryOf) c.turns = c.turns.filter((t) => t.id !== retryOf);
        s.pending = null;
      }
      if (!c.turns.some((t) => t.id === msg.turnId)) {
        c.turns.push({ id: msg.turnId, prompt: msg.prompt, answer: '', status: 'streaming' });
      }
      return { kind: 'all' };
    }
    case 'textDelta': {
      const c = s.conversations.find((x) => x.id === msg.conversationId);
      if (!c) return { kind: 'none' };
      let t = c.turns.find((x) => x.id === msg.turnId);
      if (!t) {
        // turnStarted was missed (e.g. the webview was re-created mid-answer): show the turn anyway.
        t = { id: msg.turnId, prompt: s.pending?.prompt ?? '', answer: '', status: 'streaming' };
        c.turns.push(t);
        s.pending = null;
        t.answer += msg.text;
        return { kind: 'all' };
      }
      if (t.status !== 'streaming') return { kind: 'none' };
      t.answer += msg.text;
      return { kind: 'text', conversationId: c.id, turnId: t.id };
    }
    case 'turnDone': {
      const c = s.conversations.find((x) => x.id === msg.conversationId);
      if (!c) return { kind: 'none' };
      const result = msg.result;
      if (result?.image?.data && !s.images[c.id]) {
        s.images[c.id] = {
          name: c.image?.name ?? result.image.source ?? 'image',
          width: result.image.width,
          height: result.image.height,
          data: result.image.data,
          mimeType: result.image.mimeType ?? 'image/png',
        };
      }
      let t = c.turns.find((x) => x.id === msg.turnId);
      if (!t) {
        t = { id: msg.turnId, prompt: result?.prompt ?? '', answer: '', status: 'done' };
        c.turns.push(t);
      }
      if (s.pending?.conversationId === c.id) s.pending = null;
      t.status = 'done';
      t.result = stripResult(result);
      t.answer = typeof result?.answer === 'string' ? result.answer : t.answer;
      if (typeof msg.trimmed === 'number' && msg.trimmed > 0) t.trimmed = msg.trimmed;
      delete t.error;
      return { kind: 'all' };
    }
    case 'turnFailed': {
      const c = s.conversations.find((x) => x.id === msg.conversationId);
      if (!c) return { kind: 'none' };
      let t = c.turns.find((x) => x.id === msg.turnId);
      if (!t) {
        // Failed before it started (no model, unreadable image): keep the prompt so Retry can repeat it.
        const prompt = s.pending?.conversationId === c.id ? s.pending.prompt : '';
        t = { id: msg.turnId, prompt, answer: '', status: 'failed' };
        c.turns.push(t);
      }
      if (s.pending?.conversationId === c.id) {
        const retryOf = s.pending.retryOf;
        if (retryOf && retryOf !== t.id) c.turns = c.turns.filter((x) => x.id !== retryOf);
        s.pending = null;
      }
      t.status = msg.cancelled ? 'cancelled' : 'failed';
      t.error = msg.message;
      if (msg.retryable === false) t.retryable = false;
      return { kind: 'all' };
    }
    case 'hostEvent': {
      const c = activeConversation(s);
      s.notices.push({
        id: ++noticeCounter + Date.now(),
        conversationId: c?.id ?? null,
        afterTurns: c?.turns.length ?? 0,
        kind: msg.kind,
        message: msg.message,
      });
      if (s.notices.length > 50) s.notices.splice(0, s.notices.length - 50);
      s.hostState = msg.kind === 'crashed' ? 'crashed' : 'ready';
      return { kind: 'all' };
    }
    case 'hostState': {
      s.hostState = msg.hostState;
      if (msg.model) s.model = msg.model;
      return { kind: 'all' };
    }
  }
  return { kind: 'none' };
}

/** The image bytes travel once, in `image`; a result keeps only the metadata. */
function stripResult<T extends { image?: { data?: string } }>(r: T): T {
  if (!r?.image?.data) return r;
  const image = { ...r.image };
  delete image.data;
  return { ...r, image };
}

function stripImageData(c: Conversation): Conversation {
  return { ...c, turns: c.turns.map((t) => (t.result ? { ...t, result: stripResult(t.result) } : t)) };
}

/** Most image bytes kept in the cached state (a webview's state should stay small). */
const CACHED_IMAGE_CHARS = 4 * 1024 * 1024;

/** The state to hand to setState: large images left out (they come back with the next `image` message). */
export function toCached(s: ChatState): ChatState {
  const images: Record<string, ImagePayload> = {};
  let budget = CACHED_IMAGE_CHARS;
  const order = [s.activeId, ...Object.keys(s.images).filter((k) => k !== s.activeId)];
  for (const k of order) {
    const im = k ? s.images[k] : undefined;
    if (!im || im.data.length > budget) continue;
    images[k!] = im;
    budget -= im.data.length;
  }
  return { ...s, images, pending: null };
}

/** A cached state read back from getState, or null when it is missing or not ours. */
export function fromCached(v: unknown): ChatState | null {
  if (typeof v !== 'object' || v === null) return null;
  const s = v as Partial<ChatState>;
  if (s.version !== 1 || !Array.isArray(s.conversations) || !CHAT_HOST_STATES.includes(s.hostState as ChatHostState))
    return null;
  return {
    version: 1,
    conversations: s.conversations,
    activeId: typeof s.activeId === 'string' ? s.activeId : null,
    hostState: s.hostState as ChatHostState,
    model: s.model,
    images: typeof s.images === 'object' && s.images !== null ? s.images : {},
    notices: Array.isArray(s.notices) ? s.notices : [],
    pending: null,
  };
}
