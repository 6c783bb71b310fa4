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
 * where these arrays take 1.9 MB (docs/performance.md, "Peak RSS of a native load").
 */
export class MergeRanks {
  private constructor(
    private readonly ids: PieceIds,
    /** For each left piece id, where its merges begin among the records (one more entry at the end). */
    private readonly starts: Int32Array,
    /**
     * Each merge of a left piece as one little-endian number of `recordBytes` bytes, right id ×
     * rankLimit + rank, ascending: 5 bytes for Llama 3's 17-bit ids and 19-bit ranks, where an
     * Int32Array each for rights and ranks took 8.
     */
    private readonly records: Uint8Array,
    private readonly recordBytes: number,
    /** A power of two above every rank. */
    private readonly rankLimit: number,
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
    // Each left piece's merges as right id × rankLimit + rank, sorted: by right, equal pairs by rank.
    const rankLimit = 2 ** bitsFor(merges.length);
    const keys = new Float64Array(starts[pieces]!);
    const filled = starts.slice(0, pieces);
    lefts.forEach((left, rank) => {
      if (left >= 0) keys[filled[left]!++] = rights[rank]! * rankLimit + rank;
    });
    return MergeRanks.fromSortedKeys(ids, starts, keys, rankLimit, Math.ceil((bitsFor(pieces) + bitsFor(merges.length)) / 8), outside);
  }

  /** Sorts each left piece's keys, keeps, of a pair listed twice, the last rank, and packs them into records. */
  private static fromSortedKeys(ids: PieceIds, starts: Int32Array, keys: Float64Array, rankLimit: number, recordBytes: number, outside: Map<string, number>): MergeRanks {
    const kept = new Int32Array(starts.length);
    let length = 0;
    for (let left = 0; left + 1 < starts.length; left++) {
      const own = keys.subarray(starts[left]!, starts[left + 1]!).sort();
      for (const key of own) {
        // Sorted, a pair listed twice is adjacent, its last rank second: it takes the first's place.
        if (length > kept[left]! && Math.floor(keys[length - 1]! / rankLimit) === Math.floor(key / rankLimit)) length--;
        keys[length++] = key;
      }
      kept[left + 1] = length;
    }
    const records = new Uint8Array(length * recordBytes);
    for (let i = 0; i < length; i++) {
      for (let byte = 0, key = keys[i]!; byte < recordBytes; byte++, key = Math.floor(key / 256)) records[i * recordBytes + byte] = key % 256;
    }
    return new MergeRanks(ids, kept, records, recordBytes, rankLimit, outside);
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
    return this.starts.byteLength + this.records.byteLength;
  }

  private rank(leftId: number, rightId: number): number | undefined {
    let low = this.starts[leftId]!;
    let high = this.starts[leftId + 1]! - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const key = this.record(middle);
      const found = Math.floor(key / this.rankLimit);
      if (found === rightId) return key - found * this.rankLimit;
      if (found < rightId) low = middle + 1;
      else high = middle - 1;
    }
    return undefined;
  }

  private record(index: number): number {
    let key = 0;
    for (let at = (index + 1) * this.recordBytes - 1; at >= index * this.recordBytes; at--) key = key * 256 + this.records[at]!;
    return key;
  }
}

/** Bits that hold every number below `count` (at least one). */
function bitsFor(count: number): number {
  return Math.max(1, Math.ceil(Math.log2(count)));
}
