// GENERATED from models/bundle.schema.json by test/protocol/wire_gen.ts (manifest types); do not edit.
// Regenerate: npm run build && node out/test/protocol/wire_gen.js --write
// biome-ignore-all format: generated
// biome-ignore-all lint: generated
// biome-ignore-all assist: generated

export type Posint = number;
export type Id = number;
/**
 * @minItems 3
 * @maxItems 3
 */
export type Rgb = [number, number, number];
export type Relpath = string;

/**
 * lisa.manifest.json; see docs/bundle-format.md. Written by models/export, validated by src/host. The one definition of the manifest: src/host/manifest-types.ts is generated from it (test/protocol/wire_gen.ts).
 */
export interface Manifest {
  format: 'lisa-onnx/1';
  variant: string;
  layout: '7b' | '13b';
  llm: {
    hidden_size: Posint;
    num_layers: Posint;
    num_heads: Posint;
    num_kv_heads: Posint;
    head_dim: Posint;
    vocab_size: Posint;
    max_positions: Posint;
    rms_norm_eps: number;
    weights: 'float32' | 'float16' | 'int8' | 'int4' | 'w8a8';
    /**
     * Graph contract: the decoder's logits hold each step's last position only ([1,1,V]). Absent in bundles exported before 2026-11-30, whose logits hold every position ([1,S,V]); the host reads the last row of either.
     */
    logits?: 'last';
  };
  sam: {
    prompt_dim: Posint;
    mask_index: number;
    threshold: number;
  };
  tokens: {
    bos: Id;
    eos: Id;
    unk: Id;
    pad: Id;
    seg: Id;
    im_start: Id;
    im_end: Id;
    im_patch?: Id;
    image_placeholder: number;
    num_image_tokens: Posint;
    mask_attention_for_ids: Id[];
  };
  prompt: {
    template: 'llava_v1';
    system: string;
    /**
     * @minItems 2
     * @maxItems 2
     */
    roles: [string, string];
    sep: string;
    sep2: string;
    image_text: string;
  };
  generation: {
    strategy: 'greedy';
    max_new_tokens: Posint;
    /**
     * @minItems 1
     */
    stop_ids: [Id, ...Id[]];
  };
  clip_preprocess: {
    shortest_edge: Posint;
    resample: 'bicubic';
    /**
     * @minItems 2
     * @maxItems 2
     */
    crop: [Posint, Posint];
    rescale: number;
    mean: Rgb;
    std: Rgb;
  };
  sam_preprocess: {
    long_side: Posint;
    resample: 'bilinear';
    mean: Rgb;
    std: Rgb;
    pad: 'bottom-right-zero';
  };
  graphs: {
    vision_encoder: GraphSpec;
    embed_tokens: GraphSpec;
    decoder: GraphSpec;
    seg_projector: GraphSpec;
    sam_image_encoder: GraphSpec;
    sam_mask_decoder: GraphSpec;
    sam_prompt_decoder?: GraphSpec;
  };
  /**
   * The execution providers this bundle's weight formats suit (models/export/lisa_export/precision.py). Absent in bundles exported before 2026-11-30.
   *
   * @minItems 1
   */
  devices?: ['cpu' | 'webgpu' | 'cuda', ...('cpu' | 'webgpu' | 'cuda')[]];
  files: {
    /**
     * This interface was referenced by `undefined`'s JSON-Schema definition
     * via the `patternProperty` "^(?!/)(?!.*(^|/)\.\.(/|$))[^\\]+$".
     */
    [k: string]: {
      sha256: string;
      bytes: number;
    };
  };
  source?: {
    [k: string]: unknown;
  };
}
export interface GraphSpec {
  file: Relpath;
  external_data?: Relpath[];
  inputs: {
    [k: string]: TensorSpec;
  };
  outputs: {
    [k: string]: TensorSpec;
  };
  /**
   * This graph's weight format. Absent in bundles exported before 2026-11-30.
   */
  weights?: 'float32' | 'float16' | 'int8' | 'int4' | 'w8a8';
}
export interface TensorSpec {
  dtype: 'float32' | 'float16' | 'int64' | 'int32' | 'bool';
  shape: (number | string)[];
}
