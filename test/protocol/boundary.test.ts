// src/protocol/ runs in Node and in browsers: it may import only itself, and nothing with side effects.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './coco_ref';

describe('protocol/ import boundary', function () {
  const dir = path.join(repoRoot(), 'src/protocol');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.ts'));

  it('imports only sibling protocol modules', function () {
    assert.ok(files.includes('rle.ts') && files.includes('rpc.ts'));
    for (const f of files) {
      const src = fs.readFileSync(path.join(dir, f), 'utf8');
      const specs = [
        ...src.matchAll(
          /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]|require\s*\(\s*['"]([^'"]+)['"]/g,
        ),
      ].map((m) => m[1] ?? m[2] ?? m[3]);
      for (const s of specs) assert.match(s, /^\.\/[a-z-]+$/, `${f} imports ${s}`);
      assert.doesNotMatch(src, /^\s*import\s+['"]/m, `${f} has a side-effect import`);
      assert.doesNotMatch(
        src,
        /\b(process|Buffer|require|globalThis|window|document)\s*[.(]/,
        `${f} touches a host global`,
      );
    }
  });
});
