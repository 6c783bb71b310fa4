/**
 * A BPE vocabulary's pieces by id and ids by piece, in typed arrays: what
 * @huggingface/tokenizers' BPE model reads as its `tokens_to_ids` Map and `vocab` array, at a
 * fraction of the memory. For Llama 3's 128,256 pieces the library holds a string object per
 * piece, a Map over them and an array of them, about 9.5 MiB of heap that stays alive as long as
 * the model; here the pieces are one array of about 0.8 million characters with their lengths,
 * and the ids an open-addressing hash table, 1.7 MB (docs/performance.md, "Peak RSS of a native
 * load").
 * The characters are stored as indices into the vocabulary's alphabet: a byte-level BPE
 * vocabulary spells every piece with 256 characters, so one byte each, where a JavaScript string
 * of them would take two (its characters run past U+00FF).
 */
export class PieceTable {
  /** Pieces whose id was set after building, or whose id's own piece is another string (a duplicate in the vocabulary). */
  private readonly others = new Map<string, number>();

  private constructor(
    /** How many ids the vocabulary spans. */
    readonly length: number,
    /** Every piece, one after another in id order, as indices into `alphabet`. */
    private readonly text: Uint8Array | Uint16Array,
    /** The UTF-16 code units the pieces use, in ascending order. */
    private readonly alphabet: Uint16Array,
    /** Each id's piece length (0 for an id without a piece). */
    private readonly lengths: Uint8Array | Uint16Array | Uint32Array,
    /** Where the pieces of ids 16·i, 16·i + 1, … begin: a start every STARTS_EVERY ids, the rest summed from `lengths`. */
    private readonly starts: Int32Array,
    /** Bit id % 8 of byte id / 8 set where an id has a piece (a vocabulary may leave ids out). */
    private readonly present: Uint8Array,
    /** Open addressing with linear probing: id + 1, or 0 for an empty slot; a quarter of the slots stay empty. */
    private readonly slots: Int32Array,
  ) {}

  /** From the library's two lookups: `pieces[id]` (holes allowed) and piece → id. */
  static build(pieces: ArrayLike<string | undefined>, ids: ReadonlyMap<string, number>): PieceTable {
    const count = pieces.length;
    const parts: string[] = [];
    const present = new Uint8Array(Math.ceil(count / 8));
    let longest = 0;
    for (let id = 0; id < count; id++) {
      const piece = pieces[id];
      if (piece === undefined) continue;
      parts.push(piece);
      present[id >>> 3]! |= 1 << (id & 7);
      longest = Math.max(longest, piece.length);
    }
    const lengths = longest <= 0xff ? new Uint8Array(count) : longest <= 0xffff ? new Uint16Array(count) : new Uint32Array(count);
    const starts = new Int32Array(Math.ceil(count / STARTS_EVERY));
    for (let id = 0, at = 0; id < count; id++) {
      if (id % STARTS_EVERY === 0) starts[id / STARTS_EVERY] = at;
      lengths[id] = pieces[id]?.length ?? 0;
      at += lengths[id]!;
    }
    const slots = new Int32Array(Math.max(2, Math.ceil((count * 4) / 3)));
    const { text, alphabet } = spellInAlphabet(parts);
    const table = new PieceTable(count, text, alphabet, lengths, starts, present, slots);
    for (const [piece, id] of ids) {
      if (Number.isInteger(id) && id >= 0 && id < count && pieces[id] === piece) table.insert(piece, id);
      else table.others.set(piece, id);
    }
    return table;
  }

  /** The id of a piece (the library's `tokens_to_ids.get`). */
  get(piece: string): number | undefined {
    const other = this.others.size > 0 ? this.others.get(piece) : undefined;
    if (other !== undefined) return other;
    for (let slot = hashPiece(piece) % this.slots.length; ; slot = this.nextSlot(slot)) {
      const entry = this.slots[slot]!;
      if (entry === 0) return undefined;
      if (this.holds(entry - 1, piece)) return entry - 1;
    }
  }

  has(piece: string): boolean {
    return this.get(piece) !== undefined;
  }

  /** A piece's id from now on (the library sets its added tokens' ids so, while it builds). */
  set(piece: string, id: number): this {
    this.others.set(piece, id);
    return this;
  }

  /** The ids, as the library's Map gives its values (MergeRanks counts the pieces by them). */
  *values(): IterableIterator<number> {
    for (const entry of this.slots) {
      if (entry !== 0 && !this.others.has(this.pieceOf(entry - 1)!)) yield entry - 1;
    }
    yield* this.others.values();
  }

  /** The piece with this id (the library's `vocab[id]`), or undefined. */
  pieceOf(id: number): string | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.length || (this.present[id >>> 3]! & (1 << (id & 7))) === 0) return undefined;
    const start = this.startOf(id);
    const units = new Array<number>(this.lengths[id]!);
    for (let i = 0; i < units.length; i++) units[i] = this.alphabet[this.text[start + i]!]!;
    return String.fromCharCode.apply(null, units);
  }

  /** Bytes of the typed arrays. */
  get bytes(): number {
    return [this.text, this.alphabet, this.lengths, this.starts, this.present, this.slots].reduce((total, array) => total + array.byteLength, 0);
  }

  /**
   * The pieces as the library reads its `vocab` array: `vocab[id]` and `vocab.length` (decode,
   * id_to_token, get_vocab). Writes are refused; the library writes only while it builds.
   */
  asArray(): ArrayLike<string | undefined> {
    const read = (table: PieceTable, key: string | symbol): unknown => {
      if (key === 'length') return table.length;
      return typeof key === 'string' && /^\d+$/.test(key) ? table.pieceOf(Number(key)) : undefined;
    };
    return new Proxy(this, { get: read, set: () => false }) as unknown as ArrayLike<string | undefined>;
  }

  private insert(piece: string, id: number): void {
    let slot = hashPiece(piece) % this.slots.length;
    while (this.slots[slot] !== 0) slot = this.nextSlot(slot);
    this.slots[slot] = id + 1;
  }

  private nextSlot(slot: number): number {
    return slot + 1 === this.slots.length ? 0 : slot + 1;
  }

  private startOf(id: number): number {
    let start = this.starts[Math.floor(id / STARTS_EVERY)]!;
    for (let before = id - (id % STARTS_EVERY); before < id; before++) start += this.lengths[before]!;
    return start;
  }

  private holds(id: number, piece: string): boolean {
    if (this.lengths[id] !== piece.length) return false;
    const start = this.startOf(id);
    for (let i = 0; i < piece.length; i++) if (this.alphabet[this.text[start + i]!] !== piece.charCodeAt(i)) return false;
    return true;
  }
}

/** One piece start is kept for every this many ids, the others summed from the lengths: for Llama 3, 0.15 MB of starts and lengths instead of 0.5 MB of starts. */
const STARTS_EVERY = 16;

/** The pieces' code units one after another, each as its index in their sorted alphabet: one byte each where 256 different ones or fewer occur. */
function spellInAlphabet(pieces: readonly string[]): { text: Uint8Array | Uint16Array; alphabet: Uint16Array } {
  const used = new Uint8Array(0x10000);
  let length = 0;
  for (const piece of pieces) {
    for (let i = 0; i < piece.length; i++) used[piece.charCodeAt(i)] = 1;
    length += piece.length;
  }
  const alphabet = Uint16Array.from(used.keys()).filter((unit) => used[unit] === 1);
  const indexOf = new Uint16Array(0x10000);
  alphabet.forEach((unit, index) => (indexOf[unit] = index));
  const text = alphabet.length <= 0x100 ? new Uint8Array(length) : new Uint16Array(length);
  let at = 0;
  for (const piece of pieces) for (let i = 0; i < piece.length; i++) text[at++] = indexOf[piece.charCodeAt(i)]!;
  return { text, alphabet };
}

/** FNV-1a over the piece's UTF-16 code units. */
function hashPiece(piece: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < piece.length; i++) hash = Math.imul(hash ^ piece.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}
