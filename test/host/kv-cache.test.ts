// The host-kept KV cache: rows land where the decoder expects them across capacity growth, and feeding the cache at
// full capacity (empty slots masked) gives the same logits as feeding the exact `present` cache each step.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import type * as ort from 'onnxruntime-node';
import { openBundle } from '../../src/host/bundle';
import { argmax } from '../../src/host/generate';
import { KvCache } from '../../src/host/kv-cache';
import { f32, GraphSessions, i64 } from '../../src/host/sessions';
import { FIXTURE_BUNDLES } from '../helpers/bundles';

/** A step's new rows [KV, S, D] whose values name their layer, kind, head, position and dim. */
function rows(layer: number, kind: number, KV: number, D: number, from: number, S: number): Float32Array {
  const r = new Float32Array(KV * S * D);
  for (let h = 0; h < KV; h++)
    for (let s = 0; s < S; s++) for (let d = 0; d < D; d++) r[(h * S + s) * D + d] = code(layer, kind, h, from + s, d);
  return r;
}
const code = (layer: number, kind: number, h: number, p: number, d: number) =>
  layer * 1e6 + kind * 5e5 + h * 1e4 + p * 10 + d + 1;

describe('host KV cache', () => {
  it('keeps every row at [head, position] across capacity growth and store reuse, with empty slots zero and masked', () => {
    const L = 2,
      KV = 3,
      D = 2;
    /** Runs a generation of `steps` through a cache sized for `maxPositions`, checking its feeds after every step. */
    const generation = (maxPositions: number, steps: number[], offset: number) => {
      const cache = new KvCache(L, KV, D, maxPositions, true);
      const masks: bigint[] = [];
      for (const S of steps) {
        const stepMask = Array.from({ length: S }, (_, j) => (cache.length + j === 5 ? 0n : 1n));
        const out: Record<string, ort.Tensor> = {};
        for (let l = 0; l < L; l++) {
          out[`new_key_values.${l}.key`] = f32(rows(l + offset, 0, KV, D, cache.length, S), [1, KV, S, D]);
          out[`new_key_values.${l}.value`] = f32(rows(l + offset, 1, KV, D, cache.length, S), [1, KV, S, D]);
        }
        cache.append(out, stepMask);
        masks.push(...stepMask);

        const feeds = cache.feeds([1n]);
        const C = feeds['past_key_values.0.key'].dims[2];
        assert.ok(
          C >= cache.length && C < cache.length + 64 && C % 64 === 0,
          `capacity ${C} for ${cache.length} positions`,
        );
        const attention = feeds.attention_mask.data as BigInt64Array;
        assert.deepEqual(Array.from(attention), [...masks, ...Array<bigint>(C - cache.length).fill(0n), 1n]);
        for (let l = 0; l < L; l++) {
          for (const [kind, name] of ['key', 'value'].entries()) {
            const t = feeds[`past_key_values.${l}.${name}`];
            assert.deepEqual(t.dims, [1, KV, C, D]);
            const data = t.data as Float32Array;
            for (let h = 0; h < KV; h++)
              for (let p = 0; p < C; p++)
                for (let d = 0; d < D; d++) {
                  const want = p < cache.length ? code(l + offset, kind, h, p, d) : 0;
                  if (data[(h * C + p) * D + d] !== want)
                    assert.fail(
                      `layer ${l} ${name} head ${h} position ${p} dim ${d}: ${data[(h * C + p) * D + d]} != ${want}`,
                    );
                }
          }
        }
      }
      assert.equal(
        cache.length,
        steps.reduce((a, b) => a + b, 0),
      );
      cache.release();
    };
    // a prefill of 61 positions (one masked, as the <unk> rule does), then 70 single steps: grows in place past 64,
    // then past the 100 positions the stores were sized for (new stores)
    generation(100, [61, ...Array<number>(70).fill(1)], 0);
    // the next generation reuses those stores, full of the last one's rows: none of them may show through
    generation(90, [30, ...Array<number>(50).fill(1)], 7);
    assert.deepEqual(new KvCache(L, KV, D, 10, true).fetches().slice(0, 2), [
      'new_key_values.0.key',
      'new_key_values.0.value',
    ]);
  });

  for (const name of ['tiny-7b', 'tiny-13b']) {
    it(`${name}: the capacity-fed cache gives the logits of the exact present cache over 100 steps`, async () => {
      const bundle = await openBundle(path.join(FIXTURE_BUNDLES, name));
      const sessions = await GraphSessions.create(bundle, { provider: 'cpu' });
      try {
        const { hidden_size: H, num_layers: L, num_kv_heads: KV, head_dim: D, vocab_size: V } = bundle.manifest.llm;
        assert.ok(KvCache.supports(sessions.outputNames('decoder')), 'the committed fixture exports new_key_values');
        const ours = new KvCache(L, KV, D, 137, true);
        const exact = new KvCache(L, KV, D, 137, false); // the path bundles without new_key_values take
        let seed = 7;
        const random = (n: number) =>
          Float32Array.from(
            { length: n },
            () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.2,
          );
        let worst = 0;
        for (let step = 0; step < 100; step++) {
          const S = step === 0 ? 37 : 1;
          const stepMask = Array.from({ length: S }, (_, j) => (step === 0 && j === 3 ? 0n : 1n));
          const x = random(S * H);
          const logits: Float32Array[] = [];
          for (const cache of [ours, exact]) {
            const out = await sessions.run(
              'decoder',
              {
                ...cache.feeds(stepMask),
                inputs_embeds: f32(x, [1, S, H]),
                position_ids: i64(
                  BigInt64Array.from({ length: S }, (_, j) => BigInt(cache.length + j)),
                  [1, S],
                ),
              },
              ['logits', ...cache.fetches()],
            );
            cache.append(out, stepMask);
            const all = out.logits.data as Float32Array;
            logits.push(all.subarray(all.length - V));
          }
          for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(logits[0][v] - logits[1][v]));
          assert.equal(argmax(logits[0], 0, V), argmax(logits[1], 0, V), `step ${step}`);
        }
        assert.ok(worst < 1e-4, `max logit difference ${worst}`);
      } finally {
        await sessions.release();
      }
    });
  }
});
