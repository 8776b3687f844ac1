// The overlay's stylesheet. Colours come from VS Code's theme variables (set on the notebook output and webview
// documents) with fallbacks for any other page. Injected once per document by `ensureStyles`; a webview with a
// strict CSP passes its style nonce.

import { injectStyle } from './dom';

export const STYLE_ID = 'reason-segment-overlay-style';

export const OVERLAY_CSS = `
.rs-view { color: var(--vscode-foreground, #1f1f1f); font-family: var(--vscode-font-family, system-ui, sans-serif);
  font-size: var(--vscode-font-size, 13px); line-height: 1.45; max-width: 100%; }
.rs-toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 14px; margin: 0 0 6px; }
.rs-toolbar fieldset { border: 0; margin: 0; padding: 0; display: inline-flex; gap: 8px; align-items: center; }
.rs-toolbar legend { float: left; margin-right: 6px; padding: 0; color: var(--vscode-descriptionForeground, #616161); }
.rs-toolbar label { display: inline-flex; align-items: center; gap: 3px; cursor: pointer; }
.rs-opacity { display: inline-flex; align-items: center; gap: 6px; }
.rs-opacity input[type=range] { width: 110px; accent-color: var(--vscode-button-background, #007acc); }
.rs-button { font: inherit; color: var(--vscode-button-secondaryForeground, var(--vscode-foreground, #1f1f1f));
  background: var(--vscode-button-secondaryBackground, rgba(128,128,128,0.18)); border: 1px solid var(--vscode-button-border, transparent);
  border-radius: 2px; padding: 2px 8px; cursor: pointer; }
.rs-button:hover { background: var(--vscode-button-secondaryHoverBackground, rgba(128,128,128,0.3)); }
.rs-view :focus-visible { outline: 1px solid var(--vscode-focusBorder, #0090f1); outline-offset: 1px; }
.rs-stage { position: relative; width: 100%; background: var(--vscode-editor-background, #fff); touch-action: none; }
.rs-stage canvas { position: absolute; left: 0; top: 0; width: 100%; height: 100%; display: block; }
.rs-stage .rs-highlight { pointer-events: none; }
.rs-stage .rs-markers { position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none; overflow: visible; }
.rs-stage.rs-refining { cursor: crosshair; }
.rs-marker-pos { fill: #2ea043; stroke: #fff; }
.rs-marker-neg { fill: #da3633; stroke: #fff; }
.rs-marker-box { fill: none; stroke: #ffd33d; }
.rs-refine { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 8px; margin: 0 0 6px; }
.rs-refine[hidden] { display: none; }
.rs-note { color: var(--vscode-descriptionForeground, #616161); font-size: 90%; margin: 4px 0; }
.rs-text { margin: 8px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.rs-chip { font: inherit; font-size: 92%; border-radius: 3px; padding: 0 4px; margin: 0 1px; border: 1px solid transparent;
  cursor: pointer; line-height: 1.3; }
.rs-chip sup { font-size: 75%; margin-left: 1px; }
.rs-chip.rs-nomask { opacity: 0.6; cursor: default; background: var(--vscode-badge-background, #ccc);
  color: var(--vscode-badge-foreground, #000); }
.rs-chip.rs-active, .rs-chip[aria-pressed=true] { border-color: var(--vscode-foreground, #000);
  box-shadow: 0 0 0 2px var(--vscode-focusBorder, #0090f1); }
.rs-chip.rs-off { text-decoration: line-through; }
.rs-masks { list-style: none; padding: 0; margin: 6px 0; display: flex; flex-direction: column; gap: 2px; }
.rs-mask { display: flex; align-items: center; gap: 8px; padding: 1px 4px; border-radius: 3px; }
.rs-mask.rs-active { background: var(--vscode-list-hoverBackground, rgba(128,128,128,0.15)); }
.rs-mask label { display: inline-flex; align-items: center; gap: 6px; cursor: pointer; }
.rs-swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; border: 1px solid var(--vscode-foreground, #000); }
.rs-meta { color: var(--vscode-descriptionForeground, #616161); }
.rs-error { border: 1px solid var(--vscode-inputValidation-errorBorder, #be1100); border-radius: 3px; padding: 8px 10px;
  background: var(--vscode-inputValidation-errorBackground, #f2dede); color: var(--vscode-errorForeground, var(--vscode-foreground, #a1260d)); margin: 4px 0; }
.rs-error strong { display: block; margin-bottom: 2px; }
.rs-downloads { font-family: var(--vscode-font-family, system-ui, sans-serif); font-size: var(--vscode-font-size, 13px); }
.rs-downloads a { margin-right: 10px; color: var(--vscode-textLink-foreground, #006ab1); }
`;

export function ensureStyles(doc: Document, nonce?: string): void {
  injectStyle(doc, STYLE_ID, OVERLAY_CSS, nonce);
}
