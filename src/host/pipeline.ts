// One loaded model and the whole request path: image -> (cached) encoders -> prompt -> generate -> [SEG] masks ->
// result payload. Requests run one at a time; the CPU (or GPU) is the bottleneck and sessions are not re-entrant.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type * as ort from 'onnxruntime-node';
import type { ChatTurn, SegmentResult } from '../protocol/result';
import { RESULT_FORMAT } from '../protocol/result';
import type { DeviceChoice } from '../protocol/wire-types';
import { type Bundle, defaultVerifyCacheFile, openBundle } from './bundle';
import { autoDevice } from './device-choice';
import { EmbeddingCache, type ImageEmbeddings, samEmbeddingTensor } from './embedding-cache';
import { HostError } from './errors';
import { assertPromptFits, generate } from './generate';
import { DEFAULT_MAX_PIXELS, type DecodedImage, decodeImage, maxFileBytes, sha256Hex } from './image/decode';
import { preprocessImageParallel } from './image/preprocess';
import { buildResultMasks, masksFromLogits, overlayPng, rgbPng } from './masks';
import { DEFAULT_PREFIX_CACHE_LIMITS, PrefixCache, type PrefixCacheLimits } from './prefix-cache';
import { buildPrompt, cleanAnswer } from './prompt';
import { readRegularFile } from './read-file';
import { Refiner } from './refine';
import { SamEncoderThread } from './sam-encoder-thread';
import {
  AdapterTooSmall,
  chooseProvider,
  f32,
  fallbackLine,
  GraphSessions,
  i64,
  type ProviderChoice,
} from './sessions';
import { LisaTokenizer } from './tokenizer';

export interface LoadOptions {
  /** 'auto': webgpu when the bundle and this machine allow it, else cpu with the reason (device-choice.ts). */
  device?: DeviceChoice;
  allowFallback?: boolean;
  verifyCacheFile?: string | null;
  onProgress?: (message: string, loaded?: number, total?: number) => void;
  /** Bounds on the KV rows kept across turns (prefix-cache.ts); totalBytes 0 turns reuse off. */
  kvReuse?: PrefixCacheLimits;
  /**
   * 'concurrent' (default): SAM's image encoder runs on its own thread while the language model prefills and decodes
   * (they meet at the mask decoder); 'serial': it runs before the prefill, on this thread.
   */
  samSchedule?: 'concurrent' | 'serial';
  /** On webgpu, keep the KV cache on the device (default true; false is the copying path, for the bench). */
  deviceKvCache?: boolean;
}

export type ImageSource = { path: string } | { data: Buffer } | { sha256: string };

export interface SegmentRequest {
  image: ImageSource;
  prompt: string;
  history?: ChatTurn[];
  /** Text forced at the start of the answer (after "ASSISTANT: "); goldens use it to make random weights emit [SEG]. */
  assistantPrefix?: string;
  maxNewTokens?: number;
  includePng?: boolean;
  /** Also return the image with all masks blended in, as PNG. */
  includeOverlay?: boolean;
  /** Put the image itself (the file's bytes, or a PNG when only pixels are at hand) in the result. */
  includeImage?: boolean;
  onText?: (delta: string, tokenIndex: number) => void;
  /** Aborting answers at once when the request is still queued, else at the next stage or token. */
  signal?: AbortSignal;
}

export interface Counters {
  visionEncoderRuns: number;
  samEncoderRuns: number;
  imageDecodes: number;
  cacheHits: number;
  /** Prompt positions run through the decoder's prefill, and those whose KV rows an earlier turn had computed. */
  prefillPositions: number;
  reusedPositions: number;
}

const DEFAULT_CACHE_BYTES = 512 * 1024 * 1024;

export const newCounters = (): Counters => ({
  visionEncoderRuns: 0,
  samEncoderRuns: 0,
  imageDecodes: 0,
  cacheHits: 0,
  prefillPositions: 0,
  reusedPositions: 0,
});

export class LisaPipeline {
  readonly cache: EmbeddingCache;
  /** Recent results' [SEG] embeddings and the prompt-capable mask decoder: reasonSegment/refine. */
  readonly refiner: Refiner;
  /** The conversations' KV rows, so a follow-up prefills only what is new. */
  readonly kvStore: PrefixCache;
  private queue: Promise<unknown> = Promise.resolve();
  /** The SAM encoder run a request started; the next request waits for it even when this one failed. */
  private samPending: Promise<unknown> = Promise.resolve();
  /** Set when SAM's encoder runs on its own thread. */
  private samThread?: SamEncoderThread;
  /** Loaded with device 'auto': a GPU that turns out too small for the bundle gives way to the cpu. */
  private auto = false;

  private constructor(
    readonly bundle: Bundle,
    readonly sessions: GraphSessions,
    readonly tokenizer: LisaTokenizer,
    readonly loadMs: number,
    cacheBytes: number,
    readonly maxPixels: number,
    /** Shared with the caller so counts survive a model reload (the host reports them). */
    readonly counters: Counters,
    kvReuse: PrefixCacheLimits,
  ) {
    this.cache = new EmbeddingCache(cacheBytes);
    this.refiner = new Refiner(bundle, sessions.provider.provider, this.cache);
    this.kvStore = new PrefixCache(
      kvReuse,
      bundle.manifest.tokens.image_placeholder,
      bundle.manifest.tokens.num_image_tokens,
    );
  }

  static async load(
    dir: string,
    opts: LoadOptions & { cacheBytes?: number; maxPixels?: number; counters?: Counters } = {},
  ): Promise<LisaPipeline> {
    const t0 = performance.now();
    const device = opts.device ?? 'cpu';
    const chosen = device === 'auto' ? undefined : chooseProvider(device, opts.allowFallback ?? false);
    const verifyCacheFile =
      opts.verifyCacheFile === null ? undefined : (opts.verifyCacheFile ?? defaultVerifyCacheFile());
    const bundle = await openBundle(dir, {
      verifyCacheFile,
      onProgress: (msg, loaded, total) => opts.onProgress?.(msg, loaded, total),
    });
    const tokenizer = new LisaTokenizer(
      JSON.parse(await fs.readFile(bundle.resolve('tokenizer.json'), 'utf8')),
      bundle.manifest.tokens,
    );
    const auto = chosen ? undefined : autoDevice(bundle);
    const provider: ProviderChoice = chosen ?? { provider: auto?.device ?? 'cpu', fallback: auto?.fallback };
    const sessions = await GraphSessions.create(bundle, provider, {
      allowFallback: auto ? true : opts.allowFallback,
      deviceKvCache: opts.deviceKvCache,
      onProgress: (g, i, n) => opts.onProgress?.(`loading ${g}`, i, n),
    });
    const pipeline = new LisaPipeline(
      bundle,
      sessions,
      tokenizer,
      performance.now() - t0,
      opts.cacheBytes ?? DEFAULT_CACHE_BYTES,
      opts.maxPixels ?? DEFAULT_MAX_PIXELS,
      opts.counters ?? newCounters(),
      opts.kvReuse ?? DEFAULT_PREFIX_CACHE_LIMITS,
    );
    pipeline.auto = !chosen;
    if ((opts.samSchedule ?? 'concurrent') === 'concurrent' && sessions.provider.provider === 'cpu') {
      const file = bundle.resolve(bundle.manifest.graphs.sam_image_encoder.file);
      pipeline.samThread = await SamEncoderThread.start(file, 'cpu').catch(() => undefined); // else: serial, here
      if (pipeline.samThread) await sessions.drop('sam_image_encoder');
    }
    return pipeline;
  }

  get provider(): string {
    return this.sessions.provider.provider;
  }

  async dispose(): Promise<void> {
    await this.queue.catch(() => undefined);
    this.cache.clear(); // frees device embeddings and kept device KV caches while their provider still runs
    this.kvStore.clear();
    await this.sessions.release();
    await this.refiner.release();
    await this.samThread?.close();
  }

  /** Runs requests strictly one after another; a request cancelled while it waits is answered at once. */
  segment(req: SegmentRequest): Promise<SegmentResult> {
    const run = this.queue.then(() =>
      this.segmentNow(req).catch((e) => this.fellBack(e).then(() => this.segmentNow(req))),
    );
    this.queue = run.catch(() => undefined).then(() => this.samPending.catch(() => undefined));
    return req.signal ? Promise.race([run, aborted(req.signal)]) : run;
  }

  /**
   * 'auto' on webgpu, when a graph's first run shows the adapter could not hold the bundle (Dawn reports that only
   * then): the model moves to the cpu, saying why, and the request runs again there. Every graph but SAM's mask
   * decoder runs before the first token is streamed, so the retried request streams nothing twice. Rethrows any other
   * error.
   */
  private async fellBack(e: unknown): Promise<void> {
    if (!this.auto || !(e instanceof AdapterTooSmall)) throw e;
    await this.samPending.catch(() => undefined);
    this.cache.clear(); // device tensors go while their provider still runs
    this.kvStore.clear();
    await this.refiner.moveTo('cpu');
    await this.sessions.fallBackToCpu(e.fallback);
    process.stderr.write(`device auto: ${fallbackLine(e.fallback)}\n`); // the host log, or the CLI's stderr
  }

  private async segmentNow(req: SegmentRequest): Promise<SegmentResult> {
    const m = this.bundle.manifest;
    const clock = this.sessions.clock;
    clock.reset();
    const t0 = performance.now();
    const timings = {
      decodeImageMs: 0,
      preprocessMs: 0,
      clipMs: 0,
      samEncoderMs: 0,
      prefillMs: 0,
      decodeMs: 0,
      maskDecoderMs: 0,
    };

    checkCancelled(req.signal);
    refuseImageToken(req);
    const prompt = buildPrompt(m.prompt, req.history ?? [], req.prompt, req.assistantPrefix ?? '');
    const inputIds = this.encode(prompt);
    // Where this turn's answer starts: [SEG]s before it (typed by the user, or re-fed from history) get no mask.
    const answerStart = req.assistantPrefix
      ? this.encode(buildPrompt(m.prompt, req.history ?? [], req.prompt, '')).length
      : inputIds.length;
    assertPromptFits(m, inputIds);

    const { emb, cacheHit, samDone } = await this.embeddings(req.image, timings, req.signal);

    const promptIds = inputIds.filter((t) => t !== m.tokens.image_placeholder);
    const stream = this.tokenizer.createStreamDecoder(promptIds);
    const gen = await generate(this.sessions, m, {
      inputIds,
      promptSegFrom: answerStart,
      imageFeatures: emb.clipFeatures,
      maxNewTokens: req.maxNewTokens ?? m.generation.max_new_tokens,
      reuse: { store: this.kvStore, image: emb.sha256 },
      isCancelled: () => req.signal?.aborted ?? false,
      onToken: (id, index) => {
        const delta = stream.push(id);
        if (delta) req.onText?.(delta, index);
      },
    });
    this.counters.reusedPositions += gen.reusedPositions;
    this.counters.prefillPositions += assertPromptFits(m, inputIds) - gen.reusedPositions;
    if (gen.stopReason === 'cancelled') throw cancelledError();
    const tail = stream.finish();
    if (tail) req.onText?.(tail, gen.outputIds.length - 1);
    const decodedAll = this.tokenizer.decode(promptIds.concat(gen.outputIds));
    const marker = `${m.prompt.roles[1]}:`;
    const answer = decodedAll
      .slice(decodedAll.lastIndexOf(marker) + marker.length)
      .replace(/<\/s>\s*$/, '')
      .trim();
    timings.prefillMs = gen.prefillMs;
    timings.decodeMs = gen.decodeMs;

    // an answer without [SEG] needs no SAM embedding: it returns while the encoder finishes (and fills the cache)
    if (gen.seg.length > 0) await samDone;
    const tMask = performance.now();
    const binary =
      gen.seg.length === 0
        ? { masks: [], scores: [], segEmbeddings: new Float32Array(0) }
        : await this.decodeMasks(
            emb,
            gen.seg.map((s) => s.hidden),
          );
    const masks = await buildResultMasks(
      binary.masks,
      emb.height,
      emb.width,
      binary.scores,
      gen.seg.map((s) => s.tokenIndex),
      { png: req.includePng ?? true },
    );
    const overlay = req.includeOverlay
      ? (await overlayPng(emb.rgb, emb.width, emb.height, binary.masks)).toString('base64')
      : undefined;
    timings.maskDecoderMs = performance.now() - tMask;

    return {
      format: RESULT_FORMAT,
      model: { variant: m.variant, bundle: this.bundle.dir },
      provider: this.provider,
      prompt: req.prompt,
      history: req.history ?? [],
      text: cleanAnswer(decodedAll),
      answer,
      outputIds: gen.outputIds,
      image: {
        width: emb.width,
        height: emb.height,
        sha256: emb.sha256,
        source: 'path' in req.image ? req.image.path : undefined,
        ...(req.includeImage ? await imagePayload(req.image, emb, this.maxPixels) : {}),
      },
      masks,
      overlayPng: overlay,
      timings: {
        ...timings,
        totalMs: performance.now() - t0,
        onnxMs: clock.onnxMs,
        newTokens: gen.outputIds.length,
        cacheHit,
      },
      stopReason: gen.stopReason,
      resultId:
        masks.length === 0
          ? undefined
          : this.refiner.results.remember({
              sha256: emb.sha256,
              width: emb.width,
              height: emb.height,
              segEmbeddings: binary.segEmbeddings,
              tokenIndices: masks.map((k) => k.tokenIndex),
            }),
    };
  }

  private encode(prompt: string): number[] {
    try {
      return this.tokenizer.encodePrompt(prompt);
    } catch (e) {
      throw new HostError(
        'ParamsInvalid',
        `The tokenizer could not encode this prompt (${(e as Error).message}); remove unusual characters and try again.`,
      );
    }
  }

  /**
   * CLIP features and SAM embedding for an image, from the cache when this image (or this file) was seen before.
   * A cancel is honoured between stages: during decoding at once (sharp finishes, bounded by its timeout, unseen), and
   * after pre-processing and after each encoder.
   */
  private async embeddings(
    image: SegmentRequest['image'],
    timings: Record<string, number>,
    signal?: AbortSignal,
  ): Promise<{ emb: ImageEmbeddings; cacheHit: boolean; samDone?: Promise<void> }> {
    if ('sha256' in image) {
      const known = this.cache.get(image.sha256);
      if (!known)
        throw new HostError(
          'ImageUnreadable',
          "That image is no longer in the host's cache (the host restarted or evicted it); send the image again.",
        );
      this.counters.cacheHits++;
      return { emb: known, cacheHit: true };
    }
    const fileKey = 'path' in image ? await fileIdentity(image.path) : undefined;
    const byFile = fileKey ? this.cache.getByFile(fileKey) : undefined;
    const byBytes = byFile ?? ('data' in image ? this.cache.get(sha256Hex(image.data)) : undefined);
    if (byBytes) {
      this.counters.cacheHits++;
      return { emb: byBytes, cacheHit: true };
    }
    let t = performance.now();
    const decoding = decodeImage('path' in image ? image.path : image.data, { maxPixels: this.maxPixels });
    const decoded: DecodedImage = await (signal ? Promise.race([decoding, aborted(signal)]) : decoding);
    this.counters.imageDecodes++;
    timings.decodeImageMs = performance.now() - t;
    const cached = this.cache.get(decoded.sha256);
    if (cached) {
      if (fileKey) this.cache.put(cached, fileKey);
      this.counters.cacheHits++;
      return { emb: cached, cacheHit: true };
    }
    const m = this.bundle.manifest;
    t = performance.now();
    checkCancelled(signal);
    const { clip: clipPixels, sam } = await preprocessImageParallel(decoded, m.clip_preprocess, m.sam_preprocess);
    timings.preprocessMs = performance.now() - t;
    checkCancelled(signal);

    t = performance.now();
    const clipOut = await this.sessions.run('vision_encoder', { pixel_values: f32(clipPixels.data, clipPixels.dims) });
    this.counters.visionEncoderRuns++;
    timings.clipMs = performance.now() - t;
    checkCancelled(signal);

    const emb: ImageEmbeddings = {
      sha256: decoded.sha256,
      width: decoded.width,
      height: decoded.height,
      clipFeatures: clipOut.image_features.data as Float32Array,
      samEmbedding: new Float32Array(0), // set, and the image cached, when SAM's encoder is done
      resizeSize: sam.resizeSize,
      rgb: decoded.data,
    };
    const tSam = performance.now();
    // Counted when it starts: it may still be running in the background after an answer without [SEG] returned.
    this.counters.samEncoderRuns++;
    const samDone = (
      this.samThread
        ? this.samThread.run(sam.data, sam.dims)
        : this.sessions
            .run('sam_image_encoder', { pixel_values: f32(sam.data, sam.dims) })
            // on webgpu a device tensor (sessions.ts keeps image_embeddings on the device): it never comes back to JS
            .then((out) => {
              const t = out.image_embeddings as ort.Tensor;
              return t.location === 'gpu-buffer' ? t : (t.data as Float32Array);
            })
    ).then((embedding) => {
      timings.samEncoderMs = performance.now() - tSam;
      emb.samEmbedding = embedding;
      this.cache.put(emb, fileKey);
    });
    this.samPending = samDone;
    samDone.catch(() => undefined); // awaited before the mask decoder; a request that fails first must not leave it unhandled
    if (!this.samThread) await samDone;
    return { emb, cacheHit: false, samDone };
  }

  /** [SEG] hidden states -> text_hidden_fcs -> SAM mask decoder (all [SEG]s in one batch) -> binary masks. */
  private async decodeMasks(
    emb: ImageEmbeddings,
    hidden: Float32Array[],
  ): Promise<{ masks: Uint8Array[]; scores: number[]; segEmbeddings: Float32Array }> {
    const m = this.bundle.manifest;
    const n = hidden.length;
    const H = m.llm.hidden_size;
    const segHidden = new Float32Array(n * H);
    for (let i = 0; i < n; i++) segHidden.set(hidden[i], i * H);
    const proj = await this.sessions.run('seg_projector', { seg_hidden: f32(segHidden, [n, H]) });
    const C = m.sam.prompt_dim;
    const out = await this.sessions.run(
      'sam_mask_decoder',
      {
        image_embeddings: samEmbeddingTensor(emb.samEmbedding, [1, C, 64, 64]),
        seg_embeddings: f32(proj.seg_embeddings.data as Float32Array, [n, C]),
        resize_size: i64(BigInt64Array.from(emb.resizeSize, BigInt), [2]),
        orig_size: i64(BigInt64Array.from([emb.height, emb.width], BigInt), [2]),
      },
      ['masks', 'iou_predictions'], // not low_res_masks, which nothing reads
    );
    return {
      masks: masksFromLogits(out.masks.data as Float32Array, n, emb.height, emb.width, m.sam.threshold),
      scores: Array.from(out.iou_predictions.data as Float32Array),
      segEmbeddings: proj.seg_embeddings.data as Float32Array,
    };
  }
}

/** The image as the surfaces show it: the original file's bytes when we have them, else the decoded pixels as PNG. */
async function imagePayload(
  image: ImageSource,
  emb: ImageEmbeddings,
  maxPixels: number,
): Promise<{ data: string; mimeType: string }> {
  const bytes =
    'path' in image
      ? await readRegularFile(image.path, maxFileBytes(maxPixels), `"${image.path}"`, 'the image read limit')
      : 'data' in image
        ? image.data
        : undefined;
  const sniffed = bytes && sniffMime(bytes);
  if (bytes && sniffed) return { data: bytes.toString('base64'), mimeType: sniffed };
  return { data: (await rgbPng(emb.rgb, emb.width, emb.height)).toString('base64'), mimeType: 'image/png' };
}

/** Formats a browser shows by itself; anything else (TIFF, 16-bit oddities) is re-encoded as PNG. */
function sniffMime(b: Buffer): string | undefined {
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'image/png';
  if (b[0] === 0xff && b[1] === 0xd8) return 'image/jpeg';
  if (b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP')
    return 'image/webp';
  if (b.subarray(0, 3).toString('latin1') === 'GIF') return 'image/gif';
  return undefined;
}

const cancelledError = () => new HostError('Cancelled', 'The request was cancelled.');

function checkCancelled(signal?: AbortSignal): void {
  if (signal?.aborted) throw cancelledError();
}

/** Rejects with Cancelled when the signal aborts (never resolves). */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(cancelledError());
    else signal.addEventListener('abort', () => reject(cancelledError()), { once: true });
  });
}

/** LISA builds its prompt around one image; an "<image>" typed by the user would make more placeholders (LISA raises). */
function refuseImageToken(req: SegmentRequest): void {
  const texts = [req.prompt, req.assistantPrefix ?? '', ...(req.history ?? []).flatMap((t) => [t.user, t.assistant])];
  if (texts.some((t) => t.includes('<image>'))) {
    throw new HostError(
      'ParamsInvalid',
      'The text contains "<image>", which LISA reserves for the picture itself; remove it (the image is attached already).',
    );
  }
}

/** A file's identity for the "don't decode it again" cache: same path, size and modification time. */
async function fileIdentity(file: string): Promise<string | undefined> {
  try {
    const st = await fs.stat(file);
    return `${path.resolve(file)}\0${st.size}\0${st.mtimeMs}`;
  } catch {
    return undefined;
  }
}
