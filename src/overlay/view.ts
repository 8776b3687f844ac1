// The one mask-drawing view shared by the notebook renderer and the chat panel (DOM only).
//
// Three stacked canvases at the image's natural resolution, scaled by CSS to the container width:
//   base      - the photo, drawn once;
//   overlay   - the visible masks (fill / outline / bbox), drawn from cached per-mask sprites; its CSS opacity is the
//               opacity slider, so moving the slider repaints nothing in script;
//   highlight - the hovered (or pinned) mask's outline, opaque, redrawn on hover only.
// Each mask's RLE is decoded once (MaskLayer); sprites are built on first use and cached.

import type { ResultMask, SegmentResult } from '../protocol/result';
import { cssColor, maskColor, type Rgb, textOn } from './colors';
import { hitTest, MaskLayer, outlineThickness, type Sprite } from './layers';
import { createRefineMode, type RefineCallback, type RefineMode, refineKeys } from './refine';
import { ensureStyles } from './styles';

export type ViewMode = 'fill' | 'outline' | 'box';

// The shape of a saved file is the protocol's, so the renderer and the chat panel post the same thing.
import type { SaveFile } from '../protocol/chat';
import { domHelpers } from './dom';

export type { SaveFile };

export interface ViewOptions {
  opacity?: number;
  mode?: ViewMode;
  /** Shows the save buttons; called with the file to save. */
  save?: (file: SaveFile) => void | Promise<void>;
  /** Style nonce for a webview with a strict CSP. */
  styleNonce?: string;
  /** UI text in the user's language (English keys, {0} arguments); English when absent. */
  t?: Translate;
  /**
   * Enables refining a mask by clicking (a Refine button per mask): called with the result's id, the mask index and
   * the prompts in image pixels; resolves with the new mask (the host's reasonSegment/refine answer's `mask`), which
   * the view then shows, saves and exports in place of the old one.
   */
  refine?: RefineCallback;
  /** Called whenever the mask shown for `maskIndex` changes (a refine answered, an undo or a redo), with that mask. */
  onMaskChange?: (maskIndex: number, mask: ResultMask) => void;
}

export type Translate = (message: string, ...args: (string | number)[]) => string;
const english: Translate = (m, ...a) =>
  m.replace(/\{(\d+)\}/g, (x, i: string) => (a[Number(i)] !== undefined ? String(a[Number(i)]) : x));

export interface SegmentView {
  readonly root: HTMLElement;
  /** Resolves when the image is drawn (or failed to load: see the note in the view). */
  readonly ready: Promise<void>;
  setVisible(maskIndex: number, visible: boolean): void;
  isVisible(maskIndex: number): boolean;
  setOpacity(opacity: number): void;
  setMode(mode: ViewMode): void;
  /** Highlights mask `maskIndex` (-1 for none), as hovering it does. */
  highlight(maskIndex: number): void;
  /** Photo with the overlay blended at the current opacity, at natural resolution (what "Save overlay PNG" writes). */
  flatten(): HTMLCanvasElement;
  /** Shows `mask` in place of mask `maskIndex` (a refined mask); Save and COCO export write it from then on. */
  replaceMask(maskIndex: number, mask: ResultMask): void;
  /** The refine mode (when `options.refine` was given). */
  readonly refine?: RefineMode;
  dispose(): void;
}

const SEG = '[SEG]';
let viewCounter = 0;

export function createSegmentView(
  container: HTMLElement,
  result: SegmentResult,
  options: ViewOptions = {},
): SegmentView {
  const doc = container.ownerDocument;
  const t = options.t ?? english;
  ensureStyles(doc, options.styleNonce);
  const uid = `rs${++viewCounter}`;
  const abort = new AbortController();
  const { on, el } = domHelpers(doc, abort.signal);

  const W = result.image.width;
  const H = result.image.height;
  const masks = result.masks.slice();
  const n = masks.length;
  const thickness = outlineThickness(W, H);

  const root = el('div', 'rs-view');
  root.setAttribute('role', 'group');
  root.setAttribute('aria-label', t('Segmentation result: {0} mask(s)', n));

  // Decode every mask once. A mask that fails to decode is listed as broken and never drawn.
  const layers: (MaskLayer | null)[] = [];
  const problems: string[] = [];
  for (let i = 0; i < n; i++) {
    try {
      layers.push(new MaskLayer(masks[i], W, H));
    } catch (e) {
      layers.push(null);
      problems.push(`${t('Mask {0}', i + 1)}: ${(e as Error).message}`);
    }
  }
  const colors: Rgb[] = masks.map((m) => maskColor(m.segIndex));
  const visible: boolean[] = layers.map((l) => l !== null);
  let opacity = clamp01(options.opacity ?? 0.5);
  let mode: ViewMode = options.mode ?? 'fill';
  let hovered = -1;
  let pinned = -1;

  // ---- toolbar ----
  const toolbar = el('div', 'rs-toolbar');
  const modeSet = el('fieldset');
  modeSet.appendChild(el('legend', undefined, t('View')));
  const modeInputs = new Map<ViewMode, HTMLInputElement>();
  for (const [m, label] of [
    ['fill', 'Fill'],
    ['outline', 'Outline'],
    ['box', 'Bounding box'],
  ] as const) {
    const lab = el('label');
    const input = el('input');
    input.type = 'radio';
    input.name = `${uid}-mode`;
    input.value = m;
    input.checked = m === mode;
    on(input, 'change', () => input.checked && setMode(m));
    modeInputs.set(m, input);
    lab.append(input, doc.createTextNode(t(label)));
    modeSet.appendChild(lab);
  }
  const opacityLabel = el('label', 'rs-opacity');
  const opacityInput = el('input');
  opacityInput.type = 'range';
  opacityInput.min = '0';
  opacityInput.max = '100';
  opacityInput.step = '1';
  opacityInput.value = String(Math.round(opacity * 100));
  opacityInput.setAttribute('aria-label', t('Mask opacity'));
  const opacityValue = el('span', 'rs-meta');
  opacityLabel.append(doc.createTextNode(t('Opacity')), opacityInput, opacityValue);
  on(opacityInput, 'input', () => setOpacity(Number(opacityInput.value) / 100));
  toolbar.append(modeSet, opacityLabel);

  // ---- stage ----
  const stage = el('div', 'rs-stage');
  stage.style.aspectRatio = `${W} / ${H}`;
  stage.style.maxWidth = `${W}px`;
  const mkCanvas = (cls: string) => {
    const c = el('canvas', cls);
    c.width = W;
    c.height = H;
    return c;
  };
  const base = mkCanvas('rs-base');
  const overlay = mkCanvas('rs-overlay');
  const hl = mkCanvas('rs-highlight');
  base.setAttribute('role', 'img');
  base.setAttribute(
    'aria-label',
    result.image.source ? t('Image {0} with masks', result.image.source) : t('Image with masks'),
  );
  overlay.setAttribute('aria-hidden', 'true');
  hl.setAttribute('aria-hidden', 'true');
  stage.append(base, overlay, hl);
  const bctx = base.getContext('2d')!;
  const octx = overlay.getContext('2d')!;
  const hctx = hl.getContext('2d')!;
  const notes = el('div');

  // ---- explanation with [SEG] chips ----
  const text = el('p', 'rs-text');
  const chips: HTMLElement[][] = masks.map(() => []);
  const bySeg = new Map<number, number>();
  masks.forEach((m, i) => {
    if (!bySeg.has(m.segIndex)) bySeg.set(m.segIndex, i);
  });
  const parts = result.text.split(SEG);
  parts.forEach((part, k) => {
    if (part) text.appendChild(doc.createTextNode(part));
    if (k === parts.length - 1) return;
    const i = bySeg.get(k);
    if (i === undefined) {
      const span = el('span', 'rs-chip rs-nomask', SEG);
      span.title = t('No mask for this [SEG]');
      text.appendChild(span);
      return;
    }
    const chip = el('button', 'rs-chip', SEG);
    chip.type = 'button';
    chip.dataset.mask = String(i);
    chip.appendChild(el('sup', undefined, String(i + 1)));
    chip.style.background = cssColor(colors[i]);
    chip.style.color = textOn(colors[i]);
    chip.setAttribute('aria-pressed', 'false');
    on(chip, 'pointerenter', () => setHover(i));
    on(chip, 'pointerleave', () => setHover(-1));
    on(chip, 'focus', () => setHover(i));
    on(chip, 'blur', () => setHover(-1));
    on(chip, 'click', () => {
      pinned = pinned === i ? -1 : i;
      refreshHighlight();
    });
    chips[i].push(chip);
    text.appendChild(chip);
  });

  // ---- mask list ----
  const list = el('ul', 'rs-masks');
  list.setAttribute('aria-label', t('Masks'));
  const rows: HTMLLIElement[] = [];
  const metas: HTMLElement[] = [];
  const refineButtons: HTMLButtonElement[] = [];
  const boxes: HTMLInputElement[] = [];
  masks.forEach((_, i) => {
    const li = el('li', 'rs-mask');
    li.dataset.mask = String(i);
    const label = el('label');
    const cb = el('input');
    cb.type = 'checkbox';
    cb.id = `${uid}-mask-${i}`;
    cb.checked = visible[i];
    cb.disabled = layers[i] === null;
    const swatch = el('span', 'rs-swatch');
    swatch.style.background = cssColor(colors[i]);
    const meta = el('span', 'rs-meta');
    metas.push(meta);
    label.append(cb, swatch, doc.createTextNode(t('Mask {0}', i + 1)), meta);
    on(cb, 'change', () => setVisible(i, cb.checked));
    on(cb, 'keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        setVisible(i, !visible[i]);
      }
    });
    on(li, 'pointerenter', () => setHover(i));
    on(li, 'pointerleave', () => setHover(-1));
    li.appendChild(label);
    if (options.refine && layers[i]) {
      const b = el('button', 'rs-button', t('Refine'));
      b.type = 'button';
      b.setAttribute('aria-label', t('Refine mask {0} by clicking', i + 1));
      b.setAttribute('aria-pressed', 'false');
      on(b, 'click', () => {
        if (refine?.active === i) refine.stop();
        else refine?.start(i);
        for (const [k, rb] of refineButtons.entries()) rb.setAttribute('aria-pressed', String(refine?.active === k));
      });
      refineButtons[i] = b;
      li.appendChild(b);
    }
    if (options.save && layers[i]) {
      const b = el('button', 'rs-button', t('Save mask PNG'));
      b.type = 'button';
      b.setAttribute('aria-label', t('Save mask {0} as PNG', i + 1));
      on(b, 'click', () => void options.save!(maskPng(i)));
      li.appendChild(b);
    }
    rows.push(li);
    boxes.push(cb);
    list.appendChild(li);
  });

  if (options.save) {
    const save = options.save;
    const coco = el('button', 'rs-button', t('Save COCO JSON'));
    coco.type = 'button';
    on(coco, 'click', () => void save(cocoJson()));
    const ov = el('button', 'rs-button', t('Save overlay PNG'));
    ov.type = 'button';
    on(ov, 'click', () => void overlayPng().then(save));
    toolbar.append(coco, ov);
  }

  if (problems.length) notes.appendChild(errorBox(doc, t('Some masks could not be drawn'), problems.join('\n')));
  const refine = options.refine
    ? createRefineMode({
        doc,
        stage,
        width: W,
        height: H,
        resultId: result.resultId,
        t,
        on,
        el,
        current: (i) => masks[i],
        show: replaceMask,
        refine: options.refine,
      })
    : undefined;
  if (refine) on(root, 'keydown', refineKeys(refine));
  root.append(toolbar, ...(refine ? [refine.bar] : []), stage, notes, text, list);
  container.appendChild(root);

  // ---- stage pointer: hover a mask's pixels ----
  on(stage, 'pointermove', (e) => {
    const r = stage.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return;
    const x = Math.floor(((e.clientX - r.left) * W) / r.width);
    const y = Math.floor(((e.clientY - r.top) * H) / r.height);
    setHover(
      hitTest(
        layers.map((l) => l ?? EMPTY),
        visible,
        x,
        y,
      ),
    );
  });
  on(stage, 'pointerleave', () => setHover(-1));

  // ---- drawing ----
  const sprites = new Map<string, HTMLCanvasElement>();
  function sprite(i: number, kind: 'fill' | 'outline' | 'hl'): HTMLCanvasElement | null {
    const layer = layers[i];
    if (!layer || layer.empty) return null;
    const key = `${kind}:${i}`;
    let c = sprites.get(key);
    if (!c) {
      const s: Sprite =
        kind === 'fill'
          ? layer.fillSprite(colors[i])
          : layer.outlineSprite(colors[i], kind === 'outline' ? thickness : thickness * 2 + 1);
      c = doc.createElement('canvas');
      c.width = s.w;
      c.height = s.h;
      c.getContext('2d')!.putImageData(new ImageData(s.data as Uint8ClampedArray<ArrayBuffer>, s.w, s.h), 0, 0);
      sprites.set(key, c);
    }
    return c;
  }

  function drawOverlay(): void {
    octx.clearRect(0, 0, W, H);
    for (let i = 0; i < n; i++) {
      const layer = layers[i];
      if (!visible[i] || !layer || layer.empty) continue;
      const [x, y, w, h] = layer.box;
      if (mode === 'box') {
        const t = Math.min(thickness, Math.ceil(w / 2), Math.ceil(h / 2));
        octx.fillStyle = cssColor(colors[i]);
        octx.fillRect(x, y, w, t);
        octx.fillRect(x, y + h - t, w, t);
        octx.fillRect(x, y, t, h);
        octx.fillRect(x + w - t, y, t, h);
      } else {
        octx.drawImage(sprite(i, mode === 'fill' ? 'fill' : 'outline')!, x, y);
      }
    }
    root.dataset.mode = mode;
  }

  let hlDrawn: readonly number[] | null = null;
  function refreshHighlight(): void {
    const i = hovered >= 0 ? hovered : pinned;
    if (hlDrawn) hctx.clearRect(hlDrawn[0], hlDrawn[1], hlDrawn[2], hlDrawn[3]);
    hlDrawn = null;
    const s = i >= 0 ? sprite(i, 'hl') : null;
    if (s && layers[i]) {
      const [x, y] = layers[i]!.box;
      hctx.drawImage(s, x, y);
      hlDrawn = [x, y, s.width, s.height];
    }
    root.dataset.highlight = String(i);
    for (let k = 0; k < n; k++) {
      rows[k].classList.toggle('rs-active', k === i);
      for (const c of chips[k]) {
        c.classList.toggle('rs-active', k === i);
        c.setAttribute('aria-pressed', String(k === pinned));
      }
    }
  }

  function setHover(i: number): void {
    if (i === hovered) return;
    hovered = i;
    refreshHighlight();
  }

  function updateLabels(i: number): void {
    const state = layers[i] === null ? t('not decodable') : visible[i] ? t('visible') : t('hidden');
    boxes[i].setAttribute('aria-label', t('Mask {0} of {1}: {2}', i + 1, n, state));
    boxes[i].checked = visible[i];
    for (const c of chips[i]) {
      c.classList.toggle('rs-off', !visible[i]);
      c.setAttribute('aria-label', t('[SEG] {0}: mask {0}, {1}', i + 1, state));
    }
  }

  function describe(i: number): void {
    const m = masks[i];
    const parts =
      layers[i] === null
        ? ['could not be decoded']
        : [`${m.area} px`, `box ${m.bbox.map((v) => Math.round(v)).join(', ')}`];
    if (layers[i] !== null && typeof m.score === 'number') parts.push(t('predicted IoU {0}', m.score.toFixed(2)));
    if (m.refined) parts.push(t('refined ({0} point(s){1})', m.refined.points.length, m.refined.box ? t(', box') : ''));
    metas[i].textContent = parts.join(' · ');
    rows[i].dataset.refined = String(Boolean(m.refined));
    metas[i].title = t(
      "SAM's predicted IoU is the mask decoder's own estimate of the mask's quality (its confidence).",
    );
  }

  function replaceMask(i: number, mask: ResultMask): void {
    if (i < 0 || i >= n) return;
    layers[i] = new MaskLayer(mask, W, H);
    masks[i] = mask;
    for (const kind of ['fill', 'outline', 'hl']) sprites.delete(`${kind}:${i}`);
    describe(i);
    drawOverlay();
    refreshHighlight();
    options.onMaskChange?.(i, mask);
  }

  function setVisible(i: number, v: boolean): void {
    if (i < 0 || i >= n || !layers[i] || visible[i] === v) {
      if (boxes[i]) boxes[i].checked = visible[i];
      return;
    }
    visible[i] = v;
    updateLabels(i);
    drawOverlay();
  }

  function setOpacity(a: number): void {
    opacity = clamp01(a);
    overlay.style.opacity = String(opacity);
    const pct = Math.round(opacity * 100);
    opacityInput.value = String(pct);
    opacityInput.setAttribute('aria-valuetext', `${pct}%`);
    opacityValue.textContent = `${pct}%`;
    root.dataset.opacity = String(opacity);
  }

  function setMode(m: ViewMode): void {
    if (!modeInputs.has(m)) return;
    mode = m;
    modeInputs.get(m)!.checked = true;
    drawOverlay();
  }

  function flatten(): HTMLCanvasElement {
    const c = doc.createElement('canvas');
    c.width = W;
    c.height = H;
    const ctx = c.getContext('2d')!;
    ctx.drawImage(base, 0, 0);
    ctx.globalAlpha = opacity;
    ctx.drawImage(overlay, 0, 0);
    return c;
  }

  // ---- saving ----
  const stem = fileStem(result.image.source);
  function maskPng(i: number): SaveFile {
    const m = masks[i];
    let data = m.png;
    if (!data) {
      const c = doc.createElement('canvas');
      c.width = W;
      c.height = H;
      const ctx = c.getContext('2d')!;
      ctx.fillStyle = '#000';
      ctx.fillRect(0, 0, W, H);
      const layer = layers[i]!;
      const s = layer.fillSprite([255, 255, 255]);
      const tmp = doc.createElement('canvas');
      tmp.width = s.w;
      tmp.height = s.h;
      tmp.getContext('2d')!.putImageData(new ImageData(s.data as Uint8ClampedArray<ArrayBuffer>, s.w, s.h), 0, 0);
      ctx.drawImage(tmp, s.x, s.y);
      data = c.toDataURL('image/png').replace(/^data:[^,]*,/, '');
    }
    return {
      kind: 'mask-png',
      fileName: `${stem}-mask${i + 1}.png`,
      mimeType: 'image/png',
      encoding: 'base64',
      data,
      segIndex: m.segIndex,
    };
  }
  function cocoJson(): SaveFile {
    const doc = {
      info: { description: 'Reason Segment result', format: result.format, prompt: result.prompt, text: result.text },
      images: [{ id: 1, width: W, height: H, file_name: result.image.source ?? `${stem}.png` }],
      categories: [{ id: 1, name: 'segment' }],
      annotations: masks.map((m, i) => ({
        id: i + 1,
        image_id: 1,
        category_id: 1,
        segmentation: m.rle,
        area: m.area,
        bbox: m.bbox,
        iscrowd: 0,
        score: m.score,
        seg_index: m.segIndex,
        ...(m.refined ? { refined: m.refined } : {}),
      })),
    };
    return {
      kind: 'coco-json',
      fileName: `${stem}-masks.json`,
      mimeType: 'application/json',
      encoding: 'utf8',
      data: JSON.stringify(doc, null, 1),
    };
  }
  async function overlayPng(): Promise<SaveFile> {
    await ready;
    const data = flatten()
      .toDataURL('image/png')
      .replace(/^data:[^,]*,/, '');
    return { kind: 'overlay-png', fileName: `${stem}-overlay.png`, mimeType: 'image/png', encoding: 'base64', data };
  }

  // ---- first paint ----
  for (let i = 0; i < n; i++) {
    updateLabels(i);
    describe(i);
  }
  setOpacity(opacity);
  drawOverlay();
  refreshHighlight();

  const ready = loadImage(result, abort.signal).then(
    (bitmap) => {
      if (!bitmap) {
        notes.appendChild(
          el('p', 'rs-note', t('The image is not embedded in this result; masks are shown on a blank background.')),
        );
        return;
      }
      if (bitmap.width !== W || bitmap.height !== H) {
        notes.appendChild(
          el(
            'p',
            'rs-note',
            t(
              'The embedded image is {0}x{1}; the masks are {2}x{3}. It is stretched to fit.',
              bitmap.width,
              bitmap.height,
              W,
              H,
            ),
          ),
        );
      }
      bctx.drawImage(bitmap, 0, 0, W, H);
      bitmap.close();
      root.dataset.ready = 'true';
    },
    (e: Error) => {
      if (abort.signal.aborted) return;
      notes.appendChild(errorBox(doc, t('The image could not be decoded'), e.message));
    },
  );

  return {
    root,
    ready,
    setVisible,
    isVisible: (i) => !!visible[i],
    setOpacity,
    setMode,
    highlight: (i) => {
      pinned = i;
      refreshHighlight();
    },
    flatten,
    replaceMask,
    refine,
    dispose() {
      abort.abort();
      for (const c of sprites.values()) c.width = c.height = 0;
      sprites.clear();
      for (const c of [base, overlay, hl]) c.width = c.height = 0;
      root.remove();
    },
  };
}

const EMPTY = { contains: () => false } as unknown as MaskLayer;

/** A message box (role=alert) for a payload or image that cannot be shown. */
export function errorBox(doc: Document, title: string, detail: string): HTMLElement {
  const box = doc.createElement('div');
  box.className = 'rs-error';
  box.setAttribute('role', 'alert');
  const t = doc.createElement('strong');
  t.textContent = title;
  const d = doc.createElement('div');
  d.style.whiteSpace = 'pre-wrap';
  d.textContent = detail;
  box.append(t, d);
  return box;
}

async function loadImage(result: SegmentResult, signal: AbortSignal): Promise<ImageBitmap | null> {
  const { data, mimeType } = result.image;
  if (!data) return null;
  const bin = atob(data);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const bitmap = await createImageBitmap(new Blob([bytes], { type: mimeType ?? sniffMime(bytes) }));
  if (signal.aborted) {
    bitmap.close();
    throw new Error('disposed');
  }
  return bitmap;
}

function sniffMime(b: Uint8Array): string {
  if (b[0] === 0x89 && b[1] === 0x50) return 'image/png';
  if (b[0] === 0xff && b[1] === 0xd8) return 'image/jpeg';
  return 'application/octet-stream';
}

function fileStem(source: string | undefined): string {
  const base = (source ?? 'segment').split(/[\\/]/).pop() ?? 'segment';
  return base.replace(/\.[^.]*$/, '').replace(/[^\w.-]+/g, '_') || 'segment';
}

function clamp01(v: number): number {
  return Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0.5;
}
