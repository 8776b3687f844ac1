// The WebGPU path on SwiftShader (a software Vulkan device: no GPU needed). A child process runs golden cases of the
// committed tiny bundle on onnxruntime-node's WebGPU provider, with the KV cache kept on the device; its tokens and
// masks must be the PyTorch reference's, and the host's own count of host<->device bytes per decode step must be
// exactly the step's token-sized tensors (embedding, position, attention mask in; logits and hidden state out), never
// the cache. A follow-up turn starts from the conversation's KV cache kept on the device and gives the ids it gives
// without it. Two cases on one image keep it to one SAM image encoder run, the slow part on SwiftShader.
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { openBundle } from '../../src/host/bundle';
import { rleIou } from '../../src/protocol/rle';
import { FIXTURE_BUNDLES, goldens } from '../helpers/bundles';
import type { DeviceRunOutput, DeviceRunSpec } from '../helpers/device-run';
import { SWIFTSHADER_MISSING, swiftshaderEnv } from '../helpers/swiftshader';

const BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-7b');
const CASES = ['coffee-zh', 'coffee-two-seg'];

describe('webgpu on SwiftShader: tokens and masks of the goldens, KV cache on the device', function () {
  this.timeout(1_800_000);
  let out: DeviceRunOutput;

  before(async function () {
    const env = swiftshaderEnv();
    if (!env) {
      if (process.env.CI === 'true') assert.fail(SWIFTSHADER_MISSING);
      this.skip();
    }
    const spec: DeviceRunSpec = {
      bundle: BUNDLE,
      device: 'webgpu',
      cases: CASES,
      followUp: true,
    };
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [path.join(__dirname, '..', 'helpers', 'device-run.js'), JSON.stringify(spec)],
      { env, maxBuffer: 64 << 20 },
    );
    out = JSON.parse(stdout) as DeviceRunOutput;
  });

  it('runs on the webgpu provider with the device cache', function () {
    assert.equal(out.provider, 'webgpu');
    assert.equal(out.deviceKvCache, true);
  });

  it('gives every golden case its tokens, text and masks (IoU >= 0.999)', function () {
    const all = goldens(BUNDLE);
    assert.ok(
      out.cases.some((c) => c.masks.length > 0),
      'at least one case has masks',
    );
    for (const got of out.cases) {
      const c = all.find((g) => g.name === got.name);
      assert.ok(c);
      assert.equal(got.provider, 'webgpu');
      assert.deepEqual(got.outputIds, c.output_ids, `${c.name}: output ids`);
      assert.equal(got.text, c.text, `${c.name}: text`);
      assert.equal(got.masks.length, c.masks.length, `${c.name}: one mask per [SEG]`);
      for (const [i, g] of c.masks.entries()) {
        const iou = rleIou(got.masks[i].rle, g.rle);
        assert.ok(iou >= 0.999, `${c.name}: mask ${i} IoU ${iou}`);
      }
    }
  });

  it('moves only token-sized tensors per decode step, never the KV cache', async function () {
    const m = (await openBundle(BUNDLE, {})).manifest;
    const { hidden_size: H, vocab_size: V, num_layers: L, num_kv_heads: KV, head_dim: D } = m.llm;
    const f32 = 4;
    const i64 = 8;
    for (const name of CASES) {
      const s = out.steps[name];
      assert.deepEqual(s.outputIds, goldens(BUNDLE).find((g) => g.name === name)?.output_ids, `${name}: replayed ids`);
      assert.ok(s.stepBytes.length >= 8, `${name}: decode steps measured`);
      for (const [j, bytes] of s.stepBytes.entries()) {
        const held = s.positions[j]; // the cache holds this many positions when the step runs
        const expected =
          i64 +
          H * f32 + // embed_tokens: the token id in, its embedding out
          H * f32 +
          i64 +
          (held + 1) * i64 + // decoder in: the embedding, its position, the attention mask
          V * f32 +
          H * f32; // decoder out: the logits and the last hidden state
        assert.equal(bytes, expected, `${name}: step ${j} moved ${bytes} bytes`);
        const cacheBytes = 2 * L * KV * held * D * f32;
        assert.ok(bytes < cacheBytes / 4, `${name}: step ${j} moved ${bytes} bytes; the cache is ${cacheBytes}`);
      }
    }
  });

  it("reuses a conversation's KV cache on the device: a follow-up gives the ids it gives without reuse", function () {
    const f = out.followUp;
    assert.ok(f);
    assert.ok(f.reusedPositions > 0, 'the follow-up started from the kept device cache');
    assert.equal(f.reusedWithout, 0, 'the second run prefilled in full');
    assert.ok(f.withReuse.length > 0);
    assert.deepEqual(f.withReuse, f.withoutReuse);
  });
});
