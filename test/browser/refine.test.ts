// Refining a mask by clicking, in Chromium, with the real host behind the overlay's refine callback: the shared overlay
// (src/overlay) shows a tiny-bundle result; a click, a Shift-click and a drag on the stage each send a refine through
// the callback to a real host process, and the overlay canvas then shows the host's mask (pixel checks); Ctrl+Z and
// Ctrl+Shift+Z step back and forth without asking again; the COCO export writes the refined mask with its prompts.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as esbuild from 'esbuild';
import type { Page } from 'playwright-core';
import type { ResultMask } from '../../src/protocol/result';
import { decodeRle } from '../../src/protocol/rle';
import { Methods, type RefineParams, type SegmentResult } from '../../src/protocol/rpc';
import { FIXTURE_BUNDLES } from '../helpers/bundles';
import { HostClient } from '../helpers/host-client';
import { type Harness, ROOT, readCanvas, startHarness } from './harness';

const TINY = path.join(FIXTURE_BUNDLES, 'tiny-7b');

/** Whether the overlay canvas has colour (alpha > 0) at each pixel of the mask, and none outside it. */
async function overlayShows(page: Page, mask: ResultMask): Promise<number> {
  const c = await readCanvas(page, '.rs-overlay');
  const m = decodeRle(mask.rle); // row-major 0/1
  let agree = 0;
  for (let i = 0; i < m.length; i++) if ((c.data[i * 4 + 3] > 0 ? 1 : 0) === m[i]) agree++;
  return agree / m.length;
}

describe('overlay refine mode against a real host (Chromium)', function () {
  let harness: Harness;
  let host: HostClient;
  let page: Page;
  let dir: string;
  let result: SegmentResult;
  const asked: RefineParams[] = [];
  const answered: ResultMask[] = [];

  before(async function () {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rs-refine-browser-'));
    await esbuild.build({
      entryPoints: [path.join(ROOT, 'src/overlay/index.ts')],
      outfile: path.join(dir, 'overlay.js'),
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      logLevel: 'warning',
    });
    host = await HostClient.start();
    await host.request(Methods.loadModel, { bundle: TINY, device: 'cpu' });
    result = await host.request(Methods.segment, {
      image: { path: path.join(TINY, 'images', 'coffee.png') },
      prompt: 'Segment the cup.',
      history: [],
      assistantPrefix: 'Sure, [SEG].',
      maxNewTokens: 2,
      includeImage: true,
    });
    assert.ok(result.resultId && result.masks.length > 0);
    harness = await startHarness({ '/ov/': dir });
    page = await harness.newPage();
    await page.exposeFunction('hostRefine', async (req: RefineParams) => {
      asked.push(req);
      const out = await host.request(Methods.refine, req);
      answered.push(out.mask);
      return out.mask;
    });
    await page.evaluate(async (r) => {
      const ov = await import('/ov/overlay.js' as string);
      const w = window as any;
      w.saved = [];
      const box = document.createElement('div');
      box.style.width = `${r.image.width}px`;
      document.body.appendChild(box);
      w.view = ov.createSegmentView(box, r, {
        refine: (req: unknown) => w.hostRefine(req),
        save: (f: unknown) => w.saved.push(f),
      });
      await w.view.ready;
    }, result);
  });
  after(async () => {
    await harness?.close();
    await host?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const stageBox = async () => (await page.locator('.rs-stage').boundingBox())!;
  const settled = () => page.evaluate(() => (window as any).view.refine.settled());

  it('shows the mask and its predicted IoU, and a keyboard-reachable Refine button', async function () {
    assert.ok((await overlayShows(page, result.masks[0])) > 0.999);
    const meta = await page.locator('.rs-mask .rs-meta').first().textContent();
    assert.match(meta ?? '', new RegExp(`predicted IoU ${result.masks[0].score.toFixed(2)}`));
    const refine = page.getByRole('button', { name: 'Refine mask 1 by clicking' });
    await refine.focus();
    await page.keyboard.press('Enter');
    assert.equal(await refine.getAttribute('aria-pressed'), 'true');
    assert.equal(await page.locator('.rs-refine').isVisible(), true);
  });

  it('a click adds a positive point, Shift-click a negative one, a drag a box; each shows the host’s mask', async function () {
    const b = await stageBox();
    const W = result.image.width;
    const H = result.image.height;
    const at = (fx: number, fy: number) => ({ x: b.x + fx * b.width, y: b.y + fy * b.height });
    let p = at(0.4, 0.45);
    await page.mouse.click(p.x, p.y);
    await settled();
    p = at(0.7, 0.3);
    await page.keyboard.down('Shift');
    await page.mouse.click(p.x, p.y);
    await page.keyboard.up('Shift');
    await settled();
    const a = at(0.15, 0.2);
    const z = at(0.8, 0.85);
    await page.mouse.move(a.x, a.y);
    await page.mouse.down();
    await page.mouse.move((a.x + z.x) / 2, (a.y + z.y) / 2);
    await page.mouse.move(z.x, z.y);
    await page.mouse.up();
    await settled();
    assert.equal(asked.length, 3);
    assert.deepEqual(asked[0].prompt.labels, [1]);
    assert.deepEqual(asked[1].prompt.labels, [1, 0]);
    assert.ok(asked[2].prompt.box, 'the drag sent a box');
    assert.equal(asked[2].prompt.points.length, 2, 'the box keeps the points');
    for (const q of asked) {
      assert.equal(q.resultId, result.resultId);
      for (const [x, y] of q.prompt.points) assert.ok(x >= 0 && x <= W && y >= 0 && y <= H);
    }
    const [x0, y0, x1, y1] = asked[2].prompt.box!;
    assert.ok(y1 > y0);
    assert.ok(Math.abs(x0 - 0.15 * W) < 3 && Math.abs(y1 - 0.85 * H) < 3 && x1 > x0, `box ${asked[2].prompt.box}`);
    assert.ok((await overlayShows(page, answered[2])) > 0.999, 'the overlay shows the last refined mask');
    assert.equal(await page.locator('.rs-markers circle').count(), 2);
    assert.equal(await page.locator('.rs-markers rect').count(), 1);
    assert.equal(await page.locator('.rs-markers .rs-marker-neg').count(), 1);
  });

  it('Ctrl+Z and Ctrl+Shift+Z (and the buttons) step through the masks without asking the host again', async function () {
    const before = asked.length;
    await page.getByRole('button', { name: 'Undo' }).focus();
    await page.keyboard.press('Control+z');
    assert.ok((await overlayShows(page, answered[1])) > 0.999, 'undo shows the previous mask');
    await page.keyboard.press('Control+z');
    await page.keyboard.press('Control+z');
    assert.ok((await overlayShows(page, result.masks[0])) > 0.999, 'back to the unrefined mask');
    assert.equal(await page.getByRole('button', { name: 'Undo' }).isDisabled(), true);
    await page.getByRole('button', { name: 'Redo' }).focus(); // a disabled Undo button lost the focus
    await page.keyboard.press('Control+Shift+z');
    assert.ok((await overlayShows(page, answered[0])) > 0.999, 'redo');
    await page.getByRole('button', { name: 'Redo' }).click();
    await page.getByRole('button', { name: 'Redo' }).click();
    assert.ok((await overlayShows(page, answered[2])) > 0.999);
    assert.equal(asked.length, before, 'no new request');
  });

  it('COCO export writes the refined mask with refined: {points, labels, box}', async function () {
    await page.getByRole('button', { name: 'Save COCO JSON' }).click();
    const files = await page.evaluate(() => (window as any).saved);
    const coco = JSON.parse(files.at(-1).data);
    const ann = coco.annotations[0];
    assert.equal(ann.segmentation.counts, answered[2].rle.counts);
    assert.deepEqual(ann.refined, asked[2].prompt);
    assert.equal(ann.score, answered[2].score);
    const meta = await page.locator('.rs-mask .rs-meta').first().textContent();
    assert.match(meta ?? '', /refined \(2 point\(s\), box\)/);
  });
});
