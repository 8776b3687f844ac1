// Entry point of the extension's webviews (bundled by esbuild.mjs into dist/webview.js, an IIFE loaded by a
// `<script nonce>` under the page's strict CSP): the side bar chat (src/webview/app.ts) or, when the page's
// `reason-segment-view` meta says "result", the results panel (src/webview/result.ts). Boilerplate only: acquires the
// VS Code API, finds the style nonce, starts the app, routes window messages to it and tells the extension it is ready.

import { createChatApp, type VsCodeApi } from './app';
import { createResultApp } from './result';

declare function acquireVsCodeApi(): VsCodeApi;

/** The nonce of the script that loaded us (the page's CSP nonce), used for the injected stylesheets. */
function pageNonce(): string | undefined {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="reason-segment-nonce"]')?.content;
  if (meta) return meta;
  const own = document.currentScript as HTMLScriptElement | null;
  if (own?.nonce) return own.nonce;
  return document.querySelector<HTMLScriptElement>('script[nonce]')?.nonce || undefined;
}

const nonce = pageNonce();

function start(): void {
  const vscode = acquireVsCodeApi();
  const root = document.getElementById('root') ?? document.body.appendChild(document.createElement('div'));
  const kind = document.querySelector<HTMLMetaElement>('meta[name="reason-segment-view"]')?.content;
  const app = kind === 'result' ? createResultApp(root, vscode, { nonce }) : createChatApp(root, vscode, { nonce });
  window.addEventListener('message', (e: MessageEvent) => app.receive(e.data));
  vscode.postMessage({ type: 'ready' });
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start, { once: true });
else start();
