// Worker thread of sam-encoder-thread.ts: one ONNX Runtime session of the SAM image encoder, run on request.

import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

const { file, provider } = workerData as { file: string; provider: string };

ort.InferenceSession.create(file, { executionProviders: [provider], graphOptimizationLevel: 'all' }).then(
  (session) => {
    parentPort?.on('message', async (m: { id: number; data: Float32Array; dims: number[] }) => {
      try {
        const out = await session.run({ pixel_values: new ort.Tensor('float32', m.data, m.dims) });
        const data = out.image_embeddings.data as Float32Array;
        parentPort?.postMessage({ id: m.id, data }, [data.buffer as ArrayBuffer]);
      } catch (e) {
        parentPort?.postMessage({ id: m.id, error: String((e as Error)?.message ?? e).split('\n')[0] });
      }
    });
    parentPort?.postMessage({ ready: true });
  },
  (e) => parentPort?.postMessage({ loadError: String((e as Error)?.message ?? e).split('\n')[0] }),
);
