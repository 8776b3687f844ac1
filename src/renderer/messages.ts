// Messages the notebook renderer posts to the extension (ctx.postMessage; the extension listens with
// vscode.notebooks.createRendererMessaging(rendererId).onDidReceiveMessage). The extension should validate every
// field before use: `fileName` is a suggestion for a save dialog, never a path to write to directly.

import type { SaveFile } from '../overlay/view';

export interface SaveMessage extends SaveFile {
  type: 'save';
  /** The notebook output item the file came from. */
  outputId: string;
}

export type RendererMessage = SaveMessage;
