// The TIFF renditions kept in the extension's storage (src/extension/renditions.ts), on real files: found again for the
// same file, not for an edited one, the oldest removed beyond the bound, and a folder that cannot be written loses only
// the convenience.
import * as assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MAX_RENDITIONS, RenditionStore } from '../../src/extension/renditions';
import type { ImagePayload } from '../../src/protocol/chat';

const png = (name: string): ImagePayload => ({
  name,
  width: 2,
  height: 1,
  data: 'iVBORw0KGgo=',
  mimeType: 'image/png',
});

describe('extension: TIFF renditions kept across reloads', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-renditions-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('gives the rendition back for the same file, and none once the file changed or is gone', async () => {
    const tif = path.join(tmp, 'a.tif');
    writeFileSync(tif, 'tiff bytes');
    const store = new RenditionStore(path.join(tmp, 'store'));
    assert.equal(await store.get(tif), undefined);
    await store.put(tif, png('a.tif'));
    assert.deepEqual(await new RenditionStore(path.join(tmp, 'store')).get(tif), png('a.tif'));
    utimesSync(tif, new Date(), new Date(Date.now() + 5000));
    assert.equal(await store.get(tif), undefined, 'an edited file');
    rmSync(tif);
    assert.equal(await store.get(tif), undefined, 'a removed file');
  });

  it(`keeps the newest ${MAX_RENDITIONS}`, async () => {
    const dir = path.join(tmp, 'many');
    const store = new RenditionStore(dir);
    const files = Array.from({ length: MAX_RENDITIONS + 3 }, (_, i) => path.join(tmp, `img${i}.tif`));
    for (const f of files) {
      writeFileSync(f, f);
      await store.put(f, png(path.basename(f)));
    }
    assert.equal(readdirSync(dir).length, MAX_RENDITIONS);
    assert.ok(await store.get(files.at(-1)!), 'the newest is kept');
  });

  it('a storage folder it cannot make: put does nothing and get finds nothing, without throwing', async () => {
    const blocked = path.join(tmp, 'blocked');
    writeFileSync(blocked, ''); // a file where the folder should be (permissions would not stop root)
    const store = new RenditionStore(blocked);
    const tif = path.join(tmp, 'b.tif');
    writeFileSync(tif, 'x');
    await store.put(tif, png('b.tif'));
    assert.equal(await store.get(tif), undefined);
  });
});
