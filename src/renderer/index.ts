// VS Code notebook renderer for the Reason Segment result MIME type (application/vnd.reason-segment.result+json).
// Boilerplate only: checks the payload, hands drawing to the shared overlay view (src/overlay), and routes "save"
// to the extension through renderer messaging, or to a download link when messaging is not available.

import { translator } from '../overlay/l10n';
import { ensureStyles } from '../overlay/styles';
import { checkResult } from '../overlay/validate';
import { createSegmentView, errorBox, type SaveFile, type SegmentView } from '../overlay/view';
import type { ActivationFunction, OutputItem } from './api';
import { offerDownload } from './download';
import type { SaveMessage } from './messages';

export const activate: ActivationFunction = (ctx) => {
  const views = new Map<string, SegmentView>();

  function dispose(id: string): void {
    views.get(id)?.dispose();
    views.delete(id);
  }

  return {
    renderOutputItem(outputItem: OutputItem, element: HTMLElement, signal?: AbortSignal) {
      dispose(outputItem.id);
      element.replaceChildren();
      ensureStyles(element.ownerDocument);
      let payload: unknown;
      try {
        payload = outputItem.json();
      } catch (e) {
        element.appendChild(
          errorBox(
            element.ownerDocument,
            translator(navigator.language)('This Reason Segment result cannot be shown'),
            `The output is not valid JSON (${(e as Error).message}).`,
          ),
        );
        return;
      }
      const checked = checkResult(payload);
      if (!checked.ok) {
        const box = errorBox(element.ownerDocument, checked.title, checked.detail);
        box.classList.add('rs-view');
        element.appendChild(box);
        return;
      }
      const downloads = element.ownerDocument.createElement('div');
      downloads.className = 'rs-downloads';
      downloads.setAttribute('aria-live', 'polite');
      const post = ctx.postMessage?.bind(ctx);
      const save = (file: SaveFile) => {
        if (post) {
          const msg: SaveMessage = { type: 'save', outputId: outputItem.id, ...file };
          post(msg);
        } else {
          offerDownload(downloads, file, translator(navigator.language));
        }
      };
      try {
        // VS Code gives renderers no locale; the notebook webview's navigator.language follows the display language.
        const view = createSegmentView(element, checked.result, { save, t: translator(navigator.language) });
        views.set(outputItem.id, view);
        element.appendChild(downloads);
        signal?.addEventListener('abort', () => dispose(outputItem.id), { once: true });
      } catch (e) {
        element.replaceChildren(
          errorBox(
            element.ownerDocument,
            translator(navigator.language)('This Reason Segment result cannot be shown'),
            (e as Error).message,
          ),
        );
      }
    },
    disposeOutputItem(id?: string) {
      if (id === undefined) for (const k of [...views.keys()]) dispose(k);
      else dispose(id);
    },
  };
};
