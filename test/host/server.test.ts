// The inference host as its clients see it: a child process speaking JSON-RPC on stdio. Streaming, follow-up turns
// served from the embedding cache, and every kind of bad input answered with its own error while the host keeps
// serving.
import * as assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type HostCounters, Methods, RpcErrorCode, type SegmentParams } from '../../src/protocol/rpc';
import { FIXTURE_BUNDLES, goldens, REPO } from '../helpers/bundles';
import { CancellationTokenSource, HostClient } from '../helpers/host-client';

const BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-7b');
const IMAGES = path.join(REPO, 'test', 'fixtures', 'images');
const CHELSEA = path.join(BUNDLE, 'images', 'chelsea.png');

async function rpcError(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code: number; message: string };
  }
  assert.fail('expected the request to fail');
}

describe('inference host over JSON-RPC', function () {
  this.timeout(300_000);
  let host: HostClient;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-host-'));
  const segment = (params: Partial<SegmentParams>) =>
    host.request(Methods.segment, {
      image: { path: CHELSEA },
      prompt: 'What is here?',
      history: [],
      maxNewTokens: 8,
      ...params,
    });
  const counters = async (): Promise<HostCounters> => (await host.request(Methods.status, undefined)).counters;

  before(async () => {
    host = await HostClient.start({ XDG_CACHE_HOME: tmp });
  });
  after(async () => {
    await host?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('refuses to segment before a model is loaded', async () => {
    const e = await rpcError(segment({}));
    assert.equal(e.code, RpcErrorCode.ModelNotLoaded);
  });

  it('loads a bundle on the cpu and says so', async () => {
    const info = await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cpu' });
    assert.equal(info.provider, 'cpu');
    assert.equal(info.fellBack, false);
    assert.equal(info.variant, JSON.parse(readFileSync(path.join(BUNDLE, 'lisa.manifest.json'), 'utf8')).variant);
  });

  it('refuses cuda where the provider is absent, and falls back to cpu only when allowed', async () => {
    const e = await rpcError(host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cuda' }));
    assert.equal(e.code, RpcErrorCode.ProviderUnavailable);
    assert.match(e.message, /cpu/);
    const info = await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cuda', allowFallback: true });
    assert.equal(info.provider, 'cpu');
    assert.equal(info.fellBack, true);
    assert.ok(info.fallbackReason);
  });

  it('webgpu either runs or is refused with the reason, and falls back to cpu only when allowed', async () => {
    let strict: { provider?: string } | { code: number; message: string };
    try {
      strict = await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'webgpu' });
    } catch (e) {
      strict = e as { code: number; message: string };
    }
    if ('code' in strict) {
      assert.equal(strict.code, RpcErrorCode.ProviderUnavailable);
      assert.match(strict.message, /webgpu/);
      const info = await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'webgpu', allowFallback: true });
      assert.equal(info.provider, 'cpu');
      assert.match(info.fallbackReason ?? '', /webgpu/);
    } else {
      assert.equal(strict.provider, 'webgpu');
    }
    await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cpu' });
  });

  it('streams the answer as text deltas whose concatenation is the answer', async () => {
    host.deltas.length = 0;
    const result = await segment({ requestId: 'stream-1', maxNewTokens: 12 });
    const streamed = host.deltas
      .filter((d) => d.requestId === 'stream-1')
      .map((d) => d.text)
      .join('');
    assert.ok(host.deltas.length > 1, 'several deltas arrived');
    assert.equal(streamed.replace(/<\/s>$/, '').trim(), result.answer);
    assert.equal(result.outputIds.length, 12);
  });

  it('answers a follow-up turn on the same image without either image encoder or a second decode', async () => {
    const golden = goldens(BUNDLE).find((c) => c.history.length > 0)!;
    const image = path.join(BUNDLE, golden.image);
    await segment({ image: { path: image }, prompt: golden.history[0][0] });
    const before = await counters();
    const result = await segment({
      image: { path: image },
      prompt: golden.prompt,
      maxNewTokens: golden.max_new_tokens,
      history: golden.history.map(([user, assistant]) => ({ user, assistant })),
    });
    const after = await counters();
    assert.equal(after.visionEncoderRuns, before.visionEncoderRuns);
    assert.equal(after.samEncoderRuns, before.samEncoderRuns);
    assert.equal(after.imageDecodes, before.imageDecodes);
    assert.equal(result.timings.cacheHit, true);
    assert.deepEqual(result.outputIds, golden.output_ids);
  });

  it('answers by image hash once the host has the image, and inline bytes decode like the file', async () => {
    const byFile = await segment({});
    const byHash = await segment({ image: { sha256: byFile.image.sha256 } });
    assert.deepEqual(byHash.outputIds, byFile.outputIds);
    const inline = await segment({ image: { data: readFileSync(CHELSEA).toString('base64') } });
    assert.equal(inline.image.sha256, byFile.image.sha256);
    assert.deepEqual(inline.outputIds, byFile.outputIds);
  });

  const hostile: Array<[string, string, number, RegExp]> = [
    ['a zero-byte file', 'empty.png', RpcErrorCode.ImageUnreadable, /empty/],
    ['a truncated PNG', 'truncated.png', RpcErrorCode.ImageUnreadable, /truncated|damaged|cut/i],
    ['a truncated JPEG', 'truncated.jpg', RpcErrorCode.ImageUnreadable, /truncated|damaged|cut/i],
    ['a text file named .png', 'not-an-image.png', RpcErrorCode.ImageUnreadable, /not an image/i],
    ['a decompression bomb', 'bomb.png', RpcErrorCode.ImageTooLarge, /pixel/i],
    ['a missing file', 'no-such-file.png', RpcErrorCode.ImageUnreadable, /does not exist/],
  ];
  for (const [what, file, code, message] of hostile) {
    it(`refuses ${what} with its own message and keeps serving`, async () => {
      const e = await rpcError(segment({ image: { path: path.join(IMAGES, file) } }));
      assert.equal(e.code, code, e.message);
      assert.match(e.message, message);
      assert.equal((await segment({ maxNewTokens: 2 })).outputIds.length, 2);
    });
  }

  it('refuses a prompt longer than the context and keeps serving', async () => {
    const e = await rpcError(segment({ prompt: 'segment the cat '.repeat(5000) }));
    assert.equal(e.code, RpcErrorCode.PromptTooLong);
    assert.match(e.message, /reads at most/);
    assert.equal((await segment({ maxNewTokens: 2 })).outputIds.length, 2);
  });

  it('stops decoding when cancelled mid-answer, then serves the next request', async () => {
    const source = new CancellationTokenSource();
    host.deltas.length = 0;
    const cancelled = host.request(
      Methods.segment,
      {
        image: { path: CHELSEA },
        prompt: 'Describe everything.',
        history: [],
        maxNewTokens: 400,
        requestId: 'cancel-2',
      },
      source,
    );
    // Cancel once tokens are streaming, so the cancel lands in the middle of decoding.
    while (!host.deltas.some((d) => d.requestId === 'cancel-2')) await new Promise((r) => setTimeout(r, 5));
    source.cancel();
    const e = await rpcError(cancelled);
    assert.ok(e.code === RpcErrorCode.Cancelled || e.code === -32800, `cancel code ${e.code}`);
    const streamedTokens = host.deltas.filter((d) => d.requestId === 'cancel-2').length;
    assert.ok(streamedTokens < 400, 'decoding stopped early');
    assert.equal((await segment({ maxNewTokens: 2 })).outputIds.length, 2);
  });

  describe('damaged bundles', () => {
    const copy = (name: string) => {
      const dir = path.join(tmp, name);
      cpSync(BUNDLE, dir, { recursive: true });
      return dir;
    };
    const load = (bundle: string) => rpcError(host.request(Methods.loadModel, { bundle, device: 'cpu' }));

    it('a missing graph file', async () => {
      const dir = copy('missing');
      unlinkSync(path.join(dir, 'onnx', 'seg_projector.onnx'));
      const e = await load(dir);
      assert.equal(e.code, RpcErrorCode.BundleMissingFile);
      assert.match(e.message, /seg_projector\.onnx/);
    });

    it('a file that does not match its checksum', async () => {
      const dir = copy('checksum');
      const f = path.join(dir, 'onnx', 'decoder.onnx_data');
      const bytes = readFileSync(f);
      bytes[bytes.length >> 1] ^= 0xff;
      writeFileSync(f, bytes);
      const e = await load(dir);
      assert.equal(e.code, RpcErrorCode.BundleChecksum);
      assert.match(e.message, /decoder\.onnx_data/);
    });

    it('a manifest path that climbs out of the bundle', async () => {
      const dir = copy('escape-dots');
      const mf = path.join(dir, 'lisa.manifest.json');
      const manifest = JSON.parse(readFileSync(mf, 'utf8'));
      manifest.files['../outside.txt'] = { sha256: '0'.repeat(64), bytes: 1 };
      writeFileSync(mf, JSON.stringify(manifest));
      const e = await load(dir);
      assert.equal(e.code, RpcErrorCode.BundlePathEscape);
    });

    it('a symlink that points outside the bundle, even with the right contents', async () => {
      const dir = copy('escape-link');
      const outside = path.join(tmp, 'outside-tokenizer.json');
      cpSync(path.join(dir, 'tokenizer.json'), outside);
      unlinkSync(path.join(dir, 'tokenizer.json'));
      symlinkSync(outside, path.join(dir, 'tokenizer.json'));
      const e = await load(dir);
      assert.equal(e.code, RpcErrorCode.BundlePathEscape);
    });

    it('a folder that is not a bundle, and a manifest that breaks the schema', async () => {
      assert.equal((await load(IMAGES)).code, RpcErrorCode.BundleMissingFile);
      const dir = copy('schema');
      const mf = path.join(dir, 'lisa.manifest.json');
      const manifest = JSON.parse(readFileSync(mf, 'utf8'));
      delete manifest.tokens.seg;
      writeFileSync(mf, JSON.stringify(manifest));
      const e = await load(dir);
      assert.equal(e.code, RpcErrorCode.BundleInvalid);
      assert.match(e.message, /schema/);
    });

    it('after all of them, the host still loads the good bundle and segments', async () => {
      await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cpu' });
      assert.equal((await segment({ maxNewTokens: 2 })).outputIds.length, 2);
    });
  });
});
