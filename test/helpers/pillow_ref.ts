// Runs test/helpers/pillow_ref.py (LISA's image stack: OpenCV 4.8, Pillow 9.4.0, numpy; models/export/lisa-pins) on a
// batch of jobs; one Python start per batch.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const IMAGES = path.join(REPO, 'test', 'fixtures', 'images');
const SCRIPT = path.join(REPO, 'test', 'helpers', 'pillow_ref.py');
const VENV = path.join(REPO, 'models', 'export', 'lisa-pins', 'venv');

export function tempDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `rs-${tag}-`));
}

export type Job = Record<string, unknown> & { op: string };

/** Runs the jobs; throws with Python's message if any job failed. */
export function runPillow(jobs: Job[], dir: string): void {
  const jobsFile = path.join(dir, `jobs-${process.pid}-${Date.now()}.json`);
  fs.writeFileSync(jobsFile, JSON.stringify(jobs));
  const r = spawnSync(VENV, ['run', SCRIPT, jobsFile], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`pillow_ref.py failed (${r.status}): ${r.stderr}`);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { ok?: boolean; error?: string });
  if (lines.length !== jobs.length)
    throw new Error(`pillow_ref.py answered ${lines.length} of ${jobs.length} jobs: ${r.stderr}`);
  lines.forEach((l, i) => {
    if (!l.ok) throw new Error(`pillow_ref.py job ${i} (${JSON.stringify(jobs[i])}): ${l.error}`);
  });
}

export function readU8(file: string): Uint8Array {
  const b = fs.readFileSync(file);
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

export function readF32(file: string): Float32Array {
  const b = fs.readFileSync(file);
  const copy = new Uint8Array(b.length);
  copy.set(b);
  return new Float32Array(copy.buffer);
}

/** max |a - b| and how many elements differ at all. */
export function diffStats(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; count: number; mean: number } {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let max = 0;
  let count = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > 0) count++;
    if (d > max) max = d;
    sum += d;
  }
  return { max, count, mean: a.length ? sum / a.length : 0 };
}
