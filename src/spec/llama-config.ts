import { HerdError } from '../errors.js';

/** RoPE frequency scaling as config.json's `rope_scaling` describes it. */
export type RopeScaling =
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
  | { type: 'linear'; factor: number };

/** The fields of a Hugging Face LlamaForCausalLM config.json that decide what the model computes. */
export interface LlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  bosTokenId: number | null;
  eosTokenIds: number[];
  torchDtype: string | null;
  /** Llama 3.1 has neither; other Llama-architecture models may (the memory planner counts them). */
  attentionBias: boolean;
  mlpBias: boolean;
  hiddenAct: string;
}

type Json = Record<string, unknown>;

/**
 * Reads and checks a parsed config.json; `source` names the file in error messages. This says
 * what the checkpoint is; whether the engine can run it is a separate check (engine/runnable.ts).
 */
export function parseLlamaConfig(raw: unknown, source: string): LlamaConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new HerdError(`${source}: expected a JSON object`, { kind: 'model' });
  }
  const json = raw as Json;
  checkArchitecture(json, source);
  const positive = (key: string): number => positiveInteger(json, key, source);
  const hiddenSize = positive('hidden_size');
  const numAttentionHeads = positive('num_attention_heads');
  const numKeyValueHeads = json.num_key_value_heads === undefined ? numAttentionHeads : positive('num_key_value_heads');
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    throw new HerdError(`${source}: num_attention_heads (${numAttentionHeads}) must be a multiple of num_key_value_heads (${numKeyValueHeads})`, { kind: 'model' });
  }
  const headDim = json.head_dim === undefined || json.head_dim === null ? hiddenSize / numAttentionHeads : positive('head_dim');
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new HerdError(`${source}: head_dim ${headDim} must be an even integer (hidden_size / num_attention_heads when absent)`, { kind: 'model' });
  }
  return {
    vocabSize: positive('vocab_size'),
    hiddenSize,
    intermediateSize: positive('intermediate_size'),
    numHiddenLayers: positive('num_hidden_layers'),
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    rmsNormEps: positiveNumber(json, 'rms_norm_eps', source, 1e-6),
    ropeTheta: positiveNumber(json, 'rope_theta', source, 10000),
    ropeScaling: parseRopeScaling(json.rope_scaling, source),
    tieWordEmbeddings: json.tie_word_embeddings === true,
    maxPositionEmbeddings: positiveInteger(json, 'max_position_embeddings', source, 2048),
    bosTokenId: typeof json.bos_token_id === 'number' ? json.bos_token_id : null,
    eosTokenIds: tokenIdList(json.eos_token_id),
    torchDtype: typeof json.torch_dtype === 'string' ? json.torch_dtype : null,
    attentionBias: json.attention_bias === true,
    mlpBias: json.mlp_bias === true,
    hiddenAct: typeof json.hidden_act === 'string' ? json.hidden_act : 'silu',
  };
}

/** `eos_token_id` may be one id or a list of them (Llama 3.1 lists three). */
export function tokenIdList(value: unknown): number[] {
  if (typeof value === 'number') return [value];
  if (Array.isArray(value)) return value.filter((id): id is number => typeof id === 'number');
  return [];
}

function checkArchitecture(json: Json, source: string): void {
  const architectures = json.architectures;
  const modelType = json.model_type;
  // A bare config (the memory planner's, a preset's) names neither; anything it names must be Llama.
  if (modelType === undefined && architectures === undefined) return;
  const isLlama = modelType === 'llama' || (Array.isArray(architectures) && architectures.includes('LlamaForCausalLM'));
  if (!isLlama) {
    throw new HerdError(`${source}: not a Llama model (model_type ${JSON.stringify(modelType)}, architectures ${JSON.stringify(architectures)})`, { kind: 'model' });
  }
}

function parseRopeScaling(value: unknown, source: string): RopeScaling | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value)) throw new HerdError(`${source}: rope_scaling must be an object or null`, { kind: 'model' });
  const scaling = value as Json;
  const type = scaling.rope_type ?? scaling.type;
  const where = `${source}: rope_scaling`;
  if (type === 'default') return null;
  if (type === 'linear') return { type: 'linear', factor: positiveNumber(scaling, 'factor', where) };
  if (type === 'llama3') {
    const scalingConfig = {
      type: 'llama3' as const,
      factor: positiveNumber(scaling, 'factor', where),
      lowFreqFactor: positiveNumber(scaling, 'low_freq_factor', where),
      highFreqFactor: positiveNumber(scaling, 'high_freq_factor', where),
      originalMaxPositionEmbeddings: positiveInteger(scaling, 'original_max_position_embeddings', where),
    };
    if (scalingConfig.highFreqFactor <= scalingConfig.lowFreqFactor) {
      throw new HerdError(`${where}: high_freq_factor must be greater than low_freq_factor`, { kind: 'model' });
    }
    return scalingConfig;
  }
  throw new HerdError(`${where}: rope type ${JSON.stringify(type)} is not supported (llama3, linear or none)`, { kind: 'model' });
}

function positiveNumber(json: Json, key: string, source: string, fallback?: number): number {
  const value = json[key];
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new HerdError(`${source}: ${key} must be a positive number, got ${JSON.stringify(value)}`, { kind: 'model' });
  }
  return value;
}

function positiveInteger(json: Json, key: string, source: string, fallback?: number): number {
  const value = positiveNumber(json, key, source, fallback);
  if (!Number.isInteger(value)) throw new HerdError(`${source}: ${key} must be an integer, got ${value}`, { kind: 'model' });
  return value;
}
