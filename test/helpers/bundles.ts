// The committed tiny bundles, their goldens, and fresh exports made by the project's own exporter.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const FIXTURE_BUNDLES = path.join(REPO, 'test', 'fixtures', 'bundles');

export interface GoldenMask {
  seg_index: number;
  rle: { size: [number, number]; counts: string };
  bbox: number[];
  area: number;
}
export interface TensorSummary {
  shape: number[];
  sum: number;
  abs_sum: number;
  first: number[];
}
export interface GoldenCase {
  name: string;
  image: string;
  prompt: string;
  history: Array<[string, string]>;
  assistant_prefix: string;
  max_new_tokens: number;
  prompt_text: string;
  input_ids: number[];
  output_ids: number[];
  text: string;
  seg_positions: number[];
  seg_embeddings: number[][];
  masks: GoldenMask[];
  clip_pixel_values: TensorSummary;
  sam_pixel_values: TensorSummary;
  resize_size: [number, number];
  orig_size: [number, number];
}

export function fixtureBundles(): string[] {
  return readdirSync(FIXTURE_BUNDLES)
    .map((d) => path.join(FIXTURE_BUNDLES, d))
    .filter((d) => existsSync(path.join(d, 'lisa.manifest.json')))
    .sort();
}

export function goldens(bundle: string): GoldenCase[] {
  return JSON.parse(readFileSync(path.join(bundle, 'goldens.json'), 'utf8')).cases;
}

/**
 * Runs `npm run export:tiny`'s module directly: a random-weight LISA exported through the real export path.
 * `keepCheckpoint`: also keep the LISA checkpoint (`<dir>/lisa`) and CLIP (`<dir>/clip`) folders it came from.
 * `weights`: export those weights instead of float32 (no goldens then).
 */
export function exportTiny(
  layout: '7b' | '13b',
  seed: number,
  out: string,
  keepCheckpoint?: string,
  weights?: 'float16' | 'int4',
): string {
  execFileSync(
    path.join(REPO, 'models', 'export', 'venv'),
    [
      'run',
      '-m',
      'lisa_export.tiny',
      '--layout',
      layout,
      '--seed',
      String(seed),
      '--out',
      out,
      ...(keepCheckpoint ? ['--keep-checkpoint', keepCheckpoint] : []),
      ...(weights ? ['--weights', weights] : []),
    ],
    { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return out;
}
