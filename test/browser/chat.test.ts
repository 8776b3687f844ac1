// The chat panel webview in a real Chromium under the panel's strict CSP, driven by the extension's real chat logic
// (src/extension/chatController.ts, in this process, bridged to the page by test/browser/chat-harness.ts) on the REAL
// inference host. Streaming, masks inline, stop, follow-ups without encoder runs, reload, host crash.

import * as assert from 'node:assert/strict';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Page } from 'playwright-core';
import { historyOf } from '../../src/protocol/chat';
import { decodeRle } from '../../src/protocol/rle';
import { Methods } from '../../src/protocol/rpc';
import { goldens } from '../helpers/bundles';
import { ChatBridge, IMAGES, startChatHarness, TINY_BUNDLE, type WebviewHarness } from './chat-harness';
import { readCanvas } from './harness';

const CHELSEA = path.join(IMAGES, 'chelsea.png');
const COFFEE = path.join(IMAGES, 'coffee.png');

async function counters(ext: ChatBridge) {
  return (await ext.host.request(Methods.status, undefined)).counters;
}

/** Types a prompt in the composer and presses Enter (keyboard only). */
async function ask(page: Page, prompt: string): Promise<void> {
  await page.focus('#rs-prompt');
  await page.keyboard.type(prompt);
  await page.keyboard.press('Enter');
}

async function turnCount(page: Page, status?: string): Promise<number> {
  return page
    .locator(status ? `.rs-log li.rs-turn[data-status="${status}"]` : '.rs-log li.rs-turn[data-turn-id]')
    .count();
}

async function pageProblems(page: Page): Promise<{ errors: string[]; csp: string[] }> {
  return page.evaluate(() => ({
    errors: (window as any).__errors as string[],
    csp: (window as any).__csp as string[],
  }));
}

describe('chat panel webview (Chromium, strict CSP, the real chat controller and host)', function () {
  this.timeout(120_000);
  let harness: WebviewHarness;
  let ext: ChatBridge;
  let page: Page;
  let chelseaConv: string;

  before(async () => {
    ext = new ChatBridge();
    [harness] = await Promise.all([startChatHarness(), ext.startHost()]);
  });
  after(async () => {
    await harness?.close();
    await ext?.dispose();
  });
  afterEach(async function () {
    if (page && !page.isClosed()) {
      const p = await pageProblems(page);
      assert.deepEqual(p.csp, [], 'CSP violations');
      assert.deepEqual(p.errors, [], 'page errors');
    }
  });

  it('loads under the CSP, says ready, and takes an image dropped from the explorer', async () => {
    page = await harness.openPanel(ext);
    await page.waitForFunction(() => (window as any).__posted.some((m: any) => m.type === 'ready'));
    assert.equal(await page.locator('#rs-image-name').textContent(), 'No image chosen');
    assert.equal(await page.locator('button[type=submit]').isDisabled(), true);
    const uri = pathToFileURL(CHELSEA).href;
    await page.evaluate((u) => {
      const dt = new DataTransfer();
      dt.setData('text/uri-list', `# dragged\r\n${u}\r\n`);
      const zone = document.querySelector('.rs-drop')!;
      zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, uri);
    await page.waitForSelector('img.rs-thumb');
    assert.match((await page.locator('#rs-image-name').textContent())!, /^chelsea\.png \(451×300\)$/);
    assert.deepEqual(
      ext.received.find((m: any) => m.type === 'setImage'),
      { type: 'setImage', path: uri },
    );
    const src = await page.locator('img.rs-thumb').getAttribute('src');
    assert.ok(src?.startsWith('data:image/png;base64,'), 'the thumbnail comes from message bytes, not a file URI');
    chelseaConv = ext.activeId!;
  });

  it("(a) streams the answer into the DOM progressively; the final text is the result's answer", async () => {
    ext.maxNewTokens = 24;
    await page.evaluate(() => {
      const w = window as any;
      w.__snapshots = [];
      new MutationObserver(() => {
        const a = document.querySelector('.rs-turn[data-status="streaming"] .rs-answer');
        if (a && w.__snapshots[w.__snapshots.length - 1] !== a.textContent) w.__snapshots.push(a.textContent);
        if (a) w.__live = `${a.getAttribute('aria-live')} busy=${a.getAttribute('aria-busy')}`;
      }).observe(document.querySelector('.rs-log')!, { subtree: true, childList: true, characterData: true });
    });
    await ask(page, 'What is in this picture?');
    await page.waitForSelector('.rs-turn[data-status="done"]');
    const result = ext.results.at(-1)!;
    const snaps = (await page.evaluate(() => (window as any).__snapshots)) as string[];
    const partial = snaps.filter((s) => s.length > 0 && s.length < result.answer.length);
    assert.ok(partial.length >= 2, `expected at least two intermediate states, saw ${JSON.stringify(snaps)}`);
    for (const s of partial)
      assert.ok(result.answer.startsWith(s), `intermediate ${JSON.stringify(s)} is a prefix of the answer`);
    const shown = await page.locator('.rs-turn[data-status="done"] .rs-answer').textContent();
    assert.equal(shown, result.answer);
    assert.equal(await page.locator('#rs-prompt').inputValue(), '', 'Enter sent and cleared the prompt');
    // The streaming text is a polite live region, busy while it streams.
    assert.equal(await page.evaluate(() => (window as any).__live), 'polite busy=true');
  });

  it('(d) a follow-up sends the history and runs no image encoder', async () => {
    const before = await counters(ext);
    const first = ext.results.at(-1)!;
    await ask(page, 'And where is its nose?');
    await page.waitForFunction(() => document.querySelectorAll('.rs-turn[data-status="done"]').length === 2);
    assert.deepEqual(ext.forwardedHistories.at(-1), [{ user: 'What is in this picture?', assistant: first.answer }]);
    const after = await counters(ext);
    assert.equal(after.visionEncoderRuns, before.visionEncoderRuns, 'CLIP ran again');
    assert.equal(after.samEncoderRuns, before.samEncoderRuns, 'SAM image encoder ran again');
    assert.equal(after.imageDecodes, before.imageDecodes, 'the image was decoded again');
    assert.equal(ext.results.at(-1)!.timings.cacheHit, true);
  });

  it('(c) Stop cancels a long answer, the turn shows as stopped, and the next ask works', async () => {
    ext.maxNewTokens = 300;
    await ask(page, 'Describe everything in great detail.');
    await page.waitForFunction(
      () => (document.querySelector('.rs-turn[data-status="streaming"] .rs-answer')?.textContent ?? '').length > 0,
    );
    const stop = page.locator('button', { hasText: 'Stop' });
    assert.equal(await stop.isVisible(), true);
    await stop.click();
    await page.waitForSelector('.rs-turn[data-status="cancelled"]');
    assert.ok(ext.received.some((m: any) => m.type === 'stop' && m.conversationId === chelseaConv));
    const cancelled = page.locator('.rs-turn[data-status="cancelled"]');
    assert.match((await cancelled.textContent())!, /Stopped\./);
    const partial = (await cancelled.locator('.rs-answer').textContent()) ?? '';
    assert.ok(partial.length > 0, 'the text streamed before Stop stays');
    const stoppedId = (await cancelled.getAttribute('data-turn-id'))!;
    const streamed = ext.host.deltas.filter((d) => d.requestId === stoppedId).length;
    assert.ok(streamed > 0 && streamed < 300, `stopped after ${streamed} of 300 tokens`);
    assert.equal(await stop.isVisible(), false);

    ext.maxNewTokens = 8;
    await ask(page, 'Is it a cat?');
    await page.waitForFunction(() => document.querySelectorAll('.rs-turn[data-status="done"]').length === 3);
    // The stopped turn is not part of the history.
    assert.deepEqual(
      ext.forwardedHistories.at(-1)!.map((t) => t.user),
      ['What is in this picture?', 'And where is its nose?'],
    );
  });

  it('(b) shows masks inline with the shared overlay, [SEG] chips linked', async () => {
    const golden = goldens(TINY_BUNDLE).find((c) => c.assistant_prefix && c.masks.length > 0)!;
    assert.equal(path.join(TINY_BUNDLE, golden.image), COFFEE);
    ext.pickResult = COFFEE;
    ext.assistantPrefix = golden.assistant_prefix;
    ext.maxNewTokens = golden.max_new_tokens;
    await page.getByRole('button', { name: 'Choose image…' }).click(); // the bridge's "file picker" picks coffee.png
    await page.waitForFunction(() => document.querySelector('#rs-image-name')?.textContent?.startsWith('coffee.png'));
    assert.equal(await turnCount(page), 0, 'a new conversation for the new image');
    await ask(page, golden.prompt);
    await page.waitForSelector('.rs-turn[data-status="done"] .rs-view[data-ready="true"]');
    ext.assistantPrefix = undefined;
    const result = ext.results.at(-1)!;
    assert.ok(result.masks.length >= 1, 'the golden case has masks');
    const chips = page.locator('.rs-turn[data-status="done"] button.rs-chip');
    assert.equal(await chips.count(), result.masks.length);
    // Mask pixels where the masks are and nowhere else (overlay canvas alpha vs. the RLE union).
    const ov = await readCanvas(page, '.rs-turn[data-status="done"] .rs-overlay');
    assert.deepEqual([ov.width, ov.height], [result.image.width, result.image.height]);
    const union = new Uint8Array(ov.width * ov.height);
    for (const m of result.masks)
      decodeRle(m.rle).forEach((v, i) => {
        if (v) union[i] = 1;
      });
    let wrong = 0;
    for (let i = 0; i < union.length; i++) if ((ov.data[i * 4 + 3] > 0 ? 1 : 0) !== union[i]) wrong++;
    assert.equal(wrong, 0, `${wrong} overlay pixels disagree with the masks`);
    // Hovering a chip lights up its mask (the shared view's linking).
    await chips.first().hover();
    const hl = await readCanvas(page, '.rs-turn[data-status="done"] .rs-highlight');
    let lit = 0;
    for (let i = 3; i < hl.data.length; i += 4) if (hl.data[i] > 0) lit++;
    assert.ok(lit > 0, 'the hovered chip highlights its mask');
    // Save goes to the extension as a validated message.
    await page.getByRole('button', { name: /COCO/ }).first().click();
    await page.waitForFunction(() => (window as any).__posted.some((m: any) => m.type === 'save'));
    const save = ext.received.find((m: any) => m.type === 'save') as any;
    assert.equal(save.kind, 'coco-json');
    // "Open beside" asks the extension to show this result in the editor area.
    const open = page
      .locator('.rs-turn[data-status="done"]')
      .last()
      .getByRole('button', { name: 'Open this result beside the image' });
    await open.click();
    await page.waitForFunction(() => (window as any).__posted.some((m: any) => m.type === 'openResult'));
    assert.deepEqual(ext.opened.at(-1), { conversationId: ext.activeId, turnId: ext.active()!.turns.at(-1)!.id });
    // A mask refined in the results panel (keepMask, with the host's refine answer) is redrawn here, marked refined;
    // the results panel's undo (the answer's mask kept again) brings the answer's drawing back.
    const turn = ext.active()!.turns.at(-1)!;
    const prompt = { points: [[300, 200]] as [number, number][], labels: [1 as const] };
    const { mask } = await ext.host.request(Methods.refine, { resultId: result.resultId!, maskIndex: 0, prompt });
    const row = page.locator('.rs-turn[data-status="done"]').last().locator('.rs-mask[data-mask="0"]');
    const keep = (m: unknown) =>
      ext.receive({ type: 'keepMask', conversationId: ext.activeId!, turnId: turn.id, maskIndex: 0, mask: m });
    await keep(mask);
    await row.and(page.locator('[data-refined="true"]')).waitFor();
    assert.match(await row.innerText(), /refined \(1 point\(s\)\)/);
    await keep(result.masks[0]);
    await row.and(page.locator('[data-refined="false"]')).waitFor();
    const again = await readCanvas(page, '.rs-turn[data-status="done"] .rs-overlay');
    assert.ok(again.data.equals(ov.data), "the answer's masks drawn again, pixel for pixel");
    assert.equal(ext.rejected.length, 0);
  });

  it('(e) survives a reload: the controller replays state; getState paints before the extension answers', async () => {
    const cached = await page.evaluate(async () => {
      await new Promise((r) => setTimeout(r, 300)); // setState is throttled (200 ms)
      return (window as any).__rsState;
    });
    const coffeeConv = ext.activeId!;
    await page.close();

    page = await harness.openPanel(ext); // no cached state: all from the extension's `state`
    await page.waitForSelector('.rs-turn[data-status="done"] .rs-view[data-ready="true"]');
    assert.equal(await turnCount(page), ext.active()!.turns.length);
    // The older conversation is still there, and selectable.
    await page.selectOption('#rs-conversation', chelseaConv);
    await page.waitForFunction(() => document.querySelector('#rs-image-name')?.textContent?.startsWith('chelsea.png'));
    assert.equal(await turnCount(page), 4);
    assert.equal(await turnCount(page, 'cancelled'), 1);
    assert.deepEqual(
      await page.locator('.rs-user .rs-msg').allTextContents(),
      ext.conversations.find((c) => c.id === chelseaConv)!.turns.map((t) => t.prompt),
    );
    await page.selectOption('#rs-conversation', coffeeConv);
    await page.waitForSelector('.rs-view[data-ready="true"]');
    await page.close();

    ext.holdReady = true; // the extension is slow to answer: only getState can paint the panel
    try {
      page = await harness.openPanel(ext, { initialState: cached });
      await page.waitForSelector('.rs-turn[data-status="done"] .rs-view[data-ready="true"]');
      assert.equal(await turnCount(page), 1);
      assert.match((await page.locator('#rs-image-name').textContent())!, /^coffee\.png/);
    } finally {
      ext.holdReady = false;
    }
    await ext.sendState();
    await page.selectOption('#rs-conversation', chelseaConv);
    await page.waitForFunction(() => document.querySelectorAll('.rs-log li.rs-turn[data-turn-id]').length === 4);
  });

  it('(f) recovers from a host crash mid-answer: history kept, notices shown, next ask works', async () => {
    const before = ext.hostStarts;
    ext.maxNewTokens = 300;
    await ask(page, 'Tell me a very long story about this cat.');
    await page.waitForFunction(
      () => (document.querySelector('.rs-turn[data-status="streaming"] .rs-answer')?.textContent ?? '').length > 0,
    );
    ext.killHost();
    await page.waitForSelector('.rs-turn[data-status="failed"]');
    await page.waitForSelector('.rs-notice[data-notice="crashed"]');
    await page.waitForSelector('.rs-notice[data-notice="restarted"]', { timeout: 60_000 });
    await ext.settled();
    assert.equal(ext.hostStarts, before + 1);
    assert.match(
      (await page.locator('.rs-turn[data-status="failed"] [role=alert]').textContent())!,
      /stopped while answering/,
    );
    assert.equal(await turnCount(page, 'done'), 3, 'the earlier turns are still shown');
    assert.equal(await page.locator('.rs-turn[data-status="failed"] button', { hasText: 'Retry' }).count(), 1);

    ext.maxNewTokens = 8;
    await page.locator('.rs-turn[data-status="failed"] button', { hasText: 'Retry' }).click();
    await page.waitForFunction(() => document.querySelectorAll('.rs-turn[data-status="done"]').length === 4);
    assert.equal(await turnCount(page, 'failed'), 0, 'Retry replaced the failed turn');
    assert.deepEqual(
      ext.forwardedHistories.at(-1)!.map((t) => t.user),
      ['What is in this picture?', 'And where is its nose?', 'Is it a cat?'],
    );
    assert.equal(ext.results.at(-1)!.prompt, 'Tell me a very long story about this cat.');
    assert.equal(ext.rejected.length, 0);
  });
  it('works from the keyboard alone, with every control labelled', async () => {
    const unlabelled = await page.evaluate(() =>
      Array.from(document.querySelectorAll('button, select, textarea, input'))
        .filter((e) => !(e as HTMLElement).hidden && (e as HTMLElement).offsetParent !== null)
        .filter((e) => {
          const label =
            e.getAttribute('aria-label') ??
            (e.id ? document.querySelector(`label[for="${e.id}"]`)?.textContent : '') ??
            e.closest('label')?.textContent ??
            '';
          return !(label || e.textContent || '').trim();
        })
        .map((e) => e.outerHTML.slice(0, 80)),
    );
    assert.deepEqual(unlabelled, []);
    // Tab from the top of the page to the prompt.
    await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
    let reached = false;
    for (let i = 0; i < 60 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement?.id === 'rs-prompt');
    }
    assert.ok(reached, 'Tab reaches the prompt');
    ext.maxNewTokens = 300;
    await page.keyboard.type('Describe the floor.');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('And the wall.');
    assert.equal(
      await page.locator('#rs-prompt').inputValue(),
      'Describe the floor.\nAnd the wall.',
      'Shift+Enter is a new line',
    );
    await page.keyboard.press('Enter');
    await page.waitForFunction(
      () => (document.querySelector('.rs-turn[data-status="streaming"] .rs-answer')?.textContent ?? '').length > 0,
    );
    await page.keyboard.press('Escape'); // stops, focus still in the prompt
    // The turn stopped in (c) is already there: wait for this one to join it, or Shift+Tab could reach the old Retry.
    await page.waitForFunction(() => document.querySelectorAll('.rs-turn[data-status="cancelled"]').length === 2);
    // Shift+Tab back from the prompt lands on the stopped turn's Retry; Enter retries it.
    ext.maxNewTokens = 8;
    await page.keyboard.press('Shift+Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Retry');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelectorAll('.rs-turn[data-status="done"]').length === 5);
    assert.equal(
      await turnCount(page, 'cancelled'),
      1,
      'only the turn stopped in (c) is left; the retried one was replaced',
    );
    assert.equal(ext.results.at(-1)!.prompt, 'Describe the floor.\nAnd the wall.');
  });

  it('a follow-up that overflows the context leaves the oldest turns out and says so; a too-long instruction has no Retry', async () => {
    const c = ext.active()!;
    const long = Array.from({ length: 12 }, (_, i) => ({
      id: `long${i}`,
      status: 'done' as const,
      prompt: `Turn ${i}: describe the cat's fur, whiskers and ears in detail. `.repeat(6),
      answer: `The cat in turn ${i} has striped grey fur and long white whiskers. `.repeat(6),
    }));
    c.turns.unshift(...long);
    await ext.sendState();
    const done = await turnCount(page, 'done');
    ext.maxNewTokens = 2;
    await ask(page, 'And its tail?');
    await page.waitForFunction((n) => document.querySelectorAll('.rs-turn[data-status="done"]').length === n + 1, done);
    const fed = ext.results.at(-1)!.history.length;
    const trimmed = historyOf(c).length - 1 - fed;
    assert.ok(trimmed > 0, 'some turns were left out');
    assert.equal(
      await page.locator('.rs-turn[data-status="done"]').last().locator('.rs-trimmed').textContent(),
      `The ${trimmed} oldest turn(s) were left out so that this one fits the model's context.`,
    );
    await page.fill('#rs-prompt', 'segment the cat '.repeat(3000));
    await page.keyboard.press('Enter');
    await page.waitForSelector('.rs-turn[data-status="failed"]');
    const failed = page.locator('.rs-turn[data-status="failed"]').last();
    assert.equal(
      await failed.locator('[role=alert]').textContent(),
      "This instruction does not fit in the model's context even without the earlier turns: shorten it.",
    );
    assert.equal(await failed.locator('button', { hasText: 'Retry' }).count(), 0, 'asking the same again cannot work');
  });
});

describe('chat panel webview in Chinese (Chromium, the real controller, a host without a model)', function () {
  this.timeout(120_000);
  let harness: WebviewHarness;
  let ext: ChatBridge;

  before(async () => {
    ext = new ChatBridge('zh-cn');
    [harness] = await Promise.all([startChatHarness(), ext.startHost(null)]);
  });
  after(async () => {
    await harness?.close();
    await ext?.dispose();
  });

  it('every control and the host error of a turn without a model are in Chinese', async () => {
    const page = await harness.openPanel(ext, { lang: 'zh-cn' });
    await page.locator('.rs-header button').click(); // the bridge's "file picker" picks chelsea.png
    await page.waitForFunction(() => document.querySelector('#rs-image-name')?.textContent?.startsWith('chelsea.png'));
    await ask(page, '猫在哪里？');
    await page.waitForSelector('.rs-turn[data-status="failed"] [role=alert]');
    const alert = (await page.locator('.rs-turn[data-status="failed"] [role=alert]').textContent())!;
    assert.match(alert, /^尚未加载模型/, alert);
    assert.equal(ext.notifications.at(-1)?.code, -32020, 'the notification offers to choose a model');
    // The UI's own words (each control's label, or its text); the host's detail inside the error message stays as the
    // host wrote it (English), by design, so message text is not checked here beyond its Chinese title above.
    const english = await page.evaluate(() =>
      Array.from(
        document.querySelectorAll('button, label, [aria-label], [placeholder], .rs-status, .rs-hint, .rs-empty'),
      )
        .map((e) => e.getAttribute('aria-label') ?? e.getAttribute('placeholder') ?? e.textContent ?? '')
        .map((x) => x.replace(/chelsea\.png|Reason Segment|\[SEG\]|Shift|Enter|Esc|猫在哪里？/g, ''))
        .filter((x) => /[A-Za-z]{3,}/.test(x)),
    );
    assert.deepEqual(english, []);
    await page.screenshot({ path: path.join(os.tmpdir(), 'reason-segment-screens', 'chat-zh-cn.png') });
    await page.close();
  });
});
