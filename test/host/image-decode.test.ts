// Decoding: what the host's RGB is for every kind of file it meets, checked against LISA's decoder (cv2.imread of
// OpenCV 4.8), and the hostile files.
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import sharp from 'sharp';
import { type DecodedImage, decodeImage, ImageError, type ImageErrorCode } from '../../src/host/image/decode';
import { diffStats, IMAGES, type Job, readU8, runPillow, tempDir } from '../helpers/pillow_ref';

const LIMIT = { maxPixels: 50e6 };
const img = (f: string) => path.join(IMAGES, f);

/** A 16-bit greyscale PNG with the given sample values. */
function png16Gray(w: number, h: number, value: (i: number) => number): Buffer {
  const chunk = (kind: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(kind, 'latin1'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([16, 0, 0, 0, 0], 8);
  const rows = Buffer.alloc(h * (1 + 2 * w));
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) rows.writeUInt16BE(value(y * w + x), y * (1 + 2 * w) + 1 + 2 * x);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

async function expectError(
  input: string | Buffer,
  code: ImageErrorCode,
  opts = LIMIT,
  re?: RegExp,
): Promise<ImageError> {
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

describe('image decode against cv2.imread (OpenCV 4.8 and Pillow 9.4.0, the versions LISA pins)', function () {
  this.timeout(120_000);
  const dir = tempDir('decode');
  // Every file LISA's chat.py can read, decoded by cv2.imread(path) then BGR -> RGB: identical, pixel for pixel.
  const PROFILES = ['coffee-adobergb.jpg', 'rocket-p3.jpg', 'chelsea-p3.png', 'astronaut-adobergb.png'];
  const SAME_AS_CV2 = [
    ...PROFILES,
    'astronaut.png',
    'coffee-wide.png',
    'camera-gray.png',
    'chelsea-rgba.png',
    'camera-gray-alpha.png',
    'chelsea-palette.png',
    'chelsea-palette-trns.png',
    'chelsea-16bit.png',
    'camera-16bit-gray.png',
    'chelsea.tif',
    'chelsea-16bit.tif',
    'camera-16bit-gray.tif',
    'chelsea-cmyk.jpg',
    'chelsea-cmyk-noadobe.jpg',
    'chelsea.bmp',
    'coffee.jpg',
    'chelsea.jpg',
    'rocket.jpg',
    'rocket-portrait.jpg',
    'camera-gray.jpg',
    'coffee-exif6.jpg',
    'coffee-exif3.jpg',
    'coffee-exif8.jpg',
    'coffee-exif6.png',
    'coffee-exif6.webp',
  ];
  const ours = new Map<string, DecodedImage>();
  const lines: string[] = [];
  let versions = '';

  before(async () => {
    const jobs: Job[] = [];
    for (const f of SAME_AS_CV2) {
      ours.set(f, await decodeImage(img(f), LIMIT));
      jobs.push({ op: 'cv2', file: img(f), out: path.join(dir, `${f}.rgb`), meta: path.join(dir, `${f}.json`) });
    }
    jobs.push({
      op: 'decode',
      file: img('camera-16bit-gray.png'),
      out: path.join(dir, 'pil.rgb'),
      meta: path.join(dir, 'pil.json'),
    });
    runPillow(jobs, dir);
  });
  after(() => {
    console.log(`      decode vs cv2.imread (${versions}):\n        ${lines.join('\n        ')}`);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function cv2(f: string): { data: Uint8Array; w: number; h: number } {
    const meta = JSON.parse(fs.readFileSync(path.join(dir, `${f}.json`), 'utf8')) as {
      w: number;
      h: number;
      versions: string;
    };
    versions = meta.versions;
    return { data: readU8(path.join(dir, `${f}.rgb`)), ...meta };
  }

  it('every format, profile, bit depth, palette, alpha, CMYK and orientation: identical to cv2.imread', () => {
    const failures: string[] = [];
    for (const f of SAME_AS_CV2) {
      const a = ours.get(f) as DecodedImage;
      const c = cv2(f);
      const d = a.width === c.w && a.height === c.h ? diffStats(a.data, c.data) : { max: NaN, count: NaN };
      lines.push(
        `${f} (${a.format}) ${a.width}x${a.height} vs cv2 ${c.w}x${c.h}: max ${d.max}, ${d.count} values differ`,
      );
      if (!(d.max === 0)) failures.push(lines[lines.length - 1]);
    }
    assert.deepEqual(failures, []);
  });

  it("the ICC profiles are real: colour-managing them (sharp's default) moves values by tens of levels", async () => {
    for (const f of PROFILES) {
      const managed = await sharp(img(f)).removeAlpha().raw().toBuffer();
      const d = diffStats(managed, cv2(f).data);
      lines.push(`${f}: sRGB conversion through its profile would differ from cv2 by up to ${d.max}`);
      assert.ok(d.max >= 10, `${f}: its profile changes nothing (max ${d.max}), so it tests nothing`);
    }
  });

  it('a 16-bit grey file holding values under 256 decodes to black, as in cv2 (Pillow clips instead)', async () => {
    // the high byte is the rule (camera-16bit-gray.* above); the fixture's low byte is a pattern that any other rule
    // would show, and Pillow's convert('RGB') of the same file differs by up to 254 levels
    const pil = readU8(path.join(dir, 'pil.rgb'));
    lines.push(
      `camera-16bit-gray.png: Pillow's I;16 -> RGB clipping would differ by up to ${diffStats((ours.get('camera-16bit-gray.png') as DecodedImage).data, pil).max}`,
    );
    const a = await decodeImage(
      png16Gray(8, 4, (i) => i * 7),
      LIMIT,
    );
    assert.ok(
      a.data.every((v) => v === 0),
      'values under 256 are black',
    );
  });

  it('the RGBA fixture keeps the stored colour of fully transparent pixels (no flatten on white or black)', () => {
    const a = ours.get('chelsea-rgba.png') as DecodedImage;
    const solid = ours.get('chelsea.jpg') as DecodedImage;
    // the top-left 60x40 block is alpha 0 in the fixture; its colour must be the photo's, not a background
    let far = 0;
    for (let y = 0; y < 40; y++) {
      for (let x = 0; x < 60; x++) {
        for (let c = 0; c < 3; c++)
          far = Math.max(far, Math.abs(a.data[(y * a.width + x) * 3 + c] - solid.data[(y * a.width + x) * 3 + c]));
      }
    }
    assert.ok(far < 40, `transparent pixels lost their colour (max diff ${far} from the JPEG of the same photo)`);
  });

  it('EXIF orientation: the rotated JPEGs and PNG are upright; the WebP is left as stored (cv2 4.8 ignores its EXIF)', () => {
    const upright = ours.get('coffee.jpg') as DecodedImage;
    for (const f of ['coffee-exif6.jpg', 'coffee-exif3.jpg', 'coffee-exif8.jpg']) {
      const a = ours.get(f) as DecodedImage;
      assert.deepEqual([a.width, a.height], [600, 400]);
      assert.ok(diffStats(a.data, upright.data).mean < 3, `${f} is not upright`);
    }
    assert.deepEqual([ours.get('coffee-exif6.png')?.width, ours.get('coffee-exif6.png')?.height], [150, 100]);
    assert.deepEqual([ours.get('coffee-exif6.webp')?.width, ours.get('coffee-exif6.webp')?.height], [100, 150]);
  });
});

describe('image decode: formats LISA cannot read', function () {
  it('GIF and animated WebP (cv2.imread gives None; LISA fails): the first frame, as Pillow sees it', async () => {
    const dir = tempDir('decode-gif');
    try {
      const files = ['animated.gif', 'animated.webp'];
      runPillow(
        files.map((f) => ({
          op: 'decode',
          file: img(f),
          out: path.join(dir, `${f}.rgb`),
          meta: path.join(dir, `${f}.json`),
        })),
        dir,
      );
      for (const f of files) {
        const a = await decodeImage(img(f), LIMIT);
        assert.equal(diffStats(a.data, readU8(path.join(dir, `${f}.rgb`))).max, 0, f);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
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
    await expectError(
      img('not-an-image.png'),
      'not_an_image',
      LIMIT,
      /not an image sharp can read \(PNG, JPEG, WebP, GIF, TIFF/,
    );
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

  it("keeps working after each refusal; buffer input equals path input; sha256 is the file's", async () => {
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
    assert.equal(
      a.sha256,
      createHash('sha256')
        .update(fs.readFileSync(img('coffee.jpg')))
        .digest('hex'),
    );
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
