// Reading a file named by a client, safely: the path is opened without blocking (a FIFO would otherwise hold a libuv
// thread, and the request queue behind it, until someone writes to it), its type is checked on the open descriptor (no
// window between the check and the read), and no more than a stated number of bytes is ever read (/dev/zero,
// /dev/urandom or a file still growing cannot fill memory).
import { constants, promises as fs } from 'node:fs';

export type ReadRefusal = 'not_found' | 'not_a_file' | 'too_big';

export class FileReadError extends Error {
  constructor(
    readonly reason: ReadRefusal,
    message: string,
  ) {
    super(message);
    this.name = 'FileReadError';
  }
}

const KINDS: Array<[string, (s: import('node:fs').Stats) => boolean]> = [
  ['a folder', (s) => s.isDirectory()],
  ['a named pipe (FIFO)', (s) => s.isFIFO()],
  ['a character device', (s) => s.isCharacterDevice()],
  ['a block device', (s) => s.isBlockDevice()],
  ['a socket', (s) => s.isSocket()],
];

/**
 * The bytes of a regular file, at most `maxBytes` of them. `label` names the file in messages; `limitWhy` says where
 * the byte limit comes from. Throws FileReadError.
 */
export async function readRegularFile(
  file: string,
  maxBytes: number,
  label: string,
  limitWhy: string,
): Promise<Buffer> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EACCES'
          ? 'cannot be read (no permission)'
          : `cannot be read (${code ?? e})`;
    throw new FileReadError('not_found', `${label} ${why}; check the image path`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      const kind = KINDS.find(([, is]) => is(st))?.[0] ?? 'not a regular file';
      throw new FileReadError('not_a_file', `${label} is ${kind}, not an image file; give the path of a picture file`);
    }
    const tooBig = (n: string) =>
      new FileReadError(
        'too_big',
        `${label} is ${n} bytes, over the ${mb(maxBytes)} read limit (${limitWhy}); downscale or re-encode it`,
      );
    if (st.size > maxBytes) throw tooBig(String(st.size));
    // Read to the end rather than trusting st.size: a file can change between the stat and the read.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const want = Math.min(Math.max(st.size - total, 1 << 16), maxBytes + 1 - total);
      const chunk = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(chunk, 0, want, null);
      if (bytesRead === 0) break;
      chunks.push(bytesRead === want ? chunk : chunk.subarray(0, bytesRead));
      total += bytesRead;
      if (total > maxBytes) throw tooBig(`over ${maxBytes}`);
    }
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

const mb = (n: number) => `${(n / (1 << 20)).toFixed(0)} MB`;
