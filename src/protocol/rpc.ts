// The JSON-RPC surface of the inference host: method names, parameter and result types, notifications and error
// codes. Types and constants only (no runtime dependencies), shared by the host (vscode-languageserver on stdio), the
// VS Code extension (vscode-languageclient), the CLI and, by hand, the Jupyter magic in Python.
//
// Wire format: JSON-RPC 2.0 with LSP framing on the host's stdin/stdout:
//     Content-Length: <bytes of the UTF-8 body>\r\n\r\n<body>
// The host writes its logs to stderr only; stdout carries nothing but framed messages.
//
// Session: a client sends the LSP `initialize` request first (params `{processId, rootUri: null, capabilities: {}}`
// are enough), then the `initialized` notification; the result's `serverInfo` names the host and
// `capabilities.experimental.reasonSegment` is a `HostCapabilities`. Then any of the `reasonSegment/*` requests below.
// The LSP `shutdown` request + `exit` notification end the host just as `reasonSegment/shutdown` does.
//
// Cancellation: the LSP/vscode-jsonrpc `$/cancelRequest` notification, params `{id}` with the JSON-RPC id of the
// request to cancel. In the host it arrives as the handler's `CancellationToken`; vscode-languageclient sends it when
// the token passed to `sendRequest` is cancelled; the Python magic writes it by hand. A cancelled `segment` stops at
// the next decoding step and answers with an error whose code is `RpcErrorCode.Cancelled` (clients should also treat
// LSP's `RequestCancelled` -32800 as a cancellation, see `isCancellation`). Text streamed before the cancel has been
// sent already as `textDelta` notifications.
//
// Streaming: while a `segment` request runs, the host sends `reasonSegment/textDelta` notifications with the
// `requestId` the client chose (JSON-RPC ids are not visible to handlers, so the client names its request), and
// `reasonSegment/progress` notifications for long stages (model loading, checksum verification, image encoders).

import type { RESULT_FORMAT, SegmentResult } from './result';
import type {
  Device,
  DeviceChoice,
  DeviceFallback,
  LoadModelParams,
  RefineParams,
  RefineResult,
  SegmentParams,
} from './wire-types';

export type { ChatTurn, SegmentResult } from './result';

/** Version of this RPC surface; bumped on an incompatible change. Sent in `HostCapabilities.protocol`. */
export const PROTOCOL_VERSION = 'reason-segment-rpc/1';

export const Methods = {
  loadModel: 'reasonSegment/loadModel',
  unloadModel: 'reasonSegment/unloadModel',
  segment: 'reasonSegment/segment',
  refine: 'reasonSegment/refine',
  status: 'reasonSegment/status',
  shutdown: 'reasonSegment/shutdown',
} as const;

export const Notifications = {
  textDelta: 'reasonSegment/textDelta',
  progress: 'reasonSegment/progress',
} as const;

/** LSP's cancellation notification (vscode-jsonrpc's `CancellationToken` on the handler side). */
export const CANCEL_REQUEST_METHOD = '$/cancelRequest';
export interface CancelParams {
  id: number | string;
}

export type {
  Device,
  DeviceChoice,
  DeviceFallback,
  ImageInput,
  LoadModelParams,
  RefineParams,
  RefinePrompt,
  RefineResult,
  SegmentParams,
} from './wire-types';
/** The schema's Device enum as a value (test/protocol/wire.test.ts keeps the two equal). */
export const DEVICES: readonly Device[] = ['cpu', 'cuda', 'webgpu'];

// ---- initialize ------------------------------------------------------------------------------------------------

/** `InitializeResult.capabilities.experimental.reasonSegment`. */
export interface HostCapabilities {
  protocol: typeof PROTOCOL_VERSION;
  resultFormat: typeof RESULT_FORMAT;
  /** Host package version. */
  version: string;
  /** Execution providers this build of ONNX Runtime offers on this machine (present, not necessarily working). */
  providers: Device[];
  /** Images with more pixels than this are refused with `ImageTooLarge`. */
  maxImagePixels: number;
  /** The model already loaded, if the host was started with one. */
  model?: ModelInfo;
}

// ---- reasonSegment/loadModel -----------------------------------------------------------------------------------

export interface ModelInfo {
  /** Absolute path of the bundle folder. */
  bundle: string;
  /** Manifest variant name, e.g. "lisa-7b-v1" or "tiny-random". */
  variant: string;
  /** The execution provider that runs the sessions (after any fallback). */
  provider: Device;
  /** The device the load asked for ('auto' included). */
  requestedDevice?: DeviceChoice;
  /** Why `provider` is cpu when another device was asked for or tried ('auto'). */
  fallback?: DeviceFallback;
  /** Language model: transformer layers, hidden size, vocabulary size, context length (tokens). */
  layers: number;
  hiddenSize: number;
  vocabSize: number;
  contextLength: number;
  /** Number of image tokens the vision tower puts in the prompt. */
  imageTokens?: number;
  /** Manifest format version of the bundle. */
  bundleFormat?: string;
}

export interface LoadModelResult extends ModelInfo {
  requestedDevice: DeviceChoice;
  /** True when `provider` differs from `requestedDevice` because `allowFallback` let the host use cpu. */
  fellBack: boolean;
  /** Why the requested provider could not be used (when fellBack). */
  fallbackReason?: string;
  /** Whether the checksums were hashed now or trusted from the verification cache. */
  checksums: 'verified' | 'cached';
  loadMs: number;
}

// ---- reasonSegment/unloadModel ---------------------------------------------------------------------------------

export type UnloadModelParams = Record<string, never> | undefined;
export interface UnloadModelResult {
  /** False when no model was loaded. */
  unloaded: boolean;
}

// ---- reasonSegment/segment -------------------------------------------------------------------------------------

export type SegmentResponse = SegmentResult;

// ---- reasonSegment/refine --------------------------------------------------------------------------------------
// One mask of a recent result (`SegmentResult.resultId`) decoded again by SAM with point and box prompts, from the
// cached image embedding and the mask's [SEG] embedding: milliseconds, no language model. A result the host no
// longer remembers, or whose image left the embedding cache, is refused with ImageUnreadable; a bundle without the
// sam_prompt_decoder graph with BundleInvalid; points outside the image or more than 32 with ParamsInvalid.

// ---- reasonSegment/status --------------------------------------------------------------------------------------

export interface HostCounters {
  /** CLIP vision tower runs since the host started. */
  visionEncoderRuns: number;
  /** SAM image encoder runs since the host started. */
  samEncoderRuns: number;
  /** Image files (or inline images) decoded. */
  imageDecodes: number;
  /** Requests served from the embedding cache (both encoders skipped). */
  cacheHits: number;
  /** Prompt positions prefilled, and prompt positions whose KV rows were kept from an earlier turn (not prefilled). */
  prefillPositions?: number;
  reusedPositions?: number;
  /** Bytes held by the embedding cache now. */
  cacheBytes: number;
  /** Segment requests answered (successfully) since the host started. */
  requests?: number;
}

export type HostState = 'idle' | 'loading' | 'ready' | 'busy';

export interface StatusResult {
  state?: HostState;
  model?: ModelInfo;
  provider?: Device;
  counters: HostCounters;
  pid?: number;
  uptimeMs?: number;
}

// ---- reasonSegment/shutdown ------------------------------------------------------------------------------------

/** The host answers `{}`, cancels running work, releases sessions and exits (code 0) after the response is sent. */
export type ShutdownResult = Record<string, never>;

// ---- notifications (host -> client) ----------------------------------------------------------------------------

export interface TextDeltaParams {
  requestId: string;
  /** New text since the previous delta (already detokenized; may be empty when a token completes no character). */
  text: string;
  /** Index into the eventual `outputIds` of the last token this delta covers. */
  tokenIndex: number;
}

export type ProgressStage =
  | 'download'
  | 'verify'
  | 'load'
  | 'decodeImage'
  | 'preprocess'
  | 'visionEncoder'
  | 'samEncoder'
  | 'prefill'
  | 'decode'
  | 'maskDecoder'
  | 'encodeMasks';

export interface ProgressParams {
  requestId?: string;
  stage: ProgressStage;
  /** Units done and total (bytes for download/verify, files for load, tokens for decode); absent when unknown. */
  loaded?: number;
  total?: number;
  /** One short human line ("Verifying checksums (2/5)"). */
  message: string;
}

// ---- typed maps, for generic helpers on either side -------------------------------------------------------------

export interface RequestMap {
  [Methods.loadModel]: { params: LoadModelParams; result: LoadModelResult };
  [Methods.unloadModel]: { params: UnloadModelParams; result: UnloadModelResult };
  [Methods.segment]: { params: SegmentParams; result: SegmentResult };
  [Methods.refine]: { params: RefineParams; result: RefineResult };
  [Methods.status]: { params: Record<string, never> | undefined; result: StatusResult };
  [Methods.shutdown]: { params: Record<string, never> | undefined; result: ShutdownResult };
}

export interface NotificationMap {
  [Notifications.textDelta]: TextDeltaParams;
  [Notifications.progress]: ProgressParams;
}

export type RequestMethod = keyof RequestMap;
export type NotificationMethod = keyof NotificationMap;
export type ParamsOf<M extends RequestMethod> = RequestMap[M]['params'];
export type ResultOf<M extends RequestMethod> = RequestMap[M]['result'];

// ---- errors ----------------------------------------------------------------------------------------------------

/** Error codes in the JSON-RPC server-error range (-32000..-32099). */
export const RpcErrorCode = {
  ImageUnreadable: -32001,
  ImageTooLarge: -32002,
  BundleInvalid: -32010,
  BundleChecksum: -32011,
  BundlePathEscape: -32012,
  BundleMissingFile: -32013,
  ModelNotLoaded: -32020,
  PromptTooLong: -32021,
  ParamsInvalid: -32022,
  Cancelled: -32030,
  ProviderUnavailable: -32040,
  Internal: -32099,
} as const;

export type RpcErrorName = keyof typeof RpcErrorCode;
export type RpcErrorCodeValue = (typeof RpcErrorCode)[RpcErrorName];

/** LSP's RequestCancelled, what vscode-jsonrpc itself answers for a request cancelled before its handler ran. */
export const LSP_REQUEST_CANCELLED = -32800;

export interface RpcErrorInfo {
  name: RpcErrorName;
  /** Short title, sentence case. */
  title: string;
  /** What the user should do, one line. */
  hint: string;
}

export const RPC_ERRORS: Readonly<Record<RpcErrorCodeValue, RpcErrorInfo>> = {
  [RpcErrorCode.ImageUnreadable]: {
    name: 'ImageUnreadable',
    title: 'The image could not be read',
    hint: 'Check that the file exists and is a complete PNG, JPEG, WebP, GIF, TIFF or BMP image.',
  },
  [RpcErrorCode.ImageTooLarge]: {
    name: 'ImageTooLarge',
    title: 'The image is too large',
    hint: 'Downscale the image or raise the pixel limit in the settings.',
  },
  [RpcErrorCode.BundleInvalid]: {
    name: 'BundleInvalid',
    title: 'The model bundle is not valid',
    hint: 'Re-export the bundle with models/export or download it again.',
  },
  [RpcErrorCode.BundleChecksum]: {
    name: 'BundleChecksum',
    title: 'A model bundle file does not match its checksum',
    hint: 'The file is corrupt or was changed: download or export the bundle again.',
  },
  [RpcErrorCode.BundlePathEscape]: {
    name: 'BundlePathEscape',
    title: 'The model bundle refers to a file outside its folder',
    hint: 'Only use bundles from sources you trust; re-export it with models/export.',
  },
  [RpcErrorCode.BundleMissingFile]: {
    name: 'BundleMissingFile',
    title: 'A file of the model bundle is missing',
    hint: 'Copy the whole bundle folder, or download or export it again.',
  },
  [RpcErrorCode.ModelNotLoaded]: {
    name: 'ModelNotLoaded',
    title: 'No model is loaded',
    hint: 'Select a model first (Reason Segment: Select Model, or --model).',
  },
  [RpcErrorCode.PromptTooLong]: {
    name: 'PromptTooLong',
    title: 'The prompt and history do not fit in the model context',
    hint: 'Shorten the instruction or start a new conversation.',
  },
  [RpcErrorCode.ParamsInvalid]: {
    name: 'ParamsInvalid',
    title: 'The request is malformed',
    hint: 'This is a client bug: update the extension or check the JSON sent to the host.',
  },
  [RpcErrorCode.Cancelled]: {
    name: 'Cancelled',
    title: 'The request was cancelled',
    hint: 'Run it again when you want the result.',
  },
  [RpcErrorCode.ProviderUnavailable]: {
    name: 'ProviderUnavailable',
    title: 'The requested device is not available',
    hint: 'Choose the cpu device, or allow falling back to cpu in the settings.',
  },
  [RpcErrorCode.Internal]: {
    name: 'Internal',
    title: 'Internal error in the inference host',
    hint: 'Restart the host (Reason Segment: Restart Host) and report the log if it happens again.',
  },
};

/** `error.data` of every host error: lets clients show the hint without a table of their own. */
export interface RpcErrorData {
  name: RpcErrorName;
  hint: string;
  /** The specific cause ("truncated JPEG", a file name, a token count). */
  detail?: string;
  /** The file concerned, when there is one. */
  path?: string;
}

export function isRpcErrorCode(code: unknown): code is RpcErrorCodeValue {
  return typeof code === 'number' && Object.hasOwn(RPC_ERRORS, code);
}

export function errorInfo(code: number): RpcErrorInfo {
  return isRpcErrorCode(code) ? RPC_ERRORS[code] : RPC_ERRORS[RpcErrorCode.Internal];
}

export function errorName(code: number): RpcErrorName | undefined {
  return isRpcErrorCode(code) ? RPC_ERRORS[code].name : undefined;
}

/** True for this protocol's Cancelled and for LSP's RequestCancelled. */
export function isCancellation(code: number): boolean {
  return code === RpcErrorCode.Cancelled || code === LSP_REQUEST_CANCELLED;
}

/**
 * One line for the user: "<title>: <detail>. <hint>", e.g.
 * "The image could not be read: photo.jpg is truncated. Check that the file exists and is a complete ... image."
 * Unknown codes read as Internal. `translate` puts the title and hint in the user's language (the extension passes
 * vscode.l10n.t; the detail stays as the host wrote it).
 */
export function errorMessage(code: number, detail?: string, translate: (s: string) => string = (s) => s): string {
  const e = errorInfo(code);
  const info = { title: translate(e.title), hint: translate(e.hint) };
  const d = (detail ?? '')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/[.\s]+$/, '');
  return d ? `${info.title}: ${d}. ${info.hint}` : `${info.title}. ${info.hint}`;
}

/** The `error` member of a JSON-RPC response for a host error. */
export function errorResponse(
  code: RpcErrorCodeValue,
  detail?: string,
  path?: string,
): { code: number; message: string; data: RpcErrorData } {
  const info = RPC_ERRORS[code];
  const data: RpcErrorData = { name: info.name, hint: info.hint };
  if (detail !== undefined) data.detail = detail;
  if (path !== undefined) data.path = path;
  return { code, message: errorMessage(code, detail), data };
}
