// KV rows kept across turns (src/host/prefix-cache.ts): a follow-up prefills only what is new, with the tokens and
// masks of a full re-prefill, through several turns, a history trimmed to fit, two interleaved conversations, and
// memory bounds small enough to force truncation and eviction.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import type * as ort from 'onnxruntime-node';
import { KvCache } from '../../src/host/kv-cache';
import { LisaPipeline, type SegmentRequest } from '../../src/host/pipeline';
import { PrefixCache } from '../../src/host/prefix-cache';
import { f32 } from '../../src/host/sessions';
import type { ChatTurn, SegmentResult } from '../../src/protocol/result';
import { FIXTURE_BUNDLES, goldens } from '../helpers/bundles';

const PLACEHOLDER = -200;

/** A cache of `ids` (the placeholder standing for `imagePositions`) whose rows name their position. */
function filled(ids: number[], imagePositions: number, mask?: bigint[]): KvCache {
  const L = 1,
    KV = 2,
    D = 2;
  const n = ids.reduce((a, t) => a + (t === PLACEHOLDER ? imagePositions : 1), 0);
  const cache = new KvCache(L, KV, D, n + 8, true);
  const out: Record<string, ort.Tensor> = {};
  const rows = new Float32Array(KV * n * D).map((_, i) => 1 + (Math.floor(i / D) % n));
  out['new_key_values.0.key'] = f32(rows, [1, KV, n, D]);
  out['new_key_values.0.value'] = f32(rows, [1, KV, n, D]);
  cache.append(out, mask ?? Array<bigint>(n).fill(1n));
  return cache;
}

/** Position p's key row as fed to the decoder (head 0). */
function keyAt(cache: KvCache, p: number): number {
  const t = cache.feeds([1n])['past_key_values.0.key'];
  return (t.data as Float32Array)[p * 2];
}

describe('KV reuse across turns: the store', () => {
  const key = (ids: number[], image = 'a', mask?: bigint[]) => ({
    ids,
    image,
    mask: mask ?? Array<bigint>(ids.reduce((a, t) => a + (t === PLACEHOLDER ? 3 : 1), 0)).fill(1n),
  });
  const limits = { totalBytes: 1 << 20, conversationBytes: 1 << 20 };

  it('hands over the entry that holds exactly the common prefix, and copies one that holds more', () => {
    const store = new PrefixCache<KvCache>(limits, PLACEHOLDER, 3);
    const ids = [1, 5, PLACEHOLDER, 6, 7];
    store.put(ids, ids.length, 'a', filled(ids, 3));
    assert.equal(store.take(key([9, 9]), 10, 20), undefined, 'nothing in common');
    // a longer conversation on the same image: the whole entry continues it
    const whole = store.take(key([...ids, 8, 9]), 6, 20)!;
    assert.equal(whole.length, 7);
    assert.equal(store.size, 0, 'handed over, not copied');
    store.put(ids, ids.length, 'a', whole);
    // a different question after the image: the first 4 ids (6 positions) are copied, the entry stays whole
    const part = store.take(key([1, 5, PLACEHOLDER, 6, 2, 3]), 5, 20)!;
    assert.equal(part.length, 6);
    assert.deepEqual(
      [0, 5].map((p) => keyAt(part, p)),
      [1, 6],
    );
    assert.equal(keyAt(part, 6), 0, 'rows past the prefix are empty');
    assert.equal(store.size, 1);
    assert.equal(store.take(key([...ids, 8]), 6, 20)!.length, 7, 'the entry kept all its rows');
  });

  it('stops at the image when the image differs, at a differing mask value, and at maxIds', () => {
    const store = new PrefixCache<KvCache>(limits, PLACEHOLDER, 3);
    const ids = [1, 0, PLACEHOLDER, 6, 7];
    store.put(ids, ids.length, 'a', filled(ids, 3, [1n, 0n, 1n, 1n, 1n, 1n, 1n]));
    assert.equal(store.take(key(ids, 'b', [1n, 0n, 1n, 1n, 1n, 1n, 1n]), 9, 20), undefined, 'another image: nothing');
    assert.equal(store.take(key(ids, 'a'), 9, 20), undefined, 'id 0 was masked in the kept cache, not here');
    assert.equal(store.take(key(ids, 'a', [1n, 0n, 1n, 1n, 1n, 1n, 1n]), 4, 20)!.length, 6, 'maxIds 4');
  });

  it('drops a kept cache whose whole prompt a new one re-fed (its next turn), not one that only shares a prefix', () => {
    const store = new PrefixCache<KvCache>(limits, PLACEHOLDER, 3);
    const turn1 = [1, PLACEHOLDER, 6, 7, 8]; // prompt [1, image, 6], answer 7 8
    store.put(turn1, 3, 'a', filled(turn1, 3));
    const other = [1, PLACEHOLDER, 9, 4]; // another question on the same image
    store.put(other, 3, 'a', filled(other, 3));
    assert.equal(store.size, 2);
    const turn2 = [1, PLACEHOLDER, 6, 7, 5, 2, 3]; // the answer's text tokenized again as 7 5
    store.put(turn2, 6, 'a', filled(turn2, 3));
    assert.equal(store.size, 2, 'turn 1 superseded, the other conversation kept');
    assert.equal(store.take(key(other), 9, 20)!.length, 6);
  });

  it('keeps at most conversationBytes per conversation (the first positions) and totalBytes in all, LRU first', () => {
    const per = KvCache.bytesPerPosition(1, 2, 2); // 16 bytes; stores are kept in blocks of 64 positions
    const store = new PrefixCache<KvCache>({ totalBytes: 128 * per, conversationBytes: 64 * per }, PLACEHOLDER, 3);
    const long = [1, PLACEHOLDER, ...Array.from({ length: 80 }, (_, i) => 10 + i)];
    store.put(long, long.length, 'a', filled(long, 3));
    assert.equal(store.size, 1);
    assert.ok(store.bytes <= 64 * per, `${store.bytes} bytes kept`);
    const kept = store.take(key(long), 1000, 200)!;
    assert.equal(kept.length, 64, 'the first 64 positions');
    assert.equal(keyAt(kept, 63), 64);
    store.put(long.slice(0, 62), 62, 'a', kept);
    for (const image of ['b', 'c']) store.put([1, PLACEHOLDER, 2], 3, image, filled([1, PLACEHOLDER, 2], 3));
    assert.ok(store.bytes <= 128 * per);
    assert.equal(store.size, 2, 'the least recently used went');
    assert.equal(store.take(key(long), 1000, 200), undefined, 'only <s> in common with the two left: not reused');
  });
});

/** A conversation's requests, each turn's history the turns before with the answers the model gave. */
async function converse(
  p: LisaPipeline,
  image: SegmentRequest['image'],
  prompts: string[],
  trimFrom?: number,
): Promise<SegmentResult[]> {
  const results: SegmentResult[] = [];
  const history: ChatTurn[] = [];
  for (const [i, prompt] of prompts.entries()) {
    const r = await p.segment({
      image,
      prompt,
      history: trimFrom !== undefined && i >= trimFrom ? history.slice(1) : history.slice(),
      maxNewTokens: 10,
    });
    results.push(r);
    history.push({ user: prompt, assistant: r.answer });
  }
  return results;
}

const same = (a: SegmentResult, b: SegmentResult) => {
  assert.deepEqual(a.outputIds, b.outputIds);
  assert.equal(a.text, b.text);
  assert.deepEqual(
    a.masks.map((m) => m.rle),
    b.masks.map((m) => m.rle),
  );
};

for (const name of ['tiny-7b', 'tiny-13b']) {
  describe(`KV reuse across turns: ${name}`, function () {
    this.timeout(300_000);
    const dir = path.join(FIXTURE_BUNDLES, name);
    const img = (f: string) => ({ path: path.join(dir, 'images', f) });
    let reuse: LisaPipeline;
    let full: LisaPipeline;
    before(async () => {
      reuse = await LisaPipeline.load(dir, { verifyCacheFile: null });
      full = await LisaPipeline.load(dir, { verifyCacheFile: null, kvReuse: { totalBytes: 0, conversationBytes: 0 } });
    });
    after(async () => {
      await reuse?.dispose();
      await full?.dispose();
    });

    const prompts = [
      'What is in this picture? Please output segmentation mask.',
      'Where would you put it down?',
      'And the [SEG] next to it?',
      'Why?',
    ];

    it('a follow-up prefills only its new tokens, with the tokens and masks of a full re-prefill, over 4 turns', async () => {
      reuse.kvStore.clear();
      const history: ChatTurn[] = [];
      let lastPrompt = 0;
      for (const [turn, prompt] of prompts.entries()) {
        const req = { image: img('coffee.png'), prompt, history: history.slice(), maxNewTokens: 10 };
        const before = { ...reuse.counters };
        const a = await reuse.segment(req);
        same(a, await full.segment(req));
        const reused = reuse.counters.reusedPositions - before.reusedPositions;
        const prefilled = reuse.counters.prefillPositions - before.prefillPositions;
        // the whole previous prompt at least was kept (and its answer, as far as its text tokenizes to the same ids)
        if (turn > 0) assert.ok(reused >= lastPrompt, `turn ${turn}: ${reused} reused, ${prefilled} prefilled`);
        lastPrompt = reused + prefilled;
        history.push({ user: prompt, assistant: a.answer });
      }
      assert.equal(full.counters.reusedPositions, 0);
      assert.equal(reuse.kvStore.size, 1, 'one conversation, one kept cache');
    });

    it('a follow-up whose oldest turn was trimmed to fit reuses the system prompt and the image, and agrees', async () => {
      reuse.kvStore.clear();
      const before = reuse.counters.reusedPositions;
      const a = await converse(reuse, img('astronaut.png'), prompts, 3);
      const b = await converse(full, img('astronaut.png'), prompts, 3);
      for (let i = 0; i < prompts.length; i++) same(a[i], b[i]);
      assert.ok(reuse.counters.reusedPositions - before > 256, 'the image positions at least');
    });

    it('two interleaved conversations (another image, and another question on the same image) each reuse their own', async () => {
      reuse.kvStore.clear();
      const convs = [
        { image: img('coffee.png'), prompts: prompts.slice(0, 3) },
        { image: img('chelsea.png'), prompts: ['Segment the cat.', 'Its ears?', 'Why?'] },
        { image: img('coffee.png'), prompts: ['Segment the mug.', 'Its handle?', 'Why?'] },
      ];
      const histories: ChatTurn[][] = convs.map(() => []);
      for (let turn = 0; turn < 3; turn++) {
        for (const [c, conv] of convs.entries()) {
          const req = {
            image: conv.image,
            prompt: conv.prompts[turn],
            history: histories[c].slice(),
            maxNewTokens: 10,
          };
          const before = reuse.counters.reusedPositions;
          const a = await reuse.segment(req);
          const reused = reuse.counters.reusedPositions - before;
          same(a, await full.segment(req));
          if (turn > 0) assert.ok(reused > 256 + 30, `conversation ${c} turn ${turn}: ${reused} positions reused`);
          histories[c].push({ user: conv.prompts[turn], assistant: a.answer });
        }
      }
      assert.equal(reuse.kvStore.size, 3);
    });

    it('under a bound that holds one conversation, the other is evicted and prefilled in full, still agreeing', async () => {
      const per = KvCache.bytesPerPosition(
        reuse.bundle.manifest.llm.num_layers,
        reuse.bundle.manifest.llm.num_kv_heads,
        reuse.bundle.manifest.llm.head_dim,
      );
      const small = await LisaPipeline.load(dir, {
        verifyCacheFile: null,
        // at most 192 positions a conversation (blocks of 64); two conversations' caches (128 or more each) overflow it
        kvReuse: { totalBytes: 200 * per, conversationBytes: 200 * per },
      });
      try {
        const histories: ChatTurn[][] = [[], []];
        const images = [img('coffee.png'), img('chelsea.png')];
        for (let turn = 0; turn < 3; turn++) {
          for (const c of [0, 1]) {
            const req = { image: images[c], prompt: prompts[turn], history: histories[c].slice(), maxNewTokens: 10 };
            const a = await small.segment(req);
            same(a, await full.segment(req));
            assert.ok(small.kvStore.bytes <= 200 * per, `${small.kvStore.bytes} bytes kept`);
            histories[c].push({ user: prompts[turn], assistant: a.answer });
          }
        }
        assert.equal(small.kvStore.size, 1, 'one conversation fits');
      } finally {
        await small.dispose();
      }
    });

    it('a retried question with [SEG]s in the assistant prefix re-runs their positions: same masks', async () => {
      const twoSeg = goldens(dir).find((c) => c.masks.length === 2)!;
      const req = {
        image: { path: path.join(dir, twoSeg.image) },
        prompt: twoSeg.prompt,
        assistantPrefix: twoSeg.assistant_prefix,
        maxNewTokens: twoSeg.max_new_tokens,
      };
      const first = await reuse.segment(req);
      const before = reuse.counters.reusedPositions;
      const again = await reuse.segment(req);
      assert.ok(reuse.counters.reusedPositions > before, 'the retry reused the prompt');
      same(again, first);
      same(again, await full.segment(req));
      assert.deepEqual(again.outputIds, twoSeg.output_ids);
      assert.equal(again.masks.length, 2);
    });
  });
}
