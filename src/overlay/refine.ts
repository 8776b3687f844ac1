// Refine mode of the overlay (DOM only): on a selected mask, a click adds a positive point, Shift- or Alt-click a
// negative one, a drag draws a box; each change asks the embedding view (through its `refine` callback, which talks to
// the host's reasonSegment/refine) for the mask SAM's decoder makes of the prompts, and shows it. Every step is kept,
// with its mask, so undo and redo (Ctrl+Z, Ctrl+Shift+Z or Ctrl+Y, and buttons) need no second request.

import type { RefinePrompt, ResultMask } from '../protocol/wire-types';
import type { Translate } from './view';

/** What the overlay asks of the embedding view: the mask for these prompts (the host's RefineResult.mask). */
export type RefineRequest = { resultId?: string; maskIndex: number; prompt: RefinePrompt };
export type RefineCallback = (request: RefineRequest) => Promise<ResultMask>;

const SVG = 'http://www.w3.org/2000/svg';
/** A pointer that moves less than this (screen pixels) between down and up is a click, not a drag. */
const DRAG_PX = 5;

interface Step {
  prompt: RefinePrompt;
  mask: ResultMask;
}

export interface RefineHost {
  doc: Document;
  stage: HTMLElement;
  width: number;
  height: number;
  resultId?: string;
  t: Translate;
  on: <K extends keyof HTMLElementEventMap>(
    target: HTMLElement,
    type: K,
    fn: (e: HTMLElementEventMap[K]) => void,
  ) => void;
  el: <K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string) => HTMLElementTagNameMap[K];
  /** The mask as it is now; called with the mask to show. */
  current(i: number): ResultMask;
  show(i: number, mask: ResultMask): void;
  refine: RefineCallback;
}

export interface RefineMode {
  readonly bar: HTMLElement;
  /** Starts refining mask i (ends any other). */
  start(i: number): void;
  stop(): void;
  /** The mask being refined, or -1. */
  readonly active: number;
  undo(): void;
  redo(): void;
  /** Adds a prompt as a click or drag would (what the keyboard-free tests and the buttons use). */
  add(kind: 'point' | 'box', value: { x: number; y: number; label?: 0 | 1 } | [number, number, number, number]): void;
  /** Resolves when the latest request has been answered (or failed). */
  settled(): Promise<void>;
}

export function createRefineMode(h: RefineHost): RefineMode {
  const { doc, stage, width: W, height: H, t, on, el } = h;
  let active = -1;
  let steps: Step[] = [];
  let at = 0; // index of the step shown
  let seq = 0; // requests sent; an answer to an older one is dropped
  let pending: Promise<void> = Promise.resolve();

  // ---- bar ----
  const bar = el('div', 'rs-refine');
  bar.hidden = true;
  bar.setAttribute('role', 'toolbar');
  const label = el('span', 'rs-meta');
  label.setAttribute('aria-live', 'polite');
  const button = (text: string, fn: () => void) => {
    const b = el('button', 'rs-button', t(text));
    b.type = 'button';
    on(b, 'click', fn);
    return b;
  };
  const undoB = button('Undo', () => undo());
  undoB.setAttribute('aria-keyshortcuts', 'Control+Z');
  const redoB = button('Redo', () => redo());
  redoB.setAttribute('aria-keyshortcuts', 'Control+Shift+Z');
  const resetB = button('Clear points', () => {
    if (active >= 0 && steps.length) goTo(0);
  });
  const doneB = button('Done', () => stop());
  const status = el('span', 'rs-meta');
  status.setAttribute('role', 'status');
  bar.append(label, undoB, redoB, resetB, doneB, status);

  // ---- markers: an SVG over the stage in image coordinates ----
  const svg = doc.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'rs-markers');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('aria-hidden', 'true');
  stage.appendChild(svg);
  const r = Math.max(3, Math.round(Math.max(W, H) / 120));

  function drawMarkers(): void {
    svg.replaceChildren();
    if (active < 0) return;
    const p = steps[at]?.prompt;
    if (!p) return;
    if (p.box) {
      const [x0, y0, x1, y1] = p.box;
      const rect = doc.createElementNS(SVG, 'rect');
      for (const [k, v] of [
        ['x', x0],
        ['y', y0],
        ['width', x1 - x0],
        ['height', y1 - y0],
        ['stroke-width', r / 2],
      ] as const)
        rect.setAttribute(k, String(v));
      rect.setAttribute('class', 'rs-marker-box');
      svg.appendChild(rect);
    }
    p.points.forEach(([x, y], k) => {
      const c = doc.createElementNS(SVG, 'circle');
      c.setAttribute('cx', String(x));
      c.setAttribute('cy', String(y));
      c.setAttribute('r', String(r));
      c.setAttribute('stroke-width', String(r / 3));
      c.setAttribute('class', p.labels[k] === 1 ? 'rs-marker-pos' : 'rs-marker-neg');
      svg.appendChild(c);
    });
    svg.dataset.points = String(p.points.length);
  }

  function refreshBar(): void {
    bar.hidden = active < 0;
    stage.classList.toggle('rs-refining', active >= 0);
    if (active < 0) return;
    label.textContent = t(
      'Refining mask {0}: click to add a point, Shift- or Alt-click for a negative point, drag for a box.',
      active + 1,
    );
    undoB.disabled = at <= 0;
    redoB.disabled = at >= steps.length - 1;
    resetB.disabled = at === 0;
  }

  function goTo(k: number): void {
    at = k;
    seq++; // an answer still on its way belongs to a step no longer shown
    h.show(active, steps[at].mask);
    status.textContent = '';
    drawMarkers();
    refreshBar();
  }

  function push(prompt: RefinePrompt): void {
    if (active < 0) return;
    const i = active;
    const mine = ++seq;
    steps = steps.slice(0, at + 1);
    const placeholder: Step = { prompt, mask: steps[at].mask };
    steps.push(placeholder);
    at = steps.length - 1;
    drawMarkers();
    refreshBar();
    status.textContent = t('Refining…');
    stage.dataset.refine = 'pending';
    pending = h.refine({ resultId: h.resultId, maskIndex: i, prompt }).then(
      (mask) => {
        placeholder.mask = mask;
        if (mine !== seq || active !== i) return;
        h.show(i, mask);
        status.textContent = '';
        stage.dataset.refine = 'done';
      },
      (e: Error) => {
        if (mine !== seq || active !== i) return;
        // the step stays, so redo is consistent; its mask is the one before it
        status.textContent = t('Refine failed: {0}', e.message);
        stage.dataset.refine = 'failed';
      },
    );
  }

  function add(kind: 'point' | 'box', value: { x: number; y: number; label?: 0 | 1 } | number[]): void {
    if (active < 0) return;
    const cur = steps[at].prompt;
    if (kind === 'point') {
      const v = value as { x: number; y: number; label?: 0 | 1 };
      if (cur.points.length >= 32) {
        status.textContent = t('At most 32 points.');
        return;
      }
      push({
        points: [...cur.points, [v.x, v.y]],
        labels: [...cur.labels, v.label ?? 1],
        ...(cur.box ? { box: cur.box } : {}),
      });
    } else {
      push({ points: cur.points, labels: cur.labels, box: value as [number, number, number, number] });
    }
  }

  function undo(): void {
    if (active >= 0 && at > 0) goTo(at - 1);
  }
  function redo(): void {
    if (active >= 0 && at < steps.length - 1) goTo(at + 1);
  }

  function start(i: number): void {
    if (active === i) return;
    stop();
    active = i;
    steps = [{ prompt: { points: [], labels: [] }, mask: h.current(i) }];
    at = 0;
    stage.dataset.refineMask = String(i);
    drawMarkers();
    refreshBar();
  }

  function stop(): void {
    active = -1;
    seq++;
    delete stage.dataset.refineMask;
    drawMarkers();
    refreshBar();
  }

  // ---- pointer: click = point, drag = box (image coordinates, clamped to the image) ----
  const toImage = (e: PointerEvent) => {
    const b = stage.getBoundingClientRect();
    const x = Math.min(W, Math.max(0, ((e.clientX - b.left) * W) / b.width));
    const y = Math.min(H, Math.max(0, ((e.clientY - b.top) * H) / b.height));
    return { x: Math.round(x * 10) / 10, y: Math.round(y * 10) / 10 };
  };
  let down: { sx: number; sy: number; x: number; y: number; neg: boolean } | null = null;
  const ghost = doc.createElementNS(SVG, 'rect');
  ghost.setAttribute('class', 'rs-marker-box');
  ghost.setAttribute('stroke-width', String(r / 2));
  on(stage, 'pointerdown', (e) => {
    if (active < 0 || e.button !== 0) return;
    e.preventDefault();
    stage.setPointerCapture?.(e.pointerId);
    const p = toImage(e);
    down = { sx: e.clientX, sy: e.clientY, ...p, neg: e.shiftKey || e.altKey };
  });
  on(stage, 'pointermove', (e) => {
    if (!down) return;
    const p = toImage(e);
    if (Math.hypot(e.clientX - down.sx, e.clientY - down.sy) < DRAG_PX) return;
    ghost.setAttribute('x', String(Math.min(down.x, p.x)));
    ghost.setAttribute('y', String(Math.min(down.y, p.y)));
    ghost.setAttribute('width', String(Math.abs(p.x - down.x)));
    ghost.setAttribute('height', String(Math.abs(p.y - down.y)));
    if (!ghost.parentNode) svg.appendChild(ghost);
  });
  on(stage, 'pointerup', (e) => {
    if (!down) return;
    const d = down;
    down = null;
    ghost.remove();
    const p = toImage(e);
    if (Math.hypot(e.clientX - d.sx, e.clientY - d.sy) < DRAG_PX)
      add('point', { x: d.x, y: d.y, label: d.neg ? 0 : 1 });
    else add('box', [Math.min(d.x, p.x), Math.min(d.y, p.y), Math.max(d.x, p.x), Math.max(d.y, p.y)]);
  });
  on(stage, 'pointercancel', () => {
    down = null;
    ghost.remove();
  });

  return {
    bar,
    start,
    stop,
    get active() {
      return active;
    },
    undo,
    redo,
    add: (kind, value) => add(kind, value as never),
    settled: () => pending,
  };
}

/** Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y (Cmd on macOS) and Escape, for a refine mode, on the element that has focus. */
export function refineKeys(mode: RefineMode): (e: KeyboardEvent) => void {
  return (e) => {
    if (mode.active < 0) return;
    const mod = e.ctrlKey || e.metaKey;
    const k = e.key.toLowerCase();
    if (mod && k === 'z' && !e.shiftKey) mode.undo();
    else if (mod && ((k === 'z' && e.shiftKey) || k === 'y')) mode.redo();
    else if (e.key === 'Escape') mode.stop();
    else return;
    e.preventDefault();
    e.stopPropagation();
  };
}
