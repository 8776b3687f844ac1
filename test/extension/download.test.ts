// The model download against a real node http server on 127.0.0.1 serving the committed tiny bundle: per file from
// its manifest and as a .tar archive (made by the system's tar), with Range resume after a dropped connection,
// checksum refusal, path-escape refusal and cancellation.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { DownloadError, downloadBundle, downloadFile, extractTar, fragmentSha256, safeJoin } from '../../src/extension/download';

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
    if (s.corrupt.has(rel)) body = Buffer.concat([body.subarray(0, body.length - 1), Buffer.from([body[body.length - 1] ^ 0xff])]);
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m && !s.ignoreRange) {
      start = Number(m[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` });
        res.end();
        return;
      }
      res.writeHead(206, { 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` });
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
  s.close = () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  return s;
}

function sha(p: string | Buffer): string {
  return createHash('sha256').update(typeof p === 'string' ? readFileSync(p) : p).digest('hex');
}

describe('extension: model download (real http server)', () => {
  let tmp: string;
  let srv: Served;
  let tarBytes: Buffer;
  const files = Object.keys(JSON.parse(readFileSync(path.join(BUNDLE, MANIFEST), 'utf8')).files as Record<string, unknown>);

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
      'escape/lisa.manifest.json': Buffer.from(JSON.stringify({ files: { '../../etc/passwd': { bytes: 1, sha256: 'a'.repeat(64) } } })),
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
    assert.ok(seen.every((v, i) => i === 0 || v >= seen[i - 1]), 'progress never goes back');
    assert.ok(!files.some((f) => existsSync(path.join(dest, `${f}.part`))));
  });

  it('follows redirects', async () => {
    const r = await downloadBundle(`${srv.url}redirect/${MANIFEST}`, path.join(tmp, 'm2'));
    assert.equal(r.files, files.length + 1);
  });

  it('resumes a dropped file with a Range request and ends with the right bytes', async () => {
    const dest = path.join(tmp, 'm3');
    srv.cutAfter.set('onnx/sam_image_encoder.onnx', 300_000);
    await assert.rejects(downloadBundle(`${srv.url}${MANIFEST}`, dest), (e: Error) => e instanceof DownloadError && /partial file is kept/.test(e.message));
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
    assert.equal(sha(path.join(dest, 'onnx/sam_image_encoder.onnx')), sha(path.join(BUNDLE, 'onnx/sam_image_encoder.onnx')));
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
      await assert.rejects(downloadBundle(`${srv.url}${MANIFEST}`, dest), (e: Error) => e instanceof DownloadError && e.kind === 'checksum' && /tokenizer\.json/.test(e.message));
    } finally {
      srv.corrupt.delete('tokenizer.json');
    }
    assert.ok(!existsSync(path.join(dest, 'tokenizer.json')) && !existsSync(path.join(dest, 'tokenizer.json.part')));
    assert.ok(!existsSync(path.join(dest, MANIFEST)), 'no manifest until every file is verified');
  });

  it('refuses manifests naming paths outside the folder or files without a checksum', async () => {
    await assert.rejects(downloadBundle(`${srv.url}escape/${MANIFEST}`, path.join(tmp, 'm6')), (e: Error) => (e as DownloadError).kind === 'unsafe');
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
    await assert.rejects(downloadBundle(`${srv.url}tiny-7b.tar`, path.join(tmp, 't3'), { sha256: '0'.repeat(64) }), (e: Error) => (e as DownloadError).kind === 'checksum');
    await assert.rejects(downloadBundle(`${srv.url}tiny-7b.tar`, path.join(tmp, 't4')), /checksum is needed/);
    await assert.rejects(downloadBundle('ftp://example.invalid/x.tar#sha256=' + 'a'.repeat(64), path.join(tmp, 't5')), /http and https/);
  });

  it('refuses a .tar whose entries climb out of the destination', async () => {
    const evil = readFileSync(path.join(tmp, 'evil.tar'));
    await assert.rejects(downloadBundle(`${srv.url}evil.tar`, path.join(tmp, 't6'), { sha256: sha(evil) }), (e: Error) => (e as DownloadError).kind === 'unsafe');
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
      assert.equal(readFileSync(path.join(out, 'd'.repeat(90), 'e'.repeat(90), `${'f'.repeat(120)}.bin`), 'utf8'), 'hello');
    }
  });

  it('stops on cancel and keeps the partial file for a later resume', async () => {
    const ac = new AbortController();
    const dest = path.join(tmp, 'c1', 'big.tar');
    srv.cutAfter.delete('tiny-7b.tar');
    await assert.rejects(
      downloadFile(`${srv.url}tiny-7b.tar`, dest, { sha256: sha(tarBytes) }, { signal: ac.signal, onProgress: (p) => { if (p.loaded > 0) ac.abort(); } }),
      (e: Error) => (e as DownloadError).kind === 'cancelled',
    );
    assert.ok(!existsSync(dest));
    const resumed = await downloadFile(`${srv.url}tiny-7b.tar`, dest, { sha256: sha(tarBytes) });
    assert.ok(resumed >= 0);
    assert.equal(sha(dest), sha(tarBytes));
  });
});
