// The notebook renderer in a real Chromium (Debian's chromium via playwright-core), rendering the committed payload
// built from a real photograph. Pixels are read back from the canvases (getImageData) and from screenshots of the
// stage at 1:1 (what is actually on screen, with the overlay's CSS opacity composited by the browser).

import * as assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import sharp from 'sharp';
import { maskColor } from '../../src/overlay/colors';
import type { SegmentResult } from '../../src/protocol/result';
import { decodeRle } from '../../src/protocol/rle';
import { type Harness, ROOT, readCanvas, render, startHarness } from './harness';

const FIXTURE = path.join(ROOT, 'test/fixtures/payloads/astronaut-3masks.json');
const SHOTS = path.join(os.tmpdir(), 'reason-segment-screens');
const TOL = 2;

describe('notebook renderer in Chromium', function () {
  this.timeout(60_000);
  let h: Harness;
  let page: Page;
  let payload: SegmentResult;
  let photo: Buffer; // RGBA of the payload's PNG, decoded in node
  let masks: Uint8Array[];
  let W: number, H: number;

  before(async () => {
    payload = JSON.parse(readFileSync(FIXTURE, 'utf8'));
    W = payload.image.width;
    H = payload.image.height;
    photo = await sharp(Buffer.from(payload.image.data!, 'base64')).ensureAlpha().raw().toBuffer();
    masks = payload.masks.map((m) => decodeRle(m.rle));
    mkdirSync(SHOTS, { recursive: true });
    h = await startHarness();
  });
  after(async () => {
    await h?.close();
  });
  beforeEach(async () => {
    page = await h.newPage();
  });
  afterEach(async function () {
    const errors = await page.evaluate(() => (window as any).__errors as string[]);
    await page.close();
    assert.deepEqual(errors, [], `page errors in "${this.currentTest?.title}"`);
  });

  /** Screenshot of the stage (the three stacked canvases as composited on screen), RGBA at 1:1. */
  async function shot(name: string): Promise<Buffer> {
    await page.mouse.move(790, 890); // away from the masks, their rows and chips: no hover highlight in the picture
    const box = await page.locator('.rs-stage').boundingBox();
    assert.ok(box);
    assert.equal(Math.round(box.width), W, 'the stage is shown at natural size (1:1) for pixel comparisons');
    // Clip at the device pixel the stage starts on (its CSS box may start at a fractional y below the toolbar).
    const png = await page.screenshot({
      path: path.join(SHOTS, `${name}.png`),
      clip: { x: Math.round(box.x), y: Math.round(box.y), width: W, height: H },
    });
    const { data, info } = await sharp(png).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.width, W);
    assert.equal(info.height, H);
    return data;
  }

  /** Expected on-screen RGB of pixel p: the photo, blended with the colour of the visible mask over it. */
  function expected(
    p: number,
    opacity: number,
    visible: boolean[],
    inMask: (k: number, p: number) => boolean = (k, q) => masks[k][q] === 1,
  ): number[] {
    const rgb = [photo[p * 4], photo[p * 4 + 1], photo[p * 4 + 2]];
    for (let k = masks.length - 1; k >= 0; k--) {
      if (!visible[k] || !inMask(k, p)) continue;
      const c = maskColor(payload.masks[k].segIndex);
      return rgb.map((v, j) => v * (1 - opacity) + c[j] * opacity);
    }
    return rgb;
  }

  /** Compares every pixel; returns counts per class so tests can check that classes were not empty. */
  function compare(actual: Buffer, opacity: number, visible: boolean[], inMask?: (k: number, p: number) => boolean) {
    let inside = 0,
      outside = 0,
      worst = 0,
      worstAt = -1;
    for (let p = 0; p < W * H; p++) {
      const e = expected(p, opacity, visible, inMask);
      const covered = e[0] !== photo[p * 4] || e[1] !== photo[p * 4 + 1] || e[2] !== photo[p * 4 + 2];
      if (covered) inside++;
      else outside++;
      for (let j = 0; j < 3; j++) {
        const d = Math.abs(actual[p * 4 + j] - e[j]);
        if (d > worst) {
          worst = d;
          worstAt = p;
        }
      }
    }
    assert.ok(worst <= TOL, `pixel (${worstAt % W}, ${Math.floor(worstAt / W)}) is off by ${worst} levels`);
    return { inside, outside };
  }

  it('draws the photo, and each mask in its colour blended at the opacity, nowhere else (readback and screenshot)', async () => {
    await render(page, payload);
    const base = await readCanvas(page, '.rs-base');
    assert.equal(base.width, W);
    for (let i = 0; i < W * H * 4; i++)
      assert.ok(Math.abs(base.data[i] - photo[i]) <= TOL, `base canvas differs from the photo at byte ${i}`);

    // The overlay canvas holds exactly the masks: opaque colour inside, transparent outside.
    const ov = await readCanvas(page, '.rs-overlay');
    for (let p = 0; p < W * H; p++) {
      const k = masks.findIndex((m) => m[p] === 1);
      if (k < 0) assert.equal(ov.data[p * 4 + 3], 0, `overlay pixel ${p} outside all masks is not transparent`);
      else {
        const c = maskColor(payload.masks[k].segIndex);
        assert.deepEqual([...ov.data.subarray(p * 4, p * 4 + 4)], [...c, 255], `overlay pixel ${p} of mask ${k + 1}`);
      }
    }
    const opacity = Number(await page.locator('.rs-view').getAttribute('data-opacity'));
    assert.equal(opacity, 0.5);
    const counts = compare(await shot('a-fill-50'), opacity, [true, true, true]);
    assert.equal(
      counts.inside,
      payload.masks.reduce((s, m) => s + m.area, 0),
    );
    assert.ok(counts.outside > 0);
  });

  it('toggling a mask off restores the photo under it', async () => {
    await render(page, payload);
    await page.locator('.rs-mask[data-mask="1"] input[type=checkbox]').uncheck();
    assert.equal(
      await page.locator('.rs-mask[data-mask="1"] input[type=checkbox]').getAttribute('aria-label'),
      'Mask 2 of 3: hidden',
    );
    compare(await shot('b-mask2-off'), 0.5, [true, false, true]);
    await page.locator('.rs-mask[data-mask="1"] input[type=checkbox]').check();
    compare(await shot('b-mask2-on'), 0.5, [true, true, true]);
  });

  it('the opacity slider changes the blend proportionally', async () => {
    await render(page, payload);
    const slider = page.getByRole('slider', { name: 'Mask opacity' });
    const deltas: number[] = [];
    for (const pct of [20, 80]) {
      await slider.fill(String(pct));
      const a = pct / 100;
      const s = await shot(`c-opacity-${pct}`);
      compare(s, a, [true, true, true]);
      // Least-squares blend factor over every masked pixel: (shown - photo) = a * (colour - photo).
      let num = 0,
        den = 0;
      for (let p = 0; p < W * H; p++) {
        const k = masks.findIndex((m) => m[p] === 1);
        if (k < 0) continue;
        const c = maskColor(payload.masks[k].segIndex);
        for (let j = 0; j < 3; j++) {
          const d = c[j] - photo[p * 4 + j];
          num += (s[p * 4 + j] - photo[p * 4 + j]) * d;
          den += d * d;
        }
      }
      deltas.push(num / den);
    }
    assert.ok(
      Math.abs(deltas[0] - 0.2) < 0.01 && Math.abs(deltas[1] - 0.8) < 0.01,
      `fitted blend factors ${deltas.join(', ')}`,
    );
    const ratio = deltas[1] / deltas[0];
    assert.ok(Math.abs(ratio - 4) < 0.1, `blend at 80% vs 20% should be 4x, got ${ratio.toFixed(3)}`);
    // The "Save overlay PNG" file is the same blend, at natural size.
    await page.getByRole('button', { name: 'Save overlay PNG' }).click();
    await page.waitForFunction(() => (window as any).__messages.length > 0);
    const msg = (await page.evaluate(() => (window as any).__messages[0])) as {
      type: string;
      kind: string;
      data: string;
    };
    assert.equal(msg.type, 'save');
    assert.equal(msg.kind, 'overlay-png');
    const flat = await sharp(Buffer.from(msg.data, 'base64')).ensureAlpha().raw().toBuffer();
    compare(flat, 0.8, [true, true, true]);
  });

  it('outline mode colours only the boundary pixels of each mask', async () => {
    await render(page, payload);
    await page.getByRole('radio', { name: 'Outline' }).check();
    // Boundary, computed here independently: a mask pixel with an 8-neighbour outside the mask or the image.
    const boundary = (k: number, p: number): boolean => {
      const m = masks[k];
      if (!m[p]) return false;
      const x = p % W,
        y = Math.floor(p / W);
      for (let dy = -1; dy <= 1; dy++)
        for (let dx = -1; dx <= 1; dx++) {
          const X = x + dx,
            Y = y + dy;
          if (X < 0 || Y < 0 || X >= W || Y >= H || !m[Y * W + X]) return true;
        }
      return false;
    };
    const ov = await readCanvas(page, '.rs-overlay');
    let edge = 0;
    for (let p = 0; p < W * H; p++) {
      const k = masks.findIndex((_, j) => boundary(j, p));
      assert.equal(ov.data[p * 4 + 3], k >= 0 ? 255 : 0, `outline pixel (${p % W}, ${Math.floor(p / W)})`);
      if (k >= 0) edge++;
    }
    assert.ok(edge > 0 && edge < payload.masks.reduce((s, m) => s + m.area, 0) / 2);
    compare(await shot('d-outline'), 0.5, [true, true, true], boundary);
  });

  it('bounding-box mode draws each mask box', async () => {
    await render(page, payload);
    await page.getByRole('radio', { name: 'Bounding box' }).check();
    const ov = await readCanvas(page, '.rs-overlay');
    for (const m of payload.masks) {
      const [x, y, w, hh] = m.bbox;
      const at = (X: number, Y: number) => ov.data[(Y * W + X) * 4 + 3];
      assert.equal(at(x, y), 255);
      assert.equal(at(x + w - 1, y + hh - 1), 255);
      assert.equal(at(x + Math.floor(w / 2), y + Math.floor(hh / 2)), 0, 'box interior stays clear');
      if (x > 0) assert.equal(at(x - 1, y), 0);
    }
  });

  it('hovering a [SEG] chip highlights its mask, and hovering mask pixels highlights its chip', async () => {
    await render(page, payload);
    const view = page.locator('.rs-view');
    await page.locator('.rs-chip[data-mask="1"]').hover();
    assert.equal(await view.getAttribute('data-highlight'), '1');
    assert.match((await page.locator('.rs-mask[data-mask="1"]').getAttribute('class'))!, /rs-active/);
    const hl = await readCanvas(page, '.rs-highlight');
    let lit = 0;
    const [bx, by, bw, bh] = payload.masks[1].bbox;
    for (let p = 0; p < W * H; p++) {
      if (!hl.data[p * 4 + 3]) continue;
      lit++;
      assert.equal(masks[1][p], 1, 'the highlight stays inside the hovered mask');
    }
    assert.ok(lit > 0);
    assert.ok(
      hl.data[(by * W + bx) * 4 + 3] > 0 && hl.data[((by + bh - 1) * W + bx + bw - 1) * 4 + 3] > 0,
      'the mask edge is lit',
    );

    // Pointer over the disc's pixels (mask 1): its chip lights up.
    const box = (await page.locator('.rs-stage').boundingBox())!;
    const { cx, cy } = { cx: 96, cy: 96 };
    await page.mouse.move(box.x + ((cx + 0.5) * box.width) / W, box.y + ((cy + 0.5) * box.height) / H);
    assert.equal(await view.getAttribute('data-highlight'), '0');
    assert.match((await page.locator('.rs-chip[data-mask="0"]').getAttribute('class'))!, /rs-active/);
    assert.doesNotMatch((await page.locator('.rs-chip[data-mask="1"]').getAttribute('class'))!, /rs-active/);
    // Off every mask: nothing is highlighted.
    await page.mouse.move(box.x + 2.5, box.y + box.height - 2.5);
    assert.equal(await view.getAttribute('data-highlight'), '-1');
    const cleared = await readCanvas(page, '.rs-highlight');
    assert.ok(!cleared.data.some((v, i) => i % 4 === 3 && v !== 0), 'the highlight canvas is cleared');
  });

  it('is keyboard-operable: Tab reaches the mask toggles, Space and Enter toggle them', async () => {
    await render(page, payload);
    // Tab from the start of the page until the first mask checkbox has focus.
    const seen: string[] = [];
    for (let i = 0; i < 30; i++) {
      await page.keyboard.press('Tab');
      const label = await page.evaluate(() => {
        const a = document.activeElement as HTMLElement;
        return (
          a.getAttribute('aria-label') ?? (a as HTMLInputElement).labels?.[0]?.textContent ?? a.textContent ?? a.tagName
        );
      });
      seen.push(label);
      if (label.startsWith('Mask 1 of 3')) break;
    }
    assert.equal(seen[seen.length - 1], 'Mask 1 of 3: visible', `Tab order: ${seen.join(' | ')}`);
    assert.equal(seen[0], 'Fill', 'the view controls come first');
    assert.ok(
      seen.indexOf('Mask opacity') > 0 && seen.findIndex((s) => s.startsWith('[SEG] 1')) > seen.indexOf('Mask opacity'),
    );
    await page.keyboard.press('Space');
    const active = page.locator(':focus');
    assert.equal(await active.getAttribute('aria-label'), 'Mask 1 of 3: hidden');
    assert.equal(await active.isChecked(), false);
    let ov = await readCanvas(page, '.rs-overlay');
    assert.ok(
      masks[0].every((v, p) => !v || ov.data[p * 4 + 3] === 0),
      'mask 1 is no longer drawn',
    );
    await page.keyboard.press('Enter');
    assert.equal(await active.getAttribute('aria-label'), 'Mask 1 of 3: visible');
    ov = await readCanvas(page, '.rs-overlay');
    assert.ok(
      masks[0].every((v, p) => !v || ov.data[p * 4 + 3] === 255),
      'mask 1 is drawn again',
    );
  });

  it('saves through renderer messaging, and offers download links without it', async () => {
    await render(page, payload);
    await page.getByRole('button', { name: 'Save COCO JSON' }).click();
    await page.getByRole('button', { name: 'Save mask 3 as PNG' }).click();
    const msgs = (await page.evaluate(() => (window as any).__messages)) as any[];
    assert.deepEqual(
      msgs.map((m) => [m.type, m.kind, m.fileName, m.outputId]),
      [
        ['save', 'coco-json', 'astronaut-masks.json', 'cell1-output1'],
        ['save', 'mask-png', 'astronaut-mask3.png', 'cell1-output1'],
      ],
    );
    const coco = JSON.parse(msgs[0].data);
    assert.equal(coco.annotations.length, 3);
    assert.deepEqual(coco.annotations[1].segmentation, payload.masks[1].rle);
    const maskPng = await sharp(Buffer.from(msgs[1].data, 'base64')).extractChannel(0).raw().toBuffer();
    assert.ok(masks[2].every((v, p) => (v ? 255 : 0) === maskPng[p]));

    await render(page, payload, { messaging: false });
    await page.getByRole('button', { name: 'Save COCO JSON' }).click();
    const link = page.locator('.rs-downloads a');
    assert.equal(await link.getAttribute('download'), 'astronaut-masks.json');
    const href = (await link.getAttribute('href'))!;
    assert.match(href, /^data:application\/json;charset=utf-8,/);
    assert.equal(JSON.parse(decodeURIComponent(href.slice(href.indexOf(',') + 1))).annotations.length, 3);
    assert.equal(await page.evaluate(() => (window as any).__messages.length), 2, 'nothing posted without messaging');
  });

  it('follows the VS Code theme through its CSS variables', async () => {
    await render(page, payload);
    const colours = () =>
      page.evaluate(() => [
        getComputedStyle(document.querySelector('.rs-view')!).color,
        getComputedStyle(document.querySelector('.rs-stage')!).backgroundColor,
      ]);
    assert.deepEqual(await colours(), ['rgb(59, 59, 59)', 'rgb(255, 255, 255)']);
    await page.evaluate(() => {
      document.documentElement.style.setProperty('--vscode-foreground', '#cccccc');
      document.documentElement.style.setProperty('--vscode-editor-background', '#1f1f1f');
    });
    assert.deepEqual(await colours(), ['rgb(204, 204, 204)', 'rgb(31, 31, 31)']);
  });

  it('shows a message box for broken payloads and unknown formats instead of throwing', async () => {
    const cases: [unknown, RegExp][] = [
      ['{"format": "reason-segment-result/1", "text": ', /not valid JSON/],
      [
        JSON.parse(readFileSync(path.join(ROOT, 'test/fixtures/payloads/unknown-format.json'), 'utf8')),
        /Unknown result format[\s\S]*reason-segment-result\/99/,
      ],
      [{ ...payload, masks: 'nope' }, /"masks"/],
      [{ ...payload, image: { width: 0 } }, /"image"/],
      [[1, 2], /array/],
    ];
    for (const [p, re] of cases) {
      await render(page, p, { waitImage: false });
      const box = page.getByRole('alert');
      assert.equal(await box.count(), 1);
      assert.match((await box.textContent())!, re);
      assert.equal(await page.locator('canvas').count(), 0);
    }
    // A mask whose RLE string is corrupt: the rest still draws, and the problem is reported.
    const broken = structuredClone(payload);
    broken.masks[2].rle.counts = '\u0001\u0002';
    await render(page, broken);
    assert.match((await page.getByRole('alert').textContent())!, /Mask 3/);
    assert.equal(await page.locator('.rs-mask[data-mask="2"] input').isDisabled(), true);
    await page.screenshot({ path: path.join(SHOTS, 'g-broken-mask.png') });
  });

  it('speaks the display language: the overlay controls in Simplified Chinese (zh-CN)', async () => {
    await page.evaluate(() => Object.defineProperty(navigator, 'language', { get: () => 'zh-CN' }));
    await render(page, payload);
    const text = (sel: string) => page.locator(sel).allTextContents();
    assert.deepEqual(
      (await text('.rs-view legend')).map((s) => s.trim()),
      ['视图'],
    );
    const all = (await page.locator('.rs-view').innerText()).replace(/\s+/g, ' ');
    for (const zh of ['填充', '轮廓', '边界框', '不透明度', '掩码 1', '掩码 3', '保存 COCO JSON', '保存叠加图 PNG']) {
      assert.ok(all.includes(zh), `${zh} missing from: ${all.slice(0, 300)}`);
    }
    for (const en of ['Fill', 'Outline', 'Bounding box', 'Opacity', 'Mask 1', 'Save']) {
      assert.ok(!new RegExp(`\\b${en}\\b`).test(all), `${en} left in English: ${all.slice(0, 300)}`);
    }
    assert.equal(await page.locator('.rs-view input[type=range]').getAttribute('aria-label'), '掩码不透明度');
  });
});

// Keep the screenshot folder's location discoverable when debugging.
if (process.env.RS_PRINT_SHOTS)
  writeFileSync(path.join(SHOTS, 'README'), 'screenshots from test/browser/renderer.test.ts\n');
