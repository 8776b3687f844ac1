// reason-segment eval's parts: the metric against a transcription of LISA's own (lisa_export/reason_seg_metric.py, run
// with torch), and the reader against a folder written by the shapes generator (its masks against the generator's
// get_mask_from_json transcription).
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  intersectionAndUnion,
  lisaPrompt,
  maskFromJson,
  polygonMask,
  ReasonSegMeter,
  readReasonSeg,
} from '../../src/host/eval';
import { REPO } from '../helpers/bundles';

const VENV = path.join(REPO, 'models', 'export', 'venv');

function python(args: string[], input?: string): string {
  return execFileSync(VENV, ['run', ...args], {
    cwd: REPO,
    input,
    maxBuffer: 1 << 28,
    stdio: ['pipe', 'pipe', 'pipe'],
  }).toString();
}

/** A deterministic pseudo-random source (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function blob(h: number, w: number, r: () => number, value = 1, into?: Uint8Array): Uint8Array {
  const m = into ?? new Uint8Array(h * w);
  const cy = r() * h;
  const cx = r() * w;
  const ry = 2 + r() * h * 0.4;
  const rx = 2 + r() * w * 0.4;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) if (((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1) m[y * w + x] = value;
  return m;
}

describe('eval: LISA validate() metric', function () {
  this.timeout(120_000);

  it("gives the gIoU, cIoU and per-image IoU of a transcription of LISA's intersectionAndUnionGPU and meters", function () {
    const r = rng(12);
    const pairs: { h: number; w: number; pred: number[]; target: number[] }[] = [];
    for (let i = 0; i < 14; i++) {
      const h = 20 + Math.floor(r() * 40);
      const w = 20 + Math.floor(r() * 40);
      let pred = blob(h, w, r);
      let target = blob(h, w, r);
      if (i % 3 === 0) blob(h, w, r, 255, target); // an ignore region over part of the target and the background
      if (i === 1) pred = new Uint8Array(h * w); // empty prediction: IoU 0
      if (i === 2) {
        pred = new Uint8Array(h * w); // no object and none found: union 0 counts as IoU 1
        target = new Uint8Array(h * w);
      }
      if (i === 3) target = new Uint8Array(h * w).fill(255); // everything ignored
      if (i === 4) pred = target.map((v) => (v === 1 ? 1 : 0)); // exact
      pairs.push({ h, w, pred: Array.from(pred), target: Array.from(target) });
    }
    const ref = JSON.parse(python(['-m', 'lisa_export.reason_seg_metric'], JSON.stringify({ pairs })));
    const meter = new ReasonSegMeter();
    pairs.forEach((p, i) => {
      const iu = intersectionAndUnion(Uint8Array.from(p.pred), Uint8Array.from(p.target));
      assert.equal(iu.intersection[1], ref.intersection[i], `image ${i}: intersection`);
      assert.equal(iu.union[1], ref.union[i], `image ${i}: union`);
      const acc = meter.add(iu.intersection, iu.union);
      assert.ok(Math.abs(acc - ref.per_image[i]) < 1e-6, `image ${i}: IoU ${acc} vs ${ref.per_image[i]}`);
    });
    assert.equal(ref.per_image[1], 0);
    assert.equal(ref.per_image[2], 1);
    assert.ok(Math.abs(meter.giou - ref.giou) < 1e-6, `gIoU ${meter.giou} vs ${ref.giou}`);
    assert.ok(Math.abs(meter.ciou - ref.ciou) < 1e-6, `cIoU ${meter.ciou} vs ${ref.ciou}`);
    assert.ok(meter.giou > 0.05 && meter.giou < 0.95, `a metric that tells cases apart (gIoU ${meter.giou})`);
  });

  it('wraps texts as ValDataset does', function () {
    assert.equal(
      lisaPrompt('Which shape has the most corners?', true),
      ' Which shape has the most corners? Please output segmentation mask.',
    );
    assert.equal(
      lisaPrompt('the red ring', false),
      ' What is the red ring in this image? Please output segmentation mask.',
    );
  });
});

describe('eval: reading a ReasonSeg folder written by the shapes generator', function () {
  this.timeout(300_000);
  let dir: string;
  before(function () {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rs-shapes-'));
    python(['-m', 'lisa_export.shapes', '--seed', '11', '--count', '12', '--out', dir]);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("reads every image with its texts, and rasterises its polygons as the generator's get_mask_from_json", async function () {
    const samples = await readReasonSeg(dir);
    assert.equal(samples.length, 12);
    const script = `
import json, sys, hashlib, glob, os
from lisa_export.shapes import mask_from_json
out = {}
for j in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    a = json.load(open(j, encoding="utf-8"))
    m = mask_from_json(a, a["imageHeight"], a["imageWidth"])
    out[os.path.basename(j)[:-5]] = [hashlib.sha256(m.tobytes()).hexdigest(), int((m == 1).sum()), int((m == 255).sum())]
print(json.dumps(out))`;
    const ref = JSON.parse(python(['-c', script, dir]));
    let ignores = 0;
    for (const s of samples) {
      const a = s.anno as typeof s.anno & { imageHeight: number; imageWidth: number; answers: string[] };
      assert.ok(a.text.length >= 2 && a.answers.length === a.text.length, `${s.name}: texts and answers`);
      const m = maskFromJson(a, a.imageHeight, a.imageWidth);
      const ones = m.reduce((n, v) => n + (v === 1 ? 1 : 0), 0);
      const ign = m.reduce((n, v) => n + (v === 255 ? 1 : 0), 0);
      assert.deepEqual([createHash('sha256').update(m).digest('hex'), ones, ign], ref[s.name], `${s.name}: mask`);
      assert.ok(ones > 100, `${s.name}: a target of some size`);
      ignores += ign;
    }
    assert.ok(ignores > 0, 'some scene has an ignore region');
  });

  it("leaves a ring's hole out of its keyhole polygon", function () {
    const pts: number[][] = [];
    for (let i = 0; i < 48; i++)
      pts.push([
        Math.round(50 + 30 * Math.cos((2 * Math.PI * i) / 48)),
        Math.round(50 + 30 * Math.sin((2 * Math.PI * i) / 48)),
      ]);
    const outer0 = pts[0];
    pts.push(outer0);
    const inner: number[][] = [];
    for (let i = 0; i < 32; i++)
      inner.push([
        Math.round(50 + 15 * Math.cos((-2 * Math.PI * i) / 32)),
        Math.round(50 + 15 * Math.sin((-2 * Math.PI * i) / 32)),
      ]);
    pts.push(...inner, inner[0]);
    const m = polygonMask(pts, 100, 100);
    assert.equal(m[50 * 100 + 50], 0, 'the hole');
    assert.equal(m[50 * 100 + 28], 1, 'the ring, left of the hole');
    assert.equal(m[28 * 100 + 50], 1, 'the ring, above the hole');
    assert.equal(m[5 * 100 + 5], 0, 'outside');
  });

  it('says in one line what is wrong with a folder that is not ReasonSeg', async function () {
    await assert.rejects(
      readReasonSeg(path.join(dir, 'nope')),
      /cannot be read \(ENOENT\); pass a ReasonSeg-format folder/,
    );
    const empty = mkdtempSync(path.join(os.tmpdir(), 'rs-empty-'));
    try {
      await assert.rejects(readReasonSeg(empty), /no <name>\.jpg \+ <name>\.json pairs/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
