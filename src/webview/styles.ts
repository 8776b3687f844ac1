// The chat panel's stylesheet, injected once with the page's style nonce (the webview's CSP allows no inline
// styles). Colours and fonts are VS Code's theme variables, so light, dark and high-contrast themes just work.

import { injectStyle } from '../overlay/dom';

export const CHAT_STYLE_ID = 'reason-segment-chat-style';

/** The overlay's mask list in a narrow column (the side bar, the results panel's side): the mask's name never breaks,
 *  its figures go on their own line, buttons keep one line. */
export const MASK_LIST_CSS = `
.rs-mask { flex-wrap: wrap; }
.rs-mask label { flex: 1 1 auto; flex-wrap: wrap; white-space: nowrap; min-width: 0; }
.rs-mask .rs-meta { white-space: normal; flex-basis: 100%; padding-left: 22px; font-size: 92%; }
.rs-mask .rs-button, .rs-toolbar .rs-button { white-space: nowrap; }
`;

export const CHAT_CSS = `${MASK_LIST_CSS}
:root { color-scheme: light dark; }
body { margin: 0; padding: 0; color: var(--vscode-foreground); background: var(--vscode-sideBar-background, var(--vscode-editor-background));
  font-family: var(--vscode-font-family, system-ui, sans-serif); font-size: var(--vscode-font-size, 13px); }
.rs-chat { display: flex; flex-direction: column; min-height: 100vh; box-sizing: border-box; padding: 8px; gap: 8px; }
.rs-sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.rs-chat button { font: inherit; color: var(--vscode-button-foreground, #fff); background: var(--vscode-button-background, #007acc);
  border: 1px solid var(--vscode-button-border, transparent); border-radius: 2px; padding: 3px 10px; cursor: pointer; }
.rs-chat button:hover { background: var(--vscode-button-hoverBackground, #0062a3); }
.rs-chat button.rs-secondary { color: var(--vscode-button-secondaryForeground, var(--vscode-foreground));
  background: var(--vscode-button-secondaryBackground, rgba(128,128,128,0.2)); }
.rs-chat button.rs-secondary:hover { background: var(--vscode-button-secondaryHoverBackground, rgba(128,128,128,0.3)); }
.rs-chat button:disabled { opacity: 0.5; cursor: default; }
.rs-chat :focus-visible { outline: 1px solid var(--vscode-focusBorder, #0090f1); outline-offset: 1px; }
.rs-header { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.rs-thumb { width: 48px; height: 48px; object-fit: cover; border-radius: 3px; border: 1px solid var(--vscode-widget-border, rgba(128,128,128,0.35)); }
.rs-thumb-empty { display: inline-block; background: var(--vscode-input-background, rgba(128,128,128,0.1)); }
.rs-image-name { font-weight: 600; overflow-wrap: anywhere; flex: 1 1 120px; }
.rs-drop { border: 1px dashed var(--vscode-widget-border, rgba(128,128,128,0.5)); border-radius: 4px; padding: 6px 8px;
  color: var(--vscode-descriptionForeground); text-align: center; }
.rs-drop.rs-dragover { border-color: var(--vscode-focusBorder, #0090f1); background: var(--vscode-list-dropBackground, rgba(0,144,241,0.1)); }
.rs-toolbar-row { display: flex; gap: 6px; flex-wrap: wrap; align-items: center; }
.rs-toolbar-row select { font: inherit; color: var(--vscode-dropdown-foreground, inherit); background: var(--vscode-dropdown-background, inherit);
  border: 1px solid var(--vscode-dropdown-border, rgba(128,128,128,0.5)); max-width: 100%; }
.rs-status { color: var(--vscode-descriptionForeground); font-size: 92%; }
.rs-log { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 10px; flex: 1 1 auto; }
.rs-turn { display: flex; flex-direction: column; gap: 6px; }
.rs-bubble { border-radius: 6px; padding: 6px 9px; max-width: 100%; box-sizing: border-box; }
.rs-user { align-self: flex-end; background: var(--vscode-textBlockQuote-background, rgba(128,128,128,0.12));
  border: 1px solid var(--vscode-textBlockQuote-border, transparent); }
.rs-assistant { align-self: stretch; border: 1px solid var(--vscode-widget-border, rgba(128,128,128,0.25)); }
.rs-who { display: block; font-size: 85%; color: var(--vscode-descriptionForeground); margin-bottom: 2px; }
.rs-msg, .rs-answer { white-space: pre-wrap; overflow-wrap: anywhere; }
.rs-answer[aria-busy=true]::after { content: '\\2589'; animation: rs-blink 1s steps(2) infinite; margin-left: 1px; }
@keyframes rs-blink { 50% { opacity: 0; } }
@media (prefers-reduced-motion: reduce) { .rs-answer[aria-busy=true]::after { animation: none; } }
.rs-turn-note { color: var(--vscode-descriptionForeground); font-size: 92%; margin-top: 4px; }
.rs-turn-error { color: var(--vscode-errorForeground, #a1260d); margin-top: 4px; }
.rs-turn-actions { margin-top: 6px; display: flex; gap: 6px; }
.rs-notice { border-left: 3px solid var(--vscode-editorWarning-foreground, #bf8803); padding: 4px 8px;
  background: var(--vscode-inputValidation-warningBackground, rgba(191,136,3,0.1)); }
.rs-notice.rs-restarted { border-left-color: var(--vscode-testing-iconPassed, #388a34); }
.rs-empty { color: var(--vscode-descriptionForeground); }
.rs-composer { display: flex; flex-direction: column; gap: 6px; position: sticky; bottom: 0; padding-top: 6px;
  background: var(--vscode-sideBar-background, var(--vscode-editor-background)); }
.rs-composer textarea { font: inherit; color: var(--vscode-input-foreground, inherit); background: var(--vscode-input-background, transparent);
  border: 1px solid var(--vscode-input-border, rgba(128,128,128,0.5)); border-radius: 2px; padding: 4px 6px; resize: vertical;
  min-height: 3.2em; box-sizing: border-box; width: 100%; }
.rs-composer textarea::placeholder { color: var(--vscode-input-placeholderForeground, #888); }
.rs-composer-actions { display: flex; gap: 6px; justify-content: flex-end; align-items: center; }
.rs-hint { color: var(--vscode-descriptionForeground); font-size: 90%; margin-right: auto; }
`;

export function ensureChatStyles(doc: Document, nonce?: string): void {
  injectStyle(doc, CHAT_STYLE_ID, CHAT_CSS, nonce);
}
