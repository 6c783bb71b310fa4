import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { HerdError } from '../errors.js';
import { readJsonFile } from '../formats/files.js';
import { MergeRanks } from './merge-ranks.js';
import { PieceTable } from './piece-table.js';
import { replacePrecompiledNormalizers } from './precompiled-charsmap.js';

/** tokenizer_config.json fields herd uses. */
export interface TokenizerSettings {
  bosToken: string | null;
  eosToken: string | null;
  /** The chat template: a string, or named templates as transformers allows. */
  chatTemplate: string | Record<string, string> | null;
}

/** The model's tokenizer, read from tokenizer.json (+ tokenizer_config.json) with @huggingface/tokenizers. */
export class HerdTokenizer {
  private readonly specialIds: Set<number>;

  private constructor(private readonly tokenizer: Tokenizer, readonly settings: TokenizerSettings) {
    this.specialIds = new Set([...tokenizer.get_added_tokens_decoder()].filter(([, token]) => token.special).map(([id]) => id));
  }

  static fromDir(dir: string): HerdTokenizer {
    const tokenizerJson = readJsonFile(path.join(dir, 'tokenizer.json'), true);
    const configJson = (readJsonFile(path.join(dir, 'tokenizer_config.json'), false) ?? {}) as Record<string, unknown>;
    return HerdTokenizer.fromJson(tokenizerJson as object, configJson);
  }

  /** A tokenizer from the contents of tokenizer.json and tokenizer_config.json (built from GGUF metadata, say). */
  static fromJson(tokenizerJson: object, configJson: Record<string, unknown>): HerdTokenizer {
    const { withoutMerges, merges } = setMergesAside(tokenizerJson);
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(withoutMerges, configJson);
    } catch (error) {
      throw new HerdError(`tokenizer.json: cannot be loaded (${(error as Error).message.split('\n')[0]})`);
    }
    replacePrecompiledNormalizers(tokenizer);
    releaseBuildInputs(tokenizer);
    if (merges) installCompactLookups(tokenizer, merges);
    return new HerdTokenizer(tokenizer, readSettings(configJson));
  }

  /**
   * Text to ids. `addSpecialTokens` applies the tokenizer's post-processor (for Llama, the BOS);
   * special-token text such as `<|eot_id|>` becomes its single id, as in transformers.
   */
  encode(text: string, addSpecialTokens: boolean): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** Ids to text, exactly: no clean-up of spaces before punctuation. */
  decode(ids: readonly number[], skipSpecialTokens = false): string {
    if (ids.length === 0) return '';
    return this.tokenizer.decode([...ids], { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: false });
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }
}

/** What @huggingface/tokenizers 0.2 keeps of its inputs after building (see releaseBuildInputs), and its BPE model's lookups. */
interface BuiltTokenizer {
  tokenizer: object | null;
  model: {
    config: Record<string, unknown>;
    merges?: unknown[];
    tokens_to_ids?: ReadonlyMap<string, number> | PieceTable;
    vocab?: ArrayLike<string | undefined>;
    bpe_ranks?: { get(key: string): number | undefined };
  };
}

type Merges = ReadonlyArray<string | readonly [string, string]>;

/**
 * A BPE tokenizer.json without its merges, which the library would otherwise turn into a Map of
 * JSON strings (installCompactLookups puts a compact table in its place), and the merges.
 */
function setMergesAside(tokenizerJson: object): { withoutMerges: object; merges: Merges | null } {
  const model = (tokenizerJson as { model?: { type?: unknown; merges?: unknown } }).model;
  if (model?.type !== 'BPE' || !Array.isArray(model.merges)) return { withoutMerges: tokenizerJson, merges: null };
  return { withoutMerges: { ...tokenizerJson, model: { ...model, merges: [] } }, merges: model.merges as Merges };
}

/**
 * The BPE model's lookups in typed arrays instead of the library's Maps: its pieces and their ids
 * (PieceTable, for `tokens_to_ids` and `vocab`) and its merge ranks keyed by piece ids
 * (MergeRanks, for `bpe_ranks`).
 */
function installCompactLookups(tokenizer: Tokenizer, merges: Merges): void {
  const model = (tokenizer as unknown as BuiltTokenizer).model;
  const pieces = PieceTable.build(model.vocab!, model.tokens_to_ids as ReadonlyMap<string, number>);
  model.tokens_to_ids = pieces;
  model.vocab = pieces.asArray();
  model.bpe_ranks = MergeRanks.build(merges, pieces);
}

/**
 * Drops what @huggingface/tokenizers keeps after building but never reads again: the whole
 * tokenizer.json object (for Llama 3, a 128k-entry vocabulary object and 280k merge strings, held
 * both as the tokenizer's input and as the model's config) and the BPE model's merges split into
 * pairs (encoding looks merges up in its `bpe_ranks`, ids in `tokens_to_ids`). About 35 MB of heap
 * for Llama 3, a fifth of what a loaded 1B Q4_0 model holds besides its weights and KV cache.
 * The config keeps its scalar settings; only its vocab and merges go.
 */
export function releaseBuildInputs(tokenizer: Tokenizer): void {
  const built = tokenizer as unknown as BuiltTokenizer;
  built.tokenizer = null;
  const { vocab: _vocab, merges: _merges, ...settings } = built.model.config;
  built.model.config = settings;
  if (Array.isArray(built.model.merges)) built.model.merges = [];
}

/**
 * Turns a growing list of token ids into text deltas that are safe to print: a character whose
 * bytes are split across tokens is held back until it is complete.
 *
 * Each step decodes only the tokens since the last printed chunk, together with that chunk as
 * context (decoders that look at neighbours — spaces, byte fallback — then see what they need),
 * and prints the difference, as vLLM's incremental detokenizer does: the cost per token stays
 * constant instead of growing with the length of the output.
 */
export class TextStream {
  private readonly ids: number[] = [];
  /** ids[prefix..read) were printed last; ids[read..] are not printed yet. */
  private prefix = 0;
  private read = 0;

  constructor(private readonly tokenizer: HerdTokenizer) {}

  /** Adds a token; returns the text that became final. */
  push(id: number): string {
    this.ids.push(id);
    const printed = this.tokenizer.decode(this.ids.slice(this.prefix, this.read));
    const text = this.tokenizer.decode(this.ids.slice(this.prefix));
    if (text.length <= printed.length || text.endsWith('\uFFFD') || !text.startsWith(printed)) return '';
    this.prefix = this.read;
    this.read = this.ids.length;
    return text.slice(printed.length);
  }

  /** At the end of the output: what is not printed yet, replacement characters included. */
  flush(): string {
    const printed = this.tokenizer.decode(this.ids.slice(this.prefix, this.read));
    const text = this.tokenizer.decode(this.ids.slice(this.prefix));
    this.prefix = this.read = this.ids.length;
    return text.startsWith(printed) ? text.slice(printed.length) : '';
  }
}

function readSettings(config: Record<string, unknown>): TokenizerSettings {
  const template = config.chat_template;
  return {
    bosToken: tokenContent(config.bos_token),
    eosToken: tokenContent(config.eos_token),
    chatTemplate: typeof template === 'string' ? template : Array.isArray(template) ? namedTemplates(template) : null,
  };
}

/** transformers also accepts `[{name, template}, …]`. */
function namedTemplates(list: unknown[]): Record<string, string> {
  const named: Record<string, string> = {};
  for (const item of list) {
    const { name, template } = (item ?? {}) as { name?: unknown; template?: unknown };
    if (typeof name === 'string' && typeof template === 'string') named[name] = template;
  }
  return named;
}

/** A special token in tokenizer_config.json is a string or an AddedToken object with `content`. */
function tokenContent(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return null;
}

