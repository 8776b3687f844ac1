// Small DOM helpers shared by the overlay view and the chat panel (both run in a webview or notebook output frame).

/** `el(tag, class, text)` to make elements and `on(el, type, fn)` to listen until `signal` aborts. */
export function domHelpers(doc: Document, signal: AbortSignal) {
  const on = <K extends keyof HTMLElementEventMap>(t: HTMLElement, type: K, fn: (e: HTMLElementEventMap[K]) => void) =>
    t.addEventListener(type, fn as EventListener, { signal });
  const el = <K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] => {
    const e = doc.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  return { on, el };
}

/** Adds a <style> once per document, with the CSP nonce when there is one. */
export function injectStyle(doc: Document, id: string, css: string, nonce?: string): void {
  if (doc.getElementById(id)) return;
  const style = doc.createElement('style');
  style.id = id;
  if (nonce) style.nonce = nonce;
  style.textContent = css;
  (doc.head ?? doc.documentElement).appendChild(style);
}
