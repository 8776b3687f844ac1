// The result payload: one versioned JSON document used by every surface (notebook output, chat, CLI --json, kernel).
// Masks travel as COCO RLE (compressed string, exactly as pycocotools writes it) and as PNG bytes in base64, never as
// pixel arrays.

export const RESULT_MIME = 'application/vnd.reason-segment.result+json';
export const RESULT_FORMAT = 'reason-segment-result/1';

// The shapes themselves are defined once, in wire.schema.json; wire-types.ts is generated from it.
export type { ChatTurn, CocoRle, ResultImage, ResultMask, SegmentResult, StageTimings } from './wire-types';
