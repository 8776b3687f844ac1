// The model download against a real node http server on 127.0.0.1 serving the committed tiny bundle: per file from
// its manifest and as a .tar archive (made by the system's tar), with Range resume after a dropped connection,
// checksum refusal, path-escape refusal and cancellation.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  DownloadError,
  downloadBundle,
  downloadFile,
  extractTar,
  fragmentSha256,
  safeJoin,
} from '../../src/extension/download';

const ROOT = path.resolve(__dirname, '../../..');
const BUNDLE = path.join(ROOT, 'test/fixtures/bundles/tiny-7b');
const MANIFEST = 'lisa.manifest.json';

interface Served {
  url: string;
  requests: { path: string; range?: string }[];
  /** Paths whose next response is cut after this many bytes (the socket is destroyed). */
  cutAfter: Map<string, number>;
  /** Paths answered with different bytes. */
  corrupt: Set<string>;
  ignoreRange: boolean;
  close(): Promise<void>;
}

async function serve(dir: string, extra: Record<string, Buffer> = {}): Promise<Served> {
  const s = { requests: [], cutAfter: new Map(), corrupt: new Set(), ignoreRange: false } as unknown as Served;
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const rel = decodeURIComponent(u.pathname.slice(1));
    s.requests.push({ path: rel, range: req.headers.range });
    if (rel === 'redirect/lisa.manifest.json') {
      res.writeHead(302, { location: '/lisa.manifest.json' });
      res.end();
      return;
    }
    let body: Buffer | undefined = extra[rel];
    if (!body) {
      const file = path.resolve(dir, rel);
      if (!file.startsWith(dir + path.sep) || !existsSync(file) || statSync(file).isDirectory()) {
        res.writeHead(404);
        res.end();
        return;
      }
      body = readFileSync(file);
    }
    if (s.corrupt.has(rel))
      body = Buffer.concat([body.subarray(0, body.length - 1), Buffer.from([body[body.length - 1] ^ 0xff])]);
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m && !s.ignoreRange) {
      start = Number(m[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` });
        res.end();
        return;
      }
      res.writeHead(206, {
        'content-length': body.length - start,
        'content-range': `bytes ${start}-${body.length - 1}/${body.length}`,
      });
    } else {
      res.writeHead(200, { 'content-length': body.length, 'accept-ranges': 'bytes' });
    }
    const cut = s.cutAfter.get(rel);
    if (cut !== undefined) {
      s.cutAfter.delete(rel);
      // A clean FIN once the bytes are flushed: the client sees exactly `cut` bytes, then a premature end.
      res.write(body.subarray(start, start + cut), () => res.socket?.end());
      return;
    }
    res.end(body.subarray(start));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  s.url = `http://127.0.0.1:${port}/`;
  s.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return s;
}

function sha(p: string | Buffer): string {
  return createHash('sha256')
    .update(typeof p === 'string' ? readFileSync(p) : p)
    .digest('hex');
}

/** One 512-byte ustar header. `size` is the length in octal, or the raw 12-byte field (GNU base-256). */
function ustarHeader(name: string, type: string, size: number | Buffer, linkname = ''): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100);
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  if (typeof size === 'number') h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  else size.copy(h, 124);
  h.write('00000000000\0', 136);
  h.write(type, 156);
  h.write(linkname, 157, 100);
  h.write('ustar\0' + '00', 257);
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

/** GNU's base-256 size field: 0x80, then the number big-endian in the remaining 11 bytes. */
function base256(n: bigint): Buffer {
  const b = Buffer.alloc(12);
  b[0] = 0x80;
  for (let i = 11; i > 0; i--, n >>= 8n) b[i] = Number(n & 0xffn);
  return b;
}

/** A pax extended header ('x') with these records, padded to whole blocks. */
function paxHeader(records: Record<string, string>): Buffer {
  const body = Object.entries(records)
    .map(([k, v]) => {
      const rest = ` ${k}=${v}\n`;
      let n = rest.length + 1;
      while (`${n}${rest}`.length !== n) n++;
      return `${n}${rest}`;
    })
    .join('');
  return Buffer.concat([ustarHeader('PaxHeader', 'x', Buffer.byteLength(body)), blocks(Buffer.from(body))]);
}

/** `data` padded with zeros to a whole number of 512-byte blocks. */
function blocks(data: Buffer | string): Buffer {
  const b = Buffer.from(data);
  return Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
}

/** A regular file entry (header + padded data). */
function fileEntry(name: string, data: string): Buffer {
  return Buffer.concat([ustarHeader(name, '0', Buffer.byteLength(data)), blocks(data)]);
}

const END = Buffer.alloc(1024);

describe('extension: model download (real http server)', () => {
  let tmp: string;
  let srv: Served;
  let tarBytes: Buffer;
  const files = Object.keys(
    JSON.parse(readFileSync(path.join(BUNDLE, MANIFEST), 'utf8')).files as Record<string, unknown>,
  );

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-download-'));
    // A tar archive of the bundle under a top-level folder, written by the system's tar (GNU format).
    execFileSync('tar', ['-cf', path.join(tmp, 'tiny-7b.tar'), '-C', path.dirname(BUNDLE), 'tiny-7b']);
    tarBytes = readFileSync(path.join(tmp, 'tiny-7b.tar'));
    const evil = path.join(tmp, 'evil');
    mkdirSync(path.join(evil, 'a'), { recursive: true });
    writeFileSync(path.join(evil, 'x.txt'), 'x');
    execFileSync('tar', ['-cf', path.join(tmp, 'evil.tar'), '-C', evil, '--transform', 's,^,../,', 'x.txt']);
    srv = await serve(BUNDLE, {
      'tiny-7b.tar': tarBytes,
      'evil.tar': readFileSync(path.join(tmp, 'evil.tar')),
      'escape/lisa.manifest.json': Buffer.from(
        JSON.stringify({ files: { '../../etc/passwd': { bytes: 1, sha256: 'a'.repeat(64) } } }),
      ),
      'nosha/lisa.manifest.json': Buffer.from(JSON.stringify({ files: { 'a.onnx': { bytes: 1 } } })),
    });
  });

  after(async () => {
    await srv.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('downloads every file a manifest lists, verified, with progress up to the total', async () => {
    const dest = path.join(tmp, 'm1');
    const seen: number[] = [];
    const r = await downloadBundle(`${srv.url}${MANIFEST}`, dest, { onProgress: (p) => seen.push(p.loaded) });
    assert.equal(r.bundleDir, dest);
    assert.equal(r.files, files.length + 1);
    for (const f of [...files, MANIFEST]) assert.equal(sha(path.join(dest, f)), sha(path.join(BUNDLE, f)), f);
    const total = files.reduce((s, f) => s + statSync(path.join(BUNDLE, f)).size, 0);
    assert.equal(seen.at(-1), total);
    assert.ok(
      seen.every((v, i) => i === 0 || v >= seen[i - 1]),
      'progress never goes back',
    );
    assert.ok(!files.some((f) => existsSync(path.join(dest, `${f}.part`))));
  });

  it('follows redirects', async () => {
    const r = await downloadBundle(`${srv.url}redirect/${MANIFEST}`, path.join(tmp, 'm2'));
    assert.equal(r.files, files.length + 1);
  });

  it('resumes a dropped file with a Range request and ends with the right bytes', async () => {
    const dest = path.join(tmp, 'm3');
    srv.cutAfter.set('onnx/sam_image_encoder.onnx', 300_000);
    await assert.rejects(
      downloadBundle(`${srv.url}${MANIFEST}`, dest),
      (e: Error) => e instanceof DownloadError && /partial file is kept/.test(e.message),
    );
    // Node drops what it had buffered but not yet delivered when a response ends early, so the partial file holds
    // at most the bytes sent; the resume must start exactly where it ends.
    const kept = statSync(path.join(dest, 'onnx/sam_image_encoder.onnx.part')).size;
    assert.ok(kept > 0 && kept <= 300_000, `partial file of ${kept} bytes`);
    srv.requests.length = 0;
    const r = await downloadBundle(`${srv.url}${MANIFEST}`, dest);
    assert.equal(r.resumedBytes, kept);
    const ranged = srv.requests.find((q) => q.path === 'onnx/sam_image_encoder.onnx');
    assert.equal(ranged?.range, `bytes=${kept}-`);
    // Files finished before the cut are not fetched again.
    assert.ok(!srv.requests.some((q) => q.path === 'README.md'));
    assert.equal(
      sha(path.join(dest, 'onnx/sam_image_encoder.onnx')),
      sha(path.join(BUNDLE, 'onnx/sam_image_encoder.onnx')),
    );
  });

  it('starts over when the server ignores Range', async () => {
    const dest = path.join(tmp, 'm4');
    srv.cutAfter.set('goldens.json', 1000);
    await assert.rejects(downloadBundle(`${srv.url}${MANIFEST}`, dest));
    srv.ignoreRange = true;
    try {
      const r = await downloadBundle(`${srv.url}${MANIFEST}`, dest);
      assert.equal(r.resumedBytes, 0);
    } finally {
      srv.ignoreRange = false;
    }
    assert.equal(sha(path.join(dest, 'goldens.json')), sha(path.join(BUNDLE, 'goldens.json')));
  });

  it('refuses a file whose sha256 does not match, and deletes it', async () => {
    const dest = path.join(tmp, 'm5');
    srv.corrupt.add('tokenizer.json');
    try {
      await assert.rejects(
        downloadBundle(`${srv.url}${MANIFEST}`, dest),
        (e: Error) => e instanceof DownloadError && e.kind === 'checksum' && /tokenizer\.json/.test(e.message),
      );
    } finally {
      srv.corrupt.delete('tokenizer.json');
    }
    assert.ok(!existsSync(path.join(dest, 'tokenizer.json')) && !existsSync(path.join(dest, 'tokenizer.json.part')));
    assert.ok(!existsSync(path.join(dest, MANIFEST)), 'no manifest until every file is verified');
  });

  it('refuses manifests naming paths outside the folder or files without a checksum', async () => {
    await assert.rejects(
      downloadBundle(`${srv.url}escape/${MANIFEST}`, path.join(tmp, 'm6')),
      (e: Error) => (e as DownloadError).kind === 'unsafe',
    );
    await assert.rejects(downloadBundle(`${srv.url}nosha/${MANIFEST}`, path.join(tmp, 'm7')), /no sha256/);
    assert.throws(() => safeJoin(tmp, '/etc/passwd'), /outside/);
    assert.throws(() => safeJoin(tmp, 'a/../../b'), /outside/);
    assert.equal(safeJoin(tmp, 'onnx/a.onnx'), path.join(tmp, 'onnx/a.onnx'));
  });

  it('downloads a .tar with its sha256 (from the URL fragment), extracts it and finds the bundle folder', async () => {
    const dest = path.join(tmp, 't1');
    assert.equal(fragmentSha256(`${srv.url}tiny-7b.tar#sha256=${sha(tarBytes)}`), sha(tarBytes));
    const r = await downloadBundle(`${srv.url}tiny-7b.tar#sha256=${sha(tarBytes)}`, dest);
    assert.equal(r.bundleDir, path.join(dest, 'tiny-7b'));
    for (const f of [...files, MANIFEST]) assert.equal(sha(path.join(r.bundleDir, f)), sha(path.join(BUNDLE, f)), f);
    assert.ok(!existsSync(path.join(dest, '.tiny-7b.tar')), 'the archive is removed after extraction');
  });

  it('resumes a .tar, refuses a wrong checksum and needs one at all', async () => {
    const dest = path.join(tmp, 't2');
    srv.cutAfter.set('tiny-7b.tar', 1_000_000);
    await assert.rejects(downloadBundle(`${srv.url}tiny-7b.tar`, dest, { sha256: sha(tarBytes) }));
    const r = await downloadBundle(`${srv.url}tiny-7b.tar`, dest, { sha256: sha(tarBytes) });
    assert.ok(r.resumedBytes > 0 && r.resumedBytes <= 1_000_000, `resumed from ${r.resumedBytes} bytes`);
    await assert.rejects(
      downloadBundle(`${srv.url}tiny-7b.tar`, path.join(tmp, 't3'), { sha256: '0'.repeat(64) }),
      (e: Error) => (e as DownloadError).kind === 'checksum',
    );
    await assert.rejects(downloadBundle(`${srv.url}tiny-7b.tar`, path.join(tmp, 't4')), /checksum is needed/);
    await assert.rejects(
      downloadBundle(`ftp://example.invalid/x.tar#sha256=${'a'.repeat(64)}`, path.join(tmp, 't5')),
      /http and https/,
    );
  });

  it('refuses a .tar whose entries climb out of the destination', async () => {
    const evil = readFileSync(path.join(tmp, 'evil.tar'));
    await assert.rejects(
      downloadBundle(`${srv.url}evil.tar`, path.join(tmp, 't6'), { sha256: sha(evil) }),
      (e: Error) => (e as DownloadError).kind === 'unsafe',
    );
    assert.ok(!existsSync(path.join(tmp, 'x.txt')));
  });

  it('reads long names written by tar (GNU and pax)', async () => {
    const src = path.join(tmp, 'long');
    const deep = path.join(src, 'd'.repeat(90), 'e'.repeat(90));
    mkdirSync(deep, { recursive: true });
    writeFileSync(path.join(deep, `${'f'.repeat(120)}.bin`), 'hello');
    for (const format of ['gnu', 'pax']) {
      const t = path.join(tmp, `long-${format}.tar`);
      execFileSync('tar', ['-cf', t, `--format=${format}`, '-C', src, '.']);
      const out = path.join(tmp, `long-out-${format}`);
      assert.ok((await extractTar(t, out)) >= 1);
      assert.equal(
        readFileSync(path.join(out, 'd'.repeat(90), 'e'.repeat(90), `${'f'.repeat(120)}.bin`), 'utf8'),
        'hello',
      );
    }
  });

  it('honours a pax size record over the ustar size field (what tar writes for a file over 8 GiB)', async () => {
    // The ustar field says 0, as it does when the real size does not fit; the body that follows is the pax size.
    const t = path.join(tmp, 'pax-size.tar');
    writeFileSync(
      t,
      Buffer.concat([
        paxHeader({ size: '5' }),
        ustarHeader('big.bin', '0', 0),
        blocks('hello'),
        fileEntry('next.txt', 'world'),
        END,
      ]),
    );
    const out = path.join(tmp, 'pax-size-out');
    assert.equal(await extractTar(t, out), 2);
    assert.equal(readFileSync(path.join(out, 'big.bin'), 'utf8'), 'hello');
    assert.equal(readFileSync(path.join(out, 'next.txt'), 'utf8'), 'world');
  });

  it('reads a GNU base-256 size field', async () => {
    const t = path.join(tmp, 'b256.tar');
    writeFileSync(
      t,
      Buffer.concat([ustarHeader('big.bin', '0', base256(5n)), blocks('hello'), fileEntry('next.txt', 'world'), END]),
    );
    const out = path.join(tmp, 'b256-out');
    assert.equal(await extractTar(t, out), 2);
    assert.equal(readFileSync(path.join(out, 'big.bin'), 'utf8'), 'hello');
    assert.equal(readFileSync(path.join(out, 'next.txt'), 'utf8'), 'world');
  });

  it('fails cleanly on a 27 GB entry whose data is cut, leaving no short file behind', async () => {
    const huge = 27_000_000_000;
    const cut = Buffer.alloc(64 * 1024, 7);
    const cases: Record<string, Buffer> = {
      pax: Buffer.concat([
        fileEntry('README.md', 'kept?'),
        paxHeader({ size: String(huge) }),
        ustarHeader('decoder.onnx_data', '0', 0),
        cut,
      ]),
      base256: Buffer.concat([
        fileEntry('README.md', 'kept?'),
        ustarHeader('decoder.onnx_data', '0', base256(BigInt(huge))),
        cut,
      ]),
    };
    for (const [form, bytes] of Object.entries(cases)) {
      const t = path.join(tmp, `cut-${form}.tar`);
      writeFileSync(t, bytes);
      const out = path.join(tmp, `cut-${form}-out`);
      await assert.rejects(
        extractTar(t, out),
        (e: Error) => e instanceof DownloadError && e.kind === 'format' && /truncated/.test(e.message),
        form,
      );
      assert.ok(!existsSync(path.join(out, 'decoder.onnx_data')), `${form}: no partial decoder.onnx_data`);
      assert.ok(!existsSync(path.join(out, 'README.md')), `${form}: nothing from a refused archive is kept`);
    }
  });

  it('refuses links, devices, fifos and paths outside the destination, writing nothing outside it', async () => {
    const outside = path.join(tmp, 'outside');
    mkdirSync(outside, { recursive: true });
    const cases: Record<string, Buffer> = {
      'dot-dot': fileEntry('../escaped.txt', 'x'),
      'inner dot-dot': fileEntry('a/../../escaped.txt', 'x'),
      absolute: fileEntry(path.join(outside, 'escaped.txt'), 'x'),
      'pax path': Buffer.concat([paxHeader({ path: '../../escaped.txt' }), fileEntry('innocent.txt', 'x')]),
      symlink: ustarHeader('link', '2', 0, outside),
      'symlink then a file through it': Buffer.concat([
        ustarHeader('link', '2', 0, outside),
        fileEntry('link/escaped.txt', 'x'),
      ]),
      hardlink: ustarHeader('hard', '1', 0, '/etc/passwd'),
      'character device': ustarHeader('zero', '3', 0),
      fifo: ustarHeader('pipe', '6', 0),
    };
    for (const [what, bytes] of Object.entries(cases)) {
      const t = path.join(tmp, 'unsafe.tar');
      writeFileSync(t, Buffer.concat([fileEntry('first.txt', 'ok'), bytes, END]));
      const out = path.join(tmp, 'unsafe-out', what.replace(/ /g, '-'));
      await assert.rejects(extractTar(t, out), (e: Error) => e instanceof DownloadError && e.kind === 'unsafe', what);
      assert.deepEqual(readdirSync(outside), [], `${what}: nothing written outside`);
      assert.ok(
        !existsSync(path.join(tmp, 'escaped.txt')) && !existsSync(path.join(tmp, 'unsafe-out', 'escaped.txt')),
        what,
      );
      assert.ok(!existsSync(path.join(out, 'first.txt')), `${what}: nothing from a refused archive is kept`);
    }
  });

  it('refuses a symlink written by tar itself', async () => {
    const src = path.join(tmp, 'with-link');
    mkdirSync(src, { recursive: true });
    symlinkSync('/etc/passwd', path.join(src, 'passwd'));
    const t = path.join(tmp, 'with-link.tar');
    execFileSync('tar', ['-cf', t, '-C', src, '.']);
    await assert.rejects(
      extractTar(t, path.join(tmp, 'with-link-out')),
      (e: Error) => (e as DownloadError).kind === 'unsafe' && /passwd \(SymbolicLink\)/.test(e.message),
    );
  });

  it('stops on cancel and keeps the partial file for a later resume', async () => {
    const ac = new AbortController();
    const dest = path.join(tmp, 'c1', 'big.tar');
    srv.cutAfter.delete('tiny-7b.tar');
    await assert.rejects(
      downloadFile(
        `${srv.url}tiny-7b.tar`,
        dest,
        { sha256: sha(tarBytes) },
        {
          signal: ac.signal,
          onProgress: (p) => {
            if (p.loaded > 0) ac.abort();
          },
        },
      ),
      (e: Error) => (e as DownloadError).kind === 'cancelled',
    );
    assert.ok(!existsSync(dest));
    const resumed = await downloadFile(`${srv.url}tiny-7b.tar`, dest, { sha256: sha(tarBytes) });
    assert.ok(resumed >= 0);
    assert.equal(sha(dest), sha(tarBytes));
  });
});
