// The decoder's KV cache kept on the WebGPU device. The decoder session leaves its `present.*` outputs in device memory
// (`preferredOutputLocation: 'gpu-buffer'`, set by GraphSessions), and each step feeds them back as the next step's
// `past_key_values.*`: the cache never crosses to JS. What does cross per decoded token is the new token's embedding,
// position and attention mask in, and its logits and last hidden state out (the hidden state is needed when the token
// is [SEG]; onnxruntime-node cannot download a gpu-buffer tensor, so it cannot be fetched only then).
//
// Unlike KvCache (host memory, padded to a capacity), the past here is exactly the positions held: the runtime
// allocates each step's `present` on the device and the previous one is disposed once the step has run.
import type * as ort from 'onnxruntime-node';
import { KvCache } from './kv-cache';
import { f32, type GraphSessions, i64 } from './sessions';

/** What generate() asks of a KV cache, on the host or on the device. */
export type DecoderCache = Pick<KvCache, 'length' | 'feeds' | 'fetches' | 'append' | 'release'>;

/** The cache the sessions were made for: on the device when the decoder keeps `present.*` there, else in host memory. */
export function decoderCache(
  sessions: GraphSessions,
  layers: number,
  heads: number,
  headDim: number,
  maxPositions: number,
): DecoderCache {
  if (sessions.deviceKvCache) return new DeviceKvCache(layers, heads, headDim);
  return new KvCache(layers, heads, headDim, maxPositions, KvCache.supports(sessions.outputNames('decoder')));
}

export class DeviceKvCache implements DecoderCache {
  /** Positions held. */
  length = 0;
  /** Marks the cache whose tensors live on the device (prefix-cache.ts frees them when it drops one). */
  readonly onDevice = true;
  /** Per layer: key then value, each [1, heads, length, headDim] on the device; undefined before the first step. */
  private past: ort.Tensor[] | undefined;
  /** attention_mask value of every held position (0 for the <unk> rule, else 1). */
  private mask: bigint[] = [];

  constructor(
    private readonly layers: number,
    private readonly heads: number,
    private readonly headDim: number,
  ) {}

  feeds(stepMask: readonly bigint[]): Record<string, ort.Tensor> {
    const attention = BigInt64Array.from([...this.mask, ...stepMask]);
    const feeds: Record<string, ort.Tensor> = { attention_mask: i64(attention, [1, attention.length]) };
    const empty = f32(new Float32Array(0), [1, this.heads, 0, this.headDim]);
    for (let i = 0; i < this.layers; i++) {
      feeds[`past_key_values.${i}.key`] = this.past?.[2 * i] ?? empty;
      feeds[`past_key_values.${i}.value`] = this.past?.[2 * i + 1] ?? empty;
    }
    return feeds;
  }

  fetches(): string[] {
    const names: string[] = [];
    for (let i = 0; i < this.layers; i++) names.push(`present.${i}.key`, `present.${i}.value`);
    return names;
  }

  append(out: ort.InferenceSession.OnnxValueMapType, stepMask: readonly bigint[]): void {
    const next: ort.Tensor[] = [];
    for (const name of this.fetches()) {
      const t = out[name] as ort.Tensor;
      if (t.location !== 'gpu-buffer') throw new Error(`${name} came back in ${t.location} memory, not on the device`);
      next.push(t);
    }
    this.disposePast();
    this.past = next;
    this.length += stepMask.length;
    this.mask.push(...stepMask);
  }

  release(): void {
    this.disposePast();
  }

  /** attention_mask value of every held position (prefix-cache.ts matches kept caches by it). */
  get positionMask(): readonly bigint[] {
    return this.mask;
  }

  /** Device bytes one position takes (keys and values of every layer). */
  get positionBytes(): number {
    return 2 * this.layers * this.heads * this.headDim * (this.past?.[0]?.type === 'float16' ? 2 : 4);
  }

  get bytes(): number {
    return this.length * this.positionBytes;
  }

  /** Nothing to do: the runtime allocates each step's `present` at the size it needs. */
  continueTo(_maxPositions: number): void {}

  private disposePast(): void {
    for (const t of this.past ?? []) t.dispose();
    this.past = undefined;
  }
}
