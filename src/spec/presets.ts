import { HerdError } from '../errors.js';
import { parseLlamaConfig, type LlamaConfig } from './llama-config.js';

/**
 * The published config.json of each model herd knows by name, whole (meta-llama's files on the
 * Hub), so a preset is exactly the model: the memory planner, `bench --synthetic` and anything
 * else that builds a model by name read these through the same parser as a user's config.json.
 */
const LLAMA_31_8B = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: 128001,
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.43.0.dev0',
  use_cache: true,
  vocab_size: 128256,
};

/** Llama 3.2's small models: head_dim spelled out, tied embeddings, RoPE factor 32. */
const LLAMA_32_COMMON = {
  ...LLAMA_31_8B,
  intermediate_size: 8192,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  tie_word_embeddings: true,
  transformers_version: '4.45.0.dev0',
};

export const PRESET_CONFIGS: Readonly<Record<string, Readonly<Record<string, unknown>>>> = {
  'llama-3.1-8b': LLAMA_31_8B,
  'llama-3.1-70b': { ...LLAMA_31_8B, hidden_size: 8192, intermediate_size: 28672, num_attention_heads: 64, num_hidden_layers: 80 },
  'llama-3.1-405b': { ...LLAMA_31_8B, hidden_size: 16384, intermediate_size: 53248, num_attention_heads: 128, num_hidden_layers: 126 },
  'llama-3.2-1b': { ...LLAMA_32_COMMON, head_dim: 64, hidden_size: 2048, num_attention_heads: 32, num_hidden_layers: 16 },
  'llama-3.2-3b': { ...LLAMA_32_COMMON, head_dim: 128, hidden_size: 3072, num_attention_heads: 24, num_hidden_layers: 28 },
  // Llama Guard 3 8B is a fine-tune of Llama 3.1 8B: the same architecture, stopping at <|eot_id|>.
  'llama-guard-3-8b': { ...LLAMA_31_8B, eos_token_id: 128009 },
  // Its INT8 release: the same weights in bitsandbytes LLM.int8 (8-bit linear layers).
  'llama-guard-3-8b-int8': { ...LLAMA_31_8B, eos_token_id: 128009, quantization_config: { quant_method: 'bitsandbytes', load_in_8bit: true, load_in_4bit: false } },
  // Llama Guard 3 1B is a fine-tune of Llama 3.2 1B whose output head is its own matrix (not tied): 1.50B parameters.
  'llama-guard-3-1b': { ...LLAMA_32_COMMON, head_dim: 64, hidden_size: 2048, num_attention_heads: 32, num_hidden_layers: 16, tie_word_embeddings: false, eos_token_id: 128009 },
};

/** The weight precision a preset is published in when it is not 16-bit (its config.json's quantization_config). */
export function presetPublishedPrecision(name: string): 'int8' | undefined {
  const quantization = PRESET_CONFIGS[name.toLowerCase()]?.quantization_config as { load_in_8bit?: boolean } | undefined;
  return quantization?.load_in_8bit ? 'int8' : undefined;
}

export const PRESET_NAMES: readonly string[] = Object.keys(PRESET_CONFIGS);

export function isPresetName(name: string): boolean {
  return Object.hasOwn(PRESET_CONFIGS, name.toLowerCase());
}

/** The parsed config of a preset; one clear line naming the known presets otherwise. */
export function presetConfig(name: string): LlamaConfig {
  const raw = PRESET_CONFIGS[name.toLowerCase()];
  if (!raw) throw new HerdError(`unknown preset "${name}"; known presets: ${PRESET_NAMES.join(', ')}`);
  return parseLlamaConfig(raw, `preset ${name}`);
}
