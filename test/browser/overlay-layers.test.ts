// The overlay's pure pixel code (src/overlay/layers.ts) in Node: outline bands against a brute-force definition,
// sprites, hit testing. The DOM part is tested in Chromium (renderer.test.ts).

import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { hitTest, MaskLayer, outlineThickness, packRgba } from '../../src/overlay/layers';
import { checkResult } from '../../src/overlay/validate';
import type { ResultMask } from '../../src/protocol/result';
import { encodeMask } from '../../src/protocol/rle';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
}

/** Random blobby mask: a few discs and rectangles, some touching the image border. */
function randomMask(w: number, h: number, seed: number): Uint8Array {
  const r = rng(seed);
  const m = new Uint8Array(w * h);
  for (let k = 0; k < 4; k++) {
    const cx = r() * w,
      cy = r() * h,
      rad = 2 + r() * w * 0.3,
      rect = r() < 0.4;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const inside = rect
          ? Math.abs(x - cx) < rad && Math.abs(y - cy) < rad * 0.6
          : (x - cx) ** 2 + (y - cy) ** 2 < rad * rad;
        if (inside) m[y * w + x] = r() < 0.02 ? 0 : 1; // a few holes
      }
  }
  return m;
}

function layerOf(m: Uint8Array, w: number, h: number, segIndex = 0): MaskLayer {
  const mask: ResultMask = {
    segIndex,
    tokenIndex: -1,
    rle: encodeMask(m, h, w),
    bbox: [0, 0, 0, 0],
    area: 0,
    score: 0,
  };
  return new MaskLayer(mask, w, h);
}

/** Chessboard distance from a mask pixel to the nearest pixel outside the mask, the image border counting as outside. */
function bruteDistance(m: Uint8Array, w: number, h: number, x: number, y: number): number {
  for (let d = 1; ; d++) {
    for (let dy = -d; dy <= d; dy++)
      for (let dx = -d; dx <= d; dx++) {
        const X = x + dx,
          Y = y + dy;
        if (X < 0 || Y < 0 || X >= w || Y >= h || !m[Y * w + X]) return d;
      }
  }
}

describe('overlay layers (pure pixel code)', () => {
  it('outline bands match the brute-force chessboard definition for thickness 1..4', () => {
    for (let seed = 1; seed <= 6; seed++) {
      const w = 37 + seed * 3,
        h = 29 + seed;
      const m = randomMask(w, h, seed);
      const layer = layerOf(m, w, h);
      for (let t = 1; t <= 4; t++) {
        const expected: number[] = [];
        for (let y = 0; y < h; y++)
          for (let x = 0; x < w; x++) {
            if (m[y * w + x] && bruteDistance(m, w, h, x, y) <= t) expected.push(y * w + x);
          }
        assert.deepEqual([...layer.outline(t)], expected, `seed ${seed}, thickness ${t}`);
      }
    }
  });

  it('decodes once and caches outlines', () => {
    const m = randomMask(40, 30, 9);
    const layer = layerOf(m, 40, 30);
    assert.deepEqual(
      [...layer.alpha],
      [...m].map((v) => (v ? 1 : 0)),
    );
    assert.equal(layer.outline(2), layer.outline(2));
  });

  it('fill and outline sprites are cropped to the bbox and coloured exactly', () => {
    const w = 50,
      h = 40;
    const m = new Uint8Array(w * h);
    for (let y = 10; y < 20; y++) for (let x = 5; x < 25; x++) m[y * w + x] = 1;
    const layer = layerOf(m, w, h);
    assert.deepEqual(layer.box, [5, 10, 20, 10]);
    const fill = layer.fillSprite([10, 20, 30]);
    assert.deepEqual([fill.x, fill.y, fill.w, fill.h], [5, 10, 20, 10]);
    assert.ok(new Uint32Array(fill.data.buffer).every((v) => v === packRgba(10, 20, 30, 255)));
    const outline = layer.outlineSprite([1, 2, 3], 1);
    const px = new Uint32Array(outline.data.buffer);
    let lit = 0;
    for (let y = 0; y < 10; y++)
      for (let x = 0; x < 20; x++) {
        const edge = x === 0 || y === 0 || x === 19 || y === 9;
        assert.equal(px[y * 20 + x], edge ? packRgba(1, 2, 3, 255) : 0, `(${x}, ${y})`);
        if (edge) lit++;
      }
    assert.equal(lit, 2 * 20 + 2 * 8);
  });

  it('an empty mask draws nothing', () => {
    const layer = layerOf(new Uint8Array(12), 4, 3);
    assert.ok(layer.empty);
    assert.equal(layer.outline(1).length, 0);
  });

  it('hit testing picks the topmost visible mask', () => {
    const w = 10,
      h = 10;
    const a = new Uint8Array(w * h).fill(1);
    const b = new Uint8Array(w * h);
    b[5 * w + 5] = 1;
    const layers = [layerOf(a, w, h, 0), layerOf(b, w, h, 1)];
    assert.equal(hitTest(layers, [true, true], 5, 5), 1);
    assert.equal(hitTest(layers, [true, false], 5, 5), 0);
    assert.equal(hitTest(layers, [true, true], 4, 5), 0);
    assert.equal(hitTest(layers, [false, false], 5, 5), -1);
    assert.equal(hitTest(layers, [true, true], -1, 5), -1);
  });

  it('a mask of the wrong size is refused with a message', () => {
    const mask: ResultMask = {
      segIndex: 0,
      tokenIndex: -1,
      rle: encodeMask(new Uint8Array(6), 2, 3),
      bbox: [0, 0, 0, 0],
      area: 0,
      score: 0,
    };
    assert.throws(() => new MaskLayer(mask, 4, 4), /mask 1 is 3x2 but the image is 4x4/);
  });

  it('outline thickness grows with the image so outlines stay visible', () => {
    assert.equal(outlineThickness(320, 320), 1);
    assert.equal(outlineThickness(4000, 3000), 6);
  });

  it('checkResult names unknown formats and broken shapes', () => {
    const unknown = checkResult({ format: 'reason-segment-result/2' });
    assert.ok(
      !unknown.ok && unknown.title === 'Unknown result format' && /reason-segment-result\/2/.test(unknown.detail),
    );
    assert.ok(!checkResult(null).ok);
    assert.ok(
      !checkResult({
        format: 'reason-segment-result/1',
        text: '',
        image: { width: 2, height: 2 },
        masks: [{ segIndex: 0, rle: { size: [3, 2], counts: '' } }],
      }).ok,
    );
    // A partial result is refused as the host's own validator refuses it (src/overlay/validate.ts uses it).
    const partial = checkResult({
      format: 'reason-segment-result/1',
      text: '',
      image: { width: 2, height: 3 },
      masks: [{ segIndex: 0, rle: { size: [3, 2], counts: '06' } }],
    });
    assert.ok(
      !partial.ok && /"model": expected an object, got undefined/.test(partial.detail),
      JSON.stringify(partial),
    );
    assert.ok(
      checkResult(
        JSON.parse(readFileSync(path.join(__dirname, '../../../test/fixtures/payloads/astronaut-3masks.json'), 'utf8')),
      ).ok,
    );
  });
});
