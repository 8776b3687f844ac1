// Messages between the chat panel webview (src/webview/) and the extension (src/extension/), both directions, plus
// the validator the extension runs on every message FROM the webview before using it, and `historyOf`, the one rule
// for what a follow-up turn re-feeds to the host. Types and pure functions only (no DOM, node or vscode).
//
// Conversation flow:
//   webview                                   extension
//   ready                      ------------>  (restores its stored conversations)
//                              <------------  state {conversations, activeId, hostState, model}
//                              <------------  image {conversationId, image bytes}   (for the active conversation)
//   ask {conversationId, prompt} ---------->  segment request to the host, history = historyOf(conversation)
//                              <------------  turnStarted {conversationId, turnId, prompt}
//                              <------------  textDelta {conversationId, turnId, text}   (many)
//                              <------------  turnDone {conversationId, turnId, result}   or   turnFailed {..., cancelled}
//   stop {conversationId}      ------------>  cancels the running request (turnFailed with cancelled: true follows)
//
// The extension is the source of truth: it keeps every conversation (workspace state), sends the whole `state` on
// `ready` (after a window reload or a webview re-creation) and whenever it changes in a way the incremental messages
// do not cover (new conversation, image chosen, host restarted). The webview also caches the last state with
// `vscode.setState` so it paints instantly before `state` arrives.
//
// Images travel as bytes in the `image` message, never as file or webview URIs, so the panel works over Remote-SSH
// (the host and the images are on the remote side). Results stored in `Conversation.turns[i].result` should leave
// `result.image.data` out (the `image` message carries the bytes once per conversation).

import type { ChatTurn, SegmentResult } from './result';
import { describe, validateChatTurns } from './validate';

export type { ChatTurn, SegmentResult } from './result';

// ---- shared types ----------------------------------------------------------------------------------------------

export type TurnStatus = 'streaming' | 'done' | 'failed' | 'cancelled';
export const TURN_STATUSES: readonly TurnStatus[] = ['streaming', 'done', 'failed', 'cancelled'];

export interface Turn {
  id: string;
  prompt: string;
  /** The answer text as streamed (for done turns, the result's `answer`). */
  answer: string;
  /** Present once the turn is done. */
  result?: SegmentResult;
  /** The user-facing message of a failed or cancelled turn. */
  error?: string;
  status: TurnStatus;
}

export interface ConversationImage {
  /** Path (or URI string) of the image on the host's machine; display and re-loading only. */
  path: string;
  /** File name shown in the header. */
  name: string;
  width?: number;
  height?: number;
}

export interface Conversation {
  id: string;
  /** Absent until an image is chosen. */
  image?: ConversationImage;
  turns: Turn[];
  /** Milliseconds since the epoch. */
  createdAt: number;
}

export type ChatHostState = 'stopped' | 'starting' | 'ready' | 'busy' | 'crashed';
export const CHAT_HOST_STATES: readonly ChatHostState[] = ['stopped', 'starting', 'ready', 'busy', 'crashed'];

export interface ChatModelInfo {
  variant: string;
  provider: string;
}

/** Image bytes for a conversation (base64 of the file as the host read it, or a PNG re-encoding). */
export interface ImagePayload {
  name: string;
  width: number;
  height: number;
  /** base64 */
  data: string;
  mimeType: string;
}

/**
 * The history a follow-up turn sends to the host: every finished (`done`) turn, oldest first, as (prompt, answer),
 * where the answer is `result.answer` (what the model produced in context, [SEG] kept), or the streamed text when a
 * stored turn lost its result. Failed, cancelled and streaming turns are left out.
 */
export function historyOf(conversation: Pick<Conversation, 'turns'>): ChatTurn[] {
  const out: ChatTurn[] = [];
  for (const t of conversation.turns) {
    if (t.status !== 'done') continue;
    out.push({ user: t.prompt, assistant: t.result ? t.result.answer : t.answer });
  }
  return out;
}

/**
 * A file made from a result: what the shared overlay view (src/overlay/view.ts) produces and both the notebook renderer
 * (src/renderer/messages.ts) and the chat panel post. Defined here, once, since browser code may import protocol.
 */
export interface SaveFile {
  kind: 'mask-png' | 'coco-json' | 'overlay-png';
  fileName: string;
  mimeType: string;
  /** How `data` is written: base64 bytes or UTF-8 text. */
  encoding: 'base64' | 'utf8';
  data: string;
  /** For kind 'mask-png'. */
  segIndex?: number;
}

// ---- webview -> extension --------------------------------------------------------------------------------------

/** The webview has loaded and listens; the extension answers with `state` (and `image` for the active one). */
export interface ReadyMessage { type: 'ready' }
/** Show a file picker for an image (the extension answers with `state` + `image`, or nothing if cancelled). */
export interface PickImageMessage { type: 'pickImage' }
/**
 * An image dropped on the panel: a file path or a URI string (file:, vscode-remote:, ...) as the drop gave it. The
 * extension must resolve it itself, check it is an image file it may read, and never trust it as a write target.
 */
export interface SetImageMessage { type: 'setImage'; path: string }
/**
 * Ask in a conversation. `retryOf` names a failed or cancelled turn this ask repeats: the extension removes that turn
 * from the conversation (the webview drops it when turnStarted or turnFailed for the new ask arrives).
 */
export interface AskMessage { type: 'ask'; conversationId: string; prompt: string; retryOf?: string }
/** Stop the running turn of a conversation. */
export interface StopMessage { type: 'stop'; conversationId: string }
/** Start a new conversation (on the current image, if any). */
export interface NewConversationMessage { type: 'newConversation' }
/** Make another stored conversation the active one (the extension answers with `state` + `image`). */
export interface SelectConversationMessage { type: 'selectConversation'; conversationId: string }
/** Export a conversation to a new notebook whose outputs use the renderer. */
export interface ExportNotebookMessage { type: 'exportNotebook'; conversationId: string }
/**
 * Save a file made from a turn's result (same shape as the notebook renderer's save message, see
 * src/renderer/messages.ts): `fileName` is a suggestion for a save dialog, never a path to write to.
 */
export interface ChatSaveMessage extends SaveFile {
  type: 'save';
  conversationId: string;
  turnId: string;
}

export type WebviewMessage =
  | ReadyMessage
  | PickImageMessage
  | SetImageMessage
  | AskMessage
  | StopMessage
  | NewConversationMessage
  | SelectConversationMessage
  | ExportNotebookMessage
  | ChatSaveMessage;

export type WebviewMessageType = WebviewMessage['type'];
export const WEBVIEW_MESSAGE_TYPES: readonly WebviewMessageType[] = [
  'ready', 'pickImage', 'setImage', 'ask', 'stop', 'newConversation', 'selectConversation', 'exportNotebook', 'save',
];

// ---- extension -> webview --------------------------------------------------------------------------------------

/** The whole state (on `ready`, after restore, and after changes the incremental messages do not cover). */
export interface StateMessage {
  type: 'state';
  conversations: Conversation[];
  /** The conversation shown; null when there is none yet. */
  activeId: string | null;
  hostState: ChatHostState;
  model?: ChatModelInfo;
}
export interface ImageMessage { type: 'image'; conversationId: string; image: ImagePayload }
export interface TurnStartedMessage { type: 'turnStarted'; conversationId: string; turnId: string; prompt: string }
export interface TextDeltaMessage { type: 'textDelta'; conversationId: string; turnId: string; text: string }
export interface TurnDoneMessage { type: 'turnDone'; conversationId: string; turnId: string; result: SegmentResult }
/** `message` is one line for the user (rpc.ts's `errorMessage`); `cancelled` when the user stopped it. */
export interface TurnFailedMessage {
  type: 'turnFailed';
  conversationId: string;
  turnId: string;
  message: string;
  cancelled: boolean;
}
/** Shown inline in the conversation: the host crashed (and is being restarted) or was restarted. */
export interface HostEventMessage { type: 'hostEvent'; kind: 'crashed' | 'restarted'; message: string }
/** Optional small update of the host state / model (a full `state` does the same). */
export interface HostStateMessage { type: 'hostState'; hostState: ChatHostState; model?: ChatModelInfo }

export type ExtensionMessage =
  | StateMessage
  | ImageMessage
  | TurnStartedMessage
  | TextDeltaMessage
  | TurnDoneMessage
  | TurnFailedMessage
  | HostEventMessage
  | HostStateMessage;

// ---- validation ------------------------------------------------------------------------------------------------

/** Limits on what a webview may send. */
export const CHAT_LIMITS = {
  idLength: 200,
  pathLength: 4096,
  promptChars: 100_000,
  fileNameLength: 255,
  /** base64 / text size of a saved file (a 12 MP overlay PNG is well under this). */
  saveDataChars: 256 * 1024 * 1024,
} as const;

const ID = /^[A-Za-z0-9._:-]+$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const SAVE_KINDS: readonly SaveFile['kind'][] = ['mask-png', 'coco-json', 'overlay-png'];
const SAVE_MIME: Readonly<Record<SaveFile['kind'], string>> = {
  'mask-png': 'image/png',
  'coco-json': 'application/json',
  'overlay-png': 'image/png',
};


function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkId(problems: string[], v: unknown, at: string, optional = false): void {
  if (v === undefined && optional) return;
  if (typeof v !== 'string') problems.push(`${at}: expected a string id, got ${describe(v)}`);
  else if (v.length === 0 || v.length > CHAT_LIMITS.idLength) problems.push(`${at}: must be 1..${CHAT_LIMITS.idLength} characters`);
  else if (!ID.test(v)) problems.push(`${at}: may only hold letters, digits and . _ : -`);
}

/**
 * Problems with a message that claims to come from the chat webview (empty list: valid). Unknown `type`s are
 * rejected; unknown extra members are allowed. Strings are size-limited; paths must not hold NUL or line breaks;
 * save files must have a plain file name (no directories), the MIME type of their kind and well-formed data.
 */
export function validateWebviewMessage(v: unknown): string[] {
  const problems: string[] = [];
  if (!isObject(v)) return [`(root): expected an object, got ${describe(v)}`];
  const type = v.type;
  if (typeof type !== 'string' || !(WEBVIEW_MESSAGE_TYPES as readonly string[]).includes(type)) {
    return [`type: expected one of ${WEBVIEW_MESSAGE_TYPES.map((t) => JSON.stringify(t)).join(', ')}, got ${describe(type)}`];
  }
  switch (type as WebviewMessageType) {
    case 'ready':
    case 'pickImage':
    case 'newConversation':
      break;
    case 'setImage': {
      const p = v.path;
      if (typeof p !== 'string') problems.push(`path: expected a string, got ${describe(p)}`);
      else if (p.trim().length === 0) problems.push('path: must not be empty');
      else if (p.length > CHAT_LIMITS.pathLength) problems.push(`path: longer than ${CHAT_LIMITS.pathLength} characters`);
      else if (/[\0\r\n]/.test(p)) problems.push('path: must not contain NUL or line breaks');
      break;
    }
    case 'ask': {
      checkId(problems, v.conversationId, 'conversationId');
      const p = v.prompt;
      if (typeof p !== 'string') problems.push(`prompt: expected a string, got ${describe(p)}`);
      else if (p.trim().length === 0) problems.push('prompt: must not be blank');
      else if (p.length > CHAT_LIMITS.promptChars) problems.push(`prompt: longer than ${CHAT_LIMITS.promptChars} characters`);
      checkId(problems, v.retryOf, 'retryOf', true);
      break;
    }
    case 'stop':
    case 'selectConversation':
    case 'exportNotebook':
      checkId(problems, v.conversationId, 'conversationId');
      break;
    case 'save': {
      checkId(problems, v.conversationId, 'conversationId');
      checkId(problems, v.turnId, 'turnId');
      const kind = v.kind as SaveFile['kind'];
      if (!SAVE_KINDS.includes(kind)) {
        problems.push(`kind: expected one of ${SAVE_KINDS.map((k) => JSON.stringify(k)).join(', ')}, got ${describe(kind)}`);
      } else if (v.mimeType !== SAVE_MIME[kind]) {
        problems.push(`mimeType: expected ${JSON.stringify(SAVE_MIME[kind])} for ${kind}, got ${describe(v.mimeType)}`);
      }
      const fn = v.fileName;
      if (typeof fn !== 'string') problems.push(`fileName: expected a string, got ${describe(fn)}`);
      else if (fn.length === 0 || fn.length > CHAT_LIMITS.fileNameLength) problems.push(`fileName: must be 1..${CHAT_LIMITS.fileNameLength} characters`);
      else if (/[\\/\0\r\n]/.test(fn) || fn === '.' || fn === '..') problems.push('fileName: must be a plain file name (no directories)');
      const enc = v.encoding;
      if (enc !== 'base64' && enc !== 'utf8') problems.push(`encoding: expected "base64" or "utf8", got ${describe(enc)}`);
      const data = v.data;
      if (typeof data !== 'string') problems.push(`data: expected a string, got ${describe(data)}`);
      else if (data.length > CHAT_LIMITS.saveDataChars) problems.push(`data: larger than ${CHAT_LIMITS.saveDataChars} characters`);
      else if (enc === 'base64' && (data.length % 4 !== 0 || !BASE64.test(data))) problems.push('data: is not base64');
      if (kind === 'mask-png') {
        const s = v.segIndex;
        if (typeof s !== 'number' || !Number.isInteger(s) || s < 0) problems.push(`segIndex: expected an integer >= 0 for mask-png, got ${describe(s)}`);
      } else if (v.segIndex !== undefined && (typeof v.segIndex !== 'number' || !Number.isInteger(v.segIndex) || v.segIndex < 0)) {
        problems.push(`segIndex: expected an integer >= 0, got ${describe(v.segIndex)}`);
      }
      break;
    }
  }
  return problems;
}

export function isWebviewMessage(v: unknown): v is WebviewMessage {
  return validateWebviewMessage(v).length === 0;
}

/**
 * A light check of what the webview receives (the extension is trusted, but a stale or buggy message must not break
 * the panel): the type is known and the ids the webview indexes by are strings. Results are checked by the overlay
 * (`checkResult`) before drawing.
 */
export function validateExtensionMessage(v: unknown): string[] {
  if (!isObject(v)) return [`(root): expected an object, got ${describe(v)}`];
  const problems: string[] = [];
  const str = (k: string) => {
    if (typeof v[k] !== 'string') problems.push(`${k}: expected a string, got ${describe(v[k])}`);
  };
  switch (v.type) {
    case 'state':
      if (!Array.isArray(v.conversations)) problems.push(`conversations: expected an array, got ${describe(v.conversations)}`);
      else v.conversations.forEach((c, i) => {
        if (!isObject(c) || typeof c.id !== 'string' || !Array.isArray(c.turns)) problems.push(`conversations[${i}]: expected {id, turns}`);
        else c.turns.forEach((t, j) => {
          if (!isObject(t) || typeof t.id !== 'string' || typeof t.prompt !== 'string' || !TURN_STATUSES.includes(t.status as TurnStatus)) {
            problems.push(`conversations[${i}].turns[${j}]: expected {id, prompt, answer, status}`);
          }
        });
      });
      if (v.activeId !== null && typeof v.activeId !== 'string') problems.push(`activeId: expected a string or null, got ${describe(v.activeId)}`);
      if (!CHAT_HOST_STATES.includes(v.hostState as ChatHostState)) problems.push(`hostState: unknown ${describe(v.hostState)}`);
      break;
    case 'image':
      str('conversationId');
      if (!isObject(v.image) || typeof v.image.data !== 'string' || typeof v.image.mimeType !== 'string') {
        problems.push('image: expected {name, width, height, data, mimeType}');
      }
      break;
    case 'turnStarted':
      str('conversationId'); str('turnId'); str('prompt');
      break;
    case 'textDelta':
      str('conversationId'); str('turnId'); str('text');
      break;
    case 'turnDone':
      str('conversationId'); str('turnId');
      if (!isObject(v.result)) problems.push('result: expected an object');
      else problems.push(...validateChatTurns(v.result.history, 'result.history').slice(0, 1));
      break;
    case 'turnFailed':
      str('conversationId'); str('turnId'); str('message');
      if (typeof v.cancelled !== 'boolean') problems.push(`cancelled: expected a boolean, got ${describe(v.cancelled)}`);
      break;
    case 'hostEvent':
      if (v.kind !== 'crashed' && v.kind !== 'restarted') problems.push(`kind: expected "crashed" or "restarted", got ${describe(v.kind)}`);
      str('message');
      break;
    case 'hostState':
      if (!CHAT_HOST_STATES.includes(v.hostState as ChatHostState)) problems.push(`hostState: unknown ${describe(v.hostState)}`);
      break;
    default:
      problems.push(`type: unknown ${describe(v.type)}`);
  }
  return problems;
}
