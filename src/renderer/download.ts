// Saving without a host to save through (a notebook frontend with no renderer messaging, or JupyterLab): a plain
// download link (data URL) the user can click or copy.

import type { SaveFile, Translate } from '../overlay/view';

export function offerDownload(area: HTMLElement, file: SaveFile, t: Translate): void {
  const doc = area.ownerDocument;
  const key = `${file.kind}:${file.segIndex ?? ''}`;
  let a = Array.from(area.querySelectorAll('a')).find((x) => x.dataset.key === key);
  if (!a) {
    a = doc.createElement('a');
    a.dataset.key = key;
    area.appendChild(a);
  }
  a.href =
    file.encoding === 'base64'
      ? `data:${file.mimeType};base64,${file.data}`
      : `data:${file.mimeType};charset=utf-8,${encodeURIComponent(file.data)}`;
  a.download = file.fileName;
  a.textContent = t('Download {0}', file.fileName);
  a.focus();
}
