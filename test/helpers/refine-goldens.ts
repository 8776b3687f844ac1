// The refine goldens of a bundle (goldens.json "refine": SAM's own prompt encoder and mask decoder in PyTorch, with
// LISA's [SEG] embedding appended, for points, a negative point, a box, and points with a box).
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { GoldenMask } from './bundles';

export interface RefineGolden {
  name: string;
  case: string;
  mask_index: number;
  points: [number, number][];
  labels: (0 | 1)[];
  box: [number, number, number, number] | null;
  iou: number;
  mask: GoldenMask;
}

export function refineGoldens(bundle: string): RefineGolden[] {
  return JSON.parse(readFileSync(path.join(bundle, 'goldens.json'), 'utf8')).refine ?? [];
}
