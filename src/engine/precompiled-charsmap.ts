import type { Tokenizer } from '@huggingface/tokenizers';
import { HerdError } from '../errors.js';

/**
 * SentencePiece's `precompiled_charsmap` (the `Precompiled` normalizer of mDeBERTa, XLM-R, T5 …
 * tokenizer.json files), applied as Hugging Face tokenizers applies it. @huggingface/tokenizers
 * 0.2.0 ignores the charsmap and runs NFKC instead, which differs from the map wherever the map
 * is not NFKC (sentencepiece's nmt_nfkc also folds control characters and some spaces), so herd
 * puts this normalizer in its place.
 *
 * The blob is [u32 LE trie size in bytes][trie: u32 LE units of a darts-clone double array]
 * [replacement strings, each ending in NUL]; a key's value is the byte offset of its replacement.
 */
export class PrecompiledCharsmap {
  private static readonly encoder = new TextEncoder();
  private static readonly decoder = new TextDecoder('utf-8', { fatal: true });
  /**
   * Made on first use: a grapheme segmenter loads ICU's break-iterator data, about 2.6 MiB of
   * RSS, and only tokenizers with a Precompiled normalizer (not Llama's) ever segment.
   */
  private static graphemes: Intl.Segmenter | null = null;

  private constructor(private readonly trie: Uint32Array, private readonly replacements: Uint8Array) {}

  static fromBase64(base64: string): PrecompiledCharsmap {
    const blob = Buffer.from(base64, 'base64');
    const fail = (why: string) => new HerdError(`tokenizer.json: the Precompiled normalizer's precompiled_charsmap is malformed (${why})`, { kind: 'model' });
    if (blob.length < 4) throw fail('shorter than its header');
    const trieBytes = blob.readUInt32LE(0);
    if (trieBytes % 4 !== 0 || trieBytes === 0 || 4 + trieBytes > blob.length) throw fail(`a trie of ${trieBytes} bytes in ${blob.length}`);
    const trie = new Uint32Array(trieBytes / 4);
    for (let index = 0; index < trie.length; index++) trie[index] = blob.readUInt32LE(4 + index * 4);
    return new PrecompiledCharsmap(trie, new Uint8Array(blob.subarray(4 + trieBytes)));
  }

  /**
   * Hugging Face's rule, kept as it is for exact ids: each grapheme shorter than 6 UTF-8 bytes is
   * looked up whole, and when any prefix of it is a key the whole grapheme becomes that (shortest)
   * key's replacement; otherwise each character is looked up on its own.
   */
  normalize(text: string): string {
    let output = '';
    PrecompiledCharsmap.graphemes ??= new Intl.Segmenter(undefined, { granularity: 'grapheme' });
    for (const { segment } of PrecompiledCharsmap.graphemes.segment(text)) {
      const whole = PrecompiledCharsmap.encoder.encode(segment).length < 6 ? this.transform(segment) : undefined;
      if (whole !== undefined) {
        output += whole;
        continue;
      }
      for (const character of segment) output += this.transform(character) ?? character;
    }
    return output;
  }

  /** The replacement of the shortest key that prefixes `chunk`, if any. */
  transform(chunk: string): string | undefined {
    const offset = this.firstPrefixValue(PrecompiledCharsmap.encoder.encode(chunk));
    if (offset === undefined) return undefined;
    if (offset >= this.replacements.length) throw new HerdError(`tokenizer.json: precompiled_charsmap points past its replacement strings (${offset})`, { kind: 'model' });
    let end = offset;
    while (end < this.replacements.length && this.replacements[end] !== 0) end++;
    return PrecompiledCharsmap.decoder.decode(this.replacements.subarray(offset, end));
  }

  /** darts-clone's common prefix search, stopped at the first (shortest) match. */
  private firstPrefixValue(key: Uint8Array): number | undefined {
    let position = unitOffset(this.unitAt(0));
    for (const byte of key) {
      if (byte === 0) break;
      position ^= byte;
      const unit = this.unitAt(position);
      if (unitLabel(unit) !== byte) return undefined;
      position ^= unitOffset(unit);
      if (unitHasLeaf(unit)) return unitValue(this.unitAt(position));
    }
    return undefined;
  }

  private unitAt(position: number): number {
    const unit = this.trie[position];
    if (unit === undefined) throw new HerdError(`tokenizer.json: precompiled_charsmap's trie has no unit ${position}`, { kind: 'model' });
    return unit;
  }
}

// darts-clone's unit layout: bits 0-7 label, bit 8 has-leaf, bit 9 offset scale, bits 10-31 offset; a value unit sets bit 31.
const unitHasLeaf = (unit: number) => ((unit >>> 8) & 1) === 1;
const unitValue = (unit: number) => unit & 0x7fffffff;
const unitLabel = (unit: number) => (unit & 0x800000ff) >>> 0;
const unitOffset = (unit: number) => (unit >>> 10) << ((unit & (1 << 9)) >>> 6);

type LibraryNormalizer = NonNullable<Tokenizer['normalizer']>;

/**
 * Makes every Precompiled normalizer of the tokenizer (alone or in a Sequence) apply its charsmap:
 * the library's own object stays in place, with herd's normalize() in it.
 */
export function replacePrecompiledNormalizers(tokenizer: Tokenizer): void {
  const visit = (normalizer: LibraryNormalizer | null): void => {
    if (normalizer === null) return;
    const config = normalizer.config as { type: string; precompiled_charsmap?: unknown };
    if (config.type === 'Precompiled') {
      if (typeof config.precompiled_charsmap !== 'string') throw new HerdError('tokenizer.json: a Precompiled normalizer without its precompiled_charsmap', { kind: 'model' });
      const charsmap = PrecompiledCharsmap.fromBase64(config.precompiled_charsmap);
      normalizer.normalize = (text: string) => charsmap.normalize(text);
    } else if (config.type === 'Sequence') {
      for (const inner of (normalizer as LibraryNormalizer & { normalizers: (LibraryNormalizer | null)[] }).normalizers) visit(inner);
    }
  };
  visit(tokenizer.normalizer);
}
