// One error type for everything the host refuses on purpose. The code travels over JSON-RPC; the message is one line
// that says what happened and what to do about it.
import type { RpcErrorName } from '../protocol/rpc';

/** The kinds are the RPC error names, so a refusal maps to its wire code without a second table. */
export type HostErrorKind = RpcErrorName;

export class HostError extends Error {
  constructor(
    readonly kind: HostErrorKind,
    message: string,
  ) {
    super(oneLine(message));
    this.name = 'HostError';
  }
}

export function isHostError(e: unknown, kind?: HostErrorKind): e is HostError {
  return e instanceof HostError && (kind === undefined || e.kind === kind);
}

/** Every error the host reports is one line: libvips and ONNX Runtime messages can span several. */
export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, '; ').trim();
}
