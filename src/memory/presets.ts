import { HerdError } from '../errors.js';
import { architectureFromHfConfig, type ModelSpec } from './architecture.js';

/**
 * The published Hugging Face config.json values of each preset (the fields that shape memory).
 * They go through the same parser as a user's config.json, so presets and folders cannot drift.
 */
const LLAMA_31_COMMON = {
  num_key_value_heads: 8,
  vocab_size: 128256,
  max_position_embeddings: 131072,
  tie_word_embeddings: false,
  attention_bias: false,
  mlp_bias: false,
};

const LLAMA_31_8B = {
  ...LLAMA_31_COMMON,
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  head_dim: 128,
};

export const PRESET_CONFIGS: Record<string, Record<string, unknown>> = {
  'llama-3.1-8b': LLAMA_31_8B,
  'llama-3.1-70b': {
    ...LLAMA_31_COMMON,
    hidden_size: 8192,
    intermediate_size: 28672,
    num_hidden_layers: 80,
    num_attention_heads: 64,
    head_dim: 128,
  },
  'llama-3.1-405b': {
    ...LLAMA_31_COMMON,
    hidden_size: 16384,
    intermediate_size: 53248,
    num_hidden_layers: 126,
    num_attention_heads: 128,
    head_dim: 128,
  },
  'llama-3.2-1b': {
    ...LLAMA_31_COMMON,
    hidden_size: 2048,
    intermediate_size: 8192,
    num_hidden_layers: 16,
    num_attention_heads: 32,
    head_dim: 64,
    tie_word_embeddings: true,
  },
  'llama-3.2-3b': {
    ...LLAMA_31_COMMON,
    hidden_size: 3072,
    intermediate_size: 8192,
    num_hidden_layers: 28,
    num_attention_heads: 24,
    head_dim: 128,
    tie_word_embeddings: true,
  },
  // Llama Guard 3 8B is a fine-tune of Llama 3.1 8B with the same architecture.
  'llama-guard-3-8b': LLAMA_31_8B,
};

export const PRESET_NAMES: readonly string[] = Object.keys(PRESET_CONFIGS);

export function isPresetName(name: string): boolean {
  return Object.hasOwn(PRESET_CONFIGS, name.toLowerCase());
}

export function presetModel(name: string): ModelSpec {
  const config = PRESET_CONFIGS[name.toLowerCase()];
  if (!config) throw new HerdError(`unknown preset "${name}"; known presets: ${PRESET_NAMES.join(', ')}`);
  return { name: name.toLowerCase(), source: 'preset', architecture: architectureFromHfConfig(config, `preset ${name}`) };
}
