// One definition per wire shape (src/protocol/wire.schema.json): the generated types, validators and the kernel's
// error table are in step with their sources, and the places that used to disagree now give one answer.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkResult } from '../../src/overlay/validate';
import { validateWebviewMessage, WEBVIEW_MESSAGE_TYPES } from '../../src/protocol/chat';
import { RESULT_FORMAT } from '../../src/protocol/result';
import { DEVICES, RPC_ERRORS } from '../../src/protocol/rpc';
import { validateLoadModelParams, validateSegmentParams, validateSegmentResult } from '../../src/protocol/validate';
import { generate, KERNEL_PROTOCOL_FILE, newAjv, readSchema, VALIDATORS, VALIDATORS_FILE } from './wire_gen';

const ROOT = path.resolve(__dirname, '../../..');

function goodResult(): any {
  return JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/payloads/astronaut-3masks.json'), 'utf8'));
}

describe('protocol/wire: one definition of each wire shape', function () {
  this.timeout(60_000);

  it('the committed generated files are what the schema and RPC_ERRORS generate now', async () => {
    for (const [file, text] of Object.entries(await generate())) {
      assert.ok(
        fs.readFileSync(file, 'utf8') === text,
        `${path.relative(ROOT, file)} is stale: run npm run build && node out/test/protocol/wire_gen.js --write`,
      );
    }
  });

  it('the validators run without eval, new Function or imports (webview CSP, protocol boundary)', () => {
    const code = fs.readFileSync(VALIDATORS_FILE, 'utf8');
    assert.doesNotMatch(code, /\bnew Function\b|\beval\s*\(|\brequire\s*\(|^\s*import\b/m);
  });

  it('value lists kept beside the schema equal its enums', () => {
    const defs = readSchema().definitions as any;
    assert.deepEqual(DEVICES, defs.Device.enum);
    assert.deepEqual(defs.SegmentResult.properties.format.enum, [RESULT_FORMAT]);
    const tags = defs.WebviewMessage.oneOf.map((b: any) => defs[b.$ref.split('/').pop()].properties.type.enum[0]);
    assert.deepEqual([...WEBVIEW_MESSAGE_TYPES].sort(), tags.sort());
  });

  it('the generated validators agree with ajv compiling the schema afresh', () => {
    const ajv = newAjv();
    ajv.addSchema(readSchema());
    const fresh = (def: string) => ajv.getSchema(`reason-segment-wire#/definitions/${def}`)!;
    assert.equal(VALIDATORS.segmentParams, 'SegmentParams');
    const params = { image: { path: '/a.png' }, prompt: 'p', history: [] };
    for (const [v, ok] of [
      [params, true],
      [{ ...params, includeOverlay: 1 }, false],
      [{ ...params, image: { path: 'a', data: 'AAAA' } }, false],
    ] as const) {
      assert.equal(fresh('SegmentParams')(v), ok);
      assert.equal(validateSegmentParams(v).length === 0, ok);
    }
  });

  it('a result carrying a 24 MB base64 overlay and image validates (no regex stack overflow)', function () {
    const r = goodResult();
    r.overlayPng = Buffer.alloc(18 << 20, 7).toString('base64');
    r.image.data = r.overlayPng;
    r.image.mimeType = 'image/png';
    assert.deepEqual(validateSegmentResult(r), []);
    r.overlayPng = `${r.overlayPng.slice(1)}!`;
    assert.deepEqual(validateSegmentResult(r), ['overlayPng: is not base64']);
  });

  it('any value the schema refuses gets at least one problem, and none throws (2000 random mutations)', function () {
    const ajv = newAjv();
    ajv.addSchema(readSchema());
    const fresh = (def: string) => ajv.getSchema(`reason-segment-wire#/definitions/${def}`)!;
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const junk = [
      null,
      undefined,
      0,
      -1,
      1.5,
      '',
      ' ',
      'x',
      '!!',
      '../a',
      [],
      [1],
      {},
      { path: 'a' },
      true,
      'a'.repeat(300),
    ];
    const mutate = (v: any): any => {
      if (typeof v !== 'object' || v === null || rnd(4) === 0) return junk[rnd(junk.length)];
      const c: any = Array.isArray(v) ? [...v] : { ...v };
      const keys = Object.keys(c);
      if (keys.length === 0 || rnd(6) === 0)
        c[['path', 'data', 'type', 'x', 'sha256'][rnd(5)]] = junk[rnd(junk.length)];
      else {
        const k = keys[rnd(keys.length)];
        if (rnd(5) === 0) delete c[k];
        else c[k] = mutate(c[k]);
      }
      return c;
    };
    const seeds: [string, (v: unknown) => string[], unknown][] = [
      ['SegmentResult', (v) => validateSegmentResult(v, { deep: false }), goodResult()],
      [
        'SegmentParams',
        validateSegmentParams,
        {
          image: { data: 'AAAA', mimeType: 'image/png' },
          prompt: 'p',
          history: [{ user: 'a', assistant: 'b' }],
          maxNewTokens: 4,
        },
      ],
      ['LoadModelParams', validateLoadModelParams, { bundle: '/m', device: 'cpu', allowFallback: true }],
      [
        'WebviewMessage',
        validateWebviewMessage,
        {
          type: 'save',
          conversationId: 'c',
          turnId: 't',
          kind: 'mask-png',
          fileName: 'a.png',
          mimeType: 'image/png',
          encoding: 'base64',
          data: 'AAAA',
          segIndex: 0,
        },
      ],
    ];
    for (const [def, validate, good] of seeds) {
      for (let i = 0; i < 500; i++) {
        const v = mutate(good);
        const problems = validate(v);
        if (!fresh(def)(v))
          assert.ok(
            problems.length > 0,
            `${def}: ${JSON.stringify(v)?.slice(0, 300)} refused by the schema but no problem named`,
          );
        for (const p of problems) assert.match(p, /^[^\n]+: [^\n]+$/, p);
      }
    }
  });

  it('segment params: includeOverlay and assistantPrefix are checked like every other member', () => {
    const good = { image: { path: '/a.png' }, prompt: 'Segment the cat.', history: [] };
    assert.deepEqual(validateSegmentParams({ ...good, includeOverlay: true, assistantPrefix: 'Sure, [SEG].' }), []);
    assert.deepEqual(validateSegmentParams({ ...good, includeOverlay: 'yes' }), [
      'includeOverlay: expected a boolean, got the string "yes"',
    ]);
    assert.deepEqual(validateSegmentParams({ ...good, assistantPrefix: 5 }), [
      'assistantPrefix: expected a string, got 5',
    ]);
    assert.deepEqual(validateSegmentParams({ ...good, image: { path: '/a.png', data: '%%' } }), [
      'image: give only one of path, data, sha256 (got path, data)',
    ]);
    assert.deepEqual(validateLoadModelParams({ bundle: '', device: 'cpu' }), ['bundle: must not be empty']);
  });

  it('the overlay accepts exactly what the protocol accepts (shape, sizes, ids), except corrupt RLE strings it reports while drawing', () => {
    const breakages: [string, (r: any) => void][] = [
      ['good', () => {}],
      ['no timings', (r) => delete r.timings],
      ['no outputIds', (r) => delete r.outputIds],
      ['no answer', (r) => delete r.answer],
      ['bad sha256', (r) => (r.image.sha256 = 'xyz')],
      [
        'image data not base64',
        (r) => {
          r.image.data = 'not base64!';
          r.image.mimeType = 'image/png';
        },
      ],
      ['image data without mime type', (r) => (r.image.data = 'AAAA')],
      ['tokenIndex past outputIds', (r) => (r.masks[0].tokenIndex = r.outputIds.length)],
      ['duplicate segIndex', (r) => (r.masks[1].segIndex = r.masks[0].segIndex)],
      ['negative bbox', (r) => (r.masks[0].bbox[1] = -1)],
      ['bbox of three numbers', (r) => r.masks[0].bbox.pop()],
      ['score null', (r) => (r.masks[0].score = null)],
      ['rle of the wrong size', (r) => (r.masks[0].rle.size = [r.image.width, r.image.height + 1])],
      ['rle counts as an array', (r) => (r.masks[0].rle.counts = [5])],
      ['unknown stop reason', (r) => (r.stopReason = 'length')],
      ['overlay not base64', (r) => (r.overlayPng = '<svg>')],
      ['extra members', (r) => (r.fromTheFuture = { x: 1 })],
    ];
    for (const [name, fn] of breakages) {
      const r = goodResult();
      fn(r);
      const protocol = validateSegmentResult(r, { deep: false });
      const overlay = checkResult(r);
      assert.equal(
        overlay.ok,
        protocol.length === 0,
        `${name}: overlay ${JSON.stringify(overlay)} vs protocol ${JSON.stringify(protocol)}`,
      );
    }
  });

  it('the host takes the manifest types generated from models/bundle.schema.json instead of declaring its own', () => {
    const bundle = fs.readFileSync(path.join(ROOT, 'src/host/bundle.ts'), 'utf8');
    assert.match(bundle, /from '\.\/manifest-types'/);
    assert.doesNotMatch(bundle, /interface (Manifest|GraphSpec|TensorSpec|PromptSpec)\b|type TokenSpec = \{/);
  });

  it('the kernel reads error codes, method names and the result format from the table generated from src/protocol', function () {
    const table = JSON.parse(fs.readFileSync(KERNEL_PROTOCOL_FILE, 'utf8'));
    assert.deepEqual(
      Object.values(table.errors)
        .map((e: any) => e.code)
        .sort(),
      Object.keys(RPC_ERRORS).map(Number).sort(),
    );
    assert.equal(table.resultFormat, RESULT_FORMAT);
    const py = ['host.py', 'magic.py', 'result.py']
      .map((f) => fs.readFileSync(path.join(ROOT, 'src/kernel/reason_segment', f), 'utf8'))
      .join('\n');
    assert.doesNotMatch(
      py,
      /[=(,]\s*-320\d\d|["']reasonSegment\/|["']reason-segment-result\/|["']\$\/cancelRequest/,
      'the magic spells out a protocol value',
    );
  });
});
