// Test harness for the browser surfaces: a real node http server on 127.0.0.1 (ephemeral port) serving dist/ and
// the committed payloads, a page that loads dist/renderer.js as an ES module, and Debian's Chromium driven by
// playwright-core. The page calls the renderer's activate() with a stand-in renderer context: it stands in for VS
// Code's notebook host (the output iframe and its messaging), which cannot run in this test.

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

export const ROOT = path.resolve(__dirname, '../../..');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>renderer harness</title>
<style>
  /* A few of the variables VS Code sets on a notebook output document (Light+ values). */
  :root { --vscode-foreground: #3b3b3b; --vscode-editor-background: #ffffff; --vscode-focusBorder: #005fb8;
    --vscode-font-family: sans-serif; --vscode-font-size: 13px; }
  body { margin: 0; padding: 8px; background: var(--vscode-editor-background); }
  #out { width: 784px; }
</style></head>
<body><div id="out"></div>
<script type="module">
  import { activate } from '/dist/renderer.js';
  window.__messages = [];
  window.__errors = [];
  window.addEventListener('error', (e) => window.__errors.push(String(e.message)));
  window.addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason)));
  // Stand-in for VS Code's notebook renderer host: the RendererContext and OutputItem it would pass.
  window.renderPayload = async (payload, opts = {}) => {
    const messaging = opts.messaging !== false;
    const ctx = {
      getState() { return undefined; }, setState() {}, async getRenderer() { return undefined; },
      workspace: { isTrusted: true },
      ...(messaging ? { postMessage: (m) => window.__messages.push(m), onDidReceiveMessage: () => ({ dispose() {} }) } : {}),
    };
    const api = await activate(ctx);
    const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
    const item = {
      id: opts.id ?? 'cell1-output1', mime: 'application/vnd.reason-segment.result+json', metadata: {},
      text: () => text, json: () => JSON.parse(text), data: () => new TextEncoder().encode(text),
      blob: () => new Blob([text], { type: 'application/json' }),
    };
    const out = document.getElementById('out');
    out.replaceChildren();
    const element = document.createElement('div');
    out.appendChild(element);
    await api.renderOutputItem(item, element);
    window.__api = api;
  };
  window.__harnessReady = true;
</script></body></html>`;

const TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.map': 'application/json',
  '.json': 'application/json',
  '.html': 'text/html',
  '.css': 'text/css',
  '.png': 'image/png',
};

export interface Harness {
  url: string;
  context: BrowserContext;
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

/** Serves `/` (the page), `/dist/*` and `/fixtures/*` (test/fixtures/payloads) from the checkout. */
export async function startServer(
  extraRoots: Record<string, string> = {},
): Promise<{ url: string; close(): Promise<void> }> {
  const roots: Record<string, string> = {
    '/dist/': path.join(ROOT, 'dist'),
    '/fixtures/': path.join(ROOT, 'test/fixtures/payloads'),
    ...extraRoots,
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
      return;
    }
    for (const [prefix, dir] of Object.entries(roots)) {
      if (!url.pathname.startsWith(prefix)) continue;
      const file = path.resolve(dir, decodeURIComponent(url.pathname.slice(prefix.length)));
      if (!file.startsWith(dir + path.sep) || !existsSync(file)) break;
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
      res.end(readFileSync(file));
      return;
    }
    res.writeHead(404);
    res.end('not found');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** `extraRoots` maps more URL prefixes ('/big/') to folders (the benchmark serves generated payloads). */
export async function startHarness(extraRoots: Record<string, string> = {}): Promise<Harness> {
  if (!existsSync(path.join(ROOT, 'dist/renderer.js')))
    throw new Error('dist/renderer.js is missing: run `node esbuild.mjs` first');
  if (!existsSync(CHROMIUM))
    throw new Error(`no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  const server = await startServer(extraRoots);
  const userDataDir = mkdtempSync(path.join(os.tmpdir(), 'rs-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 800, height: 900 },
    deviceScaleFactor: 1,
  });
  return {
    url: server.url,
    context,
    async newPage() {
      const page = await context.newPage();
      await page.goto(server.url);
      // Generous: on a loaded 2-core machine the first module load has taken over 30 s.
      await page.waitForFunction(() => (window as any).__harnessReady === true, undefined, { timeout: 90_000 });
      return page;
    },
    async close() {
      await context.close();
      await server.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Renders a payload (object or raw JSON text) through the renderer; waits for the image when there is one. */
export async function render(
  page: Page,
  payload: unknown,
  opts: { messaging?: boolean; waitImage?: boolean } = {},
): Promise<void> {
  await page.evaluate(([p, o]) => (window as any).renderPayload(p, o), [
    payload,
    { messaging: opts.messaging },
  ] as const);
  if (opts.waitImage !== false) await page.waitForSelector('.rs-view[data-ready="true"]');
}

/** RGBA pixels of a canvas, read in the page with getImageData. */
export async function readCanvas(
  page: Page,
  selector: string,
): Promise<{ width: number; height: number; data: Buffer }> {
  const r = await page.evaluate((sel) => {
    const c = document.querySelector(sel) as HTMLCanvasElement;
    const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let s = '';
    for (let i = 0; i < d.length; i += 0x8000)
      s += String.fromCharCode.apply(null, Array.from(d.subarray(i, i + 0x8000)));
    return { width: c.width, height: c.height, b64: btoa(s) };
  }, selector);
  return { width: r.width, height: r.height, data: Buffer.from(r.b64, 'base64') };
}
