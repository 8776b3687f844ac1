// Downloading a model bundle from a URL: resumable (HTTP Range onto a `.part` file), checksummed (sha256), with
// progress and cancellation. Two forms:
//   - a tar archive (`.tar`): one file, its sha256 given by the user or in the URL fragment (`#sha256=<hex>`),
//     extracted after the checksum matches (entries that would land outside the destination are refused);
//   - a bundle manifest (`.../lisa.manifest.json`): the manifest, then every file it lists, each verified against the
//     sha256 and size the manifest gives, fetched relative to the manifest's URL.
// Pure Node (no vscode import), unit-tested against a real http server.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import * as tar from 'tar';

export const MANIFEST_FILE = 'lisa.manifest.json';

export interface DownloadProgress {
  /** Bytes on disk for everything so far (resumed bytes included) and the total when known. */
  loaded: number;
  total?: number;
  /** The file being fetched (relative path in the bundle, or the archive name). */
  file: string;
}

export interface DownloadOptions {
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  /** Expected sha256 of a tar archive (hex); overrides the URL's `#sha256=` fragment. */
  sha256?: string;
  /** Redirects followed per request. */
  maxRedirects?: number;
}

export interface DownloadResult {
  /** Folder holding lisa.manifest.json. */
  bundleDir: string;
  files: number;
  bytes: number;
  /** Bytes that were already on disk from an earlier, interrupted download. */
  resumedBytes: number;
}

export class DownloadError extends Error {
  constructor(
    message: string,
    readonly kind: 'http' | 'checksum' | 'cancelled' | 'unsafe' | 'format' = 'http',
  ) {
    super(message);
  }
}

interface Response {
  /** The URL that answered (after redirects). */
  url: string;
  status: number;
  headers: http.IncomingHttpHeaders;
  stream: http.IncomingMessage;
}

function request(
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal | undefined,
  redirects: number,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      reject(new DownloadError(`Not a URL: ${url}`, 'format'));
      return;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      reject(new DownloadError(`Only http and https URLs can be downloaded (got ${u.protocol})`, 'format'));
      return;
    }
    if (signal?.aborted) {
      reject(new DownloadError('Download cancelled', 'cancelled'));
      return;
    }
    const lib = u.protocol === 'https:' ? https : http;
    const req = lib.get(u, { headers: { 'user-agent': 'reason-segment-vscode', ...headers }, signal }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        if (redirects <= 0) {
          reject(new DownloadError(`Too many redirects fetching ${url}`));
          return;
        }
        request(new URL(res.headers.location, u).toString(), headers, signal, redirects - 1).then(resolve, reject);
        return;
      }
      resolve({ url: u.toString(), status, headers: res.headers, stream: res });
    });
    req.on('error', (e) =>
      reject(
        signal?.aborted
          ? new DownloadError('Download cancelled', 'cancelled')
          : new DownloadError(`${url}: ${e.message}`),
      ),
    );
  });
}

async function fetchText(url: string, opts: DownloadOptions): Promise<{ text: string; url: string }> {
  const res = await request(url, {}, opts.signal, opts.maxRedirects ?? 5);
  if (res.status !== 200) {
    res.stream.resume();
    throw new DownloadError(`${url} answered HTTP ${res.status}`);
  }
  const chunks: Buffer[] = [];
  for await (const c of res.stream) chunks.push(c as Buffer);
  return { text: Buffer.concat(chunks).toString('utf8'), url: res.url };
}

async function hashFile(file: string): Promise<{ hash: ReturnType<typeof createHash>; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  if (!fs.existsSync(file)) return { hash, size };
  for await (const c of fs.createReadStream(file)) {
    hash.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { hash, size };
}

/**
 * Fetches `url` into `dest`, resuming from `dest + '.part'` when the server honours Range. Verifies size and sha256
 * when given; on a mismatch the partial file is deleted (a resumed corrupt prefix is never kept). Returns the bytes
 * that were resumed from a `.part` file (0 when it started from scratch or `dest` was already complete and verified).
 */
export async function downloadFile(
  url: string,
  dest: string,
  expect: { sha256?: string; bytes?: number },
  opts: DownloadOptions & { progressBase?: number; progressTotal?: number; label?: string } = {},
): Promise<number> {
  const part = `${dest}.part`;
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  if (fs.existsSync(dest) && expect.sha256) {
    const { hash, size } = await hashFile(dest);
    if (hash.digest('hex') === expect.sha256.toLowerCase() && (expect.bytes === undefined || size === expect.bytes))
      return 0;
    fs.rmSync(dest);
  }
  let { hash, size: have } = await hashFile(part);
  if (expect.bytes !== undefined && have > expect.bytes) {
    fs.rmSync(part);
    hash = createHash('sha256');
    have = 0;
  }
  const headers: Record<string, string> = have > 0 ? { range: `bytes=${have}-` } : {};
  const res = await request(url, headers, opts.signal, opts.maxRedirects ?? 5);
  let resumed = have;
  if (res.status === 200 && have > 0) {
    // The server ignored the Range: start over.
    hash = createHash('sha256');
    have = 0;
    resumed = 0;
  } else if (res.status === 416 && have > 0 && (expect.bytes === undefined || have === expect.bytes)) {
    res.stream.resume();
  } else if (res.status !== 200 && res.status !== 206) {
    res.stream.resume();
    throw new DownloadError(`${url} answered HTTP ${res.status}`);
  }
  const length = Number(res.headers['content-length']);
  const total = expect.bytes ?? (Number.isFinite(length) && res.status !== 416 ? have + length : undefined);
  const label = opts.label ?? path.basename(dest);
  const base = opts.progressBase ?? 0;
  if (res.status !== 416) {
    const out = fs.createWriteStream(part, { flags: have > 0 ? 'a' : 'w' });
    try {
      for await (const c of res.stream) {
        const chunk = c as Buffer;
        hash.update(chunk);
        have += chunk.length;
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
        opts.onProgress?.({ loaded: base + have, total: opts.progressTotal ?? total, file: label });
      }
    } catch (e) {
      await new Promise<void>((r) => out.end(() => r()));
      if (opts.signal?.aborted) throw new DownloadError('Download cancelled', 'cancelled');
      throw new DownloadError(
        `${url}: ${(e as Error).message} (the partial file is kept; downloading again resumes it)`,
      );
    }
    await new Promise<void>((r) => out.end(() => r()));
  }
  if (opts.signal?.aborted) throw new DownloadError('Download cancelled', 'cancelled');
  if (expect.bytes !== undefined && have !== expect.bytes) {
    if (have > expect.bytes) fs.rmSync(part, { force: true });
    throw new DownloadError(
      `${label}: got ${have} bytes, expected ${expect.bytes}${have < expect.bytes ? ' (the partial file is kept; downloading again resumes it)' : ''}`,
    );
  }
  const digest = hash.digest('hex');
  if (expect.sha256 && digest !== expect.sha256.toLowerCase()) {
    fs.rmSync(part, { force: true });
    throw new DownloadError(
      `${label}: sha256 ${digest} does not match the expected ${expect.sha256.toLowerCase()}; the file was deleted`,
      'checksum',
    );
  }
  fs.renameSync(part, dest);
  return resumed;
}

/** Refuses absolute paths, `..` segments and anything that resolves outside `root`. */
export function safeJoin(root: string, rel: string): string {
  const clean = rel.replace(/\\/g, '/');
  if (!clean || clean.startsWith('/') || /^[A-Za-z]:/.test(clean) || clean.split('/').includes('..')) {
    throw new DownloadError(`Refusing the path ${JSON.stringify(rel)}: it points outside the bundle folder`, 'unsafe');
  }
  const full = path.resolve(root, clean);
  const r = path.resolve(root);
  if (full !== r && !full.startsWith(r + path.sep))
    throw new DownloadError(`Refusing the path ${JSON.stringify(rel)}`, 'unsafe');
  return full;
}

const EXTRACTED_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory']);

/**
 * Writes the regular files and folders of a tar archive under `dest` with the maintained `tar` package (ustar, GNU and
 * pax, including the pax `size` and GNU base-256 sizes of files over 8 GiB). An entry that is a link, device or fifo,
 * or whose path would land outside `dest`, refuses the whole archive; so does a damaged or truncated one. On any
 * refusal the files this call wrote are deleted, so a cut archive never leaves a short file behind.
 */
export async function extractTar(tarFile: string, dest: string): Promise<number> {
  fs.mkdirSync(dest, { recursive: true });
  let refused: DownloadError | undefined;
  const written: string[] = [];
  try {
    await tar.x({
      file: tarFile,
      cwd: dest,
      strict: true,
      preserveOwner: false,
      filter: (p, entry) => {
        if (refused) return false;
        const type = 'type' in entry ? entry.type : 'File';
        if (!EXTRACTED_TYPES.has(type)) {
          // Links, devices and fifos have no place in a model bundle.
          refused = new DownloadError(
            `The archive holds ${p} (${type}), which is not a regular file or folder; refusing it`,
            'unsafe',
          );
          return false;
        }
        try {
          const target = safeJoin(dest, p.replace(/^(\.\/)+/, '') || '.');
          if (type !== 'Directory') written.push(target);
        } catch (e) {
          refused = e as DownloadError;
          return false;
        }
        return true;
      },
    });
  } catch (e) {
    refused ??= new DownloadError(
      `The archive is damaged or truncated (${(e as Error).message}); download it again`,
      'format',
    );
  }
  if (refused) {
    for (const f of written) fs.rmSync(f, { force: true });
    throw refused;
  }
  return written.length;
}

/** The folder holding lisa.manifest.json: `dir` itself or its single top-level sub-folder. */
export function findBundleDir(dir: string): string | undefined {
  if (fs.existsSync(path.join(dir, MANIFEST_FILE))) return dir;
  const subs = fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory());
  for (const s of subs) if (fs.existsSync(path.join(dir, s.name, MANIFEST_FILE))) return path.join(dir, s.name);
  return undefined;
}

/** sha256 from a `#sha256=<hex>` fragment, if any. */
export function fragmentSha256(url: string): string | undefined {
  const m = /#(?:.*&)?sha256=([0-9a-fA-F]{64})\b/.exec(url);
  return m ? m[1].toLowerCase() : undefined;
}

export function isManifestUrl(url: string): boolean {
  try {
    return new URL(url).pathname.endsWith('.json');
  } catch {
    return false;
  }
}

/** Downloads a bundle (tar or manifest form, see the top of this file) into `destDir`. */
export async function downloadBundle(
  url: string,
  destDir: string,
  opts: DownloadOptions = {},
): Promise<DownloadResult> {
  fs.mkdirSync(destDir, { recursive: true });
  const bare = url.replace(/#.*$/, '');
  if (isManifestUrl(bare)) {
    // Files are fetched relative to where the manifest really is (after redirects).
    const { text, url: manifestUrl } = await fetchText(bare, opts);
    let manifest: { files?: Record<string, { sha256?: string; bytes?: number }> };
    try {
      manifest = JSON.parse(text);
    } catch {
      throw new DownloadError(`${bare} is not JSON`, 'format');
    }
    const files = manifest.files;
    if (!files || typeof files !== 'object')
      throw new DownloadError(`${bare} lists no files: it is not a bundle manifest`, 'format');
    const entries = Object.entries(files);
    for (const [rel, f] of entries) {
      safeJoin(destDir, rel);
      if (!f || typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/i.test(f.sha256)) {
        throw new DownloadError(
          `The manifest gives no sha256 for ${rel}; refusing to download an unverifiable file`,
          'format',
        );
      }
    }
    const total = entries.reduce((s, [, f]) => s + (typeof f.bytes === 'number' ? f.bytes : 0), 0);
    let done = 0;
    let resumed = 0;
    for (const [rel, f] of entries) {
      const target = safeJoin(destDir, rel);
      const fileUrl = new URL(rel.split('/').map(encodeURIComponent).join('/'), manifestUrl).toString();
      resumed += await downloadFile(
        fileUrl,
        target,
        { sha256: f.sha256, bytes: f.bytes },
        {
          ...opts,
          label: rel,
          progressBase: done,
          progressTotal: total || undefined,
        },
      );
      done += typeof f.bytes === 'number' ? f.bytes : fs.statSync(target).size;
      opts.onProgress?.({ loaded: done, total: total || undefined, file: rel });
    }
    fs.writeFileSync(path.join(destDir, MANIFEST_FILE), text);
    return { bundleDir: destDir, files: entries.length + 1, bytes: done, resumedBytes: resumed };
  }
  const sha256 = opts.sha256?.toLowerCase() ?? fragmentSha256(url);
  if (!sha256)
    throw new DownloadError(
      'A checksum is needed to download an archive: give its sha256 (or add #sha256=<hex> to the URL)',
      'format',
    );
  const name = path.basename(new URL(bare).pathname) || 'bundle.tar';
  if (!/\.tar$/i.test(name))
    throw new DownloadError(`Only .tar archives and ${MANIFEST_FILE} URLs are supported (got ${name})`, 'format');
  const archive = path.join(destDir, `.${name}`);
  const resumed = await downloadFile(bare, archive, { sha256 }, { ...opts, label: name });
  const bytes = fs.statSync(archive).size;
  const files = await extractTar(archive, destDir);
  fs.rmSync(archive, { force: true });
  const bundleDir = findBundleDir(destDir);
  if (!bundleDir) throw new DownloadError(`The archive holds no ${MANIFEST_FILE}: it is not a model bundle`, 'format');
  return { bundleDir, files, bytes, resumedBytes: resumed };
}
