// Builds the resampler's WebAssembly kernels: src/host/image/resample.as -> out/src/host/image/resample.wasm, next to
// the resample.js that loads it (the host, the CLI and the preprocess worker all run from out/src/host). Part of
// `npm run build`. The source is AssemblyScript; its file name does not end in .ts so that tsc leaves it alone, and it
// is handed to the compiler under a .ts name.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { compileString } from 'assemblyscript/asc';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..');
const src = path.join(ROOT, 'src/host/image/resample.as');
const out = path.join(ROOT, 'out/src/host/image/resample.wasm');

const { binary, stderr, error } = await compileString(
  { 'resample.ts': readFileSync(src, 'utf8') },
  {
    optimizeLevel: 3,
    shrinkLevel: 0,
    runtime: 'stub',
    noAssert: true,
    importMemory: true,
    sharedMemory: true,
    initialMemory: 1,
    maximumMemory: 65536,
    enable: ['simd', 'threads'],
    exportRuntime: false,
  },
);
if (error || !binary) {
  console.error(stderr.toString());
  throw new Error(`${path.relative(ROOT, src)} did not compile: ${error?.message ?? 'no output'}`);
}
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, binary);
