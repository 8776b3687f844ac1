// The extension's remote-server client (src/extension/remote.ts, no vscode) against a real `reason-segment serve` on
// a loopback port with the committed tiny bundle: the streamed answer, a follow-up by sha256, a refine through the
// server's refine extension (the refine goldens), and the error codes the chat view and the results panel act on (a
// forgotten image is sent again; a bad token says how to set one).
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RemoteError, refineRemote, segmentRemote } from '../../src/extension/remote';
import { rleIou } from '../../src/protocol/rle';
import { RpcErrorCode, type SegmentParams } from '../../src/protocol/rpc';
import { FIXTURE_BUNDLES, goldens } from '../helpers/bundles';
import { type Served, startServer } from '../helpers/oip';
import { refineGoldens } from '../helpers/refine-goldens';

const BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-7b');
const TOKEN = 'c'.repeat(40);

describe('extension: remote server client', function () {
  this.timeout(120_000);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-remote-'));
  let server: Served;
  let url: string;
  before(async () => {
    writeFileSync(path.join(tmp, 'tokens'), `${TOKEN}\n`);
    server = await startServer(['--model', BUNDLE, '--token-file', path.join(tmp, 'tokens')], {
      ...process.env,
      XDG_CACHE_HOME: tmp,
    });
    url = `http://127.0.0.1:${server.port}/`;
  });
  after(async () => {
    await server?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('streams the answer and returns the reference result with the overlay; a follow-up sends only the sha256', async () => {
    const c = goldens(BUNDLE).find((g) => g.masks.length === 2);
    assert.ok(c);
    const image = readFileSync(path.join(BUNDLE, c.image));
    const params: SegmentParams = {
      requestId: 't1',
      image: { path: 'unused' },
      prompt: c.prompt,
      history: [],
      maxNewTokens: c.max_new_tokens,
      assistantPrefix: c.assistant_prefix,
      includeOverlay: true,
    };
    const deltas: string[] = [];
    const result = await segmentRemote(url, TOKEN, params, { data: image }, (t) => deltas.push(t));
    assert.deepEqual(result.outputIds, c.output_ids);
    assert.equal(result.masks.length, 2);
    assert.ok(result.overlayPng && result.overlayPng.length > 0);
    assert.ok(deltas.length > 0 && result.answer.endsWith(deltas.join('')));
    const sha = createHash('sha256').update(image).digest('hex');
    assert.equal(result.image.sha256, sha);
    const followUp = await segmentRemote(
      url,
      TOKEN,
      { ...params, prompt: 'And the other?', history: [{ user: c.prompt, assistant: result.answer }], maxNewTokens: 2 },
      { sha256: sha },
      () => undefined,
    );
    assert.equal(followUp.timings.cacheHit, true);
  });

  it('gives the chat view the codes it acts on', async () => {
    const params: SegmentParams = { image: { sha256: 'e'.repeat(64) }, prompt: 'x', history: [] };
    const forgotten = await segmentRemote(url, TOKEN, params, { sha256: 'e'.repeat(64) }, () => undefined).catch(
      (e) => e,
    );
    assert.ok(forgotten instanceof RemoteError);
    assert.equal(forgotten.code, RpcErrorCode.ImageUnreadable, 'the chat view sends the image again');
    const badToken = await segmentRemote(
      url,
      'd'.repeat(40),
      params,
      { data: Buffer.from('x') },
      () => undefined,
    ).catch((e) => e);
    assert.match(
      badToken.message,
      /refused the request \(401\): the bearer token is not valid; set the token with the command/,
    );
    const stopped = new AbortController();
    stopped.abort();
    const cancelled = await segmentRemote(
      url,
      TOKEN,
      params,
      { data: Buffer.from('x') },
      () => undefined,
      stopped.signal,
    ).catch((e) => e);
    assert.equal(cancelled.cancelled, true);
  });

  it("refines a mask of the server's result like the local host (the refine goldens), and refuses with one line", async () => {
    const g = refineGoldens(BUNDLE).find((r) => r.points.length > 0 && r.box);
    assert.ok(g, 'goldens.json holds a refine case with points and a box');
    const c = goldens(BUNDLE).find((x) => x.name === g.case)!;
    const result = await segmentRemote(
      url,
      TOKEN,
      {
        image: { path: 'unused' },
        prompt: c.prompt,
        history: c.history.map(([user, assistant]) => ({ user, assistant })),
        maxNewTokens: c.max_new_tokens,
        assistantPrefix: c.assistant_prefix,
      },
      { data: readFileSync(path.join(BUNDLE, c.image)) },
      () => undefined,
    );
    assert.ok(result.resultId, "the server's result has a resultId");
    const prompt = { points: g.points, labels: g.labels, box: g.box! };
    const out = await refineRemote(url, TOKEN, { resultId: result.resultId, maskIndex: g.mask_index, prompt });
    const iou = rleIou(out.mask.rle, g.mask.rle);
    assert.ok(iou >= 0.999, `${g.name}: mask IoU ${iou}`);
    assert.ok(Math.abs(out.mask.score - g.iou) < 1e-3, `IoU prediction ${out.mask.score} vs ${g.iou}`);
    assert.deepEqual(out.mask.refined, prompt);

    const refusal = (p: Promise<unknown>) =>
      p.then(
        () => assert.fail('the refine was expected to be refused'),
        (e) => {
          assert.ok(e instanceof RemoteError && !e.message.includes('\n'), String(e));
          return e as RemoteError;
        },
      );
    const badMask = await refusal(
      refineRemote(url, TOKEN, { resultId: result.resultId, maskIndex: 99, prompt: { points: [], labels: [] } }),
    );
    assert.equal(badMask.code, RpcErrorCode.ParamsInvalid);
    assert.match(badMask.message, /\(400\): maskIndex 99: the result has \d+ mask/);
    const outside = await refusal(
      refineRemote(url, TOKEN, {
        resultId: result.resultId,
        maskIndex: 0,
        prompt: { points: [[1e6, 3]], labels: [1] },
      }),
    );
    assert.equal(outside.code, RpcErrorCode.ParamsInvalid);
    const forgotten = await refusal(
      refineRemote(url, TOKEN, { resultId: 'r-unknown', maskIndex: 0, prompt: { points: [], labels: [] } }),
    );
    assert.equal(forgotten.code, RpcErrorCode.ImageUnreadable, 'the panel says to run the request again');
    assert.match(forgotten.message, /\(404\): That result is no longer in the host's memory/);
    const malformed = await refusal(refineRemote(url, TOKEN, { resultId: result.resultId } as never));
    assert.match(malformed.message, /\(400\): .*prompt.*; send \{"resultId"/);
    const badToken = await refusal(
      refineRemote(url, 'd'.repeat(40), {
        resultId: result.resultId,
        maskIndex: 0,
        prompt: { points: [], labels: [] },
      }),
    );
    assert.match(badToken.message, /\(401\).*Set Server Token/);
  });
});
