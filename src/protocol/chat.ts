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

import type { ChatTurn, ResultMask, SegmentResult } from './result';
import { describe, validateChatTurns, validateWebviewMessage } from './validate';
import type { WebviewMessage } from './wire-types';

export type { ChatTurn, SegmentResult } from './result';

// ---- shared types ----------------------------------------------------------------------------------------------

export type TurnStatus = 'streaming' | 'done' | 'failed' | 'cancelled';
const TURN_STATUSES: readonly TurnStatus[] = ['streaming', 'done', 'failed', 'cancelled'];

export interface Turn {
  id: string;
  prompt: string;
  /** The answer text as streamed (for done turns, the result's `answer`). */
  answer: string;
  /** Present once the turn is done. */
  result?: SegmentResult;
  /** The user-facing message of a failed or cancelled turn. */
  error?: string;
  /** false when asking the same again cannot succeed (the instruction alone does not fit the context). */
  retryable?: boolean;
  /** How many of the oldest turns were left out of this turn's request so that it fit the model's context. */
  trimmed?: number;
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

// ---- webview -> extension --------------------------------------------------------------------------------------

export { validateWebviewMessage } from './validate';
// Each message the webview may send, and SaveFile (also what the notebook renderer posts), is defined once, in
// wire.schema.json, with its documentation; the types are generated into wire-types.ts and validateWebviewMessage
// checks them with the validator generated from the same schema.
export type {
  AskMessage,
  ChatSaveMessage,
  ExportNotebookMessage,
  KeepMaskMessage,
  NewConversationMessage,
  OpenResultMessage,
  PickImageMessage,
  ReadyMessage,
  RefineMessage,
  SaveFile,
  SelectConversationMessage,
  SetImageMessage,
  StopMessage,
  WebviewMessage,
} from './wire-types';

export type WebviewMessageType = WebviewMessage['type'];
export const WEBVIEW_MESSAGE_TYPES: readonly WebviewMessageType[] = [
  'ready',
  'pickImage',
  'setImage',
  'ask',
  'stop',
  'newConversation',
  'selectConversation',
  'exportNotebook',
  'save',
  'openResult',
  'refine',
  'keepMask',
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
export interface ImageMessage {
  type: 'image';
  conversationId: string;
  image: ImagePayload;
}
export interface TurnStartedMessage {
  type: 'turnStarted';
  conversationId: string;
  turnId: string;
  prompt: string;
}
export interface TextDeltaMessage {
  type: 'textDelta';
  conversationId: string;
  turnId: string;
  text: string;
}
export interface TurnDoneMessage {
  type: 'turnDone';
  conversationId: string;
  turnId: string;
  result: SegmentResult;
  /** See Turn.trimmed. */
  trimmed?: number;
}
/** `message` is one line for the user (rpc.ts's `errorMessage`); `cancelled` when the user stopped it. */
export interface TurnFailedMessage {
  type: 'turnFailed';
  conversationId: string;
  turnId: string;
  message: string;
  cancelled: boolean;
  /** See Turn.retryable. */
  retryable?: boolean;
}
/** Shown inline in the conversation: the host crashed (and is being restarted) or was restarted. */
export interface HostEventMessage {
  type: 'hostEvent';
  kind: 'crashed' | 'restarted';
  message: string;
}
/** Optional small update of the host state / model (a full `state` does the same). */
export interface HostStateMessage {
  type: 'hostState';
  hostState: ChatHostState;
  model?: ChatModelInfo;
}

/** To the results panel (src/webview/result.ts): one turn's result, with the image bytes in `result.image.data`. */
export interface ResultMessage {
  type: 'result';
  conversationId: string;
  turnId: string;
  prompt: string;
  imageName: string;
  /** Which of the conversation's answered turns this is (1-based), of how many. */
  turnIndex: number;
  turnCount: number;
  result: SegmentResult;
}

/** To the results panel: the answer to its `refine` request (the new mask, or one line saying why not). */
export interface RefinedMessage {
  type: 'refined';
  requestId: string;
  mask?: ResultMask;
  error?: string;
}

export type ExtensionMessage =
  | StateMessage
  | ImageMessage
  | TurnStartedMessage
  | TextDeltaMessage
  | TurnDoneMessage
  | TurnFailedMessage
  | HostEventMessage
  | HostStateMessage
  | ResultMessage
  | RefinedMessage;

// ---- validation ------------------------------------------------------------------------------------------------

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
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
      if (!Array.isArray(v.conversations))
        problems.push(`conversations: expected an array, got ${describe(v.conversations)}`);
      else
        v.conversations.forEach((c, i) => {
          if (!isObject(c) || typeof c.id !== 'string' || !Array.isArray(c.turns))
            problems.push(`conversations[${i}]: expected {id, turns}`);
          else
            c.turns.forEach((t, j) => {
              if (
                !isObject(t) ||
                typeof t.id !== 'string' ||
                typeof t.prompt !== 'string' ||
                !TURN_STATUSES.includes(t.status as TurnStatus)
              ) {
                problems.push(`conversations[${i}].turns[${j}]: expected {id, prompt, answer, status}`);
              }
            });
        });
      if (v.activeId !== null && typeof v.activeId !== 'string')
        problems.push(`activeId: expected a string or null, got ${describe(v.activeId)}`);
      if (!CHAT_HOST_STATES.includes(v.hostState as ChatHostState))
        problems.push(`hostState: unknown ${describe(v.hostState)}`);
      break;
    case 'image':
      str('conversationId');
      if (!isObject(v.image) || typeof v.image.data !== 'string' || typeof v.image.mimeType !== 'string') {
        problems.push('image: expected {name, width, height, data, mimeType}');
      }
      break;
    case 'turnStarted':
      str('conversationId');
      str('turnId');
      str('prompt');
      break;
    case 'textDelta':
      str('conversationId');
      str('turnId');
      str('text');
      break;
    case 'turnDone':
      str('conversationId');
      str('turnId');
      if (!isObject(v.result)) problems.push('result: expected an object');
      else problems.push(...validateChatTurns(v.result.history, 'result.history').slice(0, 1));
      break;
    case 'turnFailed':
      str('conversationId');
      str('turnId');
      str('message');
      if (typeof v.cancelled !== 'boolean')
        problems.push(`cancelled: expected a boolean, got ${describe(v.cancelled)}`);
      break;
    case 'hostEvent':
      if (v.kind !== 'crashed' && v.kind !== 'restarted')
        problems.push(`kind: expected "crashed" or "restarted", got ${describe(v.kind)}`);
      str('message');
      break;
    case 'hostState':
      if (!CHAT_HOST_STATES.includes(v.hostState as ChatHostState))
        problems.push(`hostState: unknown ${describe(v.hostState)}`);
      break;
    case 'refined':
      str('requestId');
      if (v.mask !== undefined && !isObject(v.mask)) problems.push('mask: expected an object');
      break;
    case 'result':
      str('conversationId');
      str('turnId');
      str('prompt');
      str('imageName');
      if (!isObject(v.result)) problems.push('result: expected an object');
      break;
    default:
      problems.push(`type: unknown ${describe(v.type)}`);
  }
  return problems;
}
