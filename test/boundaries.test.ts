// Architecture boundaries, checked by scanning every import in src/ (mirrors shared/checks/boundaries, extended to
// src/overlay and src/protocol):
// - src/host never imports vscode;
// - src/extension never imports onnxruntime-node or sharp;
// - browser code (src/renderer, src/webview, src/overlay) imports no Node built-in, vscode, onnxruntime or sharp, and
//   its relative imports stay inside browser-safe folders (its own, src/overlay, src/protocol);
// - src/protocol imports only relative files inside src/protocol.

import * as assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const SRC = path.join(ROOT, 'src');
const NODE = new Set(builtinModules.map((m) => m.replace(/^node:/, '').split('/')[0]));
const BROWSER = ['renderer', 'webview', 'overlay'];

/** Module specifiers imported by a TS/JS source text (static, dynamic, require, re-exports, side-effect imports). */
export function importsOf(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/(^|[^:'"\w])\/\/.*$/gm, '$1');
  const re =
    /(?:\b(?:import|export)\s[^'";]*?\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g;
  return [...code.matchAll(re)].map((m) => m[1]);
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (/\.(ts|tsx|js|mjs|cjs|mts|cts)$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every rule broken by one import of a file in `part` (the first folder under src/). */
export function violations(part: string, file: string, spec: string): string[] {
  const bad: string[] = [];
  const bare = spec.replace(/^node:/, '');
  const pkg = bare.startsWith('@') ? bare.split('/').slice(0, 2).join('/') : bare.split('/')[0];
  const relative = spec.startsWith('.');
  const target = relative ? path.resolve(path.dirname(file), spec) : '';
  const targetPart = relative ? path.relative(SRC, target).split(path.sep)[0] : '';
  const where = `${path.relative(ROOT, file)} imports ${spec}`;
  if (part === 'host' && pkg === 'vscode') bad.push(`${where} (the host runs outside VS Code)`);
  if (part === 'extension' && (pkg.startsWith('onnxruntime') || pkg === 'sharp'))
    bad.push(`${where} (native code belongs in the host process)`);
  if (BROWSER.includes(part)) {
    if (spec.startsWith('node:') || NODE.has(pkg)) bad.push(`${where} (a Node built-in in browser code)`);
    if (pkg === 'vscode' || pkg.startsWith('onnxruntime') || pkg === 'sharp')
      bad.push(`${where} (not available in a webview)`);
    if (relative && ![part, 'overlay', 'protocol'].includes(targetPart))
      bad.push(`${where} (outside the browser-safe folders)`);
  }
  if (part === 'protocol' && (!relative || targetPart !== 'protocol' || target.startsWith('..'))) {
    bad.push(`${where} (protocol may import only its own files)`);
  }
  return bad;
}

describe('architecture boundaries (import scan of src/)', () => {
  it('the scanner sees every import form', () => {
    const src = [
      "import a from 'fs';",
      'import { b } from "node:path";',
      "import * as c from 'vscode'",
      "import 'sharp';",
      "const d = require('child_process');",
      "await import('onnxruntime-node')",
      "export * from './x';",
      "export { e } from '../protocol/result';",
      "import type { F } from './f';",
      "// import g from 'not-me';",
      "/* import h from 'nor-me'; */",
      "const url = 'http://example.com/x'; import i from './i';",
    ].join('\n');
    assert.deepEqual(importsOf(src), [
      'fs',
      'node:path',
      'vscode',
      'sharp',
      'child_process',
      'onnxruntime-node',
      './x',
      '../protocol/result',
      './f',
      './i',
    ]);
  });

  it('the rules catch what they should', () => {
    const f = (part: string, rel: string) => path.join(SRC, part, rel);
    assert.equal(violations('host', f('host', 'a.ts'), 'vscode').length, 1);
    assert.equal(violations('host', f('host', 'a.ts'), 'sharp').length, 0);
    assert.equal(violations('extension', f('extension', 'a.ts'), 'onnxruntime-node').length, 1);
    assert.equal(violations('extension', f('extension', 'a.ts'), 'sharp').length, 1);
    assert.equal(violations('extension', f('extension', 'a.ts'), 'vscode').length, 0);
    for (const part of BROWSER) {
      for (const spec of [
        'fs',
        'node:fs',
        'path',
        'fs/promises',
        'vscode',
        'onnxruntime-web',
        'sharp',
        '../host/x',
        '../extension/y',
      ]) {
        assert.ok(violations(part, f(part, 'a.ts'), spec).length > 0, `${part} importing ${spec}`);
      }
      for (const spec of ['./b', '../overlay/view', '../protocol/rle'])
        assert.deepEqual(violations(part, f(part, 'a.ts'), spec), []);
    }
    assert.deepEqual(violations('protocol', f('protocol', 'a.ts'), './rle'), []);
    for (const spec of ['../overlay/view', 'fs', 'ajv', '../../package.json']) {
      assert.ok(violations('protocol', f('protocol', 'a.ts'), spec).length > 0, `protocol importing ${spec}`);
    }
  });

  it('src/ keeps every boundary', () => {
    assert.ok(existsSync(SRC), 'no src/');
    const parts = readdirSync(SRC).filter((n) => statSync(path.join(SRC, n)).isDirectory());
    for (const needed of ['protocol', 'renderer', 'overlay'])
      assert.ok(parts.includes(needed), `src/${needed} is missing`);
    const bad: string[] = [];
    let scanned = 0;
    for (const part of parts) {
      for (const file of walk(path.join(SRC, part))) {
        scanned++;
        for (const spec of importsOf(readFileSync(file, 'utf8'))) bad.push(...violations(part, file, spec));
      }
    }
    assert.ok(scanned > 5, `only ${scanned} files scanned`);
    assert.deepEqual(bad, []);
  });
});
