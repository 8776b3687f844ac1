// The results panel (src/webview/result.ts, in the editor area beside the image) in a real Chromium under the
// webview's strict CSP, showing results the real chat controller got from the real host: the picture fills the panel,
// zoom (keys, wheel, buttons) and pan (arrows, drag), the question, explanation and mask list beside it, the shared
// overlay's pixels, labels and focus order, a follow-up that keeps the zoom, Save, the Chinese UI, and a screenshot of
// the trained shapes bundle's answer on the demo scene.

import * as assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { resultMessageOf } from '../../src/extension/chatController';
import { type ResultMessage, validateWebviewMessage } from '../../src/protocol/chat';
import { decodeRle } from '../../src/protocol/rle';
import { Methods } from '../../src/protocol/rpc';
import { FIXTURE_BUNDLES, goldens, REPO } from '../helpers/bundles';
import { ChatBridge, IMAGES, readImage, startChatHarness, TINY_BUNDLE, type WebviewHarness } from './chat-harness';
import { readCanvas } from './harness';

const COFFEE = path.join(IMAGES, 'coffee.png');
export const SHOTS = path.join(os.tmpdir(), 'reason-segment-screens');

async function show(page: Page, m: ResultMessage): Promise<void> {
  await page.evaluate((x) => window.postMessage(x, '*'), m as unknown as Record<string, unknown>);
  await page.waitForFunction((id) => document.querySelector('.rs-rp')?.getAttribute('data-turn-id') === id, m.turnId);
  await page.waitForSelector('.rs-view[data-ready="true"]');
}

const zoom = (page: Page) => page.locator('.rs-rp-viewport').evaluate((e) => Number((e as HTMLElement).dataset.zoom));
const stageBox = (page: Page) =>
  page.locator('.rs-rp-viewport .rs-stage').evaluate((e) => {
    const r = e.getBoundingClientRect();
    return { x: r.x, y: r.y, w: r.width, h: r.height };
  });

describe('results panel webview (Chromium, strict CSP, results from the real controller and host)', function () {
  this.timeout(300_000);
  let harness: WebviewHarness;
  let b: ChatBridge;
  let first: ResultMessage;
  let second: ResultMessage;
  let page: Page;

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    b = new ChatBridge();
    [harness] = await Promise.all([startChatHarness(), b.startHost()]);
    // Two answers on coffee.png from the golden case with two masks (the answer starts with its assistant prefix).
    const golden = goldens(TINY_BUNDLE).find((c) => c.name === 'coffee-two-seg')!;
    b.assistantPrefix = golden.assistant_prefix;
    b.maxNewTokens = golden.max_new_tokens;
    await b.receive({ type: 'setImage', path: COFFEE });
    const c = b.active()!;
    await b.receive({ type: 'ask', conversationId: c.id, prompt: golden.prompt });
    await b.receive({ type: 'ask', conversationId: c.id, prompt: 'And the saucer?' });
    const done = c.turns.filter((t) => t.status === 'done');
    assert.equal(done.length, 2, `two answers: ${JSON.stringify(b.failures)}`);
    first = resultMessageOf(c, done[0].id, readImage(COFFEE))!;
    second = resultMessageOf(c, done[1].id, readImage(COFFEE))!;
    assert.equal(first.result.masks.length, golden.masks.length);
  });
  after(async () => {
    await harness?.close();
    await b?.dispose();
  });
  afterEach(async () => {
    if (page && !page.isClosed()) {
      const p = await page.evaluate(() => ({ errors: (window as any).__errors, csp: (window as any).__csp }));
      assert.deepEqual(p, { errors: [], csp: [] });
    }
  });

  it('shows the picture as large as the panel allows, the question, explanation and masks beside it', async () => {
    page = await harness.openResultPage({ width: 1100, height: 700 });
    await show(page, first);
    const vp = await page.locator('.rs-rp-viewport').boundingBox();
    const s = await stageBox(page);
    const { width: W, height: H } = first.result.image;
    const fitW = Math.min(vp!.width, (vp!.height * W) / H);
    assert.ok(Math.abs(s.w - fitW) < 1.5, `stage ${s.w} px wide, fit is ${fitW}`);
    assert.ok(s.w > 600, `the picture is ${s.w} px wide in a 1100 px panel (the side bar gave 245)`);
    assert.ok(Math.abs(s.x + s.w / 2 - (vp!.x + vp!.width / 2)) < 1.5, 'centred');
    assert.equal(await page.locator('.rs-rp-side h2').textContent(), first.prompt);
    assert.match((await page.locator('.rs-rp-meta').textContent())!, /^coffee\.png · answer 1 of 2 · 2 masks$/);
    assert.deepEqual(
      await page.locator('.rs-rp-side .rs-mask label').evaluateAll((ls) =>
        ls.map((l) =>
          Array.from(l.childNodes)
            .filter((n) => n.nodeType === 3)
            .map((n) => n.textContent)
            .join(''),
        ),
      ),
      ['Mask 1', 'Mask 2'],
    );
    assert.equal(await page.locator('.rs-rp-side button.rs-chip').count(), first.result.masks.length);
    // The shared overlay draws the masks where they are and nowhere else.
    const ov = await readCanvas(page, '.rs-rp-viewport .rs-overlay');
    assert.deepEqual([ov.width, ov.height], [W, H]);
    const union = new Uint8Array(W * H);
    for (const m of first.result.masks)
      decodeRle(m.rle).forEach((v, i) => {
        if (v) union[i] = 1;
      });
    let wrong = 0;
    for (let i = 0; i < union.length; i++) if ((ov.data[i * 4 + 3] > 0 ? 1 : 0) !== union[i]) wrong++;
    assert.equal(wrong, 0, `${wrong} overlay pixels disagree with the masks`);
    await page.screenshot({ path: path.join(SHOTS, 'result-panel.png') });
  });

  it('zooms with + - 0, the buttons and the wheel (about the cursor), and pans with the arrows and a drag', async () => {
    const vp = page.locator('.rs-rp-viewport');
    await vp.focus();
    assert.equal(await zoom(page), 1);
    assert.equal(await page.getByRole('button', { name: 'Zoom out (-)' }).isDisabled(), true, 'no zooming out of fit');
    await page.keyboard.press('+');
    assert.equal(await zoom(page), 1.25);
    await page.keyboard.press('-');
    assert.equal(await zoom(page), 1);
    await page.getByRole('button', { name: 'Zoom in (+)' }).click();
    await page.getByRole('button', { name: 'Zoom in (+)' }).click();
    assert.equal(await zoom(page), 1.5625);
    await page.getByRole('button', { name: 'Fit the image to the panel (0)' }).click();
    assert.equal(await zoom(page), 1);
    // The wheel zooms about the cursor: the image point under it stays under it.
    const box = (await vp.boundingBox())!;
    const cx = box.x + box.width * 0.3;
    const cy = box.y + box.height * 0.6;
    const before = await stageBox(page);
    const u = (cx - before.x) / before.w;
    const v = (cy - before.y) / before.h;
    await page.mouse.move(cx, cy);
    await page.mouse.wheel(0, -400);
    await page.waitForFunction(
      () => Number((document.querySelector('.rs-rp-viewport') as HTMLElement).dataset.zoom) > 1.5,
    );
    const after = await stageBox(page);
    assert.ok(Math.abs(after.x + u * after.w - cx) < 1 && Math.abs(after.y + v * after.h - cy) < 1, 'fixed point');
    assert.match((await page.locator('.rs-rp-zoomlevel').textContent())!, /^Zoom \d+% of the image size$/);
    // Arrows pan by 40 px (the image moves the other way, as a view does).
    await vp.focus();
    const p0 = await stageBox(page);
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowDown');
    const p1 = await stageBox(page);
    assert.deepEqual([Math.round(p1.x - p0.x), Math.round(p1.y - p0.y)], [-40, -40]);
    // A drag moves it with the pointer.
    await page.mouse.move(cx, cy);
    await page.mouse.down();
    await page.mouse.move(cx + 60, cy + 25, { steps: 4 });
    await page.mouse.up();
    const p2 = await stageBox(page);
    assert.deepEqual([Math.round(p2.x - p1.x), Math.round(p2.y - p1.y)], [60, 25]);
    await page.screenshot({ path: path.join(SHOTS, 'result-panel-zoomed.png') });
    await page.keyboard.press('0');
    assert.equal(await zoom(page), 1);
  });

  it('every control is labelled, in a sensible focus order, with the zoom level announced', async () => {
    const unlabelled = await page.evaluate(() =>
      Array.from(document.querySelectorAll('button, select, textarea, input, [tabindex]'))
        .filter((e) => (e as HTMLElement).offsetParent !== null)
        .filter((e) => {
          const label =
            e.getAttribute('aria-label') ?? e.closest('label')?.textContent ?? (e as HTMLElement).textContent ?? '';
          return !label.trim();
        })
        .map((e) => e.outerHTML.slice(0, 80)),
    );
    assert.deepEqual(unlabelled, []);
    assert.equal(await page.locator('.rs-rp-zoombar').getAttribute('role'), 'toolbar');
    assert.equal(await page.locator('.rs-rp-zoomlevel').getAttribute('aria-live'), 'polite');
    assert.equal(await page.locator('.rs-rp-side').evaluate((e) => e.tagName), 'ASIDE');
    const vp = page.locator('.rs-rp-viewport');
    assert.equal(await vp.getAttribute('tabindex'), '0');
    assert.match((await vp.getAttribute('aria-label'))!, /\+ and - zoom, 0 fits, arrow keys pan/);
    // Focus order: the zoom buttons, the image, then the answer's controls.
    const focused = () =>
      page.evaluate(() => {
        const e = document.activeElement!;
        return e.closest('.rs-rp-side') ? 'side' : (e.getAttribute('aria-label') ?? e.outerHTML.slice(0, 60));
      });
    await vp.focus();
    const order: string[] = [];
    await page.keyboard.press('Shift+Tab');
    order.push(await focused());
    await page.keyboard.press('Shift+Tab');
    order.push(await focused());
    await vp.focus();
    await page.keyboard.press('Tab');
    order.push(await focused());
    // "Zoom out" is disabled at fit, so "Zoom in" is the first stop.
    assert.deepEqual(order, ['Fit the image to the panel (0)', 'Zoom in (+)', 'side']);
  });

  it('a follow-up on the same image replaces the result and keeps the zoom and pan', async () => {
    await page.locator('.rs-rp-viewport').focus();
    await page.keyboard.press('+');
    await page.keyboard.press('ArrowLeft');
    const s0 = await stageBox(page);
    await show(page, second);
    assert.equal(await zoom(page), 1.25);
    const s1 = await stageBox(page);
    assert.deepEqual([Math.round(s1.x), Math.round(s1.y)], [Math.round(s0.x), Math.round(s0.y)]);
    assert.equal(await page.locator('.rs-rp-side h2').textContent(), 'And the saucer?');
    assert.match((await page.locator('.rs-rp-meta').textContent())!, /answer 2 of 2/);
    assert.equal(await page.locator('.rs-rp-viewport .rs-stage').count(), 1, 'one stage, the old one removed');
  });

  it('Save posts a validated save message for the shown turn', async () => {
    await page.getByRole('button', { name: 'Save COCO JSON' }).click();
    const m = await page.evaluate(() => (window as any).__posted.find((x: any) => x.type === 'save'));
    assert.equal(m.turnId, second.turnId);
    assert.equal(m.conversationId, second.conversationId);
    assert.equal(m.mimeType, 'application/json');
  });

  it('refine: a click on the picture asks the host through the extension; undo brings the mask back; Save writes it', async () => {
    assert.ok(first.result.resultId, 'the host gave the result an id to refine it by');
    // The test plays resultPanel.ts's part: the page's refine request goes to the host, the answer back as `refined`.
    const rp = await harness.openResultPage({ width: 1100, height: 700 });
    await rp.exposeFunction('__rsToExtension', async (m: any) => {
      if (m?.type === 'keepMask') return b.receive(m); // to the chat controller, as resultPanel.ts forwards it
      if (m?.type !== 'refine') return;
      assert.deepEqual(validateWebviewMessage(m), []);
      const answer = await b.host
        .request(Methods.refine, { resultId: first.result.resultId!, maskIndex: m.maskIndex, prompt: m.prompt })
        .then(
          (r) => ({ type: 'refined', requestId: m.requestId, mask: r.mask }),
          (e) => ({ type: 'refined', requestId: m.requestId, error: String(e.message) }),
        );
      await rp.evaluate((x) => window.postMessage(x, '*'), answer);
    });
    await show(rp, first);
    await rp.getByRole('button', { name: 'Refine mask 1 by clicking' }).click();
    const box = (await rp.locator('.rs-rp-viewport .rs-stage').boundingBox())!;
    await rp.mouse.click(box.x + box.width * 0.5, box.y + box.height * 0.4);
    await rp.waitForFunction(() => {
      const s = document.querySelector('.rs-rp-viewport .rs-stage') as HTMLElement;
      return s.dataset.refine === 'done' || s.dataset.refine === 'failed';
    });
    const sent = (await rp.evaluate(() => (window as any).__posted.filter((x: any) => x.type === 'refine'))) as any[];
    assert.equal(sent.length, 1);
    assert.equal(sent[0].turnId, first.turnId);
    assert.equal(sent[0].prompt.points.length, 1);
    assert.equal(await rp.locator('.rs-rp-viewport .rs-stage').getAttribute('data-refine'), 'done');
    assert.equal(await rp.locator('.rs-rp-side .rs-mask[data-mask="0"]').getAttribute('data-refined'), 'true');
    await rp.screenshot({ path: path.join(SHOTS, 'result-panel-refine.png') });
    // The refined mask is the conversation's now: stored, so the side bar and the panel reopened show it.
    const c = b.conversations.find((x) => x.id === first.conversationId)!;
    const storedMask = () =>
      b.stored!.conversations.find((x) => x.id === c.id)!.turns.find((t) => t.id === first.turnId)!.result!.masks[0];
    assert.equal(storedMask().refined?.points.length, 1);
    assert.deepEqual(storedMask().refined, sent[0].prompt);
    await rp.getByRole('button', { name: 'Undo' }).click();
    assert.equal(await rp.locator('.rs-rp-side .rs-mask[data-mask="0"]').getAttribute('data-refined'), 'false');
    await rp.waitForFunction(() => (window as any).__posted.filter((x: any) => x.type === 'keepMask').length >= 2);
    assert.deepEqual(storedMask(), first.result.masks[0], "undo keeps the answer's mask again");
    await rp.getByRole('button', { name: 'Redo' }).click();
    await rp.waitForFunction(() => (window as any).__posted.filter((x: any) => x.type === 'keepMask').length >= 3);
    assert.deepEqual(storedMask().refined, sent[0].prompt);
    const reopened = resultMessageOf(c, first.turnId, readImage(COFFEE))!;
    assert.deepEqual(reopened.result.masks[0].refined, sent[0].prompt, 'the panel reopened shows the refined mask');
    await rp.getByRole('button', { name: 'Save COCO JSON' }).click();
    const saved = await rp.evaluate(() => (window as any).__posted.find((x: any) => x.type === 'save'));
    assert.match(saved.data, /"refined"/, 'the COCO export writes the refined mask with its prompts');
    await rp.close();
  });

  it("a TIFF: the panel draws the host's PNG of it (Chromium cannot decode the TIFF's own bytes)", async () => {
    const tif = path.join(REPO, 'test/fixtures/images/chelsea.tif');
    await b.receive({ type: 'setImage', path: tif });
    const c = b.active()!;
    await b.receive({ type: 'ask', conversationId: c.id, prompt: 'What is this?' });
    const turn = c.turns.at(-1)!;
    assert.equal(turn.status, 'done', JSON.stringify(b.failures.at(-1)));
    const page1 = await harness.openResultPage({ width: 900, height: 600 });
    await page1.evaluate((x) => window.postMessage(x, '*'), resultMessageOf(c, turn.id, readImage(tif)) as any);
    await page1.getByText('The image could not be decoded').waitFor();
    await page1.close();
    const page2 = await harness.openResultPage({ width: 900, height: 600 });
    await show(page2, resultMessageOf(c, turn.id, await b.controller.webviewImage(c.image!))!);
    const base = await readCanvas(page2, '.rs-rp-viewport .rs-base');
    await page2.close();
    let opaque = 0;
    for (let i = 3; i < base.data.length; i += 4) if (base.data[i] === 255) opaque++;
    const png = { n: opaque, all: base.width * base.height };
    assert.equal(png.n, png.all, 'every pixel of the picture drawn');
  });

  it('in Chinese: no English control left', async () => {
    const zh = await harness.openResultPage({ lang: 'zh-cn', width: 900, height: 600 });
    await show(zh, first);
    // The UI's own words (aria labels, button and legend text, the zoom level and the meta line), not the question,
    // answer or file name; product and format names (COCO JSON, PNG, IoU) stay as they are.
    const labels = await zh.evaluate(
      (m) =>
        Array.from(
          document.querySelectorAll('button:not(.rs-chip), legend, label, [aria-label], .rs-rp-zoomlevel, .rs-rp-meta'),
        )
          .map(
            (e) =>
              e.getAttribute('aria-label') ??
              (e.matches('label')
                ? Array.from(e.childNodes)
                    .filter((n) => n.nodeType === 3)
                    .map((n) => n.textContent)
                    .join('')
                : e.textContent) ??
              '',
          )
          .map((x) =>
            x
              .replace(m.source, '')
              .replace(m.imageName, '')
              .replace(/Reason Segment|COCO|JSON|PNG|IoU|\[SEG\]/g, ''),
          )
          .filter((x) => /[A-Za-z]{2,}/.test(x)),
      { imageName: first.imageName, source: first.result.image.source ?? '' },
    );
    assert.deepEqual(labels, []);
    await zh.screenshot({ path: path.join(SHOTS, 'result-panel-zh-cn.png') });
    await zh.close();
  });

  it('the trained shapes bundle on the demo scene (screenshot)', async () => {
    const shapes = new ChatBridge();
    try {
      await shapes.startHost(path.join(FIXTURE_BUNDLES, 'shapes-7b'));
      const scene = path.join(REPO, 'test/fixtures/trained/demo-scene.jpg');
      await shapes.receive({ type: 'setImage', path: scene });
      const c = shapes.active()!;
      // The question as the bundle was trained to read it (lisa_export/shapes.py wraps LISA's validation prompt).
      shapes.maxNewTokens = 48;
      await shapes.receive({
        type: 'ask',
        conversationId: c.id,
        prompt: ' What is just to the left of the star? Please output segmentation mask.',
      });
      const turn = c.turns.at(-1)!;
      assert.equal(turn.status, 'done', JSON.stringify(shapes.failures));
      const m = resultMessageOf(c, turn.id, readImage(scene))!;
      const demo = await harness.openResultPage({ width: 1100, height: 640 });
      await show(demo, m);
      assert.ok(m.result.masks.length >= 1, 'the trained bundle answers with a mask');
      await demo.screenshot({ path: path.join(SHOTS, 'result-panel-shapes-demo.png') });
      await demo.close();
    } finally {
      await shapes.dispose();
    }
  });
});
