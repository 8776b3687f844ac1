// Refining a mask by clicking (reasonSegment/refine): SAM's mask decoder runs again for one mask of a recent result,
// with point and box prompts, on the cached SAM image embedding and that mask's [SEG] embedding (the bundle's
// sam_prompt_decoder graph, docs/bundle-format.md). No language model runs, so a round trip takes milliseconds.
import { randomUUID } from 'node:crypto';
import * as ort from 'onnxruntime-node';
import { decodeRle } from '../protocol/rle';
import type { RefineParams, RefinePrompt, RefineResult } from '../protocol/rpc';
import type { Bundle } from './bundle';
import { type EmbeddingCache, samEmbeddingTensor } from './embedding-cache';
import { HostError } from './errors';
import { lowResMaskCounts } from './mask-upsample';
import { resultMaskOfCounts } from './masks';
import { f32, i64 } from './sessions';

/** Most points one refine may carry (the schema says the same); SAM was trained with far fewer. */
export const MAX_REFINE_POINTS = 32;
/** Results remembered for refining, most recent first; each holds only n x C floats (the image lives in the cache). */
export const MAX_REMEMBERED_RESULTS = 256;

/** What a result leaves behind so its masks can be refined. */
export interface RememberedResult {
  sha256: string;
  width: number;
  height: number;
  /** The [SEG] embeddings after text_hidden_fcs, [n, C] row-major. */
  segEmbeddings: Float32Array;
  /** tokenIndex of each mask, as the result gave it. */
  tokenIndices: number[];
}

/** Recent results by id, least recently used first out. */
export class ResultMemory {
  private readonly entries = new Map<string, RememberedResult>();

  constructor(private readonly max = MAX_REMEMBERED_RESULTS) {}

  remember(r: RememberedResult): string {
    const id = randomUUID(); // unique across host restarts, so an old id never names a new result
    this.entries.set(id, r);
    for (const old of this.entries.keys()) {
      if (this.entries.size <= this.max) break;
      this.entries.delete(old);
    }
    return id;
  }

  get(id: string): RememberedResult | undefined {
    const r = this.entries.get(id);
    if (r) {
      this.entries.delete(id);
      this.entries.set(id, r);
    }
    return r;
  }

  clear(): void {
    this.entries.clear();
  }
}

/**
 * The graph's prompt sequence for one mask, in SAM's prompt encoder's order: the points, SAM's padding point (label
 * -1) when there is no box, then the box corners (labels 2 and 3). The same as graph_prompt in
 * models/export/lisa_export/refine.py. Returns coords [1, P, 2] and labels [1, P].
 */
export function promptSequence(p: RefinePrompt): { coords: Float32Array; labels: Float32Array; count: number } {
  const xy: number[] = [];
  const lab: number[] = [];
  p.points.forEach(([x, y], i) => {
    xy.push(x, y);
    lab.push(p.labels[i]);
  });
  if (p.points.length > 0 && !p.box) {
    xy.push(0, 0);
    lab.push(-1);
  }
  if (p.box) {
    xy.push(...p.box);
    lab.push(2, 3);
  }
  return { coords: Float32Array.from(xy), labels: Float32Array.from(lab), count: lab.length };
}

/** Problems with a prompt for an image of width x height, each one line; empty when it is fine. */
export function promptProblems(p: RefinePrompt, width: number, height: number): string[] {
  const out: string[] = [];
  if (p.points.length > MAX_REFINE_POINTS) out.push(`at most ${MAX_REFINE_POINTS} points, got ${p.points.length}`);
  if (p.labels.length !== p.points.length)
    out.push(`${p.points.length} points but ${p.labels.length} labels: give one label (1 or 0) per point`);
  const inside = (x: number, y: number) =>
    Number.isFinite(x) && Number.isFinite(y) && x >= 0 && y >= 0 && x <= width && y <= height;
  p.points.forEach(([x, y], i) => {
    if (!inside(x, y)) out.push(`point ${i} (${x}, ${y}) is outside the ${width}x${height} image`);
  });
  if (p.box) {
    const [x0, y0, x1, y1] = p.box;
    if (!inside(x0, y0) || !inside(x1, y1))
      out.push(`box [${p.box.join(', ')}] is outside the ${width}x${height} image`);
    else if (x1 < x0 || y1 < y0)
      out.push(`box [${p.box.join(', ')}] must be [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1`);
  }
  return out.slice(0, 3);
}

export class Refiner {
  readonly results = new ResultMemory();
  private session?: Promise<ort.InferenceSession>;

  constructor(
    private readonly bundle: Bundle,
    private provider: string,
    private readonly cache: EmbeddingCache,
  ) {}

  /** Whether this bundle has the graph that takes point and box prompts. */
  get available(): boolean {
    return Boolean(this.bundle.manifest.graphs.sam_prompt_decoder);
  }

  async refine(params: RefineParams): Promise<RefineResult> {
    const t0 = performance.now();
    const spec = this.bundle.manifest.graphs.sam_prompt_decoder;
    if (!spec)
      throw new HostError(
        'BundleInvalid',
        `This model (${this.bundle.dir}) has no sam_prompt_decoder graph, so its masks cannot be refined; re-export it with the current models/export to refine masks.`,
      );
    const r = this.results.get(params.resultId);
    const emb = r && this.cache.get(r.sha256);
    if (!r || !emb)
      throw new HostError(
        'ImageUnreadable',
        "That result is no longer in the host's memory (the host restarted, or newer images pushed it out); run the request again, then refine its masks.",
      );
    const n = r.tokenIndices.length;
    if (params.maskIndex >= n)
      throw new HostError('ParamsInvalid', `maskIndex ${params.maskIndex}: the result has ${n} mask(s)`);
    const problems = promptProblems(params.prompt, r.width, r.height);
    if (problems.length) throw new HostError('ParamsInvalid', problems.join('; '));

    const C = r.segEmbeddings.length / n;
    const seq = promptSequence(params.prompt);
    const session = await this.open(spec.file);
    const tRun = performance.now();
    let out: ort.InferenceSession.OnnxValueMapType;
    const release = this.cache.hold(emb); // a device embedding must outlive this run even if the image is evicted
    try {
      // Bundles exported before 2026-11-30 also have `masks` (the logits at the image's size): not fetched, the
      // host upsamples low_res_masks itself (mask-upsample.ts).
      out = await session.run(
        {
          image_embeddings: samEmbeddingTensor(emb.samEmbedding, [1, C, 64, 64]),
          seg_embeddings: f32(r.segEmbeddings.slice(params.maskIndex * C, (params.maskIndex + 1) * C), [1, C]),
          point_coords: f32(seq.coords, [1, seq.count, 2]),
          point_labels: f32(seq.labels, [1, seq.count]),
          resize_size: i64(BigInt64Array.from(emb.resizeSize, BigInt), [2]),
          orig_size: i64(BigInt64Array.from([emb.height, emb.width], BigInt), [2]),
        },
        ['iou_predictions', 'low_res_masks'],
      );
    } catch (e) {
      release();
      throw new HostError(
        'BundleInvalid',
        `The model's sam_prompt_decoder graph failed to run (${(e as Error).message}); re-export the model.`,
      );
    }
    release();
    const decoderMs = performance.now() - tRun;
    const { height: h, width: w } = emb;
    const cnts = lowResMaskCounts(
      out.low_res_masks.data as Float32Array,
      emb.resizeSize,
      h,
      w,
      this.bundle.manifest.sam.threshold,
    );
    const mask = await resultMaskOfCounts(
      cnts,
      h,
      w,
      params.maskIndex,
      r.tokenIndices[params.maskIndex],
      (out.iou_predictions.data as Float32Array)[0],
      params.includePng ? decodeRle({ size: [h, w], counts: cnts }) : undefined,
    );
    if (params.prompt.points.length > 0 || params.prompt.box) mask.refined = params.prompt;
    return {
      resultId: params.resultId,
      maskIndex: params.maskIndex,
      mask,
      decoderMs,
      totalMs: performance.now() - t0,
    };
  }

  async release(): Promise<void> {
    const s = this.session;
    this.session = undefined;
    this.results.clear();
    await (await s?.catch(() => undefined))?.release();
  }

  /** 'auto' moved the pipeline to the cpu: forget the results (their embeddings are gone), refine there from now on. */
  async moveTo(provider: string): Promise<void> {
    await this.release();
    this.provider = provider;
  }

  /** The session is made on the first refine: a host that never refines pays nothing for it. */
  private open(file: string): Promise<ort.InferenceSession> {
    this.session ??= ort.InferenceSession.create(this.bundle.resolve(file), {
      executionProviders: [this.provider],
      graphOptimizationLevel: 'all',
      // One short run per click: intra-op threads that spin-wait after it only take CPU from the rest of the host
      // (measured on 2 busy cores: the ViT-H-sized decoder's run 20-25 % faster without spinning).
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    }).catch((e: Error) => {
      this.session = undefined;
      throw new HostError('BundleInvalid', `ONNX Runtime could not load ${file}: ${e.message}. Re-export the model.`);
    });
    return this.session;
  }
}
