// The decoder's KV cache, kept by the host. Each step hands ONNX Runtime views of the host's buffers and copies back
// only the step's new rows (`new_key_values.*`). Fetching the full `present.*` outputs instead makes onnxruntime-node
// copy the whole cache into fresh JS memory on every token: about 4 ms per 8 MB on the bench machine, which was 60 % of
// a 1B w8a8 decode step and grows with the conversation.
//
// The past is fed at a capacity C (a multiple of GROW) with attention_mask 0 on the empty slots, whose softmax weight
// is then exactly 0: they change nothing but the order of floating-point sums (docs/bundle-format.md, "Host KV
// cache"). Each buffer is laid out [heads, C, headDim], so growing C moves every head's rows; that happens in place,
// inside a store sized for the whole generation, and the stores are kept for the next generation. Fresh memory costs a
// page fault per 4 KB on first write (about 10 us each on the bench VM: 1 s per GB), more than the copies themselves.
//
// A cache outlives its generation when the cross-turn store (prefix-cache.ts) keeps it: the next turn of the same
// conversation truncates it to the prefix it shares and goes on appending (copyPrefix when the entry must stay whole).
import type * as ort from 'onnxruntime-node';
import { f32, i64 } from './sessions';

/** Positions added when the cache is full: at most GROW - 1 masked slots ride along in a step's attention. */
const GROW = 64;
/** How long a finished generation's stores are kept for the next one. */
const KEEP_MS = 30_000;

let kept: Float32Array[] | undefined;
let keptTimer: NodeJS.Timeout | undefined;

export class KvCache {
  /** Positions held. */
  length = 0;
  private capacity = 0;
  /** Per layer: key then value. Each holds [heads, capacity, headDim] at its start. */
  private stores: Float32Array[] = [];
  /** attention_mask value of every held position (0 for the <unk> rule, else 1). */
  private mask: bigint[] = [];

  constructor(
    private readonly layers: number,
    private readonly heads: number,
    private readonly headDim: number,
    /** Most positions this generation will hold: the stores are sized for it once (see `continueTo`). */
    private maxPositions: number,
    /** false for bundles exported before `new_key_values` existed: the cache is then replaced by `present` each step */
    private readonly newRowsOutput: boolean,
  ) {
    for (let i = 0; i < 2 * layers; i++) this.stores.push(new Float32Array(0));
  }

  static supports(outputNames: readonly string[]): boolean {
    return outputNames.includes('new_key_values.0.key');
  }

  /** Bytes of one position's rows over all layers (keys and values). */
  static bytesPerPosition(layers: number, heads: number, headDim: number): number {
    return 2 * layers * heads * headDim * Float32Array.BYTES_PER_ELEMENT;
  }

  /** Bytes of one position's rows. */
  get positionBytes(): number {
    return KvCache.bytesPerPosition(this.layers, this.heads, this.headDim);
  }

  /** Bytes of memory the stores take. */
  get bytes(): number {
    return this.stores.reduce((a, s) => a + s.byteLength, 0);
  }

  /** attention_mask value of every held position. */
  get positionMask(): readonly bigint[] {
    return this.mask;
  }

  /** Makes this cache, kept from an earlier generation, the one for a generation that reaches `maxPositions`. */
  continueTo(maxPositions: number): void {
    this.maxPositions = maxPositions;
  }

  /** Forgets every position from `positions` on (their rows are zeroed: they are empty slots again). */
  truncate(positions: number): void {
    if (positions >= this.length) return;
    if (!this.newRowsOutput) throw new Error('a present-fed cache cannot be truncated');
    const { heads: KV, headDim: D, capacity: C } = this;
    for (const s of this.stores)
      for (let h = 0; h < KV; h++) s.fill(0, (h * C + positions) * D, (h * C + this.length) * D);
    this.length = positions;
    this.mask.length = positions;
  }

  /** A new cache holding this one's first `positions` positions, with stores sized for `maxPositions`. */
  copyPrefix(positions: number, maxPositions: number): KvCache {
    if (!this.newRowsOutput) throw new Error('a present-fed cache cannot be copied');
    const n = Math.min(positions, this.length);
    const copy = new KvCache(this.layers, this.heads, this.headDim, Math.max(n, maxPositions), true);
    copy.reserve(Math.max(1, n));
    const { heads: KV, headDim: D, capacity: C } = this;
    const C2 = copy.capacity;
    for (let b = 0; b < this.stores.length; b++)
      for (let h = 0; h < KV && n > 0; h++)
        copy.stores[b].set(this.stores[b].subarray(h * C * D, (h * C + n) * D), h * C2 * D);
    copy.length = n;
    copy.mask = this.mask.slice(0, n);
    return copy;
  }

  /** The decoder's cache inputs and attention_mask for a step that adds `stepMask.length` positions. */
  feeds(stepMask: readonly bigint[]): Record<string, ort.Tensor> {
    const { heads: KV, headDim: D, capacity: C } = this;
    const attention = new BigInt64Array(C + stepMask.length); // empty slots stay 0
    attention.set(this.mask, 0);
    attention.set(stepMask, C);
    const feeds: Record<string, ort.Tensor> = { attention_mask: i64(attention, [1, attention.length]) };
    for (let i = 0; i < this.layers; i++) {
      feeds[`past_key_values.${i}.key`] = f32(this.stores[2 * i].subarray(0, KV * C * D), [1, KV, C, D]);
      feeds[`past_key_values.${i}.value`] = f32(this.stores[2 * i + 1].subarray(0, KV * C * D), [1, KV, C, D]);
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
        this.stores[2 * i] = out[`present.${i}.key`].data as Float32Array;
        this.stores[2 * i + 1] = out[`present.${i}.value`].data as Float32Array;
      }
      this.length = this.capacity = this.length + S;
      this.mask.push(...stepMask);
      return;
    }
    this.reserve(this.length + S);
    for (let i = 0; i < this.layers; i++) {
      for (const [j, kind] of (['key', 'value'] as const).entries()) {
        const rows = out[`new_key_values.${i}.${kind}`].data as Float32Array; // [KV, S, D]
        const dst = this.stores[2 * i + j];
        for (let h = 0; h < KV; h++)
          dst.set(rows.subarray(h * S * D, (h + 1) * S * D), (h * this.capacity + this.length) * D);
      }
    }
    this.length += S;
    this.mask.push(...stepMask);
  }

  /** Gives the stores to the next generation (call when this one is done with them). */
  release(): void {
    if (!this.newRowsOutput || this.capacity === 0) return;
    kept = this.stores;
    this.stores = [];
    if (keptTimer) clearTimeout(keptTimer);
    keptTimer = setTimeout(() => (kept = undefined), KEEP_MS);
    keptTimer.unref();
  }

  /** Makes the capacity at least `positions`: moves each head's rows to the new layout and zeroes the empty slots. */
  private reserve(positions: number): void {
    if (positions <= this.capacity) return;
    const { heads: KV, headDim: D, capacity: oldC, length: n } = this;
    const C = Math.ceil(positions / GROW) * GROW;
    const storeLength = KV * Math.ceil(Math.max(positions, this.maxPositions) / GROW) * GROW * D;
    if (this.stores[0].length < KV * C * D) this.takeStores(storeLength);
    for (const s of this.stores) {
      // last head first: each head moves to a higher offset, over rows already moved or not needed
      for (let h = KV - 1; h >= 0; h--) {
        if (h > 0 && n > 0) s.copyWithin(h * C * D, h * oldC * D, (h * oldC + n) * D);
        s.fill(0, (h * C + n) * D, (h + 1) * C * D);
      }
    }
    this.capacity = C;
  }

  /** Stores of at least `length`: the last generation's if they are big enough (their pages are mapped), else new. */
  private takeStores(length: number): void {
    const reuse =
      kept && kept.length === this.stores.length && kept.every((s) => s.length >= length) ? kept : undefined;
    if (reuse) kept = undefined;
    const fresh = reuse ?? this.stores.map(() => new Float32Array(length));
    // only reached with an empty cache or a full one (the stores are sized for the whole generation up front)
    const { heads: KV, headDim: D, capacity: C, length: n } = this;
    for (let b = 0; b < fresh.length; b++) {
      for (let h = 0; h < KV && n > 0; h++)
        fresh[b].set(this.stores[b].subarray(h * C * D, (h * C + n) * D), h * C * D);
    }
    this.stores = fresh;
  }
}
