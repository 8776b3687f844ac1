// The part of VS Code's notebook renderer API (`vscode-notebook-renderer`, the ES module contract of
// `contributes.notebookRenderer`) this renderer uses, written out here instead of depending on
// @types/vscode-notebook-renderer.

export interface OutputItem {
  readonly id: string;
  readonly mime: string;
  readonly metadata?: unknown;
  text(): string;
  json(): any;
  data(): Uint8Array;
  blob(): Blob;
}

export interface RendererApi {
  renderOutputItem(outputItem: OutputItem, element: HTMLElement, signal?: AbortSignal): void | Promise<void>;
  disposeOutputItem?(id?: string): void;
}

export interface Disposable {
  dispose(): void;
}

export interface RendererContext<TState = unknown> {
  getState(): TState | undefined;
  setState(value: TState): void;
  getRenderer(id: string): Promise<RendererApi | undefined>;
  readonly workspace: { readonly isTrusted: boolean };
  /** Present only when the renderer declares `requiresMessaging` and the host supports it. */
  postMessage?(message: unknown): void;
  onDidReceiveMessage?(listener: (e: any) => any): Disposable;
  readonly settings?: {
    readonly lineLimit: number;
    readonly outputScrolling: boolean;
    readonly outputWordWrap: boolean;
  };
}

export type ActivationFunction<TState = unknown> = (
  context: RendererContext<TState>,
) => RendererApi | Promise<RendererApi>;
