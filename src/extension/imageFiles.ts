// Image files as the chat and the results panel see them: which extensions and MIME types, a URI from a path or URI
// string, width and height from the header, and the bytes for a webview (which gets no file access at all).
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ConversationImage, ImagePayload } from '../protocol/chat';
import { imageSize, MIME_BY_EXT } from './imageHeader';
import { IMAGE_EXTENSIONS, isImagePath } from './settings';

export { MIME_BY_EXT };

/** A path or URI string from a message, as a Uri (never used as a write target). */
export function toUri(p: string): vscode.Uri {
  return /^[a-zA-Z][\w+.-]+:\/\//.test(p) && !/^[a-zA-Z]:[\\/]/.test(p)
    ? vscode.Uri.parse(p, true)
    : vscode.Uri.file(p);
}

/** The stored form of an image the user chose; throws a message for the user when it is not an image file. */
export async function checkImage(p: string): Promise<ConversationImage> {
  const uri = toUri(p);
  if (!isImagePath(uri.path))
    throw new Error(
      vscode.l10n.t('{0} is not an image file ({1}).', path.basename(uri.path), IMAGE_EXTENSIONS.join(', ')),
    );
  const stat = await vscode.workspace.fs.stat(uri);
  if (stat.type & vscode.FileType.Directory)
    throw new Error(vscode.l10n.t('{0} is a folder, not an image file.', uri.fsPath));
  return { path: uri.scheme === 'file' ? uri.fsPath : uri.toString(), name: path.basename(uri.path) };
}

/** The file's bytes, base64, for a webview (works on Remote-SSH: no file or webview URI). */
export async function readImagePayload(p: string): Promise<ImagePayload> {
  const uri = toUri(p);
  const bytes = await vscode.workspace.fs.readFile(uri);
  const ext = path.extname(uri.path).slice(1).toLowerCase();
  const size = imageSize(bytes);
  return {
    name: path.basename(uri.path),
    width: size?.width ?? 0,
    height: size?.height ?? 0,
    data: Buffer.from(bytes).toString('base64'),
    mimeType: MIME_BY_EXT[ext] ?? 'application/octet-stream',
  };
}

/** Writes a file the user saves from the chat, the results panel or the renderer, where the user picks. */
export async function saveFileWithDialog(f: {
  fileName: string;
  encoding: 'base64' | 'utf8';
  data: string;
  mimeType: string;
}): Promise<void> {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
  const name = path.basename(f.fileName);
  const target = await vscode.window.showSaveDialog({
    defaultUri: folder ? vscode.Uri.joinPath(folder, name) : undefined,
    saveLabel: vscode.l10n.t('Save'),
    filters: f.mimeType === 'application/json' ? { JSON: ['json'] } : { PNG: ['png'] },
  });
  if (!target) return;
  const bytes = f.encoding === 'base64' ? Buffer.from(f.data, 'base64') : Buffer.from(f.data, 'utf8');
  await vscode.workspace.fs.writeFile(target, bytes);
  void vscode.window.showInformationMessage(vscode.l10n.t('Saved {0}.', path.basename(target.path)));
}
