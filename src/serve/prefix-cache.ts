import type { LlamaForCausalLM } from '../engine/model.js';
import type { KvCache } from '../engine/ops.js';

/**
 * Keys and values of recent sequences, kept so that a new prompt that starts the same way (the
 * same system prompt and tools, an earlier turn of the same chat) runs only the tokens after the
 * shared part. Least recently used entries go first once the kept caches exceed a byte budget.
 *
 * Reuse copies: a new sequence gets the shared positions copied into its own cache
 * (copyKvCache), so an entry is never written by a sequence that borrowed from it and several
 * running sequences may borrow from one entry at once. Copying a prefix costs a memory copy of its
 * KV, far less than recomputing it.
 */

interface Entry {
  /** The ids whose keys and values `cache` holds, position by position. */
  ids: readonly number[];
  cache: KvCache;
}

export interface PrefixCacheStats {
  /** Sequences that started from a kept prefix, and the prompt tokens those prefixes spared them. */
  prefixCacheHits: number;
  prefixCacheTokens: number;
  prefixCacheEntries: number;
  prefixCacheBytes: number;
}

export class PrefixCache {
  /** In order of use, least recent first (a Map keeps insertion order; a use re-inserts). */
  private readonly entries = new Map<KvCache, Entry>();
  private bytes = 0;
  private hits = 0;
  private hitTokens = 0;

  constructor(
    private readonly model: LlamaForCausalLM<unknown, unknown>,
    /** Most bytes of KV kept; 0 keeps nothing. */
    private readonly maxBytes: number,
  ) {}

  /**
   * Copies into the empty `target` the longest kept prefix of `promptIds`, leaving at least the
   * prompt's last token to run (its logits choose the first new token); returns how many
   * positions it copied (0: no kept prefix).
   */
  borrowInto(promptIds: readonly number[], target: KvCache): number {
    let best: Entry | null = null;
    let bestLength = 0;
    for (const entry of this.entries.values()) {
      const shared = sharedPrefixLength(entry.ids, promptIds, Math.min(promptIds.length - 1, target.shape.capacity));
      if (shared > bestLength) [best, bestLength] = [entry, shared];
    }
    if (best === null) return 0;
    this.model.copyCache(best.cache, target, bestLength);
    this.touch(best);
    this.hits++;
    this.hitTokens += bestLength;
    return bestLength;
  }

  /**
   * Takes a finished sequence's cache, which holds the keys and values of `ids`: kept (in a cache
   * just large enough) unless a kept entry already covers these ids or it exceeds the budget;
   * freed otherwise. Entries whose ids it extends are dropped, as it serves every prompt they did.
   */
  keep(ids: readonly number[], cache: KvCache): void {
    const covering = [...this.entries.values()].find((entry) => sharedPrefixLength(entry.ids, ids, ids.length) === ids.length);
    const compact = this.maxBytes > 0 && !covering && ids.length > 0 ? this.compacted(ids.length, cache) : null;
    if (compact !== cache) cache.dispose();
    if (covering) this.touch(covering);
    if (!compact) return;
    for (const entry of [...this.entries.values()]) if (sharedPrefixLength(entry.ids, ids, entry.ids.length) === entry.ids.length) this.drop(entry);
    this.entries.set(compact, { ids: [...ids], cache: compact });
    this.bytes += compact.bytes;
    for (const entry of this.entries.values()) {
      if (this.bytes <= this.maxBytes) break;
      this.drop(entry);
    }
  }

  stats(): PrefixCacheStats {
    return { prefixCacheHits: this.hits, prefixCacheTokens: this.hitTokens, prefixCacheEntries: this.entries.size, prefixCacheBytes: this.bytes };
  }

  /** Frees every kept cache. */
  clear(): void {
    for (const entry of [...this.entries.values()]) this.drop(entry);
  }

  /**
   * The cache to keep for `positions` positions: `cache` itself when it has no spare room, else a
   * copy sized to them (a sequence's cache has room for all its new tokens); null when even that
   * exceeds the budget.
   */
  private compacted(positions: number, cache: KvCache): KvCache | null {
    if (cache.shape.capacity === positions) return cache.bytes <= this.maxBytes ? cache : null;
    if ((cache.bytes / cache.shape.capacity) * positions > this.maxBytes) return null;
    const compact = this.model.createCache(positions);
    this.model.copyCache(cache, compact, positions);
    return compact;
  }

  private touch(entry: Entry): void {
    this.entries.delete(entry.cache);
    this.entries.set(entry.cache, entry);
  }

  private drop(entry: Entry): void {
    this.entries.delete(entry.cache);
    this.bytes -= entry.cache.bytes;
    entry.cache.dispose();
  }
}

/** How many leading ids `a` and `b` share, up to `limit`. */
function sharedPrefixLength(a: readonly number[], b: readonly number[], limit: number): number {
  const end = Math.min(a.length, b.length, limit);
  let shared = 0;
  while (shared < end && a[shared] === b[shared]) shared++;
  return shared;
}
