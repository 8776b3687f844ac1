// PNG renditions of TIFF images (the host's re-encoding; no webview decodes TIFF), kept in the extension's storage so
// that a conversation about a TIFF still shows its picture after a window reload. One JSON file per image, named by a
// hash of its path, size and modification time (an edited file needs a new turn for its picture); the oldest beyond
// MAX_RENDITIONS are removed. No vscode import: tested in Node.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { ImagePayload } from '../protocol/chat';

export const MAX_RENDITIONS = 32;

export class RenditionStore {
  constructor(private readonly dir: string) {}

  /** The stored rendition of the image at `imagePath` as it is now, or undefined. */
  async get(imagePath: string): Promise<ImagePayload | undefined> {
    const file = await this.fileFor(imagePath);
    if (!file) return undefined;
    try {
      const p = JSON.parse(await fs.readFile(file, 'utf8')) as ImagePayload;
      return typeof p.data === 'string' && p.mimeType === 'image/png' ? p : undefined;
    } catch {
      return undefined; // never stored, or unreadable: the caller shows the file (or nothing) as before
    }
  }

  /** Keeps `rendition` for the image at `imagePath`; a failure to write loses only this convenience. */
  async put(imagePath: string, rendition: ImagePayload): Promise<void> {
    const file = await this.fileFor(imagePath);
    if (!file) return;
    try {
      await fs.mkdir(this.dir, { recursive: true });
      const part = `${file}.part`;
      await fs.writeFile(part, JSON.stringify(rendition));
      await fs.rename(part, file);
      await this.prune(path.basename(file));
    } catch {
      /* storage full or read-only: the picture is missing after a reload, as without this store */
    }
  }

  private async fileFor(imagePath: string): Promise<string | undefined> {
    const st = await fs.stat(imagePath).catch(() => undefined);
    if (!st) return undefined;
    const key = createHash('sha256')
      .update(`${path.resolve(imagePath)}\0${st.size}\0${st.mtimeMs}`)
      .digest('hex');
    return path.join(this.dir, `${key}.json`);
  }

  /** Removes the oldest beyond the bound, never `keep` (the one just written: times can tie). */
  private async prune(keep: string): Promise<void> {
    const names = (await fs.readdir(this.dir)).filter((n) => n.endsWith('.json'));
    if (names.length <= MAX_RENDITIONS) return;
    const dated = await Promise.all(
      names.map(async (n) => ({ n, t: (await fs.stat(path.join(this.dir, n))).mtimeMs })),
    );
    dated.sort((a, b) => (a.n === keep ? 1 : b.n === keep ? -1 : a.t - b.t));
    for (const { n } of dated.slice(0, dated.length - MAX_RENDITIONS))
      await fs.rm(path.join(this.dir, n), { force: true });
  }
}
