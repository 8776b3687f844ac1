// Notebooks from results: "Export conversation to notebook" writes an .ipynb (built by notebook.ts) that runs as is
// in a fresh kernel, and opens it;
// "Segment Image…" with openResultsIn = notebook opens an untitled notebook with the result. Both use outputs the
// extension's renderer draws (RESULT_MIME), with image/png and text/plain beside it.
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Conversation } from '../protocol/chat';
import { RESULT_MIME, type SegmentResult } from '../protocol/result';
import { MIME_BY_EXT, toUri } from './chatView';
import { buildNotebook, type NotebookTurn, segmentCellSource } from './notebook';
import { DEFAULTS, readSettings, resolveModelPath } from './settings';

async function imageData(p: string): Promise<{ data: string; mimeType: string } | undefined> {
  try {
    const bytes = await vscode.workspace.fs.readFile(toUri(p));
    return {
      data: Buffer.from(bytes).toString('base64'),
      mimeType: MIME_BY_EXT[path.extname(p).slice(1).toLowerCase()] ?? 'image/png',
    };
  } catch {
    return undefined;
  }
}

/** Results of a conversation as notebook turns, with the image bytes put back in (the renderer cannot read files). */
export async function conversationTurns(c: Conversation, overlays: Map<string, string>): Promise<NotebookTurn[]> {
  const img = c.image ? await imageData(c.image.path) : undefined;
  return c.turns.map((t) => {
    if (t.status !== 'done' || !t.result)
      return { prompt: t.prompt, error: t.error ?? vscode.l10n.t('No result ({0}).', t.status) };
    const overlayPng = t.result.overlayPng ?? overlays.get(t.id);
    const result: SegmentResult = {
      ...t.result,
      image: { ...t.result.image, ...(img ?? {}) },
      ...(overlayPng ? { overlayPng } : {}),
    };
    return { prompt: t.prompt, result };
  });
}

export async function exportConversation(
  c: Conversation | undefined,
  overlays: Map<string, string>,
): Promise<vscode.Uri | undefined> {
  if (!c?.image || c.turns.length === 0) {
    void vscode.window.showInformationMessage(vscode.l10n.t('There is no conversation to export yet.'));
    return undefined;
  }
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
  const base = `${path.parse(c.image.name).name}-segment.ipynb`;
  const target = await vscode.window.showSaveDialog({
    defaultUri: folder ? vscode.Uri.joinPath(folder, base) : undefined,
    filters: { [vscode.l10n.t('Jupyter Notebook')]: ['ipynb'] },
  });
  if (!target) return undefined;
  const config = vscode.workspace.getConfiguration('reasonSegment');
  const settings = readSettings((k) => config.get(k));
  const nb = buildNotebook(
    {
      image: c.image.path,
      model:
        resolveModelPath(settings.model, os.homedir(), folder?.fsPath, path.join, path.isAbsolute) ??
        (settings.model || undefined),
      notebookDir: target.scheme === 'file' ? path.dirname(target.fsPath) : undefined,
      // The options the chat's turns ran with; the default answer length is the magic's default too.
      assistantPrefix: settings.assistantPrefix,
      maxNewTokens: settings.maxNewTokens === DEFAULTS.maxNewTokens ? undefined : settings.maxNewTokens,
    },
    await conversationTurns(c, overlays),
  );
  await vscode.workspace.fs.writeFile(target, Buffer.from(`${JSON.stringify(nb, null, 1)}\n`, 'utf8'));
  await vscode.commands.executeCommand('vscode.openWith', target, 'jupyter-notebook');
  return target;
}

/** Opens an untitled notebook with one `%%segment` cell carrying `result` (image bytes and overlay included). */
export async function openResultNotebook(imagePath: string, prompt: string, result: SegmentResult): Promise<void> {
  const items = [
    vscode.NotebookCellOutputItem.json(result, RESULT_MIME),
    vscode.NotebookCellOutputItem.text(result.text, 'text/plain'),
  ];
  if (result.overlayPng)
    items.splice(1, 0, new vscode.NotebookCellOutputItem(Buffer.from(result.overlayPng, 'base64'), 'image/png'));
  const cell = new vscode.NotebookCellData(
    vscode.NotebookCellKind.Code,
    segmentCellSource(imagePath, prompt),
    'python',
  );
  cell.outputs = [new vscode.NotebookCellOutput(items)];
  const data = new vscode.NotebookData([cell]);
  const doc = await vscode.workspace.openNotebookDocument('jupyter-notebook', data);
  await vscode.window.showNotebookDocument(doc);
}
