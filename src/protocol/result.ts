// The result payload: one versioned JSON document used by every surface (notebook output, chat, CLI --json, kernel).
// Masks travel as COCO RLE (compressed string, exactly as pycocotools writes it) and as PNG bytes in base64, never as
// pixel arrays.

export const RESULT_MIME = 'application/vnd.reason-segment.result+json';
export const RESULT_FORMAT = 'reason-segment-result/1';

export interface CocoRle {
  /** [height, width], as pycocotools writes it. */
  size: [number, number];
  /** Column-major run lengths in pycocotools' compressed string form. */
  counts: string;
}

export interface ResultMask {
  /** Which [SEG] of the answer (0-based, in order of appearance) produced this mask. */
  segIndex: number;
  /** Index into `outputIds` of that [SEG] token, or -1 when it stood in the prompt (an assistant prefix). */
  tokenIndex: number;
  rle: CocoRle;
  /** Single-channel PNG (0 or 255), base64, at the original image size. */
  png?: string;
  /** COCO bbox [x, y, width, height] in pixels of the original image. */
  bbox: [number, number, number, number];
  area: number;
  /** The mask decoder's IoU prediction for mask index 0 (LISA does not use it; shown for information). */
  score: number;
}

export interface ResultImage {
  width: number;
  height: number;
  /** sha256 of the image file's bytes (as sha256sum prints it), the embedding cache key. */
  sha256: string;
  /** Where the image came from, for display only. */
  source?: string;
  /** The image itself (PNG or JPEG bytes, base64) for surfaces that cannot read the file. */
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
  /** Sum of the ONNX Runtime run() times inside totalMs. */
  onnxMs: number;
  newTokens: number;
  /** True when both image encoders were skipped because the embedding cache held this image. */
  cacheHit: boolean;
}

export interface SegmentResult {
  format: typeof RESULT_FORMAT;
  model: { variant: string; bundle: string };
  provider: string;
  prompt: string;
  history: ChatTurn[];
  /** The answer as LISA's app.py shows it (newlines dropped, double spaces collapsed), [SEG] kept literally. */
  text: string;
  /** Just this turn's answer, decoded in context (what was streamed), without the closing </s>; what history re-feeds. */
  answer: string;
  outputIds: number[];
  image: ResultImage;
  masks: ResultMask[];
  /** The image with every mask blended in (LISA's 0.5·RGB + 0.5·colour), PNG base64, when asked for. */
  overlayPng?: string;
  timings: StageTimings;
  /** Why decoding stopped. */
  stopReason: 'eos' | 'max_new_tokens' | 'context_limit' | 'cancelled';
}

export interface ChatTurn {
  user: string;
  assistant: string;
}
