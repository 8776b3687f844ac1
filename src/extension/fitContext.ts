// A follow-up whose conversation no longer fits the model's context: LISA re-reads every earlier turn, so the oldest
// turns are left out, one at a time, until the host accepts the request. Never imports vscode.
import type { ChatTurn } from '../protocol/chat';

export interface Fitted<R> {
  result: R;
  /** How many of the oldest turns were left out (0 when the whole conversation fitted). */
  trimmed: number;
}

/** Calls `ask` with the whole history; while it fails with an error `tooLong` recognises and earlier turns remain,
 *  asks again without the oldest one. Any other error, or too long with no history left, is thrown as is. */
export async function askWithinContext<R>(
  history: readonly ChatTurn[],
  ask: (history: ChatTurn[]) => Promise<R>,
  tooLong: (e: unknown) => boolean,
): Promise<Fitted<R>> {
  for (let trimmed = 0; ; trimmed++) {
    try {
      return { result: await ask(history.slice(trimmed)), trimmed };
    } catch (e) {
      if (!tooLong(e) || trimmed >= history.length) throw e;
    }
  }
}
