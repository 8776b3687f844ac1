// Runtime validators: good payloads pass, each kind of breakage is reported with its path.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RESULT_FORMAT, type SegmentResult } from '../../src/protocol/result';
import { encodeMask, rleArea, rleBbox } from '../../src/protocol/rle';
import {
  assertValid,
  isSegmentResult,
  validateChatTurns,
  validateCocoRle,
  validateLoadModelParams,
  validateSegmentParams,
  validateSegmentResult,
} from '../../src/protocol/validate';
import { blobMask, repoRoot, rng } from './coco_ref';

function goodResult(): SegmentResult {
  const rand = rng(3);
  const h = 40,
    w = 60;
  const masks = [0, 1].map((i) => {
    const rle = encodeMask(blobMask(h, w, 2, rand), h, w);
    return {
      segIndex: i,
      tokenIndex: 3 + i,
      rle,
      bbox: rleBbox(rle),
      area: rleArea(rle),
      score: 0.9,
      png: 'iVBORw0KGgo=',
    };
  });
  return {
    format: RESULT_FORMAT,
    model: { variant: 'tiny-random', bundle: '/models/tiny' },
    provider: 'cpu',
    prompt: 'Please segment the cat.',
    history: [{ user: 'What is this?', assistant: 'A cat.' }],
    text: 'Sure, it is [SEG] and [SEG].',
    answer: 'Sure, it is [SEG] and [SEG].',
    outputIds: [1, 2, 3, 32000, 5, 32000, 2],
    image: { width: w, height: h, sha256: 'a'.repeat(64), source: 'cat.png' },
    masks,
    timings: {
      decodeImageMs: 1,
      preprocessMs: 2,
      clipMs: 3,
      samEncoderMs: 4,
      prefillMs: 5,
      decodeMs: 6,
      maskDecoderMs: 7,
      totalMs: 30,
      onnxMs: 25,
      newTokens: 7,
      cacheHit: false,
    },
    stopReason: 'eos',
  };
}

/** Applies a breakage to a deep copy of the good result; expects one problem mentioning `where`. */
function broken(fn: (r: any) => void): string[] {
  const r = JSON.parse(JSON.stringify(goodResult()));
  fn(r);
  return validateSegmentResult(r);
}

describe('protocol/validate', function () {
  it('accepts a good result, with and without optional members', function () {
    assert.deepEqual(validateSegmentResult(goodResult()), []);
    const r: any = goodResult();
    delete r.image.source;
    r.masks = [];
    r.image.data = 'AAAA';
    r.image.mimeType = 'image/png';
    r.overlayPng = 'iVBORw0KGgo=';
    r.extraFromTheFuture = { anything: true };
    assert.deepEqual(validateSegmentResult(r), []);
    assert.ok(isSegmentResult(goodResult()));
  });

  const cases: [string, (r: any) => void, RegExp][] = [
    ['not an object', (r) => Object.keys(r).forEach((k) => delete r[k]), /format: expected/],
    ['wrong format', (r) => (r.format = 'reason-segment-result/2'), /^format: expected/],
    ['missing text', (r) => delete r.text, /^text: expected a string/],
    ['history not an array', (r) => (r.history = 'hi'), /^history: expected an array/],
    [
      'history turn without assistant',
      (r) => delete r.history[0].assistant,
      /^history\[0\]\.assistant: expected a string/,
    ],
    ['outputIds with a float', (r) => (r.outputIds[2] = 1.5), /^outputIds\[2\]: expected a token id/],
    ['image width zero', (r) => (r.image.width = 0), /^image\.width: must be >= 1/],
    ['bad sha256', (r) => (r.image.sha256 = 'xyz'), /^image\.sha256: expected 64/],
    [
      'image data not base64',
      (r) => {
        r.image.data = 'not base64!';
        r.image.mimeType = 'image/png';
      },
      /^image\.data: is not base64/,
    ],
    ['image data without mime type', (r) => (r.image.data = 'AAAA'), /^image\.mimeType: required/],
    [
      'rle of the wrong size',
      (r) => (r.masks[0].rle.size = [60, 40]),
      /^masks\[0\]\.rle\.size: is \[60, 40\] but the image is \[40, 60\]/,
    ],
    [
      'rle counts that do not add up',
      (r) => (r.masks[1].rle.counts = '1'),
      /^masks\[1\]\.rle\.counts: run lengths add up to 1/,
    ],
    [
      'rle counts with a bad character',
      (r) => (r.masks[1].rle.counts = '0 0'),
      /^masks\[1\]\.rle\.counts: .*invalid character/,
    ],
    ['rle counts as an array', (r) => (r.masks[0].rle.counts = [2400]), /^masks\[0\]\.rle\.counts: expected a string/],
    ['area disagreeing with the rle', (r) => (r.masks[0].area += 1), /^masks\[0\]\.area: is \d+ but the RLE covers/],
    ['bbox disagreeing with the rle', (r) => (r.masks[0].bbox[0] += 1), /^masks\[0\]\.bbox: is .* but the RLE gives/],
    ['bbox with three numbers', (r) => r.masks[0].bbox.pop(), /^masks\[0\]\.bbox: expected \[x, y, width, height\]/],
    ['negative bbox', (r) => (r.masks[0].bbox[1] = -1), /^masks\[0\]\.bbox\[1\]: must be >= 0/],
    ['duplicate segIndex', (r) => (r.masks[1].segIndex = 0), /^masks\[1\]\.segIndex: 0 appears twice/],
    ['tokenIndex past outputIds', (r) => (r.masks[0].tokenIndex = 7), /^masks\[0\]\.tokenIndex: 7 is past the end/],
    ['tokenIndex below -1', (r) => (r.masks[0].tokenIndex = -2), /^masks\[0\]\.tokenIndex: must be >= -1/],
    ['png not base64', (r) => (r.masks[0].png = '<svg>'), /^masks\[0\]\.png: is not base64/],
    [
      'score NaN (null in JSON)',
      (r) => (r.masks[0].score = null),
      /^masks\[0\]\.score: expected a finite number, got null/,
    ],
    ['mask not an object', (r) => (r.masks[1] = 5), /^masks\[1\]: expected an object/],
    ['timings missing a stage', (r) => delete r.timings.clipMs, /^timings\.clipMs: expected a finite number/],
    ['cacheHit not boolean', (r) => (r.timings.cacheHit = 'no'), /^timings\.cacheHit: expected a boolean/],
    [
      'unknown stop reason',
      (r) => (r.stopReason = 'length'),
      /^stopReason: expected one of "eos", "max_new_tokens", "context_limit", "cancelled"/,
    ],
    ['overlay not base64', (r) => (r.overlayPng = 12), /^overlayPng: expected a string/],
  ];
  for (const [name, fn, want] of cases) {
    it(`reports ${name}`, function () {
      const problems = broken(fn);
      assert.ok(
        problems.some((p) => want.test(p)),
        `expected ${want} in ${JSON.stringify(problems)}`,
      );
    });
  }

  it('rejects non-objects at the root', function () {
    assert.deepEqual(validateSegmentResult(null), ['(root): expected an object, got null']);
    assert.deepEqual(validateSegmentResult([]), ['(root): expected an object, got an array']);
  });

  it('skips the RLE cross-checks when deep is false', function () {
    const r: any = goodResult();
    r.masks[0].area += 1;
    assert.equal(validateSegmentResult(r, { deep: false }).length, 0);
    assert.equal(validateSegmentResult(r).length, 1);
  });

  it('validates RLEs and chat turns on their own', function () {
    assert.deepEqual(validateCocoRle({ size: [2, 3], counts: '06' }, 'rle', [2, 3]), []);
    assert.match(validateCocoRle({ size: [2], counts: '06' })[0], /rle\.size: expected \[height, width\]/);
    assert.deepEqual(validateChatTurns([]), []);
    assert.match(validateChatTurns([{ user: 1, assistant: '' }])[0], /history\[0\]\.user: expected a string, got 1/);
  });

  it('validates the payload fixtures other surfaces render', function () {
    const dir = path.join(repoRoot(), 'test/fixtures/payloads');
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
    assert.ok(files.length > 0, `no payload fixtures in ${dir}`);
    for (const f of files) {
      const problems = validateSegmentResult(JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')));
      if (/unknown|broken|bad|invalid/.test(f)) assert.ok(problems.length > 0, `${f} should be refused`);
      else assert.deepEqual(problems, [], f);
    }
  });

  describe('segment params', function () {
    const good = { requestId: 'r1', image: { path: '/tmp/cat.png' }, prompt: 'Segment the cat.', history: [] };
    it('accepts each image form', function () {
      assert.deepEqual(validateSegmentParams(good), []);
      assert.deepEqual(validateSegmentParams({ ...good, image: { data: 'iVBORw0KGgo=', mimeType: 'image/png' } }), []);
      assert.deepEqual(validateSegmentParams({ ...good, image: { sha256: 'b'.repeat(64) } }), []);
      assert.deepEqual(
        validateSegmentParams({
          ...good,
          maxNewTokens: 64,
          conversationId: 'c',
          includeImage: true,
          includePng: false,
        }),
        [],
      );
    });
    const bad: [string, object, RegExp][] = [
      [
        'two image forms',
        { ...good, image: { path: 'a', sha256: 'b'.repeat(64) } },
        /^image: give only one of path, data, sha256 \(got path, sha256\)/,
      ],
      ['no image form', { ...good, image: {} }, /^image: expected one of/],
      ['empty path', { ...good, image: { path: '' } }, /^image\.path: must not be empty/],
      ['bad data', { ...good, image: { data: '%%%%' } }, /^image\.data: is not base64/],
      ['empty data', { ...good, image: { data: '' } }, /^image\.data: must not be empty/],
      ['blank prompt', { ...good, prompt: '  ' }, /^prompt: must not be blank/],
      ['prompt too long', { ...good, prompt: 'x'.repeat(100001) }, /^prompt: longer than 100000/],
      ['missing history', { ...good, history: undefined }, /^history: expected an array, got undefined/],
      ['bad history turn', { ...good, history: [{ user: 'a' }] }, /^history\[0\]\.assistant/],
      ['zero maxNewTokens', { ...good, maxNewTokens: 0 }, /^maxNewTokens: must be >= 1/],
      ['string includePng', { ...good, includePng: 'yes' }, /^includePng: expected a boolean/],
      ['numeric requestId', { ...good, requestId: 5 }, /^requestId: expected a string/],
    ];
    for (const [name, v, want] of bad) {
      it(`reports ${name}`, function () {
        const problems = validateSegmentParams(v);
        assert.ok(
          problems.some((p) => want.test(p)),
          `expected ${want} in ${JSON.stringify(problems)}`,
        );
      });
    }
  });

  it('validates load-model params', function () {
    assert.deepEqual(validateLoadModelParams({ bundle: '/m', device: 'cuda', allowFallback: true }), []);
    assert.deepEqual(validateLoadModelParams({ bundle: '/m', device: 'auto' }), []);
    assert.match(
      validateLoadModelParams({ bundle: '/m', device: 'tpu' })[0],
      /^device: expected one of "auto", "cpu", "cuda", "webgpu", got the string "tpu"/,
    );
    assert.match(validateLoadModelParams({ device: 'cpu' })[0], /^bundle: expected a string/);
  });

  it('assertValid throws one line listing the problems', function () {
    assert.throws(
      () => assertValid({}, validateSegmentParams({}), 'segment params'),
      /^Error: invalid segment params: image: expected an object/,
    );
    const v = assertValid<{ a: number }>({ a: 1 }, [], 'x');
    assert.equal(v.a, 1);
  });
});
