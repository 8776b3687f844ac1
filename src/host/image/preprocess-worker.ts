// Worker thread for preprocessImageParallel: computes its band of the CLIP and SAM resizes in the arena it shares with
// the main thread, and both tensors, which it transfers back (see preprocess.ts, "both tensors at once").
import { parentPort } from 'node:worker_threads';
import { prepareWorkerJob, runWorkerJob, type WorkerJob, type WorkerPrepare } from './preprocess';

parentPort?.on('message', (job: WorkerJob | WorkerPrepare) => {
  if ('prepare' in job) {
    prepareWorkerJob(job);
    return;
  }
  try {
    const r = runWorkerJob(job);
    parentPort?.postMessage({ id: job.id, clip: r.clip, sam: r.sam }, [
      r.clip.buffer as ArrayBuffer,
      r.sam.buffer as ArrayBuffer,
    ]);
  } catch (e) {
    parentPort?.postMessage({ id: job.id, error: (e as Error).message ?? String(e) });
  }
});
