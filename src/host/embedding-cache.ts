// What the two image encoders produced for an image, kept so that a follow-up turn or a new instruction on the same
// image runs neither encoder. Keyed by the decoded pixels' hash; a second map from file identity (path, size, mtime)
// to that hash lets a re-prompt skip even decoding the file. Bounded by bytes, least recently used goes first.
// On webgpu the SAM embedding is a tensor on the device (it never comes back to JS): an entry leaving the cache frees
// it, unless a refine is using it at that moment (hold), in which case it is freed when that refine lets go.
import * as ort from 'onnxruntime-node';

/** SAM's image embedding [1, C, 64, 64]: in host memory, or a 'gpu-buffer' tensor on the WebGPU device. */
export type SamEmbedding = Float32Array | ort.Tensor;

/** The embedding as a graph input. */
export const samEmbeddingTensor = (s: SamEmbedding, dims: number[]): ort.Tensor =>
  s instanceof Float32Array ? new ort.Tensor('float32', s, dims) : s;

/** Its bytes, wherever it lives (a device tensor counts against the cache's bound as well). */
const samBytes = (s: SamEmbedding) => (s instanceof Float32Array ? s.byteLength : s.size * 4);

export interface ImageEmbeddings {
  sha256: string;
  width: number;
  height: number;
  /** Projected CLIP features [num_image_tokens, H]. */
  clipFeatures: Float32Array;
  /** SAM image embedding [1, C, 64, 64]. */
  samEmbedding: SamEmbedding;
  resizeSize: [number, number];
  /** The decoded RGB pixels, kept so overlays of later turns need no second decode. */
  rgb: Uint8Array;
}

const entryBytes = (e: ImageEmbeddings) => e.clipFeatures.byteLength + samBytes(e.samEmbedding) + e.rgb.byteLength;

export class EmbeddingCache {
  private readonly entries = new Map<string, ImageEmbeddings>();
  private readonly fileToSha = new Map<string, string>();
  private bytes = 0;
  /** Device embeddings in use by a refine, with how many holds each has; freed at the last release if evicted. */
  private readonly held = new Map<ort.Tensor, { count: number; evicted: boolean }>();

  constructor(private maxBytes: number) {}

  get sizeBytes(): number {
    return this.bytes;
  }

  get(sha256: string): ImageEmbeddings | undefined {
    const e = this.entries.get(sha256);
    if (e) {
      this.entries.delete(sha256);
      this.entries.set(sha256, e);
    }
    return e;
  }

  getByFile(fileKey: string): ImageEmbeddings | undefined {
    const sha = this.fileToSha.get(fileKey);
    return sha === undefined ? undefined : this.get(sha);
  }

  put(e: ImageEmbeddings, fileKey?: string): void {
    const old = this.entries.get(e.sha256);
    if (old) {
      this.bytes -= entryBytes(old);
      this.entries.delete(e.sha256);
      if (old.samEmbedding !== e.samEmbedding) this.free(old);
    }
    this.entries.set(e.sha256, e);
    this.bytes += entryBytes(e);
    if (fileKey) this.fileToSha.set(fileKey, e.sha256);
    this.evict();
  }

  resize(maxBytes: number): void {
    this.maxBytes = maxBytes;
    this.evict();
  }

  /** Keeps e's device embedding alive until the returned function is called, even if e leaves the cache meanwhile. */
  hold(e: ImageEmbeddings): () => void {
    const t = e.samEmbedding;
    if (t instanceof Float32Array) return () => undefined;
    const h = this.held.get(t) ?? { count: 0, evicted: false };
    h.count++;
    this.held.set(t, h);
    return () => {
      if (--h.count > 0) return;
      this.held.delete(t);
      if (h.evicted) t.dispose();
    };
  }

  clear(): void {
    for (const e of this.entries.values()) this.free(e);
    this.entries.clear();
    this.fileToSha.clear();
    this.bytes = 0;
  }

  private evict(): void {
    for (const [sha, e] of this.entries) {
      if (this.bytes <= this.maxBytes || this.entries.size === 1) break;
      this.entries.delete(sha);
      this.bytes -= entryBytes(e);
      this.free(e);
      for (const [f, s] of this.fileToSha) if (s === sha) this.fileToSha.delete(f);
    }
  }

  /** Frees an entry's device embedding now, or when the last refine holding it lets go. */
  private free(e: ImageEmbeddings): void {
    const t = e.samEmbedding;
    if (t instanceof Float32Array) return;
    const h = this.held.get(t);
    if (h) h.evicted = true;
    else t.dispose();
  }
}
