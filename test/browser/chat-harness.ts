// Test harness for the extension's webviews (the side bar chat and the results panel): the page loads
// dist/webview.js under the strict CSP the extension gives them, in Debian's Chromium (playwright-core), served by
// harness.ts's node http server on 127.0.0.1.
//
// Behind the chat page runs the REAL chat logic, src/extension/chatController.ts, in this Node process, on the REAL
// inference host (test/helpers/chat-bridge.ts): the webview's postMessage reaches `controller.receive` through a
// Playwright binding, and what the controller posts is delivered with window.postMessage.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import type { ChatBridge } from '../helpers/chat-bridge';
import { CHROMIUM, CHROMIUM_ARGS, ROOT, startServer } from './harness';

export { ChatBridge, IMAGES, readImage, TINY_BUNDLE } from '../helpers/chat-bridge';

export const CSP = (nonce: string) =>
  `default-src 'none'; img-src data: blob:; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}'`;

export type PageKind = 'chat' | 'result';

/** The webview page as webviewHtml.ts writes it, with a stand-in for VS Code's webview API (acquireVsCodeApi). */
function webviewPage(nonce: string, kind: PageKind, lang: string): string {
  return `<!doctype html>
<html lang="${lang}"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP(nonce)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="reason-segment-view" content="${kind}">
<title>Reason Segment webview harness</title>
<style nonce="${nonce}">
  /* A few of the variables VS Code sets on a webview document (Dark Modern values). */
  :root { --vscode-foreground: #cccccc; --vscode-editor-background: #1f1f1f; --vscode-sideBar-background: #181818;
    --vscode-focusBorder: #0078d4; --vscode-font-family: sans-serif; --vscode-font-size: 13px;
    --vscode-button-background: #0078d4; --vscode-button-foreground: #ffffff; --vscode-descriptionForeground: #9d9d9d; }
</style>
<script nonce="${nonce}">
  // postMessage goes to the Node side through a Playwright binding; getState returns what the test put there (what
  // VS Code keeps for a re-created webview).
  window.__errors = [];
  window.__csp = [];
  window.__posted = [];
  window.__setStateCount = 0;
  window.addEventListener('error', (e) => window.__errors.push(String(e.message)));
  window.addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason)));
  document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
  let acquired = false;
  window.acquireVsCodeApi = () => {
    if (acquired) throw new Error('acquireVsCodeApi may only be called once');
    acquired = true;
    return {
      postMessage(m) { window.__posted.push(m); if (window.__rsToExtension) window.__rsToExtension(m); },
      getState() { return window.__rsState === undefined ? window.__rsInitialState : window.__rsState; },
      setState(s) { window.__rsState = s; window.__setStateCount++; },
    };
  };
</script>
</head>
<body><div id="root"></div>
<script nonce="${nonce}" src="/dist/webview.js"></script>
</body></html>`;
}

export interface WebviewHarness {
  context: BrowserContext;
  nonce: string;
  /** Opens the chat page (optionally with a cached getState value), its messages going to `ext`. */
  openPanel(ext: ChatBridge, opts?: { initialState?: unknown; lang?: string }): Promise<Page>;
  /** Opens the results panel page; what it posts is collected in the page's `__posted`. */
  openResultPage(opts?: { lang?: string; width?: number; height?: number }): Promise<Page>;
  close(): Promise<void>;
}

export async function startChatHarness(): Promise<WebviewHarness> {
  if (!existsSync(path.join(ROOT, 'dist/webview.js')))
    throw new Error('dist/webview.js is missing: run `node esbuild.mjs` first');
  if (!existsSync(CHROMIUM))
    throw new Error(`no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  const nonce = randomBytes(16).toString('base64');
  const pageDir = mkdtempSync(path.join(os.tmpdir(), 'rs-chat-page-'));
  for (const kind of ['chat', 'result'] as const)
    for (const lang of ['en', 'zh-cn'])
      writeFileSync(path.join(pageDir, `${kind}-${lang}.html`), webviewPage(nonce, kind, lang));
  const server = await startServer({ '/chat/': pageDir });
  const userDataDir = mkdtempSync(path.join(os.tmpdir(), 'rs-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 520, height: 900 },
    deviceScaleFactor: 1,
  });
  return {
    context,
    nonce,
    async openPanel(ext, opts = {}) {
      const page = await context.newPage();
      if (opts.initialState !== undefined) {
        await page.addInitScript((s) => {
          (window as any).__rsInitialState = s;
        }, opts.initialState);
      }
      await ext.attach(page);
      await page.goto(`${server.url}chat/chat-${opts.lang ?? 'en'}.html`);
      await page.waitForSelector('.rs-chat');
      return page;
    },
    async openResultPage(opts = {}) {
      const page = await context.newPage();
      await page.setViewportSize({ width: opts.width ?? 1100, height: opts.height ?? 700 });
      await page.goto(`${server.url}chat/result-${opts.lang ?? 'en'}.html`);
      await page.waitForSelector('.rs-rp');
      return page;
    },
    async close() {
      await context.close();
      await server.close();
      rmSync(userDataDir, { recursive: true, force: true });
      rmSync(pageDir, { recursive: true, force: true });
    },
  };
}
