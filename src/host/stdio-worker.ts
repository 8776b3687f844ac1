// The host's stdio, on a thread of its own. onnxruntime-node runs a graph synchronously on the calling thread (a SAM
// encoder holds it for seconds), so the main thread cannot read a cancel while it computes. This thread reads and frames
// stdin (./stdio-reader.ts), writes every outgoing message in order, and answers a cancelled segment request at once
// itself; the main thread still gets the cancel and stops the work at its next stage or token, and its own late answer
// to that request is dropped here.
import { createReadStream, fstatSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { parentPort } from 'node:worker_threads';
import type { Message } from 'vscode-languageserver/node';
import { Methods, RpcErrorCode } from '../protocol/rpc';
import { StrictStdioReader } from './stdio-reader';

/** Messages between this thread and the main one. */
export type ToMain =
  | { type: 'message'; message: Message }
  | { type: 'fatal'; why: string }
  | { type: 'end' }
  | { type: 'flushed' }
  | { type: 'log'; line: string };
export type ToWorker =
  | { type: 'write'; message: Message }
  | { type: 'flush' }
  | { type: 'options'; maxFrameBytes: number; stallMs: number };

interface Rpc {
  id?: number | string | null;
  method?: string;
  params?: { id?: number | string };
}

const port = parentPort!;
const post = (m: ToMain) => port.postMessage(m);

/** Request ids the client still waits on, with their method; and ids answered here already (by a cancel). */
const inFlight = new Map<number | string, string>();
const answered = new Set<number | string>();

function writeFrame(message: unknown): void {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const bytes = Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`, 'ascii'), body]);
  for (let off = 0; off < bytes.length; ) {
    try {
      off += writeSync(1, bytes, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1); // stdout is full: wait for the reader
    }
  }
}

function incoming(message: Message): void {
  const m = message as Rpc;
  if (m.method !== undefined && m.id !== undefined && m.id !== null) inFlight.set(m.id, m.method);
  if (m.method === '$/cancelRequest' && m.params?.id !== undefined && inFlight.get(m.params.id) === Methods.segment) {
    inFlight.delete(m.params.id);
    answered.add(m.params.id);
    writeFrame({
      jsonrpc: '2.0',
      id: m.params.id,
      error: { code: RpcErrorCode.Cancelled, message: 'The request was cancelled.' },
    });
  }
  post({ type: 'message', message });
}

function outgoing(message: Message): void {
  const m = message as Rpc;
  if (m.method === undefined && m.id !== undefined && m.id !== null) {
    inFlight.delete(m.id);
    if (answered.delete(m.id)) return;
  }
  writeFrame(message);
}

/**
 * fd 0 as a stream. A pipe or socket is read through the event loop: a blocking read in libuv's thread pool could not be
 * abandoned, and exiting would wait for it. Anything else (a file) is read by the pool, where reads always end.
 */
function stdin(): NodeJS.ReadableStream {
  const st = fstatSync(0);
  return st.isFIFO() || st.isSocket()
    ? new Socket({ fd: 0, readable: true, writable: false })
    : createReadStream('', { fd: 0, autoClose: false });
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'options') {
    const reader = new StrictStdioReader(stdin(), {
      maxFrameBytes: m.maxFrameBytes,
      stallMs: m.stallMs,
      onFramingError: (why) => post({ type: 'fatal', why }),
      onBadMessage: (code, message) => {
        post({ type: 'log', line: `bad message on stdin: ${message}` });
        writeFrame({ jsonrpc: '2.0', id: null, error: { code, message } });
      },
      onEnd: () => post({ type: 'end' }),
    });
    reader.listen(incoming);
  } else if (m.type === 'write') {
    outgoing(m.message);
  } else {
    post({ type: 'flushed' });
  }
});
