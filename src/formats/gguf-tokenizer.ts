import path from 'node:path';
import { HerdError } from '../errors.js';
import { readJsonFile } from './files.js';
import { GgufValueType, type GgufMetadata } from './gguf.js';

/**
 * The tokenizer in GGUF metadata (llama.cpp's `tokenizer.ggml.*` keys), both ways:
 *
 * - byte-level BPE (Llama 3): model "gpt2", pre "llama-bpe", tokens, token_type, merges;
 * - SentencePiece-style BPE with byte fallback (Llama 2, stories260K): model "llama", tokens,
 *   scores (−rank of the merge that makes the token, so llama.cpp's highest-score-first merging
 *   follows the BPE ranks), token_type. Reading it back builds merges from the scores the way
 *   transformers' GGUF converter does: every split of a token into two vocabulary pieces, ranked
 *   by the token's score.
 */

/** llama.cpp's llama_token_type. */
const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** The Llama 3 split regex, as its tokenizer.json states it. */
const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

interface TokenizerJson {
  added_tokens?: Array<{ id: number; content: string; special: boolean }>;
  pre_tokenizer?: unknown;
  model: { type: string; vocab: Record<string, number>; merges: Array<string | [string, string]>; byte_fallback?: boolean; unk_token?: string | null };
}

/** The tokenizer.ggml.* and tokenizer.chat_template entries for a Hugging Face model folder. */
export function tokenizerMetadata(dir: string, bosTokenId: number | null, eosTokenIds: number[]): GgufMetadata {
  const json = readJsonFile(path.join(dir, 'tokenizer.json'), true) as TokenizerJson;
  const config = (readJsonFile(path.join(dir, 'tokenizer_config.json'), false) ?? {}) as Record<string, unknown>;
  if (json.model?.type !== 'BPE') throw new HerdError(`tokenizer.json: model type ${JSON.stringify(json.model?.type)}; herd writes BPE tokenizers to GGUF`);
  const byteLevel = JSON.stringify(json.pre_tokenizer ?? null).includes('"ByteLevel"');
  const tokens: string[] = [];
  const types: number[] = [];
  for (const [token, id] of Object.entries(json.model.vocab)) {
    tokens[id] = token;
    types[id] = !byteLevel && /^<0x[0-9A-F]{2}>$/.test(token) ? TOKEN_TYPE.byte : token === json.model.unk_token ? TOKEN_TYPE.unknown : TOKEN_TYPE.normal;
  }
  for (const added of json.added_tokens ?? []) {
    tokens[added.id] = added.content;
    types[added.id] = added.content === json.model.unk_token ? TOKEN_TYPE.unknown : added.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
  }
  for (let id = 0; id < tokens.length; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = TOKEN_TYPE.unused;
    }
  }
  const merges = json.model.merges.map((merge) => (Array.isArray(merge) ? merge.join(' ') : merge));
  const metadata: GgufMetadata = new Map();
  metadata.set('tokenizer.ggml.model', { type: GgufValueType.STRING, value: byteLevel ? 'gpt2' : 'llama' });
  metadata.set('tokenizer.ggml.pre', { type: GgufValueType.STRING, value: byteLevel ? 'llama-bpe' : 'default' });
  metadata.set('tokenizer.ggml.tokens', { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: tokens });
  if (!byteLevel) metadata.set('tokenizer.ggml.scores', { type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT32, value: mergeScores(tokens, merges) });
  metadata.set('tokenizer.ggml.token_type', { type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, value: types });
  if (byteLevel) metadata.set('tokenizer.ggml.merges', { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: merges });
  const idOf = (value: unknown): number | null => {
    const content = typeof value === 'string' ? value : (value as { content?: string } | null)?.content;
    const id = content === undefined ? -1 : tokens.indexOf(content);
    return id >= 0 ? id : null;
  };
  const bos = idOf(config.bos_token) ?? bosTokenId;
  const eos = idOf(config.eos_token) ?? eosTokenIds[0] ?? null;
  if (bos !== null) metadata.set('tokenizer.ggml.bos_token_id', { type: GgufValueType.UINT32, value: bos });
  if (eos !== null) metadata.set('tokenizer.ggml.eos_token_id', { type: GgufValueType.UINT32, value: eos });
  const unk = json.model.unk_token ? tokens.indexOf(json.model.unk_token) : -1;
  if (unk >= 0) metadata.set('tokenizer.ggml.unknown_token_id', { type: GgufValueType.UINT32, value: unk });
  const addsBos = JSON.stringify((json as { post_processor?: unknown }).post_processor ?? null).includes('SpecialToken');
  metadata.set('tokenizer.ggml.add_bos_token', { type: GgufValueType.BOOL, value: addsBos });
  metadata.set('tokenizer.ggml.add_eos_token', { type: GgufValueType.BOOL, value: config.add_eos_token === true });
  if (typeof config.chat_template === 'string') metadata.set('tokenizer.chat_template', { type: GgufValueType.STRING, value: config.chat_template });
  return metadata;
}

/** −rank of the first merge producing each token; tokens no merge produces rank after all merges. */
function mergeScores(tokens: string[], merges: string[]): number[] {
  const rank = new Map<string, number>();
  merges.forEach((merge, r) => {
    const joined = merge.replace(' ', '');
    if (!rank.has(joined)) rank.set(joined, r);
  });
  return tokens.map((token, id) => -(rank.get(token) ?? merges.length + id));
}

/**
 * Token texts that end generation, as llama.cpp's llama-vocab.cpp recognises them whatever the
 * metadata says (Llama 3.1: `<|eot_id|>` ends a turn, `<|eom_id|>` a built-in tool call,
 * `<|end_of_text|>` the text). Left out: the texts llama.cpp only counts under workarounds for
 * other model families (gpt-oss, gemma4, paddleocr), which are not llama architecture.
 */
const END_OF_GENERATION_TEXTS = new Set([
  '<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|eom_id|>', '<EOT>', '_<EOT>', '[EOT]', '[EOS]', '<|end_of_text|>', '<end_of_utterance>',
]);

/**
 * The ids that stop generation, built as llama.cpp builds its end-of-generation set: every token
 * whose text is a known end marker, plus the ids in tokenizer.ggml.eos_token_id, eot_token_id and
 * eom_token_id; ascending. For a Llama 3.1 Instruct file this is [end_of_text, eom, eot], the
 * eos_token_id list of the Hugging Face folder's generation_config.json.
 */
export function endOfGenerationIds(metadata: Map<string, unknown>): number[] {
  const tokens = metadata.get('tokenizer.ggml.tokens');
  const ids = new Set<number>();
  if (Array.isArray(tokens)) {
    tokens.forEach((token, id) => {
      if (END_OF_GENERATION_TEXTS.has(token as string)) ids.add(id);
    });
  }
  for (const key of ['tokenizer.ggml.eos_token_id', 'tokenizer.ggml.eot_token_id', 'tokenizer.ggml.eom_token_id']) {
    const id = metadata.get(key);
    if (typeof id === 'number' && id >= 0) ids.add(id);
  }
  return [...ids].sort((a, b) => a - b);
}

/** The metadata entries that hold one value per token or merge (for Llama 3, 128k tokens and 280k merges). */
const TOKENIZER_ARRAY_KEYS = ['tokenizer.ggml.tokens', 'tokenizer.ggml.token_type', 'tokenizer.ggml.scores', 'tokenizer.ggml.merges'];

/** Removes the per-token arrays from metadata whose tokenizer has been built (they are tens of MB of strings). */
export function dropTokenizerArrays(metadata: Map<string, unknown>): void {
  for (const key of TOKENIZER_ARRAY_KEYS) metadata.delete(key);
}

/** tokenizer.json and tokenizer_config.json objects for @huggingface/tokenizers, from GGUF metadata. */
export function tokenizerFromGguf(metadata: Map<string, unknown>, source: string): { tokenizerJson: object; tokenizerConfig: Record<string, unknown> } {
  const model = metadata.get('tokenizer.ggml.model');
  const tokens = metadata.get('tokenizer.ggml.tokens');
  if (!Array.isArray(tokens)) throw new HerdError(`${source}: no tokenizer.ggml.tokens; herd needs the tokenizer in the GGUF metadata`);
  const types = (metadata.get('tokenizer.ggml.token_type') as number[] | undefined) ?? tokens.map(() => TOKEN_TYPE.normal);
  const id = (key: string): number | null => (typeof metadata.get(key) === 'number' ? (metadata.get(key) as number) : null);
  const bos = id('tokenizer.ggml.bos_token_id');
  const eos = id('tokenizer.ggml.eos_token_id');
  const addBos = metadata.get('tokenizer.ggml.add_bos_token') !== false && bos !== null;
  const vocab: Record<string, number> = {};
  (tokens as string[]).forEach((token, i) => (vocab[token] = i));
  const added = (tokens as string[])
    .map((content, i) => ({ id: i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: types[i] === TOKEN_TYPE.control || types[i] === TOKEN_TYPE.unknown }))
    .filter((token) => token.special || types[token.id] === TOKEN_TYPE.userDefined);
  const postProcessor = addBos ? bosTemplate(tokens[bos!] as string, bos!) : null;
  let tokenizerJson: object;
  if (model === 'gpt2') {
    const merges = metadata.get('tokenizer.ggml.merges');
    if (!Array.isArray(merges)) throw new HerdError(`${source}: a gpt2 tokenizer needs tokenizer.ggml.merges`);
    tokenizerJson = {
      version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
      pre_tokenizer: { type: 'Sequence', pretokenizers: [
        { type: 'Split', pattern: { Regex: LLAMA3_SPLIT }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ] },
      post_processor: postProcessor,
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges },
    };
  } else if (model === 'llama') {
    const scores = metadata.get('tokenizer.ggml.scores') as number[] | undefined;
    if (!Array.isArray(scores)) throw new HerdError(`${source}: a llama (SentencePiece) tokenizer needs tokenizer.ggml.scores`);
    const unk = id('tokenizer.ggml.unknown_token_id');
    tokenizerJson = {
      version: '1.0', truncation: null, padding: null, added_tokens: added,
      normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
      pre_tokenizer: null,
      post_processor: postProcessor,
      decoder: { type: 'Sequence', decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ] },
      model: {
        type: 'BPE', dropout: null, unk_token: unk === null ? null : tokens[unk], continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: mergesFromScores(tokens as string[], scores, types),
      },
    };
  } else {
    throw new HerdError(`${source}: tokenizer.ggml.model ${JSON.stringify(model)} is not supported (gpt2 or llama)`);
  }
  const template = metadata.get('tokenizer.chat_template');
  const tokenizerConfig: Record<string, unknown> = {
    bos_token: bos === null ? null : tokens[bos],
    eos_token: eos === null ? null : tokens[eos],
    clean_up_tokenization_spaces: false,
    ...(typeof template === 'string' ? { chat_template: template } : {}),
  };
  return { tokenizerJson, tokenizerConfig };
}

function bosTemplate(token: string, id: number): object {
  return {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: token, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: token, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: token, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { [token]: { id: token, ids: [id], tokens: [token] } },
  };
}

/** Every split of a normal token into two vocabulary pieces, highest token score first. */
function mergesFromScores(tokens: string[], scores: number[], types: number[]): string[] {
  const ids = new Map(tokens.map((token, i) => [token, i]));
  const candidates: Array<{ merge: string; score: number; left: number; right: number }> = [];
  tokens.forEach((token, i) => {
    if (types[i] !== TOKEN_TYPE.normal) return;
    const chars = [...token];
    for (let cut = 1; cut < chars.length; cut++) {
      const left = chars.slice(0, cut).join('');
      const right = chars.slice(cut).join('');
      const leftId = ids.get(left);
      const rightId = ids.get(right);
      if (leftId !== undefined && rightId !== undefined) candidates.push({ merge: `${left} ${right}`, score: scores[i]!, left: leftId, right: rightId });
    }
  });
  candidates.sort((a, b) => b.score - a.score || a.left - b.left || a.right - b.right);
  return candidates.map((c) => c.merge);
}
