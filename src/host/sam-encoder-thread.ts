// SAM's image encoder on its own thread, so it runs while the language model prefills and decodes: it meets them only
// at the mask decoder. onnxruntime-node 1.30 runs a session's run() synchronously on the calling thread (its async
// run() is a setImmediate around the native call), so two graphs of one thread never overlap; a worker thread with its
// own session of the SAM encoder does. The worker holds the only session of that graph: nothing is loaded twice.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { HostError } from './errors';
import type { Device } from './sessions';

interface Reply {
  id: number;
  data?: Float32Array;
  error?: string;
}

export class SamEncoderThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (d: Float32Array) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private failure: Error | undefined;

  private constructor(worker: Worker) {
    this.worker = worker;
    worker.on('message', (m: Reply | { ready: true } | { loadError: string }) => {
      if (!('id' in m)) return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) worker.unref();
      if (m.data) p.resolve(m.data);
      else p.reject(runError(m.error));
    });
    const fail = (e: Error) => {
      this.failure = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the SAM encoder thread exited (${code})`)));
  }

  /** Starts the thread and loads the graph there; resolves once it is ready (rejects as session creation would). */
  static async start(file: string, provider: Device): Promise<SamEncoderThread> {
    const worker = new Worker(path.join(__dirname, 'sam-encoder-worker.js'), { workerData: { file, provider } });
    const ready = await new Promise<{ ready: true } | { loadError: string }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    if ('loadError' in ready) {
      await worker.terminate();
      throw new Error(ready.loadError);
    }
    worker.unref(); // never keeps the host process alive
    return new SamEncoderThread(worker);
  }

  /** The image embedding [1, C, 64, 64] of SAM pixels [1, 3, 1024, 1024] (the pixels are copied, not taken). */
  run(pixels: Float32Array, dims: readonly number[]): Promise<Float32Array> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    this.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, data: pixels, dims });
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

const runError = (message?: string) =>
  new HostError(
    'BundleInvalid',
    `The model's sam_image_encoder graph failed to run (${message}); the bundle does not fit this host: re-export or re-download it.`,
  );
