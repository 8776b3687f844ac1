// Decoding: what the host's RGB is for every kind of file it meets, checked against Pillow, and the hostile files.
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeImage, DecodedImage, ImageError, ImageErrorCode } from '../../src/host/image/decode';
import { resizeRgb } from '../../src/host/image/resample';
import { diffStats, IMAGES, Job, readU8, runPillow, tempDir } from '../helpers/pillow_ref';

const LIMIT = { maxPixels: 50e6 };
const img = (f: string) => path.join(IMAGES, f);

async function expectError(input: string | Buffer, code: ImageErrorCode, opts = LIMIT, re?: RegExp): Promise<ImageError> {
  try {
    await decodeImage(input, opts);
  } catch (e) {
    assert.ok(e instanceof ImageError, `expected ImageError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.ok(e.message.length > 20 && !e.message.includes('\n'), 'one clear line');
    if (re) assert.match(e.message, re);
    return e;
  }
  assert.fail(`decoding ${typeof input === 'string' ? input : 'buffer'} did not throw ${code}`);
}

describe('image decode against Pillow', function () {
  this.timeout(120_000);
  const dir = tempDir('decode');
  // file -> expected relation to Pillow's exif_transpose(first frame).convert('RGB')
  const EXACT = [
    'astronaut.png', 'coffee-wide.png', 'camera-gray.png', 'chelsea-rgba.png', 'chelsea-16bit.png', 'animated.gif',
    'animated.webp', 'chelsea.bmp', 'chelsea-cmyk.jpg',
  ];
  const JPEGS = [
    'coffee.jpg', 'chelsea.jpg', 'rocket.jpg', 'rocket-portrait.jpg', 'camera-gray.jpg', 'coffee-exif6.jpg',
    'coffee-exif3.jpg', 'coffee-exif8.jpg',
  ];
  const ours = new Map<string, DecodedImage>();
  const lines: string[] = [];

  before(async () => {
    const jobs: Job[] = [];
    for (const f of [...EXACT, ...JPEGS, 'camera-16bit-gray.png']) {
      ours.set(f, await decodeImage(img(f), LIMIT));
      jobs.push({ op: 'decode', file: img(f), out: path.join(dir, `${f}.rgb`), meta: path.join(dir, `${f}.json`) });
    }
    runPillow(jobs, dir);
  });
  after(() => {
    console.log(`      decode vs Pillow:\n        ${lines.join('\n        ')}`);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function pillow(f: string): { data: Uint8Array; w: number; h: number; mode: string } {
    const meta = JSON.parse(fs.readFileSync(path.join(dir, `${f}.json`), 'utf8')) as { w: number; h: number; mode: string };
    return { data: readU8(path.join(dir, `${f}.rgb`)), ...meta };
  }

  it('lossless files, alpha (dropped, not composited), grayscale, 16-bit RGB, CMYK, GIF/WebP first frame, BMP: identical', () => {
    for (const f of EXACT) {
      const a = ours.get(f) as DecodedImage;
      const p = pillow(f);
      assert.deepEqual([a.width, a.height], [p.w, p.h], f);
      assert.equal(a.data.length, a.width * a.height * 3);
      const d = diffStats(a.data, p.data);
      lines.push(`${f} (Pillow mode ${p.mode}) ${a.width}x${a.height}: max ${d.max}, ${d.count} values differ`);
      assert.equal(d.max, 0, `${f} differs from Pillow by up to ${d.max}`);
    }
  });

  it('RGBA keeps the stored colour of fully transparent pixels (no flatten on white or black)', () => {
    const a = ours.get('chelsea-rgba.png') as DecodedImage;
    const solid = ours.get('chelsea.jpg') as DecodedImage;
    // the top-left 60x40 block is alpha 0 in the fixture; its colour must be the photo's, not a background
    let far = 0;
    for (let y = 0; y < 40; y++) {
      for (let x = 0; x < 60; x++) {
        for (let c = 0; c < 3; c++) far = Math.max(far, Math.abs(a.data[(y * a.width + x) * 3 + c] - solid.data[(y * a.width + x) * 3 + c]));
      }
    }
    assert.ok(far < 40, `transparent pixels lost their colour (max diff ${far} from the JPEG of the same photo)`);
  });

  it('16-bit grayscale keeps the high byte (cv2/libpng), where Pillow convert("RGB") clips at 255', () => {
    const a = ours.get('camera-16bit-gray.png') as DecodedImage;
    const p = pillow('camera-16bit-gray.png');
    assert.equal(p.mode, 'I;16');
    // the fixture's high byte is camera.png resized to 200x200 with Pillow BICUBIC (make_image_fixtures.py), which
    // resizeRgb reproduces exactly; the low byte is a pattern that would show through any other 16 -> 8 rule
    const gray = ours.get('camera-gray.png') as DecodedImage;
    const expected = resizeRgb(gray, 200, 200, 'bicubic');
    assert.deepEqual(a.data, expected.data);
    const clipped = diffStats(a.data, p.data);
    lines.push(`camera-16bit-gray.png: high byte kept (exact); Pillow's I;16->RGB clipping would differ by up to ${clipped.max}`);
  });

  it('JPEG: dimensions and EXIF orientation as Pillow; sharp vs Pillow IDCT difference reported', () => {
    for (const f of JPEGS) {
      const a = ours.get(f) as DecodedImage;
      const p = pillow(f);
      assert.deepEqual([a.width, a.height], [p.w, p.h], f);
      const d = diffStats(a.data, p.data);
      lines.push(`${f} ${a.width}x${a.height}: sharp vs Pillow JPEG decode max ${d.max}, mean ${d.mean.toFixed(4)}, ` +
        `${(100 * d.count / a.data.length).toFixed(2)}% of values differ`);
      assert.ok(d.mean < 1, `${f}: mean decode difference ${d.mean} (orientation wrong?)`);
    }
    // the three rotated copies show the same upright photo as coffee.jpg
    const upright = ours.get('coffee.jpg') as DecodedImage;
    for (const f of ['coffee-exif6.jpg', 'coffee-exif3.jpg', 'coffee-exif8.jpg']) {
      const a = ours.get(f) as DecodedImage;
      assert.deepEqual([a.width, a.height], [600, 400]);
      assert.ok(diffStats(a.data, upright.data).mean < 3, `${f} is not upright`);
    }
  });
});

describe('image decode: hostile and edge inputs', function () {
  this.timeout(60_000);

  it('zero-byte file -> empty', async () => {
    await expectError(img('empty.png'), 'empty', LIMIT, /empty \(0 bytes\)/);
    await expectError(Buffer.alloc(0), 'empty');
  });

  it('text file named .png -> not_an_image, naming the formats', async () => {
    await expectError(img('not-an-image.png'), 'not_an_image', LIMIT, /not an image sharp can read \(PNG, JPEG, WebP, GIF, TIFF/);
  });

  it('truncated PNG and truncated JPEG -> truncated', async () => {
    await expectError(img('truncated.png'), 'truncated', LIMIT, /damaged or truncated PNG/);
    await expectError(img('truncated.jpg'), 'truncated', LIMIT, /damaged or truncated JPEG/);
  });

  it('decompression bomb (tiny PNG declaring 50000x50000) -> too_large, before decoding', async () => {
    assert.ok(fs.statSync(img('bomb.png')).size < 20_000);
    const rss0 = process.memoryUsage().rss;
    const t0 = Date.now();
    await expectError(img('bomb.png'), 'too_large', LIMIT, /50000x50000 \(2500\.0 MP\)/);
    // also with a limit above sharp's own default (268 MP): still refused by our header check
    await expectError(img('bomb.png'), 'too_large', { maxPixels: 1e9 });
    assert.ok(Date.now() - t0 < 2000 && process.memoryUsage().rss - rss0 < 200e6, 'the bomb was not decoded');
  });

  it('an ordinary photo over the pixel limit -> too_large; at the limit it decodes', async () => {
    await expectError(img('astronaut.png'), 'too_large', { maxPixels: 512 * 512 - 1 }, /over the 0\.3 MP pixel limit/);
    await expectError(img('chelsea.bmp'), 'too_large', { maxPixels: 100 });
    const ok = await decodeImage(img('astronaut.png'), { maxPixels: 512 * 512 });
    assert.equal(ok.width, 512);
  });

  it('missing path and a folder -> not_found', async () => {
    await expectError(img('no-such-file.png'), 'not_found', LIMIT, /does not exist/);
    await expectError(IMAGES, 'not_found', LIMIT, /is a folder/);
  });

  it('keeps working after each refusal; buffer input equals path input; sha256 is the file\'s', async () => {
    for (const f of ['empty.png', 'not-an-image.png', 'truncated.png', 'truncated.jpg', 'bomb.png']) {
      await decodeImage(img(f), LIMIT).catch(() => undefined);
      const good = await decodeImage(img('chelsea.jpg'), LIMIT);
      assert.equal(good.width, 451);
    }
    const a = await decodeImage(img('coffee.jpg'), LIMIT);
    const b = await decodeImage(fs.readFileSync(img('coffee.jpg')), LIMIT);
    assert.equal(a.sha256, b.sha256);
    assert.match(a.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(a.data, b.data);
    // the file's sha256, as sha256sum prints it
    assert.equal(a.sha256, createHash('sha256').update(fs.readFileSync(img('coffee.jpg'))).digest('hex'));
    const c = await decodeImage(img('coffee-exif6.jpg'), LIMIT);
    assert.notEqual(a.sha256, c.sha256);
    assert.equal(a.format, 'jpeg');
  });

  it('BMP variants the host cannot read -> unsupported', async () => {
    const bmp = Buffer.from(fs.readFileSync(img('chelsea.bmp')));
    bmp.writeUInt32LE(1, 30); // BI_RLE8
    await expectError(bmp, 'unsupported', LIMIT, /BMP variant/);
    const short = Buffer.from(fs.readFileSync(img('chelsea.bmp'))).subarray(0, 2000);
    await expectError(short, 'truncated', LIMIT, /truncated BMP/);
  });
});
