// Greedy decoding with a KV cache, as LISA's generate() does without one: same tokens, one forward pass per token
// instead of a full re-run. Also collects, for every [SEG], the post-norm hidden state of the token that precedes it
// (the state whose logits produced [SEG]), which is what LISA feeds to text_hidden_fcs.
import type * as ort from 'onnxruntime-node';
import type { Manifest } from './bundle';
import { DeviceKvCache, decoderCache } from './device-kv-cache';
import { HostError } from './errors';
import { KvCache } from './kv-cache';
import type { PrefixCache } from './prefix-cache';
import { f32, type GraphSessions, i64 } from './sessions';

export interface GenerateRequest {
  /** Prompt ids with the image placeholder (-200) standing once where the image features go. */
  inputIds: number[];
  /** Projected CLIP patch features [num_image_tokens, H]. */
  imageFeatures: Float32Array;
  maxNewTokens: number;
  /**
   * Prompt [SEG]s before this index of inputIds are not masked (0, the reference's rule, masks every [SEG] in prompt
   * and answer). The pipeline passes the start of this turn's answer, so [SEG]s re-fed from history are not masked again.
   */
  promptSegFrom?: number;
  onToken?: (id: number, index: number) => void;
  isCancelled?: () => boolean;
  /** Cross-turn KV reuse: start from the longest prefix kept for this image, keep this generation's cache after. */
  reuse?: { store: PrefixCache; image: string };
}

export interface SegHidden {
  /** Index into outputIds of the [SEG], or -1 when the [SEG] stood in the prompt. */
  tokenIndex: number;
  hidden: Float32Array;
}

export interface GenerateResult {
  outputIds: number[];
  seg: SegHidden[];
  stopReason: 'eos' | 'max_new_tokens' | 'context_limit' | 'cancelled';
  prefillMs: number;
  decodeMs: number;
  /** Prompt positions whose KV rows came from an earlier turn (not prefilled again). */
  reusedPositions: number;
}

export async function generate(sessions: GraphSessions, m: Manifest, req: GenerateRequest): Promise<GenerateResult> {
  const { hidden_size: H, num_layers: L, num_kv_heads: KV, head_dim: D, vocab_size: V, max_positions } = m.llm;
  const { image_placeholder, num_image_tokens, seg, mask_attention_for_ids } = m.tokens;
  const k = req.inputIds.indexOf(image_placeholder);
  if (k < 0) throw new HostError('Internal', 'the prompt has no image placeholder');
  if (req.imageFeatures.length !== num_image_tokens * H)
    throw new HostError('Internal', 'image features have the wrong size');

  const prefillLen = assertPromptFits(m, req.inputIds);
  const maxNew = Math.min(req.maxNewTokens, max_positions - prefillLen);

  // Embed the text with the placeholder swapped for a valid id, then splice the image rows in its place.
  const textIds = req.inputIds.map((t) => (t === image_placeholder ? 0 : t));
  const embedded = await embed(sessions, textIds);
  const prefill = new Float32Array(prefillLen * H);
  prefill.set(embedded.subarray(0, k * H), 0);
  prefill.set(req.imageFeatures, k * H);
  prefill.set(embedded.subarray((k + 1) * H), (k + num_image_tokens) * H);

  // LISA masks prompt ids equal to the pad id (<unk>, 0) for the whole generation; positions stay contiguous.
  const masked = new Set(mask_attention_for_ids);
  const attention: bigint[] = [];
  for (const [i, t] of req.inputIds.entries()) {
    if (i === k) for (let j = 0; j < num_image_tokens; j++) attention.push(1n);
    else attention.push(masked.has(t) ? 0n : 1n);
  }

  const segs: SegHidden[] = [];
  // A [SEG] typed in the prompt (an assistant prefix) is picked up too, exactly as the reference's mask over output_ids.
  const promptPositions: number[] = [];
  // the prefill must run every position whose output is used: the last one, and each one before a prompt [SEG]
  let mustRunFrom = req.inputIds.length - 1;
  for (let i = Math.max(0, (req.promptSegFrom ?? 0) - 1); i + 1 < req.inputIds.length; i++) {
    if (req.inputIds[i + 1] === seg) {
      promptPositions.push(i < k ? i : i + num_image_tokens - 1);
      mustRunFrom = Math.min(mustRunFrom, i);
    }
  }

  let cache = decoderCache(sessions, L, KV, D, prefillLen + maxNew);
  // a host cache that keeps new rows can be kept (a present-fed one is replaced every step), and a device cache
  const keepable =
    (cache instanceof KvCache && KvCache.supports(sessions.outputNames('decoder'))) || cache instanceof DeviceKvCache;
  const reuse = keepable ? req.reuse : undefined;
  const key = { ids: req.inputIds, image: reuse?.image ?? '', mask: attention };
  cache = reuse?.store.take(key, mustRunFrom, prefillLen + maxNew) ?? cache;
  const reusedPositions = cache.length;

  const outputIds: number[] = [];
  // Running out of steps means the context filled up when that, not max_new_tokens, bounded the answer.
  let stopReason: GenerateResult['stopReason'] = maxNew < req.maxNewTokens ? 'context_limit' : 'max_new_tokens';
  let inputs: Float32Array = prefill.slice(reusedPositions * H);
  let stepMask: bigint[] = attention.slice(reusedPositions);
  let prefillMs = 0;
  const t0 = performance.now();
  let finished = false;
  try {
    for (let step = 0; step < maxNew; step++) {
      if (req.isCancelled?.()) {
        stopReason = 'cancelled';
        break;
      }
      const seqLen = stepMask.length;
      const feeds: Record<string, ort.Tensor> = {
        ...cache.feeds(stepMask),
        inputs_embeds: f32(inputs, [1, seqLen, H]),
        position_ids: i64(
          BigInt64Array.from({ length: seqLen }, (_, j) => BigInt(cache.length + j)),
          [1, seqLen],
        ),
      };
      const out = await sessions.run('decoder', feeds, ['logits', 'last_hidden_state', ...cache.fetches()]);
      const logits = out.logits.data as Float32Array;
      const hidden = out.last_hidden_state.data as Float32Array;
      if (step === 0) {
        for (const p of promptPositions.map((q) => q - reusedPositions))
          segs.push({ tokenIndex: -1, hidden: hidden.slice(p * H, (p + 1) * H) });
      }
      // the last position's row: a bundle's logits hold only it (llm.logits "last") or every position (older bundles)
      const next = argmax(logits, logits.length - V, V);
      if (next === seg) segs.push({ tokenIndex: outputIds.length, hidden: hidden.slice((seqLen - 1) * H, seqLen * H) });
      outputIds.push(next);
      req.onToken?.(next, outputIds.length - 1);

      cache.append(out, stepMask);
      if (step === 0) prefillMs = performance.now() - t0;
      if (m.generation.stop_ids.includes(next)) {
        stopReason = 'eos';
        break;
      }
      inputs = await embed(sessions, [next]);
      stepMask = [1n];
    }
    finished = true;
  } finally {
    if (reuse && finished && (cache instanceof KvCache || cache instanceof DeviceKvCache)) {
      // the ids of the positions the cache holds: the prompt and every answer token fed back (not the last one)
      const held = req.inputIds.concat(outputIds).slice(0, cache.length - num_image_tokens + 1);
      reuse.store.put(held, req.inputIds.length, reuse.image, cache);
    } else cache.release();
  }
  const decodeMs = performance.now() - t0 - prefillMs;
  return { outputIds, seg: segs, stopReason, prefillMs, decodeMs, reusedPositions };
}

/** Length of the prefill with the image expanded; refuses a prompt that leaves no room to answer. */
export function assertPromptFits(m: Manifest, inputIds: number[]): number {
  const prefillLen = inputIds.length - 1 + m.tokens.num_image_tokens;
  if (prefillLen >= m.llm.max_positions) {
    throw new HostError(
      'PromptTooLong',
      `The conversation is ${prefillLen} tokens long with the image; this model reads at most ${m.llm.max_positions}. Start a new conversation or shorten the instruction.`,
    );
  }
  return prefillLen;
}

async function embed(sessions: GraphSessions, ids: number[]): Promise<Float32Array> {
  const out = await sessions.run('embed_tokens', { input_ids: i64(BigInt64Array.from(ids, BigInt), [1, ids.length]) });
  return out.inputs_embeds.data as Float32Array;
}

/** First index of the maximum, as torch.argmax breaks ties. */
export function argmax(a: Float32Array, offset: number, n: number): number {
  let best = 0;
  let bestVal = a[offset];
  for (let i = 1; i < n; i++) {
    const v = a[offset + i];
    if (v > bestVal) {
      bestVal = v;
      best = i;
    }
  }
  return best;
}
