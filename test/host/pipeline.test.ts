// Pipeline behaviour beyond the goldens: which [SEG]s get masks in a conversation, and the embedding cache.
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { LisaPipeline } from '../../src/host/pipeline';
import { FIXTURE_BUNDLES, goldens } from '../helpers/bundles';

const BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-13b');

describe('pipeline conversations', function () {
  this.timeout(120_000);
  let p: LisaPipeline;
  const twoSeg = goldens(BUNDLE).find((c) => c.masks.length === 2)!;
  const image = { path: path.join(BUNDLE, twoSeg.image) };
  before(async () => {
    p = await LisaPipeline.load(BUNDLE, { verifyCacheFile: null });
  });
  after(async () => p?.dispose());

  it('masks the [SEG]s of this answer only, not those re-fed from history or typed by the user', async () => {
    const first = await p.segment({
      image,
      prompt: twoSeg.prompt,
      assistantPrefix: twoSeg.assistant_prefix,
      maxNewTokens: 4,
    });
    assert.equal(first.masks.length, 2);
    assert.ok(
      first.masks.every((m) => m.tokenIndex === -1),
      'both [SEG]s stood in the assistant prefix',
    );
    const seg = p.bundle.manifest.tokens.seg;
    const followUp = await p.segment({
      image,
      prompt: 'And what about [SEG] here?',
      maxNewTokens: 6,
      history: [{ user: twoSeg.prompt, assistant: first.answer }],
    });
    assert.match(first.answer, /\[SEG\]/);
    assert.equal(followUp.masks.length, followUp.outputIds.filter((t) => t === seg).length);
    assert.equal(followUp.timings.cacheHit, true);
  });

  it('the same file bytes sent as data are answered from the cache without decoding them again', async () => {
    const bytes = await fs.readFile(path.join(BUNDLE, 'images', 'chelsea.png'));
    const first = await p.segment({
      image: { path: path.join(BUNDLE, 'images', 'chelsea.png') },
      prompt: 'x',
      maxNewTokens: 1,
    });
    const decodes = p.counters.imageDecodes;
    const again = await p.segment({ image: { data: bytes }, prompt: 'y', maxNewTokens: 1 });
    assert.equal(again.timings.cacheHit, true);
    assert.equal(p.counters.imageDecodes, decodes, 'no second decode');
    assert.equal(again.image.sha256, first.image.sha256);
    assert.equal(first.image.sha256, createHash('sha256').update(bytes).digest('hex'), "the key is the file's sha256");
  });

  it('a bounded cache evicts the oldest image and re-encodes it when asked again', async () => {
    const small = await LisaPipeline.load(BUNDLE, { verifyCacheFile: null, cacheBytes: 1 });
    try {
      const a = { path: path.join(BUNDLE, 'images', 'astronaut.png') };
      await small.segment({ image: a, prompt: 'x', maxNewTokens: 1 });
      await small.segment({ image, prompt: 'x', maxNewTokens: 1 });
      const again = await small.segment({ image: a, prompt: 'x', maxNewTokens: 1 });
      assert.equal(again.timings.cacheHit, false);
      assert.equal(small.counters.visionEncoderRuns, 3);
      assert.ok(small.cache.sizeBytes > 0);
    } finally {
      await small.dispose();
    }
  });

  it("SAM's encoder on its own thread (concurrent, the default) gives the serial run's masks, once per image", async () => {
    const serial = await LisaPipeline.load(BUNDLE, { verifyCacheFile: null, samSchedule: 'serial' });
    try {
      const req = { image, prompt: twoSeg.prompt, assistantPrefix: twoSeg.assistant_prefix, maxNewTokens: 4 };
      p.cache.clear();
      const runs = p.counters.samEncoderRuns;
      const a = await p.segment(req);
      const b = await serial.segment(req);
      assert.deepEqual(a.outputIds, b.outputIds);
      assert.deepEqual(
        a.masks.map((m) => m.rle),
        b.masks.map((m) => m.rle),
      );
      assert.equal(a.masks.length, 2);
      const again = await p.segment({ ...req, prompt: 'And now?' });
      assert.equal(again.timings.cacheHit, true, "the thread's embedding went into the cache");
      assert.equal(p.counters.samEncoderRuns, runs + 1);
    } finally {
      await serial.dispose();
    }
  });
});
