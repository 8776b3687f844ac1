// JupyterLab MIME renderer extension for the Reason Segment result type: JupyterLab draws a `%%segment` result with
// the same overlay view (src/overlay) as VS Code's notebook renderer. Built prebuilt by @jupyterlab/builder into
// src/kernel/labextension (scripts/build-labextension) and installed with the magic's pip package, so JupyterLab
// needs no Node on the user's side. Without it JupyterLab shows the bundle's text/markdown + image/png fallback.

import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';
import { translator } from '../../overlay/l10n';
import { ensureStyles } from '../../overlay/styles';
import { checkResult } from '../../overlay/validate';
import { createSegmentView, errorBox, type SegmentView } from '../../overlay/view';
import { RESULT_MIME } from '../../protocol/result';
import { offerDownload } from '../download';

class ResultWidget extends Widget implements IRenderMime.IRenderer {
  private view: SegmentView | undefined;

  constructor() {
    super();
    this.addClass('rs-jupyterlab');
    // As JupyterLab's own renderers do: its cell toolbar finds outputs by this attribute.
    this.node.dataset.mimeType = RESULT_MIME;
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.view?.dispose();
    this.view = undefined;
    const node = this.node;
    const doc = node.ownerDocument;
    node.replaceChildren();
    ensureStyles(doc);
    // JupyterLab writes its UI language (the language pack in use) into <html lang>.
    const t = translator(doc.documentElement.lang);
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
    try {
      this.view = createSegmentView(node, checked.result, { save: (f) => offerDownload(downloads, f, t), t });
      node.appendChild(downloads);
      await this.view.ready;
    } catch (e) {
      node.replaceChildren(errorBox(doc, t('This Reason Segment result cannot be shown'), (e as Error).message));
    }
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
  createRenderer: () => new ResultWidget(),
};

const extension: IRenderMime.IExtension = {
  id: '@reason-segment/jupyterlab:result',
  rendererFactory,
  // Ahead of text/html (50) and text/markdown (60), which the same output carries for frontends without it.
  rank: 0,
  dataType: 'json',
};

export default extension;
