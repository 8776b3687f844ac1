// The WebGPU path on SwiftShader (a software Vulkan device: no GPU needed). A child process runs golden cases of the
// committed tiny bundle on onnxruntime-node's WebGPU provider, with the KV cache kept on the device; its tokens and
// masks must be the PyTorch reference's, and the host's own count of host<->device bytes per decode step must be
// exactly the step's token-sized tensors (embedding, position, attention mask in; logits and hidden state out), never
// the cache. A follow-up turn starts from the conversation's KV cache kept on the device and gives the ids it gives
// without it. SAM's image embedding stays on the device too, from the image encoder to the mask decoder and the refine
// graph, and is freed when its image leaves the cache. Two cases on one image keep it to one SAM image encoder run, the slow part on SwiftShader.
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { openBundle } from '../../src/host/bundle';
import { rleIou } from '../../src/protocol/rle';
import { FIXTURE_BUNDLES, goldens } from '../helpers/bundles';
import { type DeviceRunOutput, type DeviceRunSpec, runOnDevice } from '../helpers/device-run';
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
      refineAndEvict: true,
    };
    out = await runOnDevice(spec, env);
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

  it("keeps SAM's image embedding on the device: per image only the pixels in and the masks out cross", async function () {
    const m = (await openBundle(BUNDLE, {})).manifest;
    const C = m.sam.prompt_dim;
    const g = goldens(BUNDLE);
    const first = out.caseBytes[CASES[0]]; // the image's first request runs SAM's image encoder
    const pixels = (m.graphs.sam_image_encoder.inputs.pixel_values.shape as number[]).reduce((a, b) => a * b) * 4;
    assert.equal(first.sam_image_encoder, pixels, 'the encoder moves its pixels in, no embedding out');
    assert.equal(out.caseBytes[CASES[1]].sam_image_encoder, undefined, 'the second case on the image: no encoder run');
    for (const name of CASES) {
      const c = g.find((x) => x.name === name);
      assert.ok(c);
      const n = c.masks.length;
      const [h, w] = c.orig_size;
      const maskDecoder = out.caseBytes[name].sam_mask_decoder ?? 0;
      // in: the [SEG] embeddings, resize and original size; out: the masks and their IoU predictions. Before, the
      // embedding (C x 64 x 64 fp32: 4 MiB for SAM ViT-H, 512 KiB here) came out of the encoder and went into this.
      const expected = n === 0 ? 0 : n * C * 4 + 2 * 8 + 2 * 8 + n * h * w * 4 + n * 4;
      assert.equal(maskDecoder, expected, `${name}: the mask decoder moved ${maskDecoder} bytes`);
    }
  });

  it('refines on the device embedding: every refine golden of the cases (IoU >= 0.999)', function () {
    const refine = JSON.parse(readFileSync(path.join(BUNDLE, 'goldens.json'), 'utf8')).refine as Array<{
      name: string;
      case: string;
      iou: number;
      mask: { rle: { size: [number, number]; counts: string } };
    }>;
    const wanted = refine.filter((r) => CASES.includes(r.case));
    assert.equal(wanted.length, 4);
    assert.deepEqual(
      out.refine.map((r) => r.name),
      wanted.map((r) => r.name),
    );
    for (const [i, g] of wanted.entries()) {
      const iou = rleIou(out.refine[i].rle, g.mask.rle);
      assert.ok(iou >= 0.999, `${g.name}: mask IoU ${iou}`);
      assert.ok(
        Math.abs(out.refine[i].iou - g.iou) < 1e-3,
        `${g.name}: IoU prediction ${out.refine[i].iou} vs ${g.iou}`,
      );
    }
  });

  it('frees the device embedding when its image leaves the cache, after a refine using it lets go', function () {
    assert.deepEqual(out.evict, {
      cachedLocation: 'gpu-buffer',
      heldLocation: 'gpu-buffer',
      releasedLocation: 'none',
      refineAfter:
        "That result is no longer in the host's memory (the host restarted, or newer images pushed it out); run the request again, then refine its masks.",
    });
  });
});
