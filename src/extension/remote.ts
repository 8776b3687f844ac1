// A remote `reason-segment serve` in place of the local host (the `reasonSegment.server` setting): one segment request
// as one `generate_stream` request of the Open Inference Protocol's generate extension, the answer streamed as
// Server-Sent Events, the result in the last event; a refine as one request of the server's refine extension. No vscode
// import, so it is tested in Node against a real server.
import type { RefineParams, RefineResult, SegmentParams, SegmentResult } from '../protocol/rpc';
import { RpcErrorCode } from '../protocol/rpc';

const MODEL = 'reason-segment';

/** A refusal or failure, with the RPC error code the local host would have used where there is one. */
export class RemoteError extends Error {
  constructor(
    message: string,
    readonly code?: number,
    readonly cancelled = false,
  ) {
    super(message);
  }
}

/** What the server is sent for the image: its bytes (a path is read by the caller) or the sha256 of one sent before. */
export type RemoteImage = { data: Buffer } | { sha256: string };

export async function segmentRemote(
  server: string,
  token: string | undefined,
  params: SegmentParams,
  image: RemoteImage,
  onText: (text: string) => void,
  signal?: AbortSignal,
): Promise<SegmentResult> {
  const body: Record<string, unknown> = {
    text_input: params.prompt,
    parameters: {
      include_overlay: Boolean(params.includeOverlay),
      include_image: Boolean(params.includeImage),
      include_png: Boolean(params.includePng),
    },
    ...('data' in image ? { IMAGE: image.data.toString('base64') } : { IMAGE_SHA256: image.sha256 }),
    ...(params.history?.length ? { HISTORY: JSON.stringify(params.history) } : {}),
    ...(params.assistantPrefix ? { ASSISTANT_PREFIX: params.assistantPrefix } : {}),
    ...(params.maxNewTokens ? { MAX_NEW_TOKENS: params.maxNewTokens } : {}),
  };
  const res = await post(server, token, 'generate_stream', body, 'text/event-stream', signal);
  if (!res.ok) {
    // 404: the server no longer holds that image (send it again); 400: the request or the image was refused.
    const forgotten = res.status === 404 && 'sha256' in image;
    throw await refusal(server, res, forgotten ? RpcErrorCode.ImageUnreadable : undefined);
  }
  try {
    let pending = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      pending += decoder.decode(chunk, { stream: true });
      let end = pending.indexOf('\n\n');
      while (end >= 0) {
        const event = pending.slice(0, end);
        pending = pending.slice(end + 2);
        end = pending.indexOf('\n\n');
        if (!event.startsWith('data: ')) continue;
        const data = JSON.parse(event.slice(6));
        if (data.error !== undefined) throw new RemoteError(`The server ${server} failed: ${data.error}`);
        if (data.RESULT !== undefined) return data.RESULT as SegmentResult;
        if (data.text_output) onText(data.text_output);
      }
    }
  } catch (e) {
    if (signal?.aborted) throw new RemoteError('Stopped.', RpcErrorCode.Cancelled, true);
    throw e;
  }
  throw new RemoteError(`The server ${server} closed the stream before the result.`);
}

/** Refines one mask of a result the server gave (its refine extension); the server must still hold the result. */
export async function refineRemote(
  server: string,
  token: string | undefined,
  params: RefineParams,
  signal?: AbortSignal,
): Promise<RefineResult> {
  const res = await post(server, token, 'refine', params, 'application/json', signal);
  if (!res.ok) throw await refusal(server, res, res.status === 404 ? RpcErrorCode.ImageUnreadable : undefined);
  return (await res.json()) as RefineResult;
}

async function post(
  server: string,
  token: string | undefined,
  action: string,
  body: unknown,
  accept: string,
  signal?: AbortSignal,
): Promise<Response> {
  try {
    return await fetch(`${server.replace(/\/+$/, '')}/v2/models/${MODEL}/${action}`, {
      method: 'POST',
      body: JSON.stringify(body),
      signal,
      headers: {
        'content-type': 'application/json',
        accept,
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
    });
  } catch (e) {
    if (signal?.aborted) throw new RemoteError('Stopped.', RpcErrorCode.Cancelled, true);
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new RemoteError(
      `The server ${server} cannot be reached (${cause?.code ?? cause?.message ?? (e as Error).message}); check the reasonSegment.server setting.`,
    );
  }
}

/** A refused request as one line: the server's own message (its JSON error), the status, and what to do for a 401. */
async function refusal(server: string, res: Response, code: number | undefined): Promise<RemoteError> {
  const text = await res.text();
  let message = text.slice(0, 300);
  try {
    message = String(JSON.parse(text).error);
  } catch {
    /* not the protocol's JSON error */
  }
  const hint = res.status === 401 ? '; set the token with the command "Reason Segment: Set Server Token".' : '';
  const known = code ?? (res.status === 400 || res.status === 413 ? RpcErrorCode.ParamsInvalid : undefined);
  return new RemoteError(`The server ${server} refused the request (${res.status}): ${message}${hint}`, known);
}
