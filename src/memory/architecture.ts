import { HerdError } from '../errors.js';

/** The shape of a Llama-family decoder: everything the memory formulas need and nothing else. */
export interface LlamaArchitecture {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numAttentionHeads: number;
  /** Grouped-query attention: K and V have this many heads, shared by the query heads. */
  numKeyValueHeads: number;
  headDim: number;
  vocabSize: number;
  /** When true the output head reuses the embedding matrix, so it is stored (and counted) once. */
  tieWordEmbeddings: boolean;
  attentionBias: boolean;
  mlpBias: boolean;
  maxContext: number;
}

/** A model whose memory herd plans: a name, where it came from, and its architecture. */
export interface ModelSpec {
  name: string;
  /** "preset", a config.json path, or a GGUF path. */
  source: string;
  architecture: LlamaArchitecture;
  /** Present for GGUF input: the tensors as stored, so the file's own precision can be priced exactly. */
  storedTensors?: StoredTensor[];
}

export interface StoredTensor {
  name: string;
  elements: number;
  /** Bits per weight of the stored type, block scales included. */
  bitsPerWeight: number;
  typeName: string;
}

const REQUIRED_FIELDS = ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'vocab_size'] as const;

/**
 * Reads a Hugging Face config.json object. Optional fields take the defaults transformers'
 * LlamaConfig uses: kv heads = attention heads, head_dim = hidden / heads, untied embeddings.
 */
export function architectureFromHfConfig(raw: unknown, where: string): LlamaArchitecture {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new HerdError(`${where} is not a JSON object`);
  }
  const config = raw as Record<string, unknown>;
  const missing = REQUIRED_FIELDS.filter((field) => config[field] === undefined);
  if (missing.length > 0) {
    throw new HerdError(`${where} is missing required field${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`);
  }
  const int = (field: string, fallback?: number): number => positiveInteger(config[field] ?? fallback, field, where);
  const numAttentionHeads = int('num_attention_heads');
  const hiddenSize = int('hidden_size');
  return {
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numAttentionHeads,
    numKeyValueHeads: int('num_key_value_heads', numAttentionHeads),
    headDim: int('head_dim', hiddenSize / numAttentionHeads),
    vocabSize: int('vocab_size'),
    tieWordEmbeddings: config['tie_word_embeddings'] === true,
    attentionBias: config['attention_bias'] === true,
    mlpBias: config['mlp_bias'] === true,
    maxContext: int('max_position_embeddings', 2048),
  };
}

function positiveInteger(value: unknown, field: string, where: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new HerdError(`${where}: ${field} must be a positive whole number, got ${JSON.stringify(value)}`);
  }
  return value;
}
