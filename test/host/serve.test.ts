// `reason-segment serve` as a client on the network sees it: a real server process on a loopback port with the
// committed tiny bundle, driven with plain HTTP (health, metadata, infer in JSON and in binary, the SSE stream, auth,
// limits, cancel on disconnect, timeouts) and 100 concurrent requests from 10 clients.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { serializeBytes } from '../../src/host/serve/oip';
import { rleIou } from '../../src/protocol/rle';
import { FIXTURE_BUNDLES, goldens } from '../helpers/bundles';
import { answerOf, bytesInput, CLI, fixtureImage, inferJson, request, type Served, startServer } from '../helpers/oip';

const BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-7b');
const INFER = '/v2/models/reason-segment/infer';
const STREAM = '/v2/models/reason-segment/generate_stream';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-serve-'));
const env = { ...process.env, XDG_CACHE_HOME: tmp };
const TOKENS = Array.from({ length: 11 }, (_, i) => createHash('sha256').update(`token ${i}`).digest('hex'));
const auth = (i = 0) => ({ authorization: `Bearer ${TOKENS[i]}` });
const MAX_BODY_MB = 1;

describe('reason-segment serve (Open Inference Protocol v2)', function () {
  this.timeout(180_000);
  let server: Served;
  const post = (p: string, body: object | Buffer, headers: Record<string, string> = auth()) =>
    request(server.port, 'POST', p, body, headers);
  const get = (p: string, headers: Record<string, string> = auth()) =>
    request(server.port, 'GET', p, undefined, headers);

  before(async () => {
    const tokenFile = path.join(tmp, 'tokens');
    writeFileSync(tokenFile, `# one token a line\n${TOKENS.join('\n')}\n`);
    server = await startServer(
      ['--model', BUNDLE, '--token-file', tokenFile, '--max-queue', '128', '--max-request-mb', String(MAX_BODY_MB)],
      env,
    );
  });
  after(async () => {
    if (server) assert.equal(await server.stop(), 0, 'SIGTERM closes the server cleanly');
    rmSync(tmp, { recursive: true, force: true });
  });

  it('answers health probes without a token and everything else only with one', async () => {
    assert.deepEqual(JSON.parse((await get('/v2/health/live', {})).body.toString()), { live: true });
    assert.equal((await get('/v2/health/ready', {})).status, 200);
    const none = await get('/v2', {});
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer');
    assert.match(JSON.parse(none.body.toString()).error, /Authorization: Bearer/);
    assert.equal((await get('/v2', { authorization: `Bearer ${'0'.repeat(64)}` })).status, 401);
    assert.equal((await post(INFER, inferJson(undefined, 'x'), {})).status, 401);
  });

  it('serves server and model metadata in the protocol shape', async () => {
    const meta = JSON.parse((await get('/v2')).body.toString());
    assert.equal(meta.name, 'reason-segment');
    assert.ok(meta.extensions.includes('binary_tensor_data'));
    assert.ok(meta.extensions.includes('refine'), 'the refine extension (docs/deploy.md)');
    const model = JSON.parse((await get('/v2/models/reason-segment')).body.toString());
    assert.deepEqual(model.versions, ['1']);
    assert.deepEqual(
      model.inputs.map((i: { name: string }) => i.name),
      ['IMAGE', 'PROMPT', 'HISTORY', 'ASSISTANT_PREFIX', 'MAX_NEW_TOKENS', 'IMAGE_SHA256'],
    );
    assert.deepEqual(model.outputs, [
      { name: 'TEXT', datatype: 'BYTES', shape: [1] },
      { name: 'RESULT', datatype: 'BYTES', shape: [1] },
    ]);
    assert.deepEqual(JSON.parse((await get('/v2/models/reason-segment/versions/1/ready')).body.toString()), {
      name: 'reason-segment',
      ready: true,
    });
    const unknown = await get('/v2/models/other');
    assert.equal(unknown.status, 404);
    assert.match(JSON.parse(unknown.body.toString()).error, /unknown model other/);
    assert.equal((await get(INFER)).status, 405);
  });

  it('infer gives the reference answer and masks (JSON), and the same in binary; a follow-up sends only the sha256', async () => {
    const c = goldens(BUNDLE).find((g) => g.masks.length === 2)!;
    const image = readFileSync(path.join(BUNDLE, c.image));
    const { text, result } = answerOf(
      await post(
        INFER,
        inferJson(image, c.prompt, { ASSISTANT_PREFIX: c.assistant_prefix, MAX_NEW_TOKENS: c.max_new_tokens }),
      ),
    );
    assert.deepEqual(result.outputIds, c.output_ids);
    assert.equal(text, result.answer);
    assert.equal(result.masks.length, 2);
    for (const [i, m] of result.masks.entries()) assert.ok(rleIou(m.rle, c.masks[i].rle) >= 0.999);

    // The binary tensor data extension, as tritonclient sends it: JSON header, then each BYTES tensor length-prefixed.
    const tensors = [
      ['IMAGE', image],
      ['PROMPT', Buffer.from(c.prompt)],
      ['ASSISTANT_PREFIX', Buffer.from(c.assistant_prefix)],
    ] as const;
    const blobs = tensors.map(([, v]) => serializeBytes([v]));
    const maxTokens = Buffer.alloc(4);
    maxTokens.writeInt32LE(c.max_new_tokens);
    const header = Buffer.from(
      JSON.stringify({
        id: 'binary-1',
        inputs: [
          ...tensors.map(([name], i) => ({
            name,
            shape: [1],
            datatype: 'BYTES',
            parameters: { binary_data_size: blobs[i].length },
          })),
          { name: 'MAX_NEW_TOKENS', shape: [1], datatype: 'INT32', parameters: { binary_data_size: 4 } },
        ],
        outputs: [{ name: 'TEXT', parameters: { binary_data: true } }, { name: 'RESULT' }],
      }),
    );
    const reply = await post(INFER, Buffer.concat([header, ...blobs, maxTokens]), {
      ...auth(),
      'inference-header-content-length': String(header.length),
    });
    assert.equal(reply.status, 200, reply.body.toString());
    const jsonLength = Number(reply.headers['inference-header-content-length']);
    const head = JSON.parse(reply.body.subarray(0, jsonLength).toString());
    assert.equal(head.id, 'binary-1');
    const textOut = head.outputs.find((o: { name: string }) => o.name === 'TEXT');
    assert.equal(textOut.parameters.binary_data_size, reply.body.length - jsonLength);
    const tail = reply.body.subarray(jsonLength);
    assert.equal(tail.readUInt32LE(0), tail.length - 4);
    assert.equal(tail.subarray(4).toString(), text);
    const binResult = JSON.parse(head.outputs.find((o: { name: string }) => o.name === 'RESULT').data[0]);
    assert.deepEqual(binResult.outputIds, result.outputIds);
    assert.equal(binResult.timings.cacheHit, true, 'the embedding cache is shared across requests');

    const followUp = answerOf(
      await post(
        INFER,
        inferJson(undefined, 'And the other one?', {
          IMAGE_SHA256: result.image.sha256,
          HISTORY: JSON.stringify([{ user: c.prompt, assistant: result.answer }]),
          MAX_NEW_TOKENS: 3,
        }),
      ),
    );
    assert.equal(followUp.result.image.sha256, result.image.sha256);
    assert.equal(followUp.result.timings.cacheHit, true);
  });

  it('refuses bad requests with the protocol\'s {"error"} and a 4xx status', async () => {
    const cases: Array<[object | Buffer, number, RegExp]> = [
      [Buffer.from('{not json'), 400, /not valid JSON/],
      [{ inputs: [bytesInput('IMAGE', 'x')] }, 400, /PROMPT is required/],
      [inferJson(fixtureImage('coffee.jpg'), 'x', { COLOUR: 'red' }), 400, /unknown input COLOUR/],
      [{ inputs: [bytesInput('PROMPT', 'x'), bytesInput('IMAGE', 'not base64 and no content_type')] }, 400, /base64/],
      [inferJson(fixtureImage('not-an-image.png'), 'x'), 400, /./],
      [inferJson(fixtureImage('coffee.jpg'), '   '), 400, /PROMPT is blank/],
      [
        inferJson(undefined, 'x', { IMAGE_SHA256: 'f'.repeat(64) }),
        404,
        /not in the server's cache .*; send IMAGE again/,
      ],
      [{ inputs: [bytesInput('PROMPT', 'x')], outputs: [{ name: 'MASKS' }] }, 400, /unknown output MASKS/],
      [
        { ...inferJson(fixtureImage('coffee.jpg'), 'x'), parameters: { include_overlay: 'yes' } },
        400,
        /include_overlay is true or false/,
      ],
    ];
    for (const [body, status, re] of cases) {
      const r = await post(INFER, body);
      assert.equal(r.status, status, r.body.toString());
      assert.equal(r.headers['content-type'], 'application/json');
      const err = JSON.parse(r.body.toString());
      assert.deepEqual(Object.keys(err), ['error']);
      assert.match(err.error, re);
      assert.doesNotMatch(err.error, /\n/);
    }
    const big = await post(INFER, Buffer.alloc(MAX_BODY_MB * 1024 * 1024 + 1, 0x20));
    assert.equal(big.status, 413);
    assert.match(JSON.parse(big.body.toString()).error, /larger than 1 MB/);
    const late = await post(INFER, {
      ...inferJson(fixtureImage('coffee.jpg'), 'x', { MAX_NEW_TOKENS: 100000 }),
      parameters: { timeout: 1000 },
    });
    assert.equal(late.status, 504);
    assert.match(JSON.parse(late.body.toString()).error, /did not finish within 0\.001 s/);
  });

  it('streams the generated text as Server-Sent Events, then the final TEXT and RESULT', async () => {
    const image = fixtureImage('rocket.jpg').toString('base64');
    const r = await post(STREAM, {
      text_input: 'What flies here?',
      IMAGE: image,
      MAX_NEW_TOKENS: 8,
      ASSISTANT_PREFIX: 'It is [SEG].',
      parameters: { include_overlay: true, include_image: true },
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/event-stream; charset=utf-8');
    const events = r.body
      .toString()
      .split('\n\n')
      .filter(Boolean)
      .map((e) => {
        assert.match(e, /^data: /);
        return JSON.parse(e.slice(6));
      });
    const last = events.at(-1);
    assert.ok(events.length >= 2);
    const streamed = events.map((e) => e.text_output).join('');
    assert.ok(streamed.length > 0);
    assert.ok(
      last.TEXT.startsWith('It is [SEG]') && last.TEXT.endsWith(streamed),
      'the deltas are what was generated after the prefix',
    );
    assert.equal(last.RESULT.answer, last.TEXT);
    assert.equal(last.RESULT.masks.length, 1, 'the [SEG] of the prefix gives a mask');
    assert.equal(last.RESULT.timings.newTokens, 8);
    assert.ok(last.RESULT.overlayPng.length > 0, 'include_overlay: the overlay a notebook shows');
    assert.equal(last.RESULT.image.data, image, 'include_image: the image itself');

    const refused = await post(STREAM, { text_input: 'x' });
    assert.equal(refused.status, 400, 'a request refused before inference gets a status and a JSON error');
    assert.match(JSON.parse(refused.body.toString()).error, /IMAGE/);
  });

  it('cancels a request when its client disconnects, and goes on serving', async () => {
    const body = Buffer.from(
      JSON.stringify({
        text_input: 'Talk for a long time.',
        IMAGE: fixtureImage('coffee.jpg').toString('base64'),
        MAX_NEW_TOKENS: 100000,
      }),
    );
    await new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: server.port,
          method: 'POST',
          path: STREAM,
          headers: { ...auth(), 'content-length': body.length },
        },
        (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        },
      );
      req.on('error', (e) => {
        if (!req.destroyed) reject(e);
      });
      req.end(body);
    });
    await server.waitForLog(/cancelled: the client disconnected \(after \d+ text deltas\)/, 30_000);
    const deltas = Number(/after (\d+) text deltas/.exec(server.stderr())![1]);
    assert.ok(deltas < 1000, `stopped early (${deltas} deltas)`);
    answerOf(await post(INFER, inferJson(fixtureImage('coffee.jpg'), 'Still there?', { MAX_NEW_TOKENS: 2 })));
  });

  it('answers 100 concurrent requests from 10 clients, each its own, taking clients in turn, memory bounded', async () => {
    const images = ['coffee.jpg', 'chelsea.jpg', 'rocket.jpg'].map(fixtureImage);
    const sha = images.map((b) => createHash('sha256').update(b).digest('hex'));
    const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.child.pid}/status`, 'utf8'))![1]);
    for (const image of images) answerOf(await post(INFER, inferJson(image, 'warm up', { MAX_NEW_TOKENS: 2 })));
    const rssBefore = rssKb();
    const order: number[] = [];
    const jobs: Promise<void>[] = [];
    for (let client = 0; client < 10; client++) {
      const agent = new http.Agent({ keepAlive: true });
      for (let k = 0; k < 10; k++) {
        const which = (client + k) % images.length;
        const prompt = `client ${client} request ${k}: what is here?`;
        jobs.push(
          request(
            server.port,
            'POST',
            INFER,
            inferJson(images[which], prompt, { MAX_NEW_TOKENS: 2 }),
            auth(client + 1),
            agent,
          ).then((reply) => {
            const { text, result } = answerOf(reply);
            assert.equal(result.prompt, prompt, 'the answer belongs to its request');
            assert.equal(result.image.sha256, sha[which], 'computed on the image of its request');
            assert.equal(text, result.answer);
            order.push(client);
          }),
        );
      }
    }
    await Promise.all(jobs);
    assert.equal(order.length, 100);
    // First come first served would answer client 0's ten requests, then client 1's, ...: four clients in the first 40.
    assert.equal(new Set(order.slice(0, 40)).size, 10, `clients taken in turn: ${order.join(' ')}`);
    const grownMb = (rssKb() - rssBefore) / 1024;
    assert.ok(grownMb < 256, `server memory grew ${grownMb.toFixed(0)} MB over 100 requests`);
  });

  it('refuses to listen beyond loopback without a token file, before loading the model', () => {
    const r = spawnSync(process.execPath, [CLI, 'serve', '--model', BUNDLE, '--host', '0.0.0.0', '--port', '0'], {
      encoding: 'utf8',
      env,
      timeout: 30_000,
    });
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /--host 0\.0\.0\.0 would let other machines use the model without a password; give --token-file/,
    );
    assert.doesNotMatch(r.stderr, /loaded/);
    const short = path.join(tmp, 'short-token');
    writeFileSync(short, 'secret\n');
    const weak = spawnSync(process.execPath, [CLI, 'serve', '--model', BUNDLE, '--token-file', short], {
      encoding: 'utf8',
      env,
      timeout: 30_000,
    });
    assert.equal(weak.status, 1);
    assert.match(weak.stderr, /at least 16 characters/);
  });
});
