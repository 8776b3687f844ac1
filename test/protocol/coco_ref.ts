// Runs test/helpers/coco_ref.py (the real pycocotools, in the exporter's venv) once with a batch of cases.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export function repoRoot(): string {
  let d = __dirname;
  while (!fs.existsSync(path.join(d, 'package.json'))) {
    const up = path.dirname(d);
    if (up === d) throw new Error(`repository root not found above ${__dirname}`);
    d = up;
  }
  return d;
}

export function cocoRef<T = any>(cases: object[]): T[] {
  const root = repoRoot();
  const r = spawnSync(path.join(root, 'models/export/venv'), ['run', path.join(root, 'test/helpers/coco_ref.py')], {
    cwd: root,
    input: JSON.stringify({ cases }),
    maxBuffer: 1 << 30,
    encoding: 'utf8',
  });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`coco_ref.py failed (${r.status}):\n${r.stderr}`);
  const out = JSON.parse(r.stdout) as { results: T[] };
  if (out.results.length !== cases.length) throw new Error('coco_ref.py returned the wrong number of results');
  return out.results;
}

export function b64(m: Uint8Array): string {
  return Buffer.from(m.buffer, m.byteOffset, m.byteLength).toString('base64');
}

export function unb64(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'base64'));
}

/** Deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomMask(h: number, w: number, density: number, rand: () => number): Uint8Array {
  const m = new Uint8Array(h * w);
  for (let i = 0; i < m.length; i++) m[i] = rand() < density ? 1 : 0;
  return m;
}

/** A few filled ellipses and rectangles: object-like shapes with long runs. */
export function blobMask(h: number, w: number, n: number, rand: () => number): Uint8Array {
  const m = new Uint8Array(h * w);
  for (let k = 0; k < n; k++) {
    const cx = rand() * w,
      cy = rand() * h;
    const rx = 1 + rand() * w * 0.3,
      ry = 1 + rand() * h * 0.3;
    const rect = rand() < 0.3;
    const y0 = Math.max(0, Math.floor(cy - ry)),
      y1 = Math.min(h, Math.ceil(cy + ry));
    const x0 = Math.max(0, Math.floor(cx - rx)),
      x1 = Math.min(w, Math.ceil(cx + rx));
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const dx = (x + 0.5 - cx) / rx,
          dy = (y + 0.5 - cy) / ry;
        if (rect || dx * dx + dy * dy <= 1) m[y * w + x] = 1;
      }
    }
  }
  return m;
}
