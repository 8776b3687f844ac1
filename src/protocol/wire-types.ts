// GENERATED from src/protocol/wire.schema.json by test/protocol/wire_gen.ts (types); do not edit.
// Regenerate: npm run build && node out/test/protocol/wire_gen.js --write
// biome-ignore-all format: generated
// biome-ignore-all lint: generated
// biome-ignore-all assist: generated

/**
 * An image on the host's file system, inline bytes (PNG, JPEG, WebP, ...), or one the host has already decoded (`ResultImage.sha256` of an image still in its cache). Exactly one of path, data, sha256.
 */
export type ImageInput =
  | {
      path: string;
    }
  | {
      /**
       * base64 of the file's bytes
       */
      data: string;
      mimeType?: string;
      name?: string;
    }
  | {
      sha256: Sha256;
    };
export type Sha256 = string;
/**
 * The device asked for: one of Device, or 'auto' (webgpu when this machine and the bundle allow it, else cpu; the reason travels in DeviceFallback).
 */
export type DeviceChoice = 'auto' | 'cpu' | 'cuda' | 'webgpu';
export type Id = string;
export type ChatTurns = ChatTurn[];
export type Device = 'cpu' | 'cuda' | 'webgpu';
/**
 * A message from the chat panel webview to the extension: untrusted, checked before use. Unknown types are rejected.
 */
export type WebviewMessage =
  | ReadyMessage
  | PickImageMessage
  | SetImageMessage
  | AskMessage
  | StopMessage
  | NewConversationMessage
  | SelectConversationMessage
  | ExportNotebookMessage
  | ChatSaveMessage
  | OpenResultMessage
  | RefineMessage
  | KeepMaskMessage;
/**
 * A conversation or turn id chosen by the extension.
 */
export type ChatId = string;
/**
 * Save a file made from a turn's result (same shape as the notebook renderer's save message).
 */
export type ChatSaveMessage = SaveFile & {
  type: 'save';
  conversationId: ChatId;
  turnId: ChatId;
};
/**
 * A file made from a result: what the shared overlay view (src/overlay/view.ts) produces and both the notebook renderer (src/renderer/messages.ts) and the chat panel post. `fileName` is a suggestion for a save dialog, never a path to write to.
 */
export type SaveFile = {
  kind: 'mask-png' | 'coco-json' | 'overlay-png';
  fileName: string;
  mimeType: string;
  /**
   * How `data` is written: base64 bytes or UTF-8 text.
   */
  encoding: 'base64' | 'utf8';
  /**
   * At most 256 MiB of text (a 12 MP overlay PNG is well under this).
   */
  data: string;
  /**
   * For kind 'mask-png'.
   */
  segIndex?: number;
};

export interface SegmentParams {
  /**
   * Client-chosen id, echoed in `textDelta` and `progress` notifications.
   */
  requestId?: string;
  image: ImageInput;
  prompt: string;
  /**
   * Earlier turns on this image, oldest first; re-fed through the prompt template (LISA keeps no state).
   *
   * @maxItems 1000
   */
  history: ChatTurn[];
  /**
   * Default: the host's setting (512, as LISA's chat.py).
   */
  maxNewTokens?: number;
  /**
   * Groups requests of one chat for the host's logs and cache priority; no server-side state depends on it.
   */
  conversationId?: string;
  /**
   * Put the image bytes in `result.image.data` (for surfaces that cannot read the host's files). Default false.
   */
  includeImage?: boolean;
  /**
   * Put a PNG of each mask in `result.masks[i].png`. Default false (RLE only).
   */
  includePng?: boolean;
  /**
   * Put the image with all masks blended in (PNG) in `result.overlayPng`. Default false.
   */
  includeOverlay?: boolean;
  /**
   * Text placed after "ASSISTANT:" before decoding starts (its [SEG] tokens yield masks with tokenIndex -1).
   */
  assistantPrefix?: string;
}
export interface ChatTurn {
  user: string;
  assistant: string;
}
export interface LoadModelParams {
  /**
   * Path of the bundle folder (on the host's machine).
   */
  bundle: string;
  device: DeviceChoice;
  /**
   * When the device's provider is unavailable or fails to create a session, fall back to cpu instead of failing.
   */
  allowFallback?: boolean;
  /**
   * Client-chosen id echoed in `progress` notifications for this load.
   */
  requestId?: string;
}
/**
 * reasonSegment/refine: run SAM's mask decoder again for one mask of a recent result, on the cached image embedding and that mask's [SEG] embedding, with point and box prompts. No points and no box gives the original mask back.
 */
export interface RefineParams {
  resultId: Id;
  /**
   * Index into the result's masks.
   */
  maskIndex: number;
  prompt: RefinePrompt;
  /**
   * Put a PNG of the mask in `mask.png`. Default false.
   */
  includePng?: boolean;
}
/**
 * Point and box prompts for SAM's mask decoder, in pixels of the original image (x right, y down, 0..width and 0..height). labels[i] is 1 for a positive point (part of the object), 0 for a negative one.
 */
export interface RefinePrompt {
  /**
   * @maxItems 32
   */
  points: [number, number][];
  /**
   * @maxItems 32
   */
  labels: (0 | 1)[];
  /**
   * [x0, y0, x1, y1], top-left and bottom-right corners.
   *
   * @minItems 4
   * @maxItems 4
   */
  box?: [number, number, number, number];
}
export interface RefineResult {
  resultId: Id;
  maskIndex: number;
  mask: ResultMask;
  /**
   * Time in the mask decoder graph.
   */
  decoderMs: number;
  totalMs: number;
}
export interface ResultMask {
  /**
   * Which [SEG] of the answer (0-based, in order of appearance) produced this mask.
   */
  segIndex: number;
  /**
   * Index into `outputIds` of that [SEG] token, or -1 when it stood in the prompt (an assistant prefix).
   */
  tokenIndex: number;
  rle: CocoRle;
  /**
   * Single-channel PNG (0 or 255), base64, at the original image size.
   */
  png?: string;
  /**
   * COCO bbox [x, y, width, height] in pixels of the original image.
   *
   * @minItems 4
   * @maxItems 4
   */
  bbox: [number, number, number, number];
  area: number;
  /**
   * SAM's predicted IoU for this mask (the mask decoder's iou_predictions, mask index 0): the mask's confidence, shown beside it. LISA itself does not use it.
   */
  score: number;
  refined?: RefinePrompt1;
}
export interface CocoRle {
  /**
   * [height, width], as pycocotools writes it.
   *
   * @minItems 2
   * @maxItems 2
   */
  size: [number, number];
  /**
   * Column-major run lengths in pycocotools' compressed string form.
   */
  counts: string;
}
/**
 * Set when the mask was refined by clicking (reasonSegment/refine): the prompts that gave it, in pixels of the original image.
 */
export interface RefinePrompt1 {
  /**
   * @maxItems 32
   */
  points: [number, number][];
  /**
   * @maxItems 32
   */
  labels: (0 | 1)[];
  /**
   * [x0, y0, x1, y1], top-left and bottom-right corners.
   *
   * @minItems 4
   * @maxItems 4
   */
  box?: [number, number, number, number];
}
/**
 * The result payload: one versioned JSON document used by every surface (notebook output, chat, CLI --json, kernel).
 */
export interface SegmentResult {
  format: 'reason-segment-result/1';
  model: {
    variant: string;
    bundle: string;
  };
  provider: string;
  prompt: string;
  history: ChatTurns;
  /**
   * The answer as LISA's app.py shows it (newlines dropped, double spaces collapsed), [SEG] kept literally.
   */
  text: string;
  /**
   * Just this turn's answer, decoded in context (what was streamed), without the closing </s>; what history re-feeds.
   */
  answer: string;
  outputIds: number[];
  image: ResultImage;
  masks: ResultMask[];
  /**
   * The image with every mask blended in (LISA's 0.5·RGB + 0.5·colour), PNG base64, when asked for.
   */
  overlayPng?: string;
  timings: StageTimings;
  /**
   * Why decoding stopped.
   */
  stopReason: 'eos' | 'max_new_tokens' | 'context_limit' | 'cancelled';
  /**
   * Names this result for reasonSegment/refine while the host remembers it (its most recent results, as long as the image stays in its embedding cache). Absent when no mask was made.
   */
  resultId?: string;
}
export interface ResultImage {
  width: number;
  height: number;
  /**
   * sha256 of the image file's bytes (as sha256sum prints it), the embedding cache key.
   */
  sha256: string;
  /**
   * Where the image came from, for display only.
   */
  source?: string;
  /**
   * The image itself (PNG or JPEG bytes, base64) for surfaces that cannot read the file.
   */
  data?: string;
  mimeType?: string;
}
export interface StageTimings {
  decodeImageMs: number;
  preprocessMs: number;
  clipMs: number;
  samEncoderMs: number;
  prefillMs: number;
  decodeMs: number;
  maskDecoderMs: number;
  totalMs: number;
  /**
   * Sum of the ONNX Runtime run() times inside totalMs.
   */
  onnxMs: number;
  newTokens: number;
  /**
   * True when both image encoders were skipped because the embedding cache held this image.
   */
  cacheHit: boolean;
}
/**
 * Why the host runs on cpu instead of the device asked for (or tried by 'auto').
 */
export interface DeviceFallback {
  /**
   * The device that was asked for or tried.
   */
  device: 'cpu' | 'cuda' | 'webgpu';
  /**
   * no-vulkan-loader: Linux has no libvulkan.so.1; no-adapter: no GPU adapter for the provider (no driver, or only a software one); adapter-too-small: the adapter could not hold the bundle; bundle-not-for-device: the manifest's devices leave it out; provider-missing: this onnxruntime-node has no such provider; provider-failed: any other failure to start it.
   */
  reason:
    | 'no-vulkan-loader'
    | 'no-adapter'
    | 'adapter-too-small'
    | 'bundle-not-for-device'
    | 'provider-missing'
    | 'provider-failed';
  /**
   * One line for the log and the status bar's tooltip.
   */
  message: string;
}
/**
 * The webview has loaded and listens; the extension answers with `state` (and `image` for the active one).
 */
export interface ReadyMessage {
  type: 'ready';
}
/**
 * Show a file picker for an image (the extension answers with `state` + `image`, or nothing if cancelled).
 */
export interface PickImageMessage {
  type: 'pickImage';
}
/**
 * An image dropped on the panel: a file path or a URI string (file:, vscode-remote:, ...) as the drop gave it. The extension must resolve it itself, check it is an image file it may read, and never trust it as a write target.
 */
export interface SetImageMessage {
  type: 'setImage';
  path: string;
}
/**
 * Ask in a conversation. `retryOf` names a failed or cancelled turn this ask repeats: the extension removes that turn from the conversation (the webview drops it when turnStarted or turnFailed for the new ask arrives).
 */
export interface AskMessage {
  type: 'ask';
  conversationId: ChatId;
  prompt: string;
  retryOf?: ChatId;
}
/**
 * Stop the running turn of a conversation.
 */
export interface StopMessage {
  type: 'stop';
  conversationId: ChatId;
}
/**
 * Start a new conversation (on the current image, if any).
 */
export interface NewConversationMessage {
  type: 'newConversation';
}
/**
 * Make another stored conversation the active one (the extension answers with `state` + `image`).
 */
export interface SelectConversationMessage {
  type: 'selectConversation';
  conversationId: ChatId;
}
/**
 * Export a conversation to a new notebook whose outputs use the renderer.
 */
export interface ExportNotebookMessage {
  type: 'exportNotebook';
  conversationId: ChatId;
}
/**
 * Open a turn's result in the editor area, beside the image (the results panel).
 */
export interface OpenResultMessage {
  type: 'openResult';
  conversationId: ChatId;
  turnId: ChatId;
}
/**
 * From the results panel: refine mask `maskIndex` of a turn's result with point and box prompts (the extension asks the host's reasonSegment/refine and answers with `refined`).
 */
export interface RefineMessage {
  type: 'refine';
  conversationId: ChatId;
  turnId: ChatId;
  requestId: ChatId;
  maskIndex: number;
  prompt: RefinePrompt;
}
/**
 * From the results panel: the mask it shows for `maskIndex` changed (a refine answered, an undo or a redo): the extension stores it in the conversation, so the side bar, the panel reopened and exports show the mask the user kept.
 */
export interface KeepMaskMessage {
  type: 'keepMask';
  conversationId: ChatId;
  turnId: ChatId;
  maskIndex: number;
  mask: ResultMask;
}
