// Worker thread for preprocessImageParallel: computes the CLIP tensor while the main thread computes the SAM tensor.
// The RGB bytes arrive in a SharedArrayBuffer (no copy); the result's buffer is transferred back.
import { parentPort } from 'node:worker_threads';
import { ClipPreprocessSpec, clipPixelValues } from './preprocess';

interface Job {
  id: number;
  width: number;
  height: number;
  data: Uint8Array;
  spec: ClipPreprocessSpec;
}

parentPort?.on('message', (job: Job) => {
  try {
    const r = clipPixelValues({ width: job.width, height: job.height, data: job.data }, job.spec);
    parentPort?.postMessage({ id: job.id, data: r.data, dims: r.dims }, [r.data.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort?.postMessage({ id: job.id, error: (e as Error).message ?? String(e) });
  }
});
