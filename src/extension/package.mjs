// `npm run package` (after the build): packs one .vsix per target with only that platform's native binaries.
//   node src/extension/package.mjs --target linux-x64 [--target ...] [--out DIR]
// onnxruntime-node ships every platform's CPU binaries in one package: everything but the target's folder is left
// out. sharp loads @img/sharp-<platform> packages, which npm installs for the machine it runs on only: a target
// whose @img package is not installed is refused (install it with `npm install --cpu=... --os=...` first).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const ORT_TARGETS = {
  'linux-x64': 'linux/x64',
  'linux-arm64': 'linux/arm64',
  'darwin-arm64': 'darwin/arm64',
  'win32-x64': 'win32/x64',
  'win32-arm64': 'win32/arm64',
};
const ORT_ALL = Object.values(ORT_TARGETS);

const args = process.argv.slice(2);
const targets = [];
let outDir = ROOT;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--target') targets.push(args[++i]);
  else if (args[i] === '--out') outDir = path.resolve(args[++i]);
}
if (!targets.length) targets.push(`${process.platform}-${process.arch}`);

for (const f of ['dist/extension.js', 'dist/renderer.js', 'out/src/host/server.js']) {
  if (!existsSync(path.join(ROOT, f))) throw new Error(`${f} is missing: run \`npm run build\` first`);
}
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const base = readFileSync(path.join(ROOT, '.vscodeignore'), 'utf8');
const installedImg = existsSync(path.join(ROOT, 'node_modules/@img'))
  ? execFileSync('ls', [path.join(ROOT, 'node_modules/@img')])
      .toString()
      .split('\n')
      .filter(Boolean)
  : [];

mkdirSync(outDir, { recursive: true });
const results = [];
for (const target of targets) {
  const ort = ORT_TARGETS[target];
  if (!ort)
    throw new Error(
      `onnxruntime-node ${pkg.dependencies['onnxruntime-node']} has no binaries for ${target} (it has ${Object.keys(ORT_TARGETS).join(', ')})`,
    );
  const sharpPkg = `sharp-${target}`;
  if (!installedImg.includes(sharpPkg))
    throw new Error(
      `@img/${sharpPkg} is not installed here (installed: ${installedImg.join(', ')}); sharp cannot load on ${target} without it`,
    );
  const lines = [base, `# added by package.mjs for ${target}`];
  for (const o of ORT_ALL) if (o !== ort) lines.push(`node_modules/onnxruntime-node/bin/napi-v*/${o}/**`);
  for (const img of installedImg) {
    if (img === 'colour') continue;
    if (img !== sharpPkg && img !== `sharp-libvips-${target}`) lines.push(`node_modules/@img/${img}/**`);
  }
  const ignoreFile = path.join(ROOT, `.vscodeignore.${target}.tmp`);
  writeFileSync(ignoreFile, `${lines.join('\n')}\n`);
  const out = path.join(outDir, `${pkg.name}-${pkg.version}-${target}.vsix`);
  rmSync(out, { force: true });
  try {
    execFileSync(
      process.execPath,
      [
        path.join(ROOT, 'node_modules/@vscode/vsce/vsce'),
        'package',
        '--target',
        target,
        '--ignoreFile',
        ignoreFile,
        '--allow-missing-repository',
        '--skip-license',
        '--no-rewrite-relative-links',
        '-o',
        out,
      ],
      { cwd: ROOT, stdio: 'inherit' },
    );
  } finally {
    rmSync(ignoreFile, { force: true });
  }
  results.push({ target, file: out, bytes: statSync(out).size });
}
for (const r of results) console.log(`${r.target}: ${r.file} ${(r.bytes / 1048576).toFixed(1)} MB`);
