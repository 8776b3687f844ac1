// KV rows kept across turns. LISA has no memory but its prompt: a follow-up turn re-feeds the whole conversation, and
// all of it up to the new question went through the decoder in the turn before. This store keeps each finished
// generation's KV cache, keyed by the exact ids of the positions it holds (the image placeholder standing for the
// image's positions, which must come from the same image) and their attention-mask values. A new generation starts
// from the longest common prefix with any kept cache and prefills only the rest; with nothing in common it prefills
// everything, as before. Which conversation a request belongs to is never asked: two interleaved conversations, a
// history trimmed to fit the context, a retried question all find what they share by their ids.
//
// Memory: each kept cache is at most `conversationBytes` (a longer one keeps only its first positions), all of them
// together at most `totalBytes`, least recently used dropped first (its conversation's next turn prefills in full).
//
// On webgpu the kept caches are the device's own tensors (DeviceKvCache): nothing is copied to or from JS. The Node
// binding cannot read or slice a device tensor, so a device cache is reused only whole: when the new prompt starts
// with every id it holds (a follow-up re-feeding the last answer, the usual case). One that would have to be cut to a
// shorter prefix (the same question asked again, an edited history) is not used, and that turn prefills in full.
import type { DeviceKvCache } from './device-kv-cache';
import type { KvCache } from './kv-cache';

/** A kept cache: host rows, or the device's tensors. */
export type KeptCache = KvCache | DeviceKvCache;
const onDevice = (c: KeptCache): c is DeviceKvCache => 'onDevice' in c;

export interface PrefixKey {
  /** Token ids; the image placeholder stands once for the image's positions. */
  ids: readonly number[];
  /** sha256 of the image whose features fill the placeholder's positions. */
  image: string;
  /** attention_mask of every position (the image's expanded). */
  mask: readonly bigint[];
}

export interface PrefixCacheLimits {
  /** Most bytes of KV rows kept for all conversations together (0 turns reuse off). */
  totalBytes: number;
  /** Most bytes kept for one conversation. */
  conversationBytes: number;
}

export const DEFAULT_PREFIX_CACHE_LIMITS: PrefixCacheLimits = {
  totalBytes: 2 * 1024 * 1024 * 1024,
  conversationBytes: 1024 * 1024 * 1024,
};

interface Entry<C extends KeptCache> {
  ids: number[];
  /** How many of `ids` were the generation's prompt (the rest are its answer). */
  promptIds: number;
  image: string;
  cache: C;
}

/** C: what the store keeps (KvCache when only the host's rows can come, as in the store's unit tests). */
export class PrefixCache<C extends KeptCache = KeptCache> {
  /** Least recently used first. */
  private entries: Entry<C>[] = [];

  constructor(
    readonly limits: PrefixCacheLimits,
    private readonly placeholder: number,
    private readonly imagePositions: number,
  ) {}

  get bytes(): number {
    return this.entries.reduce((a, e) => a + e.cache.bytes, 0);
  }

  get size(): number {
    return this.entries.length;
  }

  clear(): void {
    for (const e of this.entries) free(e.cache);
    this.entries = [];
  }

  /**
   * The cache to start a generation with: holding the longest prefix of `key` that a kept cache has (at most
   * `maxIds` ids), or undefined when none shares any. A kept cache that holds exactly that prefix is handed over (it leaves the store, to come
   * back longer through `put`); one that holds more is copied, so its own conversation keeps it.
   */
  take(key: PrefixKey, maxIds: number, maxPositions: number): C | undefined {
    // Only a prefix that reaches past the image is reused. Requests about other images share just the system prompt,
    // too little to matter, and their results would then depend (in float rounding) on which requests came before:
    // a batch's shards must equal one run byte for byte.
    const imageAt = key.ids.indexOf(this.placeholder);
    let best: Entry<C> | undefined;
    let bestIds = imageAt < 0 ? Number.MAX_SAFE_INTEGER : imageAt;
    for (const e of this.entries) {
      const n = this.common(e, key, maxIds);
      if (n > bestIds && (n === e.ids.length || !onDevice(e.cache))) [best, bestIds] = [e, n];
    }
    if (!best) return undefined;
    if (bestIds === best.ids.length) {
      this.entries.splice(this.entries.indexOf(best), 1);
      best.cache.continueTo(maxPositions);
      return best.cache;
    }
    this.touch(best);
    return (best.cache as KvCache).copyPrefix(this.positions(best.ids, bestIds), maxPositions) as C;
  }

  /** Keeps a finished generation's cache; `ids` are those of the positions it holds, the first `promptIds` its prompt. */
  put(ids: readonly number[], promptIds: number, image: string, cache: C): void {
    if (this.limits.totalBytes <= 0 || cache.length === 0) {
      free(cache);
      return;
    }
    let held = ids.slice();
    if (this.positions(held, held.length) !== cache.length) throw new Error('prefix cache: ids do not match the cache');
    const perPosition = cache.positionBytes;
    const bound = Math.min(this.limits.conversationBytes, this.limits.totalBytes);
    if (cache.bytes > bound) {
      if (onDevice(cache)) {
        free(cache); // a device cache cannot be cut to its first positions
        return;
      }
      // keep the first positions that fit (the image and the oldest turns, which every later turn re-feeds)
      let n = held.length;
      const fits = (k: number) => Math.ceil(this.positions(held, k) / 64) * 64 * perPosition <= bound;
      while (n > 0 && !fits(n)) n--;
      if (n === 0) return;
      held = held.slice(0, n);
      cache = cache.copyPrefix(this.positions(held, n), 0) as C;
    }
    // A kept cache whose whole prompt this one re-fed is superseded: this is its conversation's next turn (or the
    // same question asked again), whatever became of the last answer's tokens when its text was tokenized again.
    this.entries = this.entries.filter((e) => {
      const superseded = e.image === image && sharedIds(e.ids, held) >= e.promptIds;
      if (superseded) free(e.cache);
      return !superseded;
    });
    this.entries.push({ ids: held, promptIds: Math.min(promptIds, held.length), image, cache });
    while (this.bytes > this.limits.totalBytes) {
      const e = this.entries.shift();
      if (e) free(e.cache);
    }
  }

  /** How many leading ids of `key` entry `e` holds: same ids, the same image at the placeholder, same mask values. */
  private common(e: Entry<C>, key: PrefixKey, maxIds: number): number {
    const mask = e.cache.positionMask;
    const limit = Math.min(e.ids.length, key.ids.length, maxIds);
    let n = 0;
    let pos = 0;
    for (; n < limit; n++) {
      const t = key.ids[n];
      if (t !== e.ids[n] || (t === this.placeholder && key.image !== e.image)) break;
      const width = t === this.placeholder ? this.imagePositions : 1;
      let same = true;
      for (let j = pos; j < pos + width; j++) if (mask[j] !== key.mask[j]) same = false;
      if (!same) break;
      pos += width;
    }
    return n;
  }

  /** Positions the first `n` of `ids` take. */
  private positions(ids: readonly number[], n: number): number {
    const k = ids.indexOf(this.placeholder);
    return k >= 0 && k < n ? n - 1 + this.imagePositions : n;
  }

  private touch(e: Entry<C>): void {
    this.entries.splice(this.entries.indexOf(e), 1);
    this.entries.push(e);
  }
}

/** Frees what a cache leaving the store holds on the device (host rows are left to the garbage collector). */
function free(c: KeptCache): void {
  if (onDevice(c)) c.release();
}

function sharedIds(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}
