// media/example.ipynb holds real outputs of the %%segment magic (run by nbclient against the real host). The renderer
// must draw each of them: every mask's pixels coloured on the overlay canvas, and nothing outside the masks.
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { RESULT_MIME, type SegmentResult } from '../../src/protocol/result';
import { decodeRle } from '../../src/protocol/rle';
import { type Harness, ROOT, readCanvas, render, startHarness } from './harness';

interface NotebookOutput {
  data?: Record<string, unknown>;
}

function resultOutputs(): NotebookOutput[] {
  const nb = JSON.parse(readFileSync(path.join(ROOT, 'media', 'example.ipynb'), 'utf8'));
  const outputs: NotebookOutput[] = nb.cells.flatMap((c: { outputs?: NotebookOutput[] }) => c.outputs ?? []);
  return outputs.filter((o) => o.data?.[RESULT_MIME]);
}

describe('the example notebook, rendered by the notebook renderer in Chromium', function () {
  this.timeout(120_000);
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => h?.close());

  const outputs = resultOutputs();
  const results = outputs.map((o) => o.data![RESULT_MIME] as SegmentResult);
  it('holds real %%segment outputs with masks, and a plain-Jupyter fallback beside each', () => {
    assert.ok(results.length >= 2, 'the %%segment cell and its follow-up');
    for (const o of outputs)
      assert.ok(o.data!['image/png'] && o.data!['text/plain'], 'image/png and text/plain beside the result');
    assert.ok(results.some((r) => r.masks.length > 0));
  });

  for (const [i, result] of results.entries()) {
    it(`draws output ${i + 1} (${result.masks.length} mask(s)) on its masks and nowhere else`, async () => {
      const page = await h.newPage();
      try {
        await render(page, result);
        const ov = await readCanvas(page, '.rs-overlay');
        assert.deepEqual([ov.width, ov.height], [result.image.width, result.image.height]);
        const union = new Uint8Array(ov.width * ov.height);
        for (const m of result.masks)
          decodeRle(m.rle).forEach((v, p) => {
            if (v) union[p] = 1;
          });
        let inside = 0;
        for (let p = 0; p < union.length; p++) {
          const painted = ov.data[p * 4 + 3] > 0;
          assert.equal(painted, union[p] === 1, `pixel ${p % ov.width},${Math.floor(p / ov.width)}`);
          inside += union[p];
        }
        assert.equal(
          inside > 0,
          result.masks.some((m) => m.area > 0),
        );
        const errors = await page.evaluate(() => (window as any).__errors as string[]);
        assert.deepEqual(errors, []);
      } finally {
        await page.close();
      }
    });
  }
});
