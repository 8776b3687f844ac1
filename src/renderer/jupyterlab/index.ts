// JupyterLab MIME renderer extension for the Reason Segment result type: JupyterLab draws a `%%segment` result with
// the same overlay view (src/overlay) as VS Code's notebook renderer. Built prebuilt by @jupyterlab/builder into
// src/kernel/labextension (scripts/build-labextension) and installed with the magic's pip package, so JupyterLab
// needs no Node on the user's side. Without it JupyterLab shows the bundle's text/markdown + image/png fallback.

import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';
import { translator } from '../../overlay/l10n';
import { ensureStyles } from '../../overlay/styles';
import { checkResult } from '../../overlay/validate';
import { createSegmentView, errorBox, type SegmentView } from '../../overlay/view';
import type { ResultMask, SegmentResult } from '../../protocol/result';
import { RESULT_MIME } from '../../protocol/result';
import { offerDownload } from '../download';
import { askKernel } from './kernel';

class ResultWidget extends Widget implements IRenderMime.IRenderer {
  private view: SegmentView | undefined;
  /** The masks the view shows, as written into the output (a refine, undo or redo changes them). */
  private shown = '';
  private sets = 0;

  /** `language`: JupyterLab's (its translator's languageCode: zh-CN with the Chinese language pack). */
  constructor(private readonly language: string | undefined) {
    super();
    this.addClass('rs-jupyterlab');
    // As JupyterLab's own renderers do: its cell toolbar finds outputs by this attribute.
    this.node.dataset.mimeType = RESULT_MIME;
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    // Writing a refined mask into the output makes JupyterLab render the output again: the view already shows it
    // (and keeps its undo history).
    const masks = (model.data[RESULT_MIME] as Partial<SegmentResult> | undefined)?.masks;
    if (this.view && JSON.stringify(masks) === this.shown) return;
    this.view?.dispose();
    this.view = undefined;
    const node = this.node;
    const doc = node.ownerDocument;
    node.replaceChildren();
    ensureStyles(doc);
    const t = translator(this.language || doc.documentElement.lang);
    const checked = checkResult(model.data[RESULT_MIME]);
    if (!checked.ok) {
      const box = errorBox(doc, checked.title, checked.detail);
      box.classList.add('rs-view');
      node.appendChild(box);
      return;
    }
    const downloads = doc.createElement('div');
    downloads.className = 'rs-downloads';
    downloads.setAttribute('aria-live', 'polite');
    const result = checked.result;
    const resultId = result.resultId;
    this.shown = JSON.stringify(masks);
    try {
      this.view = createSegmentView(node, result, {
        save: (f) => offerDownload(downloads, f, t),
        t,
        // Refining asks the kernel, whose magic asks the host that made the result (it remembers it by resultId).
        ...(resultId
          ? {
              refine: async ({ maskIndex, prompt }) =>
                (await askKernel(this, { op: 'refine', resultId, maskIndex, prompt }, t)).mask!,
              onMaskChange: (i, mask) => this.keep(model, result, i, mask),
            }
          : {}),
      });
      node.appendChild(downloads);
      await this.view.ready;
    } catch (e) {
      node.replaceChildren(errorBox(doc, t('This Reason Segment result cannot be shown'), (e as Error).message));
    }
  }

  /** Writes the mask shown into the output, so a saved notebook has it (marked `refined`, with its prompts), and
   * tells the kernel, whose result object follows and whose text and markdown for the output are written too. */
  private keep(model: IRenderMime.IMimeModel, result: SegmentResult, i: number, mask: ResultMask): void {
    const current = model.data[RESULT_MIME] as unknown as SegmentResult;
    const masks = current.masks.slice();
    masks[i] = mask;
    this.shown = JSON.stringify(masks);
    const payload = { ...current, masks } as unknown as ReadonlyPartialJSONObject;
    model.setData({ data: { ...model.data, [RESULT_MIME]: payload } });
    const mine = ++this.sets;
    void askKernel(this, { op: 'set', resultId: result.resultId!, maskIndex: i, mask }, (m) => m).then(
      (a) => {
        if (mine === this.sets && a.bundle && !this.isDisposed) model.setData({ data: { ...model.data, ...a.bundle } });
      },
      () => undefined, // no kernel: the output keeps the mask; its text stays as the cell wrote it
    );
  }

  dispose(): void {
    this.view?.dispose();
    this.view = undefined;
    super.dispose();
  }
}

const rendererFactory: IRenderMime.IRendererFactory = {
  // The payload is data, drawn on a canvas and set as text: nothing in it runs, so untrusted notebooks show it too.
  safe: true,
  mimeTypes: [RESULT_MIME],
  createRenderer: (options) => new ResultWidget(options.translator?.languageCode),
};

const extension: IRenderMime.IExtension = {
  id: '@reason-segment/jupyterlab:result',
  rendererFactory,
  // Ahead of text/html (50) and text/markdown (60), which the same output carries for frontends without it.
  rank: 0,
  dataType: 'json',
};

export default extension;
