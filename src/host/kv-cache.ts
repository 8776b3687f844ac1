// The decoder's KV cache, kept by the host in buffers with room to grow. Each step hands ONNX Runtime views of the
// same buffers and copies back only the step's new rows (`new_key_values.*`). Fetching the full `present.*` outputs
// instead makes onnxruntime-node copy the whole cache into fresh JS memory on every token: about 4 ms per 8 MB on the
// bench machine, which was 60 % of a 1B w8a8 decode step and grows with the conversation.
//
// The past is fed at full capacity; slots beyond `length` are zeros with attention_mask 0, so their softmax weight is
// exactly 0 and they change nothing but the order of floating-point sums (docs/bundle-format.md, "Host KV cache").
import type * as ort from 'onnxruntime-node';
import { f32, i64 } from './sessions';

/** Positions added whenever the cache is full: at most GROW - 1 masked slots ride along in a step's attention. */
const GROW = 64;

export class KvCache {
  /** Positions held. */
  length = 0;
  private capacity = 0;
  /** Per layer: key then value, each [heads, capacity, headDim]. */
  private buffers: Float32Array[] = [];
  /** attention_mask value of every held position (0 for the <unk> rule, else 1). */
  private mask: bigint[] = [];

  constructor(
    private readonly layers: number,
    private readonly heads: number,
    private readonly headDim: number,
    /** false for bundles exported before `new_key_values` existed: the cache is then replaced by `present` each step */
    private readonly newRowsOutput: boolean,
  ) {
    for (let i = 0; i < 2 * layers; i++) this.buffers.push(new Float32Array(0));
  }

  static supports(outputNames: readonly string[]): boolean {
    return outputNames.includes('new_key_values.0.key');
  }

  /** The decoder's cache inputs and attention_mask for a step that adds `stepMask.length` positions. */
  feeds(stepMask: readonly bigint[]): Record<string, ort.Tensor> {
    const { heads: KV, headDim: D, capacity: C } = this;
    const attention = new BigInt64Array(C + stepMask.length); // empty slots stay 0
    attention.set(this.mask, 0);
    attention.set(stepMask, C);
    const feeds: Record<string, ort.Tensor> = { attention_mask: i64(attention, [1, attention.length]) };
    for (let i = 0; i < this.layers; i++) {
      feeds[`past_key_values.${i}.key`] = f32(this.buffers[2 * i].subarray(0, KV * C * D), [1, KV, C, D]);
      feeds[`past_key_values.${i}.value`] = f32(this.buffers[2 * i + 1].subarray(0, KV * C * D), [1, KV, C, D]);
    }
    return feeds;
  }

  /** The decoder outputs this cache needs fetched (everything else it leaves in ONNX Runtime). */
  fetches(): string[] {
    const names: string[] = [];
    const prefix = this.newRowsOutput ? 'new_key_values' : 'present';
    for (let i = 0; i < this.layers; i++) names.push(`${prefix}.${i}.key`, `${prefix}.${i}.value`);
    return names;
  }

  /** Takes in a step's outputs for the `stepMask.length` positions it added. */
  append(out: ort.InferenceSession.OnnxValueMapType, stepMask: readonly bigint[]): void {
    const { heads: KV, headDim: D } = this;
    const S = stepMask.length;
    if (!this.newRowsOutput) {
      for (let i = 0; i < this.layers; i++) {
        this.buffers[2 * i] = out[`present.${i}.key`].data as Float32Array;
        this.buffers[2 * i + 1] = out[`present.${i}.value`].data as Float32Array;
      }
      this.length = this.capacity = this.length + S;
      this.mask.push(...stepMask);
      return;
    }
    this.reserve(this.length + S);
    for (let i = 0; i < this.layers; i++) {
      for (const [j, kind] of (['key', 'value'] as const).entries()) {
        const rows = out[`new_key_values.${i}.${kind}`].data as Float32Array; // [KV, S, D]
        const dst = this.buffers[2 * i + j];
        for (let h = 0; h < KV; h++) dst.set(rows.subarray(h * S * D, (h + 1) * S * D), (h * this.capacity + this.length) * D);
      }
    }
    this.length += S;
    this.mask.push(...stepMask);
  }

  private reserve(positions: number): void {
    if (positions <= this.capacity) return;
    const { heads: KV, headDim: D } = this;
    const C = Math.ceil(positions / GROW) * GROW;
    for (let b = 0; b < this.buffers.length; b++) {
      const old = this.buffers[b];
      const grown = new Float32Array(KV * C * D);
      for (let h = 0; h < KV; h++) grown.set(old.subarray(h * this.capacity * D, (h * this.capacity + this.length) * D), h * C * D);
      this.buffers[b] = grown;
    }
    this.capacity = C;
  }
}
