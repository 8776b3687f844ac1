// Bundles the browser-side code (notebook renderer, chat webview) and the extension. The host and CLI run from tsc's
// output because they load native modules (onnxruntime-node, sharp) that must not be bundled.

import { existsSync } from 'node:fs';
import * as esbuild from 'esbuild';

const entries = [
  { in: 'src/renderer/index.ts', out: 'dist/renderer', format: 'esm', platform: 'browser' },
  { in: 'src/webview/index.ts', out: 'dist/webview', format: 'iife', platform: 'browser' },
  { in: 'src/extension/extension.ts', out: 'dist/extension', format: 'cjs', platform: 'node', external: ['vscode'] },
].filter((e) => existsSync(e.in));

await Promise.all(
  entries.map((e) =>
    esbuild.build({
      entryPoints: [e.in],
      outfile: `${e.out}.js`,
      bundle: true,
      format: e.format,
      platform: e.platform,
      external: e.external ?? [],
      sourcemap: true,
      target: 'es2022',
      logLevel: 'warning',
    }),
  ),
);
