// What the two image encoders produced for an image, kept so that a follow-up turn or a new instruction on the same
// image runs neither encoder. Keyed by the decoded pixels' hash; a second map from file identity (path, size, mtime)
// to that hash lets a re-prompt skip even decoding the file. Bounded by bytes, least recently used goes first.

export interface ImageEmbeddings {
  sha256: string;
  width: number;
  height: number;
  /** Projected CLIP features [num_image_tokens, H]. */
  clipFeatures: Float32Array;
  /** SAM image embedding [1, C, 64, 64]. */
  samEmbedding: Float32Array;
  resizeSize: [number, number];
  /** The decoded RGB pixels, kept so overlays of later turns need no second decode. */
  rgb: Uint8Array;
}

const entryBytes = (e: ImageEmbeddings) => e.clipFeatures.byteLength + e.samEmbedding.byteLength + e.rgb.byteLength;

export class EmbeddingCache {
  private readonly entries = new Map<string, ImageEmbeddings>();
  private readonly fileToSha = new Map<string, string>();
  private bytes = 0;

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

  clear(): void {
    this.entries.clear();
    this.fileToSha.clear();
    this.bytes = 0;
  }

  private evict(): void {
    for (const [sha, e] of this.entries) {
      if (this.bytes <= this.maxBytes || this.entries.size === 1) break;
      this.entries.delete(sha);
      this.bytes -= entryBytes(e);
      for (const [f, s] of this.fileToSha) if (s === sha) this.fileToSha.delete(f);
    }
  }
}
