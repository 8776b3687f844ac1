// The HTML of the extension's webviews (the side bar chat and the results panel): strict CSP, one nonce'd script
// from dist/ (the same bundle; the `reason-segment-view` meta says which UI it starts), styles only by nonce.
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';

export type WebviewKind = 'chat' | 'result';

export function nonce(): string {
  return randomBytes(18).toString('base64').replace(/[+/=]/g, '');
}

export function webviewHtml(
  webview: vscode.Webview,
  extensionUri: vscode.Uri,
  lang: string,
  kind: WebviewKind,
): string {
  const n = nonce();
  const script = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview.js'));
  const csp = [
    "default-src 'none'",
    `img-src ${webview.cspSource} data: blob:`,
    `style-src ${webview.cspSource} 'nonce-${n}'`,
    `font-src ${webview.cspSource}`,
    `script-src 'nonce-${n}'`,
    "connect-src 'none'",
    "frame-src 'none'",
    "form-action 'none'",
    "base-uri 'none'",
  ].join('; ');
  return `<!doctype html>
<html lang="${lang}"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="reason-segment-nonce" content="${n}">
<meta name="reason-segment-view" content="${kind}">
<title>Reason Segment</title>
</head><body>
<div id="root"></div>
<script nonce="${n}" src="${script.toString()}"></script>
</body></html>`;
}

export function webviewOptions(extensionUri: vscode.Uri): vscode.WebviewOptions {
  return {
    enableScripts: true,
    enableCommandUris: false,
    localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'dist'), vscode.Uri.joinPath(extensionUri, 'media')],
  };
}
