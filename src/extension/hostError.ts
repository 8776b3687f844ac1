// What a failed host request means for the user: one line, whether the user stopped it, and the RPC code. Never
// imports vscode (the chat controller and its tests use it too): the caller passes its translator.
import { errorMessage, isCancellation } from '../protocol/rpc';
import type { Translate } from './hostStatus';
import { RemoteError } from './remote';

/** An error for the user: the host's one-line message (title, detail, hint) or what went wrong around it. */
export class HostRequestError extends Error {
  constructor(
    message: string,
    readonly cancelled = false,
    readonly code?: number,
  ) {
    super(message);
  }
}

/** JSON-RPC's "the connection closed with this request pending" (vscode-jsonrpc's PendingResponseRejected). */
const PENDING_RESPONSE_REJECTED = -32097;

/** Any rejection of a host request (a JSON-RPC ResponseError, by shape, or anything else) as a HostRequestError. */
export function describeHostError(e: unknown, t: Translate): HostRequestError {
  if (e instanceof HostRequestError) return e;
  // A server's refusal is already one line for the user; its code says what the chat should do (resend, stop).
  if (e instanceof RemoteError) return new HostRequestError(e.message, e.cancelled, e.code);
  const r = e as { code?: unknown; message?: unknown; data?: unknown } | null;
  if (r && typeof r === 'object' && typeof r.code === 'number' && typeof r.message === 'string') {
    if (isCancellation(r.code)) return new HostRequestError(t('Stopped.'), true, r.code);
    if (r.code === PENDING_RESPONSE_REJECTED)
      return new HostRequestError(
        t('The inference host stopped while answering; it is being restarted.'),
        false,
        r.code,
      );
    const detail = (r.data as { detail?: string } | undefined)?.detail;
    return new HostRequestError(
      r.code <= -32000 && r.code >= -32099 ? errorMessage(r.code, detail ?? r.message, (s) => t(s)) : r.message,
      false,
      r.code,
    );
  }
  return new HostRequestError((e as Error)?.message ?? String(e));
}
