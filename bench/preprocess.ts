// Pre-processing speed on a 12 MP JPEG: ours (decode + CLIP and SAM resizes + tensors) against sharp's own decode and
// resizes of the same file. Run: npx tsc -p . && node out/bench/preprocess.js [runs]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { decodeImage } from '../src/host/image/decode';
import {
  type ClipPreprocessSpec,
  clipPixelValues,
  preprocessImageParallel,
  type SamPreprocessSpec,
  samPixelValues,
  stopPreprocessWorker,
} from '../src/host/image/preprocess';

const CLIP: ClipPreprocessSpec = {
  shortest_edge: 224,
  resample: 'bicubic',
  crop: [224, 224],
  rescale: 1 / 255,
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
};
const SAM: SamPreprocessSpec = {
  long_side: 1024,
  resample: 'bilinear',
  mean: [123.675, 116.28, 103.53],
  std: [58.395, 57.12, 57.375],
  pad: 'bottom-right-zero',
};

export interface PreprocessBench {
  image: { width: number; height: number; bytes: number };
  runs: number;
  /** medians, milliseconds: decode (with the file's sha256) + preprocessImageParallel, as the host runs them */
  ours: { total: number; decode: number; tensors: number };
  /** medians, milliseconds: the same work on one thread */
  oursOneThread: { total: number; decode: number; clip: number; sam: number };
  /** sharp reading the file twice, resizing to fit 1024 and to cover 224 (its JPEG shrink-on-load applies) */
  sharpFromFile: number;
  /** sharp decoding the file once in full, then resizing that raw RGB to 1024 and to 224 */
  sharpDecodeOnce: number;
  ratioVsSharpFromFile: number;
  ratioVsSharpDecodeOnce: number;
  threads: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function makeJpeg(dir: string): Promise<string> {
  // a real photograph (scikit-image's coffee, committed as a fixture) upscaled to 4000x3000
  const src = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'images', 'coffee.jpg');
  const file = path.join(dir, 'coffee-4000x3000.jpg');
  await sharp(src).resize(4000, 3000, { fit: 'fill', kernel: 'lanczos3' }).jpeg({ quality: 90 }).toFile(file);
  return file;
}

export async function benchPreprocess(runs = 7): Promise<PreprocessBench> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-bench-pre-'));
  try {
    const file = await makeJpeg(dir);
    const bytes = fs.statSync(file).size;
    const one = { total: [] as number[], decode: [] as number[], clip: [] as number[], sam: [] as number[] };
    const par = { total: [] as number[], decode: [] as number[], tensors: [] as number[] };
    const fromFile: number[] = [];
    const once: number[] = [];
    let dims = { width: 0, height: 0 };
    for (let i = 0; i < runs + 1; i++) {
      // ours, two threads
      const p0 = performance.now();
      const pimg = await decodeImage(file, { maxPixels: 100e6 });
      const p1 = performance.now();
      const pre = await preprocessImageParallel(pimg, CLIP, SAM);
      const p2 = performance.now();
      if (pre.clip.data.length !== 3 * 224 * 224) throw new Error('unreachable');
      // ours, one thread
      const t0 = performance.now();
      const img = await decodeImage(file, { maxPixels: 100e6 });
      const t1 = performance.now();
      const c = clipPixelValues(img, CLIP);
      const t2 = performance.now();
      const s = samPixelValues(img, SAM);
      const t3 = performance.now();
      dims = { width: img.width, height: img.height };
      if (c.data.length + s.data.length === 0) throw new Error('unreachable');
      // sharp: the file twice, each with its own shrink-on-load decode
      const u0 = performance.now();
      await Promise.all([
        sharp(file).autoOrient().resize(1024, 1024, { fit: 'inside', kernel: 'linear' }).raw().toBuffer(),
        sharp(file).autoOrient().resize(224, 224, { fit: 'outside', kernel: 'cubic' }).raw().toBuffer(),
      ]);
      const u1 = performance.now();
      // sharp: one full decode, two resizes of the raw pixels
      const v0 = performance.now();
      const { data, info } = await sharp(file).autoOrient().raw().toBuffer({ resolveWithObject: true });
      const raw = { raw: { width: info.width, height: info.height, channels: info.channels as 3 } };
      await Promise.all([
        sharp(data, raw).resize(1024, 1024, { fit: 'inside', kernel: 'linear' }).raw().toBuffer(),
        sharp(data, raw).resize(224, 224, { fit: 'outside', kernel: 'cubic' }).raw().toBuffer(),
      ]);
      const v1 = performance.now();
      if (i === 0) continue; // warm-up
      par.total.push(p2 - p0);
      par.decode.push(p1 - p0);
      par.tensors.push(p2 - p1);
      one.total.push(t3 - t0);
      one.decode.push(t1 - t0);
      one.clip.push(t2 - t1);
      one.sam.push(t3 - t2);
      fromFile.push(u1 - u0);
      once.push(v1 - v0);
    }
    const o = { total: median(par.total), decode: median(par.decode), tensors: median(par.tensors) };
    const o1 = { total: median(one.total), decode: median(one.decode), clip: median(one.clip), sam: median(one.sam) };
    const sf = median(fromFile);
    const so = median(once);
    return {
      image: { ...dims, bytes },
      runs,
      ours: o,
      oursOneThread: o1,
      sharpFromFile: sf,
      sharpDecodeOnce: so,
      ratioVsSharpFromFile: o.total / sf,
      ratioVsSharpDecodeOnce: o.total / so,
      threads: sharp.concurrency(),
    };
  } finally {
    await stopPreprocessWorker();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const runs = Number(process.argv[2] ?? 7);
  benchPreprocess(runs).then(
    (r) => {
      const f = (x: number) => `${x.toFixed(1)} ms`;
      console.log(
        `pre-processing a ${r.image.width}x${r.image.height} JPEG (${(r.image.bytes / 1e6).toFixed(1)} MB), ` +
          `median of ${r.runs} runs, sharp threads ${r.threads}`,
      );
      console.log(
        `  ours (decode + sha256, CLIP bicubic 224 + tensor, SAM bilinear 1024 + tensor): ${f(r.ours.total)} ` +
          `(decode ${f(r.ours.decode)}, both tensors on 2 threads ${f(r.ours.tensors)})`,
      );
      const s1 = r.oursOneThread;
      console.log(
        `  ours on one thread: ${f(s1.total)} (decode ${f(s1.decode)}, clip ${f(s1.clip)}, sam ${f(s1.sam)})`,
      );
      console.log(
        `  sharp, file -> 1024 and file -> 224 (shrink-on-load):   ${f(r.sharpFromFile)}  ratio ${r.ratioVsSharpFromFile.toFixed(2)}`,
      );
      console.log(
        `  sharp, full decode once -> 1024 and -> 224:            ${f(r.sharpDecodeOnce)}  ratio ${r.ratioVsSharpDecodeOnce.toFixed(2)}`,
      );
      console.log(JSON.stringify(r));
    },
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
