// How the shared overlay behaves on a 12 MP photo with several masks, in Chromium (a benchmark that prints numbers,
// not a timed test). Builds a 4000x3000 JPEG from the committed fixture photo and five masks (discs, a rectangle,
// thresholded regions of the photo) encoded with the project's RLE encoder, renders it through dist/renderer.js,
// and times: first render (RLE decode + DOM), image ready, a toggle, the first and a repeated mode switch, an
// opacity change, a hover.
//
// Run: npx tsc -p . && node esbuild.mjs && node out/test/browser/bench-12mp.js

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import type { ResultMask, SegmentResult } from '../../src/protocol/result';
import { encodeMask, rleArea, rleBbox } from '../../src/protocol/rle';
import { ROOT, startHarness } from './harness';

const W = 4000,
  H = 3000;

async function main(): Promise<void> {
  const small: SegmentResult = JSON.parse(
    readFileSync(path.join(ROOT, 'test/fixtures/payloads/astronaut-3masks.json'), 'utf8'),
  );
  const img = sharp(Buffer.from(small.image.data!, 'base64')).resize(W, H, { fit: 'fill' });
  const jpeg = await img.clone().jpeg({ quality: 88 }).toBuffer();
  const rgb = await img.clone().removeAlpha().raw().toBuffer();
  const shapes: ((x: number, y: number, i: number) => boolean)[] = [
    (x, y) => (x - 1200) ** 2 + (y - 1100) ** 2 < 700 ** 2,
    (x, y) => x >= 2400 && x < 3700 && y >= 1600 && y < 2800,
    (_x, _y, i) => rgb[i * 3] + rgb[i * 3 + 1] + rgb[i * 3 + 2] > 600,
    (_x, y, i) => y > 1800 && rgb[i * 3 + 2] > rgb[i * 3] + 20,
    (x, y) => (x - 3000) ** 2 / 4 + (y - 600) ** 2 < 450 ** 2,
  ];
  const masks: ResultMask[] = [];
  const t = Date.now();
  for (const [k, f] of shapes.entries()) {
    const m = new Uint8Array(W * H);
    for (let y = 0, i = 0; y < H; y++) for (let x = 0; x < W; x++, i++) if (f(x, y, i)) m[i] = 1;
    const rle = encodeMask(m, H, W);
    masks.push({ segIndex: k, tokenIndex: -1, rle, bbox: rleBbox(rle), area: rleArea(rle), score: 0.9 });
  }
  console.log(
    `built 5 masks in ${Date.now() - t} ms; RLE sizes ${masks.map((m) => m.rle.counts.length).join(', ')} chars`,
  );
  const payload: SegmentResult = {
    ...small,
    text: 'One [SEG], two [SEG], three [SEG], four [SEG] and five [SEG].',
    image: {
      ...small.image,
      width: W,
      height: H,
      data: jpeg.toString('base64'),
      mimeType: 'image/jpeg',
      source: 'big.jpg',
    },
    masks,
  };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rs-bench-'));
  writeFileSync(path.join(dir, 'big.json'), JSON.stringify(payload));
  const h = await startHarness({ '/big/': dir });
  try {
    const page = await h.newPage();
    const r = await page.evaluate(async () => {
      const text = await (await fetch('/big/big.json')).text();
      const frame = () => new Promise((res) => requestAnimationFrame(() => requestAnimationFrame(res)));
      const out: Record<string, number> = {};
      let t0 = performance.now();
      await (window as any).renderPayload(text);
      out.renderSync = performance.now() - t0;
      while (!document.querySelector('.rs-view[data-ready="true"]')) await new Promise((res) => setTimeout(res, 5));
      out.imageReady = performance.now() - t0;
      await frame();
      const cb = document.querySelector('.rs-mask[data-mask="2"] input') as HTMLInputElement;
      t0 = performance.now();
      cb.click();
      out.toggleOff = performance.now() - t0;
      await frame();
      out.toggleOffFrame = performance.now() - t0;
      t0 = performance.now();
      cb.click();
      out.toggleOn = performance.now() - t0;
      await frame();
      const radio = (v: string) => document.querySelector(`input[type=radio][value="${v}"]`) as HTMLInputElement;
      t0 = performance.now();
      radio('outline').click();
      out.outlineFirst = performance.now() - t0;
      t0 = performance.now();
      radio('box').click();
      out.box = performance.now() - t0;
      t0 = performance.now();
      radio('outline').click();
      out.outlineAgain = performance.now() - t0;
      t0 = performance.now();
      radio('fill').click();
      out.fillAgain = performance.now() - t0;
      const slider = document.querySelector('input[type=range]') as HTMLInputElement;
      t0 = performance.now();
      slider.value = '80';
      slider.dispatchEvent(new Event('input'));
      out.opacity = performance.now() - t0;
      const chip = document.querySelector('.rs-chip[data-mask="0"]') as HTMLElement;
      t0 = performance.now();
      chip.dispatchEvent(new PointerEvent('pointerenter'));
      out.hoverFirst = performance.now() - t0;
      chip.dispatchEvent(new PointerEvent('pointerleave'));
      t0 = performance.now();
      chip.dispatchEvent(new PointerEvent('pointerenter'));
      out.hoverAgain = performance.now() - t0;
      return out;
    });
    console.log(`4000x3000 JPEG (${(jpeg.length / 1e6).toFixed(1)} MB), 5 masks, Chromium (software rendering):`);
    for (const [k, v] of Object.entries(r)) console.log(`  ${k.padEnd(16)} ${v.toFixed(1)} ms`);
  } finally {
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
