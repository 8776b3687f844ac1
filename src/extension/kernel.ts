// "Enable %%segment in the current kernel": pip-installs the extension's Python magic (src/kernel) into a Python
// environment the user picks, in a terminal they can watch, and tells terminals and kernels started from now on
// where the host is (REASON_SEGMENT_HOST: server.js; REASON_SEGMENT_NODE: a Node to run it with).
import * as path from 'node:path';
import * as vscode from 'vscode';
import { kernelEnvironment, pipInstallCommand } from './kernelEnv';

export function applyKernelEnvironment(context: vscode.ExtensionContext): void {
  const env = kernelEnvironment(context.extensionPath, process.execPath, Boolean(process.versions.electron));
  const coll = context.environmentVariableCollection;
  coll.description = vscode.l10n.t('Lets the %%segment magic find the Reason Segment inference host.');
  for (const [k, v] of Object.entries(env)) coll.replace(k, v);
}

async function pickPython(): Promise<string | undefined> {
  // The Python extension's active interpreter, when it is installed.
  const fromPy = await vscode.commands
    .executeCommand<string>('python.interpreterPath', {
      workspaceFolder: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath,
    })
    .then(
      (p) => (typeof p === 'string' ? p : undefined),
      () => undefined,
    );
  return vscode.window.showInputBox({
    title: vscode.l10n.t('Enable %%segment in the current kernel'),
    prompt: vscode.l10n.t('Python of the kernel environment to install the %%segment magic into'),
    value: fromPy ?? (process.platform === 'win32' ? 'python' : 'python3'),
    ignoreFocusOut: true,
  });
}

export async function enableKernelMagic(context: vscode.ExtensionContext): Promise<void> {
  applyKernelEnvironment(context);
  const python = await pickPython();
  if (!python) return;
  const kernelDir = context.asAbsolutePath(path.join('src', 'kernel'));
  const term = vscode.window.createTerminal({
    name: vscode.l10n.t('Reason Segment: %%segment'),
    env: kernelEnvironment(context.extensionPath, process.execPath, Boolean(process.versions.electron)),
  });
  term.show();
  term.sendText(pipInstallCommand(python.trim(), kernelDir, process.platform === 'win32'));
  void vscode.window.showInformationMessage(
    vscode.l10n.t(
      'Installing the %%segment magic. Then restart the kernel and run %load_ext reason_segment in a cell.',
    ),
  );
}
