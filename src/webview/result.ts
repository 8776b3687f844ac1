// The results panel UI (a webview panel in the editor area, opened beside the image): the picture as large as the
// editor allows, with zoom (wheel, buttons, + - 0 keys) and pan (drag, arrow keys), and beside it the question, the
// explanation with its [SEG] chips and the mask list. All drawing is the shared overlay view (src/overlay/view.ts):
// its stage is moved into a zoomable viewport; the rest of the view (controls, text, masks) sits in the side column.

import { domHelpers, injectStyle } from '../overlay/dom';
import { translator } from '../overlay/l10n';
import type { RefineRequest } from '../overlay/refine';
import { createSegmentView, type SaveFile, type SegmentView } from '../overlay/view';
import { type ExtensionMessage, type ResultMessage, validateExtensionMessage } from '../protocol/chat';
import type { ResultMask } from '../protocol/result';
import type { VsCodeApi } from './app';
import { MASK_LIST_CSS } from './styles';

export interface ResultApp {
  receive(message: unknown): void;
  /** Zoom factor relative to "fit" (1 = the whole image fits the viewport). */
  readonly zoom: number;
  dispose(): void;
}

const MIN_ZOOM = 1;
const MAX_ZOOM = 32;
const KEY_ZOOM = 1.25;
const PAN_STEP = 40;

const RESULT_CSS = `${MASK_LIST_CSS}
:root { color-scheme: light dark; }
html, body { margin: 0; padding: 0; height: 100%; }
body { color: var(--vscode-foreground); background: var(--vscode-editor-background);
  font-family: var(--vscode-font-family, system-ui, sans-serif); font-size: var(--vscode-font-size, 13px); }
.rs-rp { display: grid; grid-template-columns: minmax(0, 1fr) minmax(240px, 30%); height: 100vh; box-sizing: border-box; }
.rs-rp-main { display: flex; flex-direction: column; min-width: 0; min-height: 0; }
.rs-rp-zoombar { display: flex; gap: 4px; align-items: center; padding: 4px 8px;
  border-bottom: 1px solid var(--vscode-widget-border, rgba(128,128,128,0.35)); }
.rs-rp-zoombar button { font: inherit; min-width: 28px; color: var(--vscode-button-secondaryForeground, var(--vscode-foreground));
  background: var(--vscode-button-secondaryBackground, rgba(128,128,128,0.2)); border: 1px solid var(--vscode-button-border, transparent);
  border-radius: 2px; padding: 2px 8px; cursor: pointer; }
.rs-rp-zoombar button:hover { background: var(--vscode-button-secondaryHoverBackground, rgba(128,128,128,0.3)); }
.rs-rp-zoomlevel { color: var(--vscode-descriptionForeground); margin-left: 6px; }
.rs-rp-viewport { position: relative; flex: 1 1 auto; min-height: 0; overflow: hidden; cursor: grab; touch-action: none; }
.rs-rp-viewport.rs-dragging { cursor: grabbing; }
.rs-rp-viewport:focus-visible { outline: 1px solid var(--vscode-focusBorder, #0090f1); outline-offset: -1px; }
.rs-rp-viewport .rs-stage { position: absolute; left: 0; top: 0; transform-origin: 0 0; max-width: none !important; }
.rs-rp-viewport.rs-pixelated canvas { image-rendering: pixelated; }
.rs-rp-side { overflow: auto; padding: 8px 12px; border-left: 1px solid var(--vscode-widget-border, rgba(128,128,128,0.35)); }
.rs-rp-side h2 { font-size: 110%; margin: 4px 0; font-weight: 600; overflow-wrap: anywhere; }
.rs-rp-meta { color: var(--vscode-descriptionForeground); margin: 0 0 8px; }
.rs-rp-empty { padding: 16px; color: var(--vscode-descriptionForeground); }
.rs-rp :focus-visible { outline: 1px solid var(--vscode-focusBorder, #0090f1); outline-offset: 1px; }
@media (max-width: 640px) {
  .rs-rp { grid-template-columns: 1fr; grid-template-rows: minmax(240px, 60vh) auto; height: auto; }
  .rs-rp-side { border-left: 0; border-top: 1px solid var(--vscode-widget-border, rgba(128,128,128,0.35)); }
}
`;

export function createResultApp(root: HTMLElement, api: VsCodeApi, opts: { nonce?: string } = {}): ResultApp {
  const doc = root.ownerDocument;
  const tr = translator(doc.documentElement.lang);
  injectStyle(doc, 'reason-segment-result-style', RESULT_CSS, opts.nonce);
  const abort = new AbortController();
  const { on, el } = domHelpers(doc, abort.signal);

  const app = el('div', 'rs-rp');
  app.setAttribute('role', 'region');
  app.setAttribute('aria-label', tr('Reason Segment result'));
  const main = el('div', 'rs-rp-main');
  const zoombar = el('div', 'rs-rp-zoombar');
  zoombar.setAttribute('role', 'toolbar');
  zoombar.setAttribute('aria-label', tr('Zoom'));
  const zbtn = (text: string, label: string) => {
    const b = el('button', undefined, text);
    b.type = 'button';
    b.setAttribute('aria-label', label);
    b.title = label;
    return b;
  };
  const outBtn = zbtn('−', tr('Zoom out (-)'));
  const inBtn = zbtn('+', tr('Zoom in (+)'));
  const fitBtn = zbtn(tr('Fit'), tr('Fit the image to the panel (0)'));
  const level = el('span', 'rs-rp-zoomlevel');
  level.setAttribute('role', 'status');
  level.setAttribute('aria-live', 'polite');
  zoombar.append(outBtn, inBtn, fitBtn, level);
  const viewport = el('div', 'rs-rp-viewport');
  viewport.tabIndex = 0;
  viewport.setAttribute('role', 'group');
  viewport.setAttribute('aria-roledescription', tr('zoomable image'));
  viewport.setAttribute(
    'aria-label',
    tr('Image with masks: + and - zoom, 0 fits, arrow keys pan; drag to pan, wheel to zoom'),
  );
  main.append(zoombar, viewport);
  const side = el('aside', 'rs-rp-side');
  side.setAttribute('aria-label', tr('Answer and masks'));
  const heading = el('h2');
  const meta = el('p', 'rs-rp-meta');
  const holder = el('div');
  side.append(heading, meta, holder);
  const empty = el('p', 'rs-rp-empty', tr('Waiting for a result…'));
  viewport.append(empty);
  app.append(main, side);
  root.replaceChildren(app);

  let view: SegmentView | undefined;
  let refineSeq = 0;
  const pendingRefines = new Map<string, { resolve: (m: ResultMask) => void; reject: (e: Error) => void }>();
  let stage: HTMLElement | undefined;
  let shown: ResultMessage | undefined;
  let W = 0;
  let H = 0;
  // The stage's size at zoom 1 (fits the viewport), the zoom factor and the stage's offset in the viewport (px).
  let fitW = 0;
  let fitH = 0;
  let zoom = 1;
  let tx = 0;
  let ty = 0;

  function layout(keep: boolean): void {
    if (!stage || W === 0) return;
    const vw = viewport.clientWidth;
    const vh = viewport.clientHeight;
    const oldFit = fitW;
    fitW = Math.max(1, Math.min(vw, (vh * W) / H));
    fitH = (fitW * H) / W;
    stage.style.width = `${fitW}px`;
    stage.style.height = `${fitH}px`;
    if (!keep || oldFit === 0) {
      zoom = 1;
      tx = (vw - fitW) / 2;
      ty = (vh - fitH) / 2;
    } else {
      // Keep the point at the viewport's centre where it was.
      const k = fitW / oldFit;
      tx = vw / 2 - (vw / 2 - tx) * k;
      ty = vh / 2 - (vh / 2 - ty) * k;
    }
    apply();
  }

  /** Keeps at least a quarter of the viewport covered by the image, so it cannot be panned out of sight. */
  function clampPan(): void {
    const vw = viewport.clientWidth;
    const vh = viewport.clientHeight;
    const w = fitW * zoom;
    const h = fitH * zoom;
    const mx = Math.min(w, vw) / 4;
    const my = Math.min(h, vh) / 4;
    tx = Math.min(Math.max(tx, mx - w), vw - mx);
    ty = Math.min(Math.max(ty, my - h), vh - my);
  }

  function apply(): void {
    if (!stage) return;
    clampPan();
    stage.style.transform = `translate(${tx}px, ${ty}px) scale(${zoom})`;
    const pct = Math.round(((fitW * zoom) / W) * 100);
    level.textContent = tr('Zoom {0}% of the image size', pct);
    viewport.dataset.zoom = zoom.toFixed(4);
    viewport.classList.toggle('rs-pixelated', (fitW * zoom) / W > 2);
    outBtn.disabled = zoom <= MIN_ZOOM;
    inBtn.disabled = zoom >= MAX_ZOOM;
  }

  function zoomAt(factor: number, cx = viewport.clientWidth / 2, cy = viewport.clientHeight / 2): void {
    const z = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom * factor));
    if (z === zoom) return;
    tx = cx - ((cx - tx) * z) / zoom;
    ty = cy - ((cy - ty) * z) / zoom;
    zoom = z;
    apply();
  }

  function fitToView(): void {
    layout(false);
  }

  function pan(dx: number, dy: number): void {
    tx += dx;
    ty += dy;
    apply();
  }

  on(inBtn, 'click', () => zoomAt(KEY_ZOOM));
  on(outBtn, 'click', () => zoomAt(1 / KEY_ZOOM));
  on(fitBtn, 'click', () => fitToView());
  viewport.addEventListener(
    'wheel',
    (e) => {
      e.preventDefault();
      const r = viewport.getBoundingClientRect();
      zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
    },
    { passive: false, signal: abort.signal },
  );
  on(viewport, 'keydown', (e) => {
    const step = e.shiftKey ? PAN_STEP * 5 : PAN_STEP;
    const keys: Record<string, () => void> = {
      '+': () => zoomAt(KEY_ZOOM),
      '=': () => zoomAt(KEY_ZOOM),
      '-': () => zoomAt(1 / KEY_ZOOM),
      _: () => zoomAt(1 / KEY_ZOOM),
      '0': () => fitToView(),
      ArrowLeft: () => pan(step, 0),
      ArrowRight: () => pan(-step, 0),
      ArrowUp: () => pan(0, step),
      ArrowDown: () => pan(0, -step),
    };
    const f = keys[e.key];
    if (f && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      f();
    }
  });
  let drag: { id: number; x: number; y: number } | undefined;
  on(viewport, 'pointerdown', (e) => {
    if (e.button !== 0 || !stage) return;
    // While a mask is being refined, a click or drag on the picture is a prompt (the overlay's), not a pan.
    if (stage.classList.contains('rs-refining') && stage.contains(e.target as Node)) return;
    drag = { id: e.pointerId, x: e.clientX, y: e.clientY };
    viewport.setPointerCapture(e.pointerId);
    viewport.classList.add('rs-dragging');
  });
  on(viewport, 'pointermove', (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    pan(e.clientX - drag.x, e.clientY - drag.y);
    drag.x = e.clientX;
    drag.y = e.clientY;
  });
  const endDrag = (e: PointerEvent) => {
    if (!drag || e.pointerId !== drag.id) return;
    drag = undefined;
    viewport.classList.remove('rs-dragging');
  };
  on(viewport, 'pointerup', endDrag);
  on(viewport, 'pointercancel', endDrag);
  const resize = new ResizeObserver(() => layout(true));
  resize.observe(viewport);

  function show(m: ResultMessage): void {
    const sameImage = !!shown && m.result.image.width === W && m.result.image.height === H && !!stage;
    view?.dispose();
    stage?.remove();
    holder.replaceChildren();
    shown = m;
    W = m.result.image.width;
    H = m.result.image.height;
    heading.textContent = m.prompt;
    const n = m.result.masks.length;
    meta.textContent = `${m.imageName} · ${tr('answer {0} of {1}', m.turnIndex, m.turnCount)} · ${
      n === 0 ? tr('No masks') : n === 1 ? tr('1 mask') : tr('{0} masks', n)
    }`;
    const saveFile = (file: SaveFile) =>
      api.postMessage({ type: 'save', conversationId: m.conversationId, turnId: m.turnId, ...file });
    // Refine (when the host gave the result an id): each request goes to the extension, which asks the host.
    const refine = m.result.resultId
      ? (req: RefineRequest) =>
          new Promise<ResultMask>((resolve, reject) => {
            const requestId = `r${++refineSeq}`;
            pendingRefines.set(requestId, { resolve, reject });
            api.postMessage({
              type: 'refine',
              conversationId: m.conversationId,
              turnId: m.turnId,
              requestId,
              maskIndex: req.maskIndex,
              prompt: req.prompt,
            });
          })
      : undefined;
    // The mask the user keeps (refined, or back to the answer's after an undo) is stored by the extension in the
    // conversation, so the side bar, this panel reopened and exports show it.
    const onMaskChange = (maskIndex: number, mask: ResultMask) =>
      api.postMessage({ type: 'keepMask', conversationId: m.conversationId, turnId: m.turnId, maskIndex, mask });
    view = createSegmentView(holder, m.result, { styleNonce: opts.nonce, t: tr, save: saveFile, refine, onMaskChange });
    stage = view.root.querySelector<HTMLElement>('.rs-stage') ?? undefined;
    empty.remove();
    if (stage) viewport.append(stage);
    app.dataset.turnId = m.turnId;
    // A follow-up on the same image keeps the zoom and pan; a new image starts fitted.
    layout(sameImage);
  }

  return {
    receive(message: unknown): void {
      const problems = validateExtensionMessage(message);
      if (problems.length) {
        console.warn(`Reason Segment result: ignored a message (${problems.slice(0, 3).join('; ')})`);
        return;
      }
      const msg = message as ExtensionMessage;
      if (msg.type === 'result') show(msg);
      else if (msg.type === 'refined') {
        const p = pendingRefines.get(msg.requestId);
        pendingRefines.delete(msg.requestId);
        if (msg.mask) p?.resolve(msg.mask);
        else p?.reject(new Error(msg.error ?? 'refine failed'));
      }
    },
    get zoom() {
      return zoom;
    },
    dispose(): void {
      resize.disconnect();
      abort.abort();
      view?.dispose();
      root.replaceChildren();
    },
  };
}
