// The reason-segment command line, run as a user runs it: a child process on the committed tiny bundle and real photos.
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { encodeMask, rleIou } from '../../src/protocol/rle';
import { FIXTURE_BUNDLES, goldens, REPO } from '../helpers/bundles';

const CLI = path.join(REPO, 'out', 'src', 'host', 'cli.js');
const BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-7b');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-cli-'));
const env = { ...process.env, XDG_CACHE_HOME: tmp };

function cli(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env, input, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('reason-segment CLI', function () {
  this.timeout(180_000);
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const twoSeg = goldens(BUNDLE).find((c) => c.masks.length === 2)!;

  it('segment --json prints only the result, identical to the reference', () => {
    const r = cli([
      'segment',
      '--model',
      BUNDLE,
      '--image',
      path.join(BUNDLE, twoSeg.image),
      '--prompt',
      twoSeg.prompt,
      '--assistant-prefix',
      twoSeg.assistant_prefix,
      '--max-new-tokens',
      String(twoSeg.max_new_tokens),
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.deepEqual(result.outputIds, twoSeg.output_ids);
    assert.equal(result.masks.length, 2);
    for (const [i, m] of result.masks.entries()) assert.ok(rleIou(m.rle, twoSeg.masks[i].rle) >= 0.999);
  });

  it('segment --out writes the overlay, one PNG per mask and the result JSON, and streams the answer', async () => {
    const out = path.join(tmp, 'out');
    const r = cli([
      'segment',
      '--model',
      BUNDLE,
      '--image',
      path.join(BUNDLE, twoSeg.image),
      '--prompt',
      twoSeg.prompt,
      '--assistant-prefix',
      twoSeg.assistant_prefix,
      '--max-new-tokens',
      '6',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /2 mask\(s\), 6 tokens/);
    const result = JSON.parse(readFileSync(path.join(out, 'result.json'), 'utf8'));
    assert.equal(r.stdout.trim(), result.answer.slice(-r.stdout.trim().length), 'stdout carries the streamed answer');
    const [h, w] = result.masks[0].rle.size;
    for (const i of [0, 1]) {
      const png = path.join(out, `mask-${i}.png`);
      assert.equal((await sharp(png).metadata()).channels, 1, 'a single-channel PNG');
      const { data, info } = await sharp(png).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.height, info.width, info.channels], [h, w, 1]);
      assert.equal(rleIou(encodeMask(data, h, w), result.masks[i].rle), 1);
    }
    const overlay = await sharp(path.join(out, 'overlay.png')).metadata();
    assert.deepEqual([overlay.height, overlay.width], [h, w]);
  });

  it('errors are one line with a non-zero exit; --verbose adds the stack', () => {
    const missing = cli(['segment', '--model', BUNDLE, '--image', path.join(tmp, 'nope.jpg'), '--prompt', 'x']);
    assert.equal(missing.code, 1);
    assert.equal(
      missing.stderr
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('loaded')).length,
      1,
      missing.stderr,
    );
    assert.match(missing.stderr, /nope\.jpg"? does not exist/);
    assert.doesNotMatch(missing.stderr, /\n\s+at /);
    const badModel = cli(['segment', '--model', tmp, '--image', path.join(BUNDLE, twoSeg.image), '--prompt', 'x']);
    assert.equal(badModel.code, 1);
    assert.match(badModel.stderr, /not a Reason Segment model/);
    const usage = cli(['segment', '--model', BUNDLE]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--image is required/);
    const verbose = cli([
      'segment',
      '--model',
      BUNDLE,
      '--image',
      path.join(tmp, 'nope.jpg'),
      '--prompt',
      'x',
      '--verbose',
    ]);
    assert.match(verbose.stderr, /\n\s+at /);
  });

  it('chat keeps history and does not encode the image again on the second turn', async () => {
    const child = spawn(
      process.execPath,
      [CLI, 'chat', '--model', BUNDLE, '--image', path.join(BUNDLE, 'images', 'chelsea.png'), '--max-new-tokens', '4'],
      { env },
    );
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const waitFor = async (re: RegExp) => {
      while (!re.test(stderr)) await new Promise((r) => setTimeout(r, 20));
    };
    await waitFor(/Chatting about/);
    child.stdin.write('What animal is this?\n');
    await waitFor(/mask\(s\)/);
    child.stdin.write('And its colour?\n');
    await waitFor(/mask\(s\).*[\s\S]*mask\(s\)/);
    child.stdin.end('/quit\n');
    const code = await new Promise((r) => child.on('exit', r));
    assert.equal(code, 0);
    const turns = stderr.split('\n').filter((l) => /mask\(s\)/.test(l));
    assert.equal(turns.length, 2);
    assert.doesNotMatch(turns[0], /encoders skipped/);
    assert.match(turns[1], /image encoders skipped/);
  });

  it('batch writes COCO results, records failures, and resumes where it stopped', () => {
    const dir = path.join(tmp, 'photos');
    mkdirSync(dir);
    cpSync(path.join(BUNDLE, 'images', 'chelsea.png'), path.join(dir, 'a-chelsea.png'));
    cpSync(path.join(REPO, 'test', 'fixtures', 'images', 'truncated.png'), path.join(dir, 'b-broken.png'));
    writeFileSync(path.join(dir, 'notes.txt'), 'not an image, not listed');
    const out = path.join(tmp, 'coco.json');
    const args = [
      'batch',
      '--model',
      BUNDLE,
      '--images',
      dir,
      '--prompt',
      'Segment the cat.',
      '--out',
      out,
      '--max-new-tokens',
      '3',
    ];
    const first = cli(args);
    assert.equal(first.code, 0, first.stderr);
    let coco = JSON.parse(readFileSync(out, 'utf8'));
    assert.deepEqual(
      coco.images.map((i: { file_name: string }) => i.file_name),
      ['a-chelsea.png'],
    );
    assert.deepEqual(
      coco.failures.map((f: { file_name: string }) => f.file_name),
      ['b-broken.png'],
    );
    assert.deepEqual(coco.categories, [{ id: 1, name: 'lisa' }]);

    cpSync(path.join(BUNDLE, 'images', 'coffee.png'), path.join(dir, 'c-coffee.png'));
    const second = cli(args);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, /resuming: 2 of 3/);
    coco = JSON.parse(readFileSync(out, 'utf8'));
    assert.deepEqual(
      coco.images.map((i: { file_name: string }) => i.file_name),
      ['a-chelsea.png', 'c-coffee.png'],
    );
    assert.deepEqual(
      coco.images.map((i: { id: number }) => i.id),
      [1, 3],
    );
    assert.ok(existsSync(out));

    const other = cli([...args.slice(0, 6), 'Another prompt', ...args.slice(7)]);
    assert.equal(other.code, 2);
    assert.match(other.stderr, /another prompt/);
  });
});
