// The host's reader of LSP-framed JSON-RPC on stdin, strict where vscode-jsonrpc's StreamMessageReader is lenient: that
// one waits forever on garbage, a negative or huge Content-Length, or a body shorter than announced, and logs nothing.
// Here a framing error (the byte stream can no longer be trusted) is reported once and ends the host, so that the
// client restarts it; invalid JSON inside a well-framed message is only that message's fault and gets a -32700 reply.
import { AbstractMessageReader, type DataCallback, Disposable, type Message } from 'vscode-languageserver/node';

export interface StdioReaderOptions {
  /** Largest body accepted (Content-Length), in bytes. */
  maxFrameBytes: number;
  /** A frame begun but not finished after this long without a byte is a framing error. */
  stallMs: number;
  /** The stream cannot be read any more (logged and fatal). */
  onFramingError: (why: string) => void;
  /** A framed body that is not a JSON-RPC message; the caller replies with `code`. */
  onBadMessage: (code: number, why: string) => void;
  /** stdin ended between frames. */
  onEnd: () => void;
}

/** Largest header block; LSP headers are two short lines. */
const MAX_HEADER_BYTES = 8192;
const HEADER_END = Buffer.from('\r\n\r\n');

export class StrictStdioReader extends AbstractMessageReader {
  // Received bytes not yet consumed, as chunks: a large body is joined once, when it is complete.
  private chunks: Buffer[] = [];
  private total = 0;
  private bodyLength = -1; // -1: reading headers
  private stall: NodeJS.Timeout | undefined;
  private failed = false;

  constructor(
    private readonly input: NodeJS.ReadableStream,
    private readonly opts: StdioReaderOptions,
  ) {
    super();
  }

  listen(callback: DataCallback): Disposable {
    const onData = (chunk: Buffer) => this.onData(chunk, callback);
    const onEnd = () => this.onEnd();
    this.input.on('data', onData);
    this.input.on('end', onEnd);
    return Disposable.create(() => {
      this.input.off('data', onData);
      this.input.off('end', onEnd);
      clearTimeout(this.stall);
    });
  }

  private fail(why: string): void {
    if (this.failed) return;
    this.failed = true;
    clearTimeout(this.stall);
    this.opts.onFramingError(why);
  }

  private onEnd(): void {
    if (this.failed) return;
    clearTimeout(this.stall);
    if (this.total > 0 || this.bodyLength >= 0) {
      this.fail(`stdin ended inside a message (${this.progress()})`);
    } else {
      this.opts.onEnd();
    }
  }

  private onData(chunk: Buffer, callback: DataCallback): void {
    if (this.failed) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
    for (;;) {
      if (this.bodyLength < 0) {
        const pending = this.joined();
        const end = pending.indexOf(HEADER_END);
        if (end < 0) {
          if (this.total > MAX_HEADER_BYTES) {
            this.fail(
              `no end of header within ${MAX_HEADER_BYTES} bytes (starts ${JSON.stringify(pending.subarray(0, 24).toString('latin1'))})`,
            );
            return;
          }
          break;
        }
        const length = this.parseHeader(pending.subarray(0, end).toString('latin1'));
        if (length === undefined) return;
        this.take(end + HEADER_END.length);
        this.bodyLength = length;
      }
      if (this.total < this.bodyLength) break;
      const body = this.take(this.bodyLength);
      this.bodyLength = -1;
      const message = this.parseBody(body);
      if (message) callback(message);
    }
    this.armStallTimer();
  }

  private joined(): Buffer {
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks, this.total)];
    return this.chunks[0];
  }

  /** The first n pending bytes, removed from the pending ones. */
  private take(n: number): Buffer {
    const all = this.joined();
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.total = rest.length;
    return all.subarray(0, n);
  }

  private progress(): string {
    return this.bodyLength >= 0
      ? `${this.total} of ${this.bodyLength} body bytes`
      : `${this.total} bytes of an unfinished header`;
  }

  /** The body's length from a header block, or undefined after reporting why it is unusable. */
  private parseHeader(text: string): number | undefined {
    let length: number | undefined;
    for (const line of text.split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon <= 0) return void this.fail(`header line ${JSON.stringify(line.slice(0, 40))} is not "Name: value"`);
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'content-length') {
        if (!/^\d{1,12}$/.test(value))
          return void this.fail(`Content-Length ${JSON.stringify(value.slice(0, 20))} is not a byte count`);
        length = Number(value);
      } else if (name === 'content-type' && /charset=/i.test(value) && !/charset=["']?utf-?8/i.test(value)) {
        return void this.fail(`unsupported ${line.trim()} (only utf-8)`);
      }
    }
    if (length === undefined) return void this.fail('a header without Content-Length');
    if (length > this.opts.maxFrameBytes)
      return void this.fail(`Content-Length ${length} is over the ${this.opts.maxFrameBytes}-byte message limit`);
    return length;
  }

  private parseBody(body: Buffer): Message | undefined {
    let value: unknown;
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch (e) {
      this.opts.onBadMessage(-32700, `Parse error: the message is not valid JSON (${(e as Error).message})`);
      return undefined;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      this.opts.onBadMessage(
        -32600,
        'Invalid Request: a message must be one JSON-RPC object (batches are not supported)',
      );
      return undefined;
    }
    return value as Message;
  }

  private armStallTimer(): void {
    clearTimeout(this.stall);
    this.stall = undefined;
    if (this.total === 0 && this.bodyLength < 0) return;
    this.stall = setTimeout(
      () => this.fail(`a message stalled: ${this.progress()}, then nothing for ${this.opts.stallMs} ms`),
      this.opts.stallMs,
    );
    this.stall.unref();
  }
}
