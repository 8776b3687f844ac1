// Host mask building: thresholding, the payload masks (RLE/bbox/area/PNG) and the overlay PNG, decoded back with sharp.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import sharp from 'sharp';
import { buildResultMasks, maskPng, masksFromLogits, overlayPng, overlayRgb } from '../../src/host/masks';
import { maskColor, PALETTE } from '../../src/protocol/palette';
import { decodeRle, encodeMask, rleArea, rleBbox } from '../../src/protocol/rle';
import { validateSegmentResult } from '../../src/protocol/validate';
import { blobMask, cocoRef, randomMask, repoRoot, rng, unb64 } from '../protocol/coco_ref';

/** Decodes a PNG to raw pixels; `gray` reads one channel (sharp otherwise widens grayscale to sRGB on output). */
async function decodePng(b: Buffer, gray = false): Promise<{ data: Buffer; info: sharp.OutputInfo }> {
  const s = sharp(b);
  return (gray ? s.toColourspace('b-w') : s).raw().toBuffer({ resolveWithObject: true });
}

/** PNG IHDR colour type (0 grayscale, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA) and bit depth. */
function pngKind(b: Buffer): { colourType: number; bitDepth: number } {
  assert.equal(b.toString('latin1', 12, 16), 'IHDR');
  return { bitDepth: b[24], colourType: b[25] };
}

describe('host/masks', function () {
  this.timeout(120000);

  it('thresholds [n, h, w] logits strictly above the threshold', function () {
    const h = 2,
      w = 3;
    const logits = new Float32Array([
      -1,
      0,
      0.001,
      5,
      -0.5,
      0, // mask 0
      1,
      1,
      1,
      -1,
      -1,
      2.5, // mask 1
    ]);
    const [a, b] = masksFromLogits(logits, 2, h, w);
    assert.deepEqual(Array.from(a), [0, 0, 1, 1, 0, 0]);
    assert.deepEqual(Array.from(b), [1, 1, 1, 0, 0, 1]);
    assert.deepEqual(Array.from(masksFromLogits(logits, 2, h, w, 1)[1]), [0, 0, 0, 0, 0, 1]);
    assert.deepEqual(masksFromLogits(new Float32Array(0), 0, 5, 5), []);
    assert.throws(() => masksFromLogits(logits, 3, h, w), /expected 3\*2\*3/);
  });

  it('builds payload masks whose RLE, bbox and area match pycocotools and whose PNG decodes to the mask', async function () {
    const rand = rng(11);
    const h = 333,
      w = 517;
    const [photo] = cocoRef<{ mask: string; counts: string; area: number; bbox: number[] }>([
      { op: 'photo', name: 'coffee.png', h, w, threshold: 140 },
    ]);
    const masks = [unb64(photo.mask), blobMask(h, w, 3, rand), new Uint8Array(h * w), randomMask(h, w, 0.3, rand)];
    const out = await buildResultMasks(masks, h, w, [0.9, 0.8, 0.1], [5, -1, 9, 12], { png: true });
    assert.equal(out.length, 4);
    assert.equal(out[0].rle.counts, photo.counts);
    assert.equal(out[0].area, photo.area);
    assert.deepEqual(out[0].bbox, photo.bbox);
    for (let i = 0; i < masks.length; i++) {
      const m = out[i];
      assert.equal(m.segIndex, i);
      assert.deepEqual(m.rle, encodeMask(masks[i], h, w));
      assert.equal(m.area, rleArea(m.rle));
      assert.deepEqual(m.bbox, rleBbox(m.rle));
      assert.ok(m.png);
      const png = Buffer.from(m.png!, 'base64');
      assert.deepEqual(pngKind(png), { colourType: 0, bitDepth: 8 });
      const { data, info } = await decodePng(png, true);
      assert.deepEqual([info.width, info.height, info.channels], [w, h, 1]);
      const meta = await sharp(Buffer.from(m.png!, 'base64')).metadata();
      assert.equal(meta.format, 'png');
      assert.equal(meta.channels, 1);
      for (let p = 0; p < h * w; p++)
        if (data[p] !== (masks[i][p] ? 255 : 0)) assert.fail(`mask ${i} pixel ${p}: ${data[p]}`);
    }
    assert.deepEqual(
      out.map((m) => m.tokenIndex),
      [5, -1, 9, 12],
    );
    assert.deepEqual(
      out.map((m) => m.score),
      [0.9, 0.8, 0.1, 0],
    );
    assert.deepEqual(out[2].bbox, [0, 0, 0, 0]);
    assert.equal(out[2].area, 0);

    const noPng = await buildResultMasks(masks.slice(0, 1), h, w, [1], [0], { png: false });
    assert.equal(noPng[0].png, undefined);
    assert.equal(noPng[0].rle.counts, photo.counts);
  });

  it('produces masks a result payload validator accepts', async function () {
    const h = 20,
      w = 30;
    const masks = await buildResultMasks([blobMask(h, w, 2, rng(1))], h, w, [0.5], [3], { png: true });
    const result = {
      format: 'reason-segment-result/1',
      model: { variant: 'v', bundle: 'b' },
      provider: 'cpu',
      prompt: 'p',
      history: [],
      text: 't [SEG]',
      answer: ' t [SEG]',
      outputIds: [1, 2, 3, 4],
      image: { width: w, height: h, sha256: '0'.repeat(64) },
      masks,
      timings: {
        decodeImageMs: 0,
        preprocessMs: 0,
        clipMs: 0,
        samEncoderMs: 0,
        prefillMs: 0,
        decodeMs: 0,
        maskDecoderMs: 0,
        totalMs: 0,
        onnxMs: 0,
        newTokens: 4,
        cacheHit: true,
      },
      stopReason: 'eos',
    };
    assert.deepEqual(validateSegmentResult(result), []);
  });

  it('writes a 1x1 and an empty mask PNG', async function () {
    const one = await decodePng(await maskPng(new Uint8Array([1]), 1, 1), true);
    assert.deepEqual([...one.data], [255]);
    const zero = await decodePng(await maskPng(new Uint8Array(12), 3, 4), true);
    assert.deepEqual([...zero.data], new Array(12).fill(0));
  });

  it('overlays 0.5*RGB + 0.5*colour inside each mask and leaves the rest untouched', async function () {
    const rand = rng(5);
    const h = 181,
      w = 243;
    const rgb = new Uint8Array(h * w * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = Math.floor(rand() * 256);
    // Three masks, the third overlapping the first.
    const m0 = blobMask(h, w, 2, rand),
      m1 = blobMask(h, w, 2, rand),
      m2 = blobMask(h, w, 1, rand);
    const masks = [m0, m1, m2];
    const png = await overlayPng(rgb, w, h, masks);
    assert.deepEqual(pngKind(png), { colourType: 2, bitDepth: 8 });
    const { data, info } = await decodePng(png);
    assert.deepEqual([info.width, info.height, info.channels], [w, h, 3]);
    let inside = 0,
      outside = 0;
    for (let p = 0; p < h * w; p++) {
      let owner = -1;
      masks.forEach((m, k) => {
        if (m[p]) owner = k;
      });
      for (let c = 0; c < 3; c++) {
        const orig = rgb[p * 3 + c];
        const want = owner < 0 ? orig : Math.floor(0.5 * orig + 0.5 * maskColor(owner)[c]);
        if (data[p * 3 + c] !== want)
          assert.fail(`pixel ${p} channel ${c}: ${data[p * 3 + c]} != ${want} (mask ${owner})`);
      }
      if (owner < 0) outside++;
      else inside++;
    }
    assert.ok(inside > 1000 && outside > 1000, `${inside} inside, ${outside} outside`);
    // The same overlay from RLEs, and with a custom palette.
    const fromRle = overlayRgb(
      rgb,
      w,
      h,
      masks.map((m) => encodeMask(m, h, w)),
    );
    assert.ok(Buffer.from(data).equals(fromRle));
    const custom = overlayRgb(rgb, w, h, [m1], [[0, 0, 0]]);
    for (let p = 0; p < h * w; p++) {
      const want = m1[p] ? rgb[p * 3] >> 1 : rgb[p * 3];
      if (custom[p * 3] !== want) assert.fail(`custom palette pixel ${p}`);
    }
    // The input is not modified.
    const copy = Uint8Array.from(rgb);
    overlayRgb(rgb, w, h, masks);
    assert.deepEqual(rgb, copy);
  });

  it('overlays masks on a real photograph (LISA red first)', async function () {
    const py = spawnSync(
      path.join(repoRoot(), 'models/export/venv'),
      ['run', '-c', 'import skimage, os; print(os.path.dirname(skimage.__file__))'],
      { encoding: 'utf8' },
    );
    assert.equal(py.status, 0, py.stderr);
    const file = path.join(py.stdout.trim(), 'data', 'astronaut.png');
    const { data: rgb, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const { width: w, height: h } = info;
    const mask = new Uint8Array(w * h);
    for (let p = 0; p < w * h; p++) mask[p] = rgb[p * 3] > 180 ? 1 : 0; // bright red channel: the suit, the flag
    const over = await decodePng(
      await overlayPng(new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.length), w, h, [encodeMask(mask, h, w)]),
    );
    assert.deepEqual(PALETTE[0], [255, 0, 0]);
    const dec = decodeRle(encodeMask(mask, h, w));
    for (let p = 0; p < w * h; p++) {
      for (let c = 0; c < 3; c++) {
        const want = dec[p] ? (rgb[p * 3 + c] + PALETTE[0][c]) >> 1 : rgb[p * 3 + c];
        if (over.data[p * 3 + c] !== want) assert.fail(`pixel ${p}`);
      }
    }
  });

  it('refuses masks of another size', async function () {
    assert.throws(
      () => overlayRgb(new Uint8Array(12), 2, 2, [encodeMask(new Uint8Array(6), 2, 3)]),
      /mask 0 is 2x3, the image 2x2/,
    );
    assert.throws(() => overlayRgb(new Uint8Array(11), 2, 2, []), /expected 2\*2\*3/);
  });
});
