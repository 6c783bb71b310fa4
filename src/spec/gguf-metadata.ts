import { HerdError } from '../errors.js';
import type { LlamaConfig, RopeScaling } from './llama-config.js';
import { ropeFrequencyFactors } from './rope.js';

/**
 * The LlamaConfig a GGUF file's `llama.*` metadata describes, as llama.cpp reads it
 * (llama-model.cpp, llm_load_hparams): sizes, heads, rms eps, context length, rope base, and
 * RoPE scaling either from the `llama.rope.scaling.*` keys or, as convert_hf_to_gguf.py writes
 * Llama 3.1, from the `rope_freqs.weight` table of per-frequency divisors.
 */
export interface GgufModelDescription {
  metadata: ReadonlyMap<string, unknown>;
  /** ggml dims (innermost first) of a tensor by its GGUF name, undefined when absent. */
  tensorDims(name: string): readonly number[] | undefined;
  /**
   * The rope_freqs.weight values; called only when that tensor is present. Absent for a header
   * read without its tensor data (the memory planner's), which then leaves the RoPE scaling unread.
   */
  readRopeFactors?: () => Float32Array;
  /** Names the file in error messages. */
  source: string;
}

/** Meta's Llama 3.1/3.2 llama3 RoPE settings; a rope_freqs table is matched against these. */
const LLAMA3_ROPE = { lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };

export function configFromGgufMetadata(gguf: GgufModelDescription): LlamaConfig {
  const m = gguf.metadata;
  const where = gguf.source;
  const architecture = m.get('general.architecture');
  if (architecture !== 'llama') throw new HerdError(`${where}: general.architecture is ${JSON.stringify(architecture)}; herd runs llama GGUF files`);
  const number = (key: string, fallback?: number): number => {
    const value = m.get(`llama.${key}`);
    if (typeof value === 'number' && Number.isFinite(value) && value > 0) return value;
    if (value === undefined && fallback !== undefined) return fallback;
    throw new HerdError(`${where}: GGUF metadata llama.${key} is ${value === undefined ? 'missing' : `not a positive number (${JSON.stringify(value)})`}`);
  };
  const embedding = gguf.tensorDims('token_embd.weight');
  if (!embedding) throw new HerdError(`${where}: missing tensor token_embd.weight`);
  const heads = number('attention.head_count');
  const hidden = number('embedding_length');
  const optionalId = (key: string) => (typeof m.get(key) === 'number' ? (m.get(key) as number) : null);
  const eos = optionalId('tokenizer.ggml.eos_token_id');
  const config: LlamaConfig = {
    vocabSize: embedding[1]!,
    hiddenSize: hidden,
    intermediateSize: number('feed_forward_length'),
    numHiddenLayers: number('block_count'),
    numAttentionHeads: heads,
    numKeyValueHeads: number('attention.head_count_kv', heads),
    headDim: number('attention.key_length', hidden / heads),
    rmsNormEps: number('attention.layer_norm_rms_epsilon'),
    ropeTheta: number('rope.freq_base', 10000),
    ropeScaling: scalingFromKeys(number, m.get('llama.rope.scaling.type'), where),
    tieWordEmbeddings: gguf.tensorDims('output.weight') === undefined,
    maxPositionEmbeddings: number('context_length'),
    bosTokenId: optionalId('tokenizer.ggml.bos_token_id'),
    eosTokenIds: eos === null ? [] : [eos],
    torchDtype: null,
    attentionBias: gguf.tensorDims('blk.0.attn_q.bias') !== undefined,
    mlpBias: gguf.tensorDims('blk.0.ffn_up.bias') !== undefined,
    hiddenAct: 'silu',
  };
  const vocabulary = m.get('llama.vocab_size') ?? (m.get('tokenizer.ggml.tokens') as unknown[] | undefined)?.length;
  if (vocabulary !== undefined && vocabulary !== config.vocabSize) {
    throw new HerdError(`${where}: the metadata gives a vocabulary of ${vocabulary} tokens but tensor token_embd.weight has ${config.vocabSize} rows`);
  }
  if (gguf.tensorDims('rope_freqs.weight') !== undefined && gguf.readRopeFactors) config.ropeScaling = llama3ScalingFromFactors(config, gguf.readRopeFactors(), where);
  return config;
}

/** `llama.rope.scaling.type`: none, linear, or llama3 with its factors spelled out. */
function scalingFromKeys(number: (key: string, fallback?: number) => number, type: unknown, where: string): RopeScaling | null {
  if (type === undefined || type === 'none') return null;
  if (type === 'linear') return { type: 'linear', factor: number('rope.scaling.factor') };
  if (type === 'llama3') {
    return {
      type: 'llama3',
      factor: number('rope.scaling.factor'),
      lowFreqFactor: number('rope.scaling.low_freq_factor', LLAMA3_ROPE.lowFreqFactor),
      highFreqFactor: number('rope.scaling.high_freq_factor', LLAMA3_ROPE.highFreqFactor),
      originalMaxPositionEmbeddings: number('rope.scaling.original_context_length', LLAMA3_ROPE.originalMaxPositionEmbeddings),
    };
  }
  throw new HerdError(`${where}: llama.rope.scaling.type ${JSON.stringify(type)} is not supported (none, linear, llama3)`);
}

/** The llama3 scaling whose divisors rope_freqs holds (llama.cpp applies the table as it is). */
function llama3ScalingFromFactors(config: LlamaConfig, factors: Float32Array, where: string): RopeScaling {
  const scaling = { type: 'llama3' as const, factor: Math.max(...factors), ...LLAMA3_ROPE };
  const expected = ropeFrequencyFactors({ ...config, ropeScaling: scaling })!;
  if (expected.length !== factors.length || expected.some((f, i) => Math.abs(f - factors[i]!) > 1e-3 * f)) {
    throw new HerdError(`${where}: rope_freqs is not a Llama 3.1 llama3 RoPE table (factor ${scaling.factor}, low 1, high 4, original 8192)`);
  }
  return scaling;
}
