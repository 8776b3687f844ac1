// The RLE codec against the real pycocotools: counts strings byte for byte, area, bbox, IoU, round trips.
import * as assert from 'node:assert/strict';
import type { CocoRle } from '../../src/protocol/result';
import {
  compressRle,
  countsArea,
  countsToString,
  decodeRle,
  encodeMask,
  forEachRun,
  maskToCounts,
  paintRle,
  rleArea,
  rleBbox,
  rleCounts,
  rleIou,
  stringToCounts,
} from '../../src/protocol/rle';
import { b64, blobMask, cocoRef, randomMask, rng, unb64 } from './coco_ref';

interface MaskCase {
  name: string;
  h: number;
  w: number;
  mask: Uint8Array;
}
interface EncodeRef {
  counts: string;
  area: number;
  bbox: number[];
}

function buildMaskCases(): MaskCase[] {
  const rand = rng(20240611);
  const cases: MaskCase[] = [];
  const add = (name: string, h: number, w: number, mask: Uint8Array) => cases.push({ name, h, w, mask });
  add('1x1 empty', 1, 1, new Uint8Array([0]));
  add('1x1 full', 1, 1, new Uint8Array([1]));
  add('1x1 value 255', 1, 1, new Uint8Array([255]));
  // Every 3x3 mask.
  for (let bits = 0; bits < 512; bits++) {
    const m = new Uint8Array(9);
    for (let i = 0; i < 9; i++) m[i] = (bits >> i) & 1;
    add(`3x3 #${bits}`, 3, 3, m);
  }
  for (const [h, w] of [
    [1, 37],
    [37, 1],
    [1, 1000],
    [1000, 1],
    [2, 2],
    [7, 13],
    [13, 7],
    [64, 64],
    [31, 97],
  ]) {
    for (const d of [0, 0.02, 0.3, 0.5, 0.7, 0.98, 1]) add(`${h}x${w} p=${d}`, h, w, randomMask(h, w, d, rand));
  }
  for (let k = 0; k < 60; k++) {
    const h = 1 + Math.floor(rand() * 80),
      w = 1 + Math.floor(rand() * 80);
    add(`random ${h}x${w} #${k}`, h, w, randomMask(h, w, rand(), rand));
  }
  for (let k = 0; k < 10; k++) {
    const h = 20 + Math.floor(rand() * 300),
      w = 20 + Math.floor(rand() * 300);
    add(`blobs ${h}x${w} #${k}`, h, w, blobMask(h, w, 1 + Math.floor(rand() * 5), rand));
  }
  // Nonzero values other than 1 (the row-diff path compares 4-byte words first), and a view at an odd byte offset.
  const varied = blobMask(200, 240, 4, rand).map((v) => (v ? 1 + Math.floor(rand() * 255) : 0));
  add('200x240 blobs, values 1..255', 200, 240, varied);
  const shifted = new Uint8Array(200 * 240 + 3);
  shifted.set(blobMask(200, 240, 3, rand), 1);
  add('200x240 blobs at byte offset 1', 200, 240, shifted.subarray(1, 1 + 200 * 240));
  // Moderately noisy at photo size: a blob with speckle (more transitions than the row-diff path keeps).
  const speckle = blobMask(600, 800, 3, rand);
  for (let i = 0; i < speckle.length; i++) if (rand() < 0.08) speckle[i] ^= 1;
  add('600x800 speckled blobs', 600, 800, speckle);
  // Photo-sized: dense noise (huge counts string), object-like blobs, one pixel at each end (long runs).
  add('1000x1500 noise p=0.5', 1000, 1500, randomMask(1000, 1500, 0.5, rand));
  add('1000x1500 blobs', 1000, 1500, blobMask(1000, 1500, 4, rand));
  const ends = new Uint8Array(1000 * 1500);
  ends[0] = 1;
  ends[ends.length - 1] = 1;
  add('1000x1500 two corners', 1000, 1500, ends);
  const last = new Uint8Array(1000 * 1500);
  last[1000 * 1500 - 1500] = 1; // bottom-left pixel: one run after 999 zeros, then a long tail
  add('1000x1500 bottom-left pixel', 1000, 1500, last);
  add('1000x1500 full', 1000, 1500, new Uint8Array(1000 * 1500).fill(1));
  add('1000x1500 empty', 1000, 1500, new Uint8Array(1000 * 1500));
  return cases;
}

function norm(m: Uint8Array): Uint8Array {
  return m.map((v) => (v ? 1 : 0));
}

describe('protocol/rle against pycocotools', function () {
  this.timeout(120000);
  const cases = buildMaskCases();
  const photos = [
    { op: 'photo', name: 'camera.png', h: 1000, w: 1500, threshold: 110 },
    { op: 'photo', name: 'coffee.png', h: 1200, w: 900, threshold: 150, channel: 0 },
    { op: 'photo', name: 'astronaut.png', h: 512, w: 512, threshold: 60 },
    { op: 'photo', name: 'chelsea.png', h: 451, w: 301, threshold: 128 },
  ];
  const bigCounts: { size: [number, number]; counts: number[] }[] = [
    { size: [60000, 60000], counts: [3000000000, 5, 100, 599999895] },
    { size: [60000, 60000], counts: [0, 3599999999, 1] },
    { size: [60000, 60000], counts: [1, 2, 3, 4, 2147483648, 1452516342] },
    { size: [0, 0], counts: [0] },
    { size: [3, 4], counts: [0, 12] },
  ];
  let refs: EncodeRef[];
  let photoRefs: (EncodeRef & { mask: string })[];
  let bigRefs: EncodeRef[];
  let iouPairs: { name: string; a: CocoRle; b: CocoRle }[];
  let iouRefs: { iou: number }[];
  let decodeRefs: { mask: string }[];
  const decodeCases: CocoRle[] = [];

  before(function () {
    const rand = rng(7);
    iouPairs = [];
    const pair = (name: string, h: number, w: number, a: Uint8Array, b: Uint8Array) =>
      iouPairs.push({ name, a: encodeMask(a, h, w), b: encodeMask(b, h, w) });
    pair('both empty', 5, 6, new Uint8Array(30), new Uint8Array(30));
    pair('one empty', 5, 6, new Uint8Array(30), randomMask(5, 6, 0.5, rand));
    const full = new Uint8Array(30).fill(1);
    pair('identical full', 5, 6, full, full);
    // Overlapping boxes, disjoint pixels: a checkerboard and its complement.
    const cb = new Uint8Array(64).map((_, i) => ((i >> 3) + (i & 7)) & 1);
    pair(
      'checkerboards',
      8,
      8,
      cb,
      cb.map((v) => 1 - v),
    );
    pair('disjoint boxes', 10, 10, blobMaskAt(10, 10, 0, 0, 3, 3), blobMaskAt(10, 10, 6, 6, 3, 3));
    for (let k = 0; k < 40; k++) {
      const h = 1 + Math.floor(rand() * 60),
        w = 1 + Math.floor(rand() * 60);
      const gen = (): Uint8Array => (rand() < 0.5 ? randomMask(h, w, rand(), rand) : blobMask(h, w, 2, rand));
      pair(`random ${k}`, h, w, gen(), gen());
    }
    const a = blobMask(1000, 1500, 3, rand),
      b = blobMask(1000, 1500, 3, rand);
    pair('photo-size blobs', 1000, 1500, a, b);
    pair(
      'photo-size blob vs itself shifted',
      1000,
      1500,
      a,
      a.map((_, i) => a[i >= 1 ? i - 1 : 0]),
    );
    for (const c of cases.filter((_, i) => i % 23 === 0)) decodeCases.push(encodeMask(c.mask, c.h, c.w));

    const batch: object[] = [
      ...cases.map((c) => ({ op: 'encode', h: c.h, w: c.w, mask: b64(c.mask) })),
      ...photos,
      ...bigCounts.map((c) => ({ op: 'compress', ...c })),
      ...iouPairs.map((p) => ({ op: 'iou', a: p.a, b: p.b })),
      ...decodeCases.map((rle) => ({ op: 'decode', rle })),
    ];
    const res = cocoRef<any>(batch);
    let o = 0;
    refs = res.slice(o, (o += cases.length));
    photoRefs = res.slice(o, (o += photos.length));
    bigRefs = res.slice(o, (o += bigCounts.length));
    iouRefs = res.slice(o, (o += iouPairs.length));
    decodeRefs = res.slice(o, (o += decodeCases.length));
  });

  it(`encodes ${'many'} masks to the same counts string, area and bbox`, function () {
    assert.ok(cases.length > 600);
    for (let i = 0; i < cases.length; i++) {
      const c = cases[i];
      const rle = encodeMask(c.mask, c.h, c.w);
      assert.deepEqual(rle.size, [c.h, c.w]);
      assert.equal(rle.counts, refs[i].counts, `counts of ${c.name}`);
      assert.equal(rleArea(rle), refs[i].area, `area of ${c.name}`);
      assert.deepEqual(rleBbox(rle), refs[i].bbox, `bbox of ${c.name}`);
    }
  });

  it('round-trips every mask through decodeRle (nonzero becomes 1)', function () {
    for (const c of cases) {
      const rle = encodeMask(c.mask, c.h, c.w);
      assert.deepEqual(decodeRle(rle), norm(c.mask), c.name);
      assert.deepEqual(decodeRle({ size: rle.size, counts: Array.from(rleCounts(rle)) }), norm(c.mask), c.name);
    }
  });

  it('decodes to what pycocotools decodes', function () {
    for (let i = 0; i < decodeCases.length; i++) {
      assert.deepEqual(decodeRle(decodeCases[i]), unb64(decodeRefs[i].mask));
    }
  });

  it('matches pycocotools on real photographs thresholded at photo size', function () {
    for (let i = 0; i < photos.length; i++) {
      const p = photos[i],
        ref = photoRefs[i];
      const mask = unb64(ref.mask);
      const rle = encodeMask(mask, p.h, p.w);
      assert.equal(rle.counts, ref.counts, p.name);
      assert.equal(rleArea(rle), ref.area);
      assert.deepEqual(rleBbox(rle), ref.bbox);
      assert.deepEqual(decodeRle(rle), mask);
      assert.ok(ref.area > 0 && ref.area < p.h * p.w, `${p.name} threshold gives a real shape`);
    }
  });

  it('compresses run lengths beyond 2^31 like pycocotools and parses them back', function () {
    for (let i = 0; i < bigCounts.length; i++) {
      const c = bigCounts[i];
      assert.equal(countsToString(c.counts), bigRefs[i].counts, JSON.stringify(c));
      assert.deepEqual(Array.from(stringToCounts(bigRefs[i].counts)), c.counts);
      assert.equal(countsArea(c.counts), bigRefs[i].area);
      assert.deepEqual(rleBbox(c), bigRefs[i].bbox);
      assert.deepEqual(compressRle(c), { size: c.size, counts: bigRefs[i].counts });
    }
  });

  it('computes IoU like pycocotools iou(dt, gt, [0])', function () {
    for (let i = 0; i < iouPairs.length; i++) {
      const p = iouPairs[i];
      assert.equal(rleIou(p.a, p.b), iouRefs[i].iou, p.name);
    }
    assert.equal(rleIou(iouPairs[2].a, iouPairs[2].a), 1);
  });

  it('refuses IoU of masks with different sizes', function () {
    assert.throws(
      () => rleIou(encodeMask(new Uint8Array(6), 2, 3), encodeMask(new Uint8Array(6), 3, 2)),
      /different sizes/,
    );
  });
});

function blobMaskAt(h: number, w: number, x0: number, y0: number, bw: number, bh: number): Uint8Array {
  const m = new Uint8Array(h * w);
  for (let y = y0; y < y0 + bh; y++) for (let x = x0; x < x0 + bw; x++) m[y * w + x] = 1;
  return m;
}

describe('protocol/rle without the reference', function () {
  it('rejects malformed counts strings and run lengths that do not add up', function () {
    assert.throws(() => decodeRle({ size: [2, 2], counts: '1' }), /add up to 1/);
    assert.throws(() => decodeRle({ size: [2, 2], counts: '0g' }), /ends inside a number/);
    assert.throws(() => stringToCounts('0 '), /invalid character/);
    assert.throws(() => decodeRle({ size: [2, 2], counts: [1, 2] }), /add up to 3/);
    assert.throws(() => encodeMask(new Uint8Array(3), 2, 2), /expected 2\*2/);
    assert.throws(() => encodeMask(new Uint8Array(4), -2, -2), /invalid mask size/);
    // A negative run length: "1" then "O" (= -1 with no base two back for index 1).
    assert.throws(() => stringToCounts('1O'), /invalid run length/);
  });

  it('handles zero-area sizes', function () {
    for (const [h, w] of [
      [0, 0],
      [0, 5],
      [5, 0],
    ]) {
      const rle = encodeMask(new Uint8Array(0), h, w);
      assert.equal(rle.counts, '0');
      assert.equal(decodeRle(rle).length, 0);
      assert.equal(rleArea(rle), 0);
      assert.deepEqual(rleBbox(rle), [0, 0, 0, 0]);
    }
  });

  it('paints a mask into RGBA pixels exactly where decodeRle puts ones', function () {
    const rand = rng(99);
    for (const [h, w] of [
      [1, 1],
      [17, 23],
      [120, 80],
      [3, 200],
    ]) {
      const mask = rand() < 0.5 ? randomMask(h, w, 0.4, rand) : blobMask(h, w, 3, rand);
      const rle = encodeMask(mask, h, w);
      const px = new Uint8ClampedArray(h * w * 4).fill(7);
      paintRle(rle, px, [10, 20, 30, 255]);
      const dec = decodeRle(rle);
      for (let i = 0; i < h * w; i++) {
        const want = dec[i] ? [10, 20, 30, 255] : [7, 7, 7, 7];
        assert.deepEqual(Array.from(px.subarray(i * 4, i * 4 + 4)), want, `pixel ${i} of ${h}x${w}`);
      }
      const blended = new Uint8ClampedArray(h * w * 4).fill(100);
      paintRle({ size: rle.size, runs: rleCounts(rle) }, blended, [200, 0, 50, 255], 0.5);
      for (let i = 0; i < h * w; i++) {
        const want = dec[i] ? [150, 50, 75, 255] : [100, 100, 100, 100];
        assert.deepEqual(Array.from(blended.subarray(i * 4, i * 4 + 4)), want);
      }
    }
  });

  it('walks runs column by column', function () {
    // 3x2 mask, column-major ones at positions 1..4 -> column 0 rows 1..3, column 1 rows 0..2.
    const segs: number[][] = [];
    forEachRun([1, 4, 1], 3, 2, (x, y0, y1) => segs.push([x, y0, y1]));
    assert.deepEqual(segs, [
      [0, 1, 3],
      [1, 0, 2],
    ]);
    assert.deepEqual(Array.from(maskToCounts([0, 1, 1, 1, 1, 0], 3, 2)), [1, 4, 1]);
  });
});
