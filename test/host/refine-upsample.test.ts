// src/host/mask-upsample.ts against the plain computation it shortcuts: both bilinear resizes of postprocess_masks
// evaluated at every pixel (the 1024x1024 intermediate whole, then cropped), thresholded, and encoded by maskToCounts.
// The shortcut (outputs between inputs on one side of the threshold are not computed) must give the same run lengths
// pixel for pixel, for upsampling, downsampling, the identity, odd sizes, a nonzero threshold and flat or noisy
// logits. That the arithmetic is PyTorch's is checked against the refine goldens in refine.test.ts.
import * as assert from 'node:assert/strict';
import { lowResMaskCounts } from '../../src/host/mask-upsample';
import { maskToCounts } from '../../src/protocol/rle';

/** PyTorch's interpolate(bilinear, align_corners=False) of a row-major ih x iw map to oh x ow, every output computed. */
function resize(src: Float64Array, ih: number, iw: number, oh: number, ow: number): Float64Array {
  const f = Math.fround;
  const tap = (d: number, inSize: number, outSize: number) => {
    const s = Math.max(f(f(f(inSize / outSize) * (d + 0.5)) - 0.5), 0);
    const i0 = Math.floor(s);
    return { i0, i1: Math.min(i0 + 1, inSize - 1), l: f(s - i0) };
  };
  const txs = Array.from({ length: ow }, (_, x) => tap(x, iw, ow));
  const out = new Float64Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    const ty = tap(y, ih, oh);
    for (let x = 0; x < ow; x++) {
      const tx = txs[x];
      const top = (1 - tx.l) * src[ty.i0 * iw + tx.i0] + tx.l * src[ty.i0 * iw + tx.i1];
      const bottom = (1 - tx.l) * src[ty.i1 * iw + tx.i0] + tx.l * src[ty.i1 * iw + tx.i1];
      out[y * ow + x] = (1 - ty.l) * top + ty.l * bottom;
    }
  }
  return out;
}

function plainCounts(low: Float32Array, rh: number, rw: number, h: number, w: number, t: number): Uint32Array {
  const big = resize(Float64Array.from(low), 256, 256, 1024, 1024);
  const crop = new Float64Array(rh * rw);
  for (let y = 0; y < rh; y++) crop.set(big.subarray(y * 1024, y * 1024 + rw), y * rw);
  const full = resize(crop, rh, rw, h, w);
  return maskToCounts(
    full.map((v) => (v > t ? 1 : 0)),
    h,
    w,
  );
}

/** Deterministic logits: a few blobs (object-like masks with long runs), plus noise when asked. */
function logits(seed: number, noise: number): Float32Array {
  const out = new Float32Array(256 * 256);
  let s = seed;
  const rnd = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const blobs = Array.from({ length: 4 }, () => [rnd() * 256, rnd() * 256, 20 + rnd() * 60]);
  for (let y = 0; y < 256; y++)
    for (let x = 0; x < 256; x++) {
      let v = -1;
      for (const [cx, cy, r] of blobs) v = Math.max(v, 1 - Math.hypot(x - cx, y - cy) / r);
      out[y * 256 + x] = v * 8 + noise * (rnd() - 0.5);
    }
  return out;
}

describe('refine: low-res mask logits to the mask at the image size (mask-upsample)', () => {
  const sizes: [string, number, number][] = [
    ['1024x768 (crop, then the identity)', 768, 1024],
    ['600x400 (downsampling)', 400, 600],
    ['portrait 333x500', 500, 333],
    ['4032x3024 (upsampling)', 3024, 4032],
    ['odd 1x7', 7, 1],
    ['square 2000x2000', 2000, 2000],
  ];
  for (const [name, h, w] of sizes) {
    it(`equals the plain per-pixel computation: ${name}`, () => {
      const scale = 1024 / Math.max(h, w);
      const rs: [number, number] = [Math.floor(h * scale + 0.5), Math.floor(w * scale + 0.5)];
      for (const [seed, noise, t] of [
        [1, 0, 0],
        [2, 12, 0],
        [3, 1, 0.75],
      ]) {
        const low = logits(seed, noise);
        const got = lowResMaskCounts(low, rs, h, w, t);
        const want = plainCounts(low, rs[0], rs[1], h, w, t);
        assert.deepEqual(got, want, `seed ${seed}, noise ${noise}, threshold ${t}`);
      }
    });
  }

  it('reads the map at an offset, gives one run for a flat map, and counts NaN as outside', () => {
    const two = new Float32Array(2 * 256 * 256).fill(-3);
    two.fill(5, 256 * 256);
    assert.deepEqual(lowResMaskCounts(two, [683, 1024], 400, 600, 0, 256 * 256), Uint32Array.from([0, 240000]));
    assert.deepEqual(lowResMaskCounts(two, [683, 1024], 400, 600), Uint32Array.from([240000]));
    assert.deepEqual(
      lowResMaskCounts(new Float32Array(256 * 256).fill(Number.NaN), [1024, 1024], 10, 10),
      Uint32Array.from([100]),
    );
  });

  it('refuses sizes it cannot map, in one line', () => {
    const low = new Float32Array(256 * 256);
    assert.throws(() => lowResMaskCounts(low, [0, 10], 10, 10), /resize size 0x10/);
    assert.throws(() => lowResMaskCounts(low, [1025, 10], 10, 10), /inside SAM/);
    assert.throws(() => lowResMaskCounts(low.subarray(1), [10, 10], 10, 10), /65536|256\*256/);
    assert.throws(() => lowResMaskCounts(low, [10, 10], 0, 10), /image size/);
  });
});
