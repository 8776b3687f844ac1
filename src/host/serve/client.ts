// A `reason-segment serve` (or any server with this model's Open Inference Protocol signature) used in place of a
// loaded pipeline: `batch --server URL`. Requests go in the binary tensor data extension; a refusal of the request
// itself (4xx but auth) comes back as the HostError the server's pipeline raised (same one-line message), anything
// else (unreachable, auth, 5xx) as ProviderUnavailable, which stops a batch instead of failing every image.
import { promises as fs } from 'node:fs';
import type { SegmentResult } from '../../protocol/result';
import { HostError } from '../errors';
import type { SegmentRequest } from '../pipeline';
import { readTokens } from './auth';
import { MODEL_NAME } from './model';
import { HEADER_LENGTH, serializeBytes } from './oip';

export class RemoteModel {
  /** The model's variant, known after the first answer. */
  variant = '';

  private constructor(
    private readonly base: string,
    private readonly token: string | undefined,
  ) {}

  /** Checks that the server is there and ready before any work. The token is the first of the token file. */
  static async connect(url: string, tokenFile?: string): Promise<RemoteModel> {
    let base: URL;
    try {
      base = new URL(url.endsWith('/') ? url : `${url}/`);
    } catch {
      throw new HostError('ParamsInvalid', `--server ${url} is not a URL; write e.g. http://gpu-box:8000`);
    }
    const token = tokenFile
      ? (
          await readTokens(tokenFile).catch((e) => {
            throw new HostError('ParamsInvalid', (e as Error).message);
          })
        )[0]
      : undefined;
    const remote = new RemoteModel(base.href, token);
    const ready = await remote.call('GET', `v2/models/${MODEL_NAME}/ready`);
    if (ready.status !== 200) throw remote.unavailable(ready.status, ready.body);
    return remote;
  }

  async segment(req: SegmentRequest): Promise<SegmentResult> {
    const image =
      'sha256' in req.image ? undefined : 'data' in req.image ? req.image.data : await fs.readFile(req.image.path);
    const bytes: Array<[string, Buffer]> = [['PROMPT', Buffer.from(req.prompt)]];
    if (image) bytes.push(['IMAGE', image]);
    else bytes.push(['IMAGE_SHA256', Buffer.from((req.image as { sha256: string }).sha256)]);
    if (req.history?.length) bytes.push(['HISTORY', Buffer.from(JSON.stringify(req.history))]);
    if (req.assistantPrefix) bytes.push(['ASSISTANT_PREFIX', Buffer.from(req.assistantPrefix)]);
    const blobs = bytes.map(([, v]) => serializeBytes([v]));
    const inputs = bytes.map(([name], i) => ({
      name,
      shape: [1],
      datatype: 'BYTES',
      parameters: { binary_data_size: blobs[i].length },
    }));
    if (req.maxNewTokens !== undefined) {
      const n = Buffer.alloc(4);
      n.writeInt32LE(req.maxNewTokens);
      blobs.push(n);
      inputs.push({ name: 'MAX_NEW_TOKENS', shape: [1], datatype: 'INT32', parameters: { binary_data_size: 4 } });
    }
    const header = Buffer.from(JSON.stringify({ inputs, outputs: [{ name: 'RESULT' }] }));
    const reply = await this.call(
      'POST',
      `v2/models/${MODEL_NAME}/infer`,
      Buffer.concat([header, ...blobs]),
      { [HEADER_LENGTH]: String(header.length) },
      req.signal,
    );
    if (reply.status === 400 || reply.status === 413) throw new HostError('ImageUnreadable', errorOf(reply.body));
    if (reply.status !== 200) throw this.unavailable(reply.status, reply.body);
    const result = JSON.parse(JSON.parse(reply.body.toString('utf8')).outputs[0].data[0]) as SegmentResult;
    this.variant ||= result.model.variant;
    return result;
  }

  async dispose(): Promise<void> {}

  private async call(
    method: string,
    rel: string,
    body?: Buffer,
    headers: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<{ status: number; body: Buffer }> {
    try {
      const res = await fetch(new URL(rel, this.base), {
        method,
        signal,
        body: body && new Uint8Array(body),
        headers: { ...headers, ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) },
      });
      return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
    } catch (e) {
      if (signal?.aborted) throw new HostError('Cancelled', 'The request was cancelled.');
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new HostError(
        'ProviderUnavailable',
        `the server ${this.base} cannot be reached (${cause?.code ?? cause?.message ?? (e as Error).message}); check --server and that it runs`,
      );
    }
  }

  private unavailable(status: number, body: Buffer): HostError {
    const hint = status === 401 ? '; give --token-file with a token the server accepts' : '';
    return new HostError('ProviderUnavailable', `the server ${this.base} answered ${status}: ${errorOf(body)}${hint}`);
  }
}

function errorOf(body: Buffer): string {
  try {
    return String(JSON.parse(body.toString('utf8')).error ?? body.toString('utf8'));
  } catch {
    return body.toString('utf8').slice(0, 200);
  }
}
