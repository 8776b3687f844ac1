// Model management: Select Model (bundles the user added, plus the current one), Add Model (a bundle folder, an
// export of a LISA checkpoint run by models/export in a terminal task, or a download from a URL with progress,
// resume and checksum). The chosen bundle goes to the `reasonSegment.model` setting (user scope).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { DownloadError, downloadBundle, fragmentSha256, isManifestUrl, MANIFEST_FILE } from './download';
import type { HostManager } from './host';

function config() {
  return vscode.workspace.getConfiguration('reasonSegment');
}

export async function useModel(dir: string): Promise<void> {
  const c = config();
  const models = new Set((c.get<string[]>('models') ?? []).filter((m) => typeof m === 'string'));
  models.add(dir);
  await c.update('models', [...models], vscode.ConfigurationTarget.Global);
  await c.update('model', dir, vscode.ConfigurationTarget.Global);
  void vscode.window.showInformationMessage(vscode.l10n.t('Reason Segment now uses the model in {0}.', dir));
}

function variantOf(dir: string): string | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')).variant;
  } catch {
    return undefined;
  }
}

export async function selectModel(): Promise<void> {
  const c = config();
  const current = c.get<string>('model') ?? '';
  const all = [...new Set([current, ...(c.get<string[]>('models') ?? [])].filter(Boolean))];
  type Item = vscode.QuickPickItem & { dir?: string; add?: boolean };
  const items: Item[] = all.map((d) => ({
    label: variantOf(d) ?? path.basename(d),
    description: d,
    dir: d,
    detail:
      d === current
        ? vscode.l10n.t('Current model')
        : fs.existsSync(path.join(d, MANIFEST_FILE))
          ? undefined
          : vscode.l10n.t('Not found on this machine'),
  }));
  items.push({ label: `$(add) ${vscode.l10n.t('Add Model…')}`, add: true });
  const pick = await vscode.window.showQuickPick(items, {
    placeHolder: vscode.l10n.t('Select the model Reason Segment uses'),
  });
  if (!pick) return;
  if (pick.add) return addModel();
  if (pick.dir) await useModel(pick.dir);
}

export async function addModel(): Promise<void> {
  type Item = vscode.QuickPickItem & { id: 'folder' | 'export' | 'download' };
  const pick = await vscode.window.showQuickPick<Item>(
    [
      {
        id: 'folder',
        label: `$(folder) ${vscode.l10n.t('Use a bundle folder…')}`,
        detail: vscode.l10n.t('A folder holding {0} (exported or downloaded before).', MANIFEST_FILE),
      },
      {
        id: 'export',
        label: `$(tools) ${vscode.l10n.t('Export a LISA checkpoint…')}`,
        detail: vscode.l10n.t('Runs models/export in a terminal (needs Python with torch).'),
      },
      {
        id: 'download',
        label: `$(cloud-download) ${vscode.l10n.t('Download a bundle from a URL…')}`,
        detail: vscode.l10n.t('A .tar archive with its sha256, or the URL of a {0}.', MANIFEST_FILE),
      },
    ],
    { placeHolder: vscode.l10n.t('How do you want to add a model?') },
  );
  if (!pick) return;
  if (pick.id === 'folder') return addFolder();
  if (pick.id === 'export') return exportCheckpoint();
  return downloadFromUrl();
}

async function addFolder(): Promise<void> {
  const picked = await vscode.window.showOpenDialog({
    canSelectFolders: true,
    canSelectFiles: false,
    openLabel: vscode.l10n.t('Use This Model'),
  });
  const dir = picked?.[0]?.fsPath;
  if (!dir) return;
  if (!fs.existsSync(path.join(dir, MANIFEST_FILE))) {
    void vscode.window.showErrorMessage(
      vscode.l10n.t('{0} has no {1}: it is not a Reason Segment model bundle.', dir, MANIFEST_FILE),
    );
    return;
  }
  await useModel(dir);
}

async function exportCheckpoint(): Promise<void> {
  const checkpoint = await vscode.window.showInputBox({
    title: vscode.l10n.t('Export a LISA checkpoint (1/4)'),
    prompt: vscode.l10n.t('LISA checkpoint: a local folder in Hugging Face layout, or a hub id'),
    placeHolder: 'xinlai/LISA-7B-v1',
    ignoreFocusOut: true,
  });
  if (!checkpoint) return;
  const clip = await vscode.window.showInputBox({
    title: vscode.l10n.t('Export a LISA checkpoint (2/4)'),
    prompt: vscode.l10n.t('CLIP ViT-L/14 folder or hub id'),
    value: 'openai/clip-vit-large-patch14',
    ignoreFocusOut: true,
  });
  if (!clip) return;
  const out = await vscode.window.showInputBox({
    title: vscode.l10n.t('Export a LISA checkpoint (3/4)'),
    prompt: vscode.l10n.t('Folder to write the bundle to'),
    value: path.join(os.homedir(), 'reason-segment', path.basename(checkpoint)),
    ignoreFocusOut: true,
  });
  if (!out) return;
  const exporter = await vscode.window.showInputBox({
    title: vscode.l10n.t('Export a LISA checkpoint (4/4)'),
    prompt: vscode.l10n.t(
      'The models/export folder of a Reason Segment checkout (its venv script sets up Python and torch)',
    ),
    value: path.join(os.homedir(), 'reason-segment-src', 'models', 'export'),
    ignoreFocusOut: true,
  });
  if (!exporter) return;
  const venv = path.join(exporter, 'venv');
  const task = new vscode.Task(
    { type: 'shell', reasonSegment: 'export' },
    vscode.TaskScope.Global,
    vscode.l10n.t('Export {0}', path.basename(checkpoint)),
    'Reason Segment',
    new vscode.ProcessExecution(
      venv,
      ['run', '-m', 'lisa_export', 'export', '--checkpoint', checkpoint, '--clip', clip, '--out', out],
      { cwd: path.dirname(path.dirname(exporter)) },
    ),
  );
  const done = new Promise<number | undefined>((resolve) => {
    const sub = vscode.tasks.onDidEndTaskProcess((e) => {
      if (e.execution.task === task || e.execution.task.name === task.name) {
        sub.dispose();
        resolve(e.exitCode);
      }
    });
  });
  await vscode.tasks.executeTask(task);
  const code = await done;
  if (code === 0 && fs.existsSync(path.join(out, MANIFEST_FILE))) await useModel(out);
  else
    void vscode.window.showErrorMessage(
      vscode.l10n.t('The export did not finish (exit code {0}); see the terminal.', String(code)),
    );
}

async function downloadFromUrl(): Promise<void> {
  const url = await vscode.window.showInputBox({
    title: vscode.l10n.t('Download a model bundle'),
    prompt: vscode.l10n.t('URL of a bundle archive (.tar) or of its {0}', MANIFEST_FILE),
    ignoreFocusOut: true,
    validateInput: (v) => (/^https?:\/\/\S+$/.test(v.trim()) ? undefined : vscode.l10n.t('Enter an http(s) URL')),
  });
  if (!url) return;
  let sha256: string | undefined;
  if (!isManifestUrl(url.replace(/#.*$/, '')) && !fragmentSha256(url)) {
    sha256 = await vscode.window.showInputBox({
      title: vscode.l10n.t('Download a model bundle'),
      prompt: vscode.l10n.t('sha256 of the archive (from the publisher)'),
      ignoreFocusOut: true,
      validateInput: (v) => (/^[0-9a-fA-F]{64}$/.test(v.trim()) ? undefined : vscode.l10n.t('64 hexadecimal digits')),
    });
    if (!sha256) return;
  }
  const name =
    path
      .basename(new URL(url).pathname)
      .replace(/\.(tar|json)$/i, '')
      .replace(/^lisa\.manifest$/, '') || 'bundle';
  const target = await vscode.window.showOpenDialog({
    canSelectFolders: true,
    canSelectFiles: false,
    openLabel: vscode.l10n.t('Download Here'),
  });
  if (!target?.[0]) return;
  const dest = path.join(
    target[0].fsPath,
    isManifestUrl(url.replace(/#.*$/, '')) ? path.basename(path.dirname(new URL(url).pathname)) || name : name,
  );
  await vscode.window.withProgress(
    {
      location: vscode.ProgressLocation.Notification,
      title: vscode.l10n.t('Downloading model bundle'),
      cancellable: true,
    },
    async (progress, token) => {
      const ac = new AbortController();
      token.onCancellationRequested(() => ac.abort());
      let last = 0;
      try {
        const r = await downloadBundle(url.trim(), dest, {
          signal: ac.signal,
          sha256: sha256?.trim(),
          onProgress: (p) => {
            const pct = p.total ? (100 * p.loaded) / p.total : undefined;
            const inc = pct !== undefined ? pct - last : undefined;
            if (pct !== undefined) last = pct;
            progress.report({
              increment: inc,
              message: `${p.file} ${mb(p.loaded)}${p.total ? ` / ${mb(p.total)}` : ''}`,
            });
          },
        });
        await useModel(r.bundleDir);
      } catch (e) {
        const msg =
          e instanceof DownloadError && e.kind === 'cancelled'
            ? vscode.l10n.t('Download cancelled; running it again resumes where it stopped.')
            : (e as Error).message;
        void vscode.window.showErrorMessage(msg);
      }
    },
  );
}

function mb(n: number): string {
  return `${(n / 1048576).toFixed(1)} MB`;
}

/** Restarts the host's model on the next request when a model setting changes. */
export function watchModelSettings(host: HostManager): vscode.Disposable {
  return vscode.workspace.onDidChangeConfiguration((e) => {
    if (e.affectsConfiguration('reasonSegment.cacheSizeMB') && host.running) {
      void vscode.window.showInformationMessage(
        vscode.l10n.t('The cache size applies after "Reason Segment: Restart Host".'),
      );
    }
  });
}
