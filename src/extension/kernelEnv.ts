// What "Enable %%segment" runs and sets, as pure functions (no vscode import; unit-tested in Node).
import * as path from 'node:path';

/** Environment the magic needs to find and run the host (pure, tested). */
export function kernelEnvironment(extensionPath: string, execPath: string, electron: boolean): Record<string, string> {
  const env: Record<string, string> = {
    REASON_SEGMENT_HOST: path.join(extensionPath, 'out', 'src', 'host', 'server.js'),
    REASON_SEGMENT_NODE: execPath,
  };
  // VS Code desktop's extension host runs on Electron, which behaves as Node only with this variable.
  if (electron) env.REASON_SEGMENT_NODE_ENV = 'ELECTRON_RUN_AS_NODE=1';
  return env;
}

/** The shell line that installs the magic (quoted for POSIX shells and PowerShell alike). */
export function pipInstallCommand(python: string, kernelDir: string, windows: boolean): string {
  const q = (s: string) => (windows ? `& "${s}"` : `'${s.replace(/'/g, `'\\''`)}'`);
  const qa = (s: string) => (windows ? `"${s}"` : `'${s.replace(/'/g, `'\\''`)}'`);
  return `${q(python)} -m pip install --upgrade ${qa(kernelDir)}`;
}
