/** Piece → id, as the BPE model's `tokens_to_ids` answers it (a Map, or a PieceTable). */
export interface PieceIds {
  get(piece: string): number | undefined;
  values(): Iterable<number>;
}

/**
 * A BPE tokenizer's merge ranks by the ids of the two pieces, in typed arrays: what
 * @huggingface/tokenizers' BPE model reads as its `bpe_ranks` while encoding, at a fraction of
 * the memory. The library keys a Map by `JSON.stringify([left, right])`; for Llama 3's 280,147
 * merges that is about 20 MB of strings and map entries that stay alive as long as the model,
 * where these arrays take 3 MB (docs/performance.md, "Peak RSS of a native load").
 */
export class MergeRanks {
  private constructor(
    private readonly ids: PieceIds,
    /** For each left piece id, where its merges begin in `rights` and `ranks` (one more entry at the end). */
    private readonly starts: Int32Array,
    /** Right piece ids, ascending within each left piece's range. */
    private readonly rights: Int32Array,
    private readonly ranks: Int32Array,
    /** Merges with a piece outside the vocabulary (none in a well-formed tokenizer), as the library keys them. */
    private readonly outside: ReadonlyMap<string, number>,
  ) {}

  /**
   * From merges as tokenizer.json gives them ("left right" or [left, right]) and the vocabulary's
   * ids. As in the library, a merge listed twice keeps its last rank, and a string splits at its
   * first space, keeping what lies between the first and a second space as the right piece.
   */
  static build(merges: ReadonlyArray<string | readonly [string, string]>, ids: PieceIds): MergeRanks {
    let pieces = 0;
    for (const id of ids.values()) pieces = Math.max(pieces, id + 1);
    const lefts = new Int32Array(merges.length).fill(-1);
    const rights = new Int32Array(merges.length);
    const starts = new Int32Array(pieces + 1);
    const outside = new Map<string, number>();
    merges.forEach((merge, rank) => {
      const [left, right] = typeof merge === 'string' ? (merge.split(' ', 2) as [string, string]) : merge;
      const leftId = ids.get(left);
      const rightId = ids.get(right);
      if (leftId === undefined || rightId === undefined) return void outside.set(JSON.stringify([left, right]), rank);
      lefts[rank] = leftId;
      rights[rank] = rightId;
      starts[leftId + 1]!++;
    });
    for (let left = 0; left < pieces; left++) starts[left + 1]! += starts[left]!;
    // Each left piece's merges as right id × merges + rank, sorted: by right, equal pairs by rank.
    const keys = new Float64Array(starts[pieces]!);
    const filled = starts.slice(0, pieces);
    lefts.forEach((left, rank) => {
      if (left >= 0) keys[filled[left]!++] = rights[rank]! * merges.length + rank;
    });
    return MergeRanks.fromSortedKeys(ids, starts, keys, merges.length, outside);
  }

  /** Sorts each left piece's keys and keeps, of a pair listed twice, the last rank. */
  private static fromSortedKeys(ids: PieceIds, starts: Int32Array, keys: Float64Array, count: number, outside: Map<string, number>): MergeRanks {
    const rights = new Int32Array(keys.length);
    const ranks = new Int32Array(keys.length);
    const kept = new Int32Array(starts.length);
    let length = 0;
    for (let left = 0; left + 1 < starts.length; left++) {
      const own = keys.subarray(starts[left]!, starts[left + 1]!).sort();
      for (const key of own) {
        const right = Math.floor(key / count);
        if (length > kept[left]! && rights[length - 1] === right) length--;
        rights[length] = right;
        ranks[length++] = key - right * count;
      }
      kept[left + 1] = length;
    }
    return new MergeRanks(ids, kept, rights.slice(0, length), ranks.slice(0, length), outside);
  }

  /** The rank of merging two pieces, keyed as the library's BPE model asks: JSON.stringify([left, right]). */
  get(key: string): number | undefined {
    const [left, right] = JSON.parse(key) as [string, string];
    const leftId = this.ids.get(left);
    const rightId = this.ids.get(right);
    if (leftId === undefined || rightId === undefined) return this.outside.get(key);
    return this.rank(leftId, rightId);
  }

  /** Bytes of the typed arrays. */
  get bytes(): number {
    return this.starts.byteLength + this.rights.byteLength + this.ranks.byteLength;
  }

  private rank(leftId: number, rightId: number): number | undefined {
    let low = this.starts[leftId]!;
    let high = this.starts[leftId + 1]! - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const found = this.rights[middle]!;
      if (found === rightId) return this.ranks[middle];
      if (found < rightId) low = middle + 1;
      else high = middle - 1;
    }
    return undefined;
  }
}
