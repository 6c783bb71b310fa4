import type { LlamaConfig } from '../spec/llama-config.js';
import { GGML_LAYOUT, GgmlType } from './gguf.js';

/**
 * Which ggml type each tensor of a Llama gets in a GGUF mix, as llama.cpp's quantizer decides it
 * (`llama_tensor_get_type` and `tensor_type_fallback` in src/llama-quant.cpp, with default
 * parameters: no importance matrix, no overrides), and the `general.file_type` (llama_ftype,
 * include/llama.h) it writes.
 *
 * - Norms and other 1-D tensors are never quantized: they stay F32.
 * - `output.weight` (or `token_embd.weight` when the embeddings are tied, as llama.cpp quantizes the
 *   shared tensor as the output): Q8_0 if its rows do not split into the mix's blocks; else Q8_0
 *   stays Q8_0 and every other quantized mix uses Q6_K.
 * - Q4_K_M and Q5_K_M: `attn_v` and `ffn_down` of the layers `useMoreBits` picks are Q6_K.
 * - Q2_K: `attn_v` Q3_K (Q4_K when 4 or more query heads share a KV head), `ffn_down` and
 *   `attn_output` Q3_K. Q3_K_M: `attn_v` Q5_K in the first 2 layers and Q4_K after, `ffn_down` Q5_K
 *   in the first sixteenth of the layers and Q4_K after, `attn_output` Q4_K. Q3_K_L: those three
 *   Q5_K. Q3_K_S: nothing singled out. IQ4_NL and IQ4_XS: `attn_v` Q5_K with 4 or more query heads
 *   per KV head, `ffn_down` Q5_K in the first eighth of the layers (no importance matrix).
 * - Llama 70B (80 layers, grouped KV heads): an `attn_v` that would be Q3_K or Q4_K is Q5_K.
 * - Everything else gets the mix's type.
 * - Then the row-length fallback: a K type whose rows are not a multiple of 256 becomes Q4_K → Q5_0,
 *   Q5_K → Q5_1, Q6_K → Q8_0, Q2_K/Q3_K/IQ4_XS → IQ4_NL, and F16 if even that does not fit. For the 32-block types llama.cpp
 *   defines no fallback and stops; herd writes F16 there (stories260K's ffn_down has 172 columns).
 *
 * `gguf-q4_0` and `gguf-q4_k` are llama.cpp's `--pure` files (every matrix the one type, only the
 * row-length fallback applies), as herd has always written them; the others follow the recipe.
 */
export type GgufMix = 'F16' | 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q4_K' | 'Q4_K_M' | 'Q5_K_M' | 'Q6_K' | 'Q2_K' | 'Q3_K_S' | 'Q3_K_M' | 'Q3_K_L' | 'IQ4_NL' | 'IQ4_XS';

export interface MixDefinition {
  /** llama_ftype: general.file_type. */
  fileType: number;
  /** llama_ftype_get_default_type: the type of every matrix the recipe does not single out. */
  defaultType: GgmlType;
  /** llama.cpp's --pure: no per-tensor choices, every matrix the default type (then the fallback). */
  pure: boolean;
}

export const GGUF_MIXES: Record<GgufMix, MixDefinition> = {
  F16: { fileType: 1, defaultType: GgmlType.F16, pure: true },
  Q4_0: { fileType: 2, defaultType: GgmlType.Q4_0, pure: true },
  Q4_1: { fileType: 3, defaultType: GgmlType.Q4_1, pure: false },
  Q8_0: { fileType: 7, defaultType: GgmlType.Q8_0, pure: false },
  Q5_0: { fileType: 8, defaultType: GgmlType.Q5_0, pure: false },
  // LLAMA_FTYPE_MOSTLY_Q4_K_S, written --pure.
  Q4_K: { fileType: 14, defaultType: GgmlType.Q4_K, pure: true },
  Q4_K_M: { fileType: 15, defaultType: GgmlType.Q4_K, pure: false },
  Q5_K_M: { fileType: 17, defaultType: GgmlType.Q5_K, pure: false },
  Q6_K: { fileType: 18, defaultType: GgmlType.Q6_K, pure: false },
  Q2_K: { fileType: 10, defaultType: GgmlType.Q2_K, pure: false },
  Q3_K_S: { fileType: 11, defaultType: GgmlType.Q3_K, pure: false },
  Q3_K_M: { fileType: 12, defaultType: GgmlType.Q3_K, pure: false },
  Q3_K_L: { fileType: 13, defaultType: GgmlType.Q3_K, pure: false },
  IQ4_NL: { fileType: 25, defaultType: GgmlType.IQ4_NL, pure: false },
  IQ4_XS: { fileType: 30, defaultType: GgmlType.IQ4_XS, pure: false },
};

/** llama.cpp's types for rows that are not whole super-blocks of 256. */
const ROW_FALLBACK: Partial<Record<GgmlType, GgmlType>> = {
  [GgmlType.Q4_K]: GgmlType.Q5_0,
  [GgmlType.Q5_K]: GgmlType.Q5_1,
  [GgmlType.Q6_K]: GgmlType.Q8_0,
  [GgmlType.Q2_K]: GgmlType.IQ4_NL,
  [GgmlType.Q3_K]: GgmlType.IQ4_NL,
  [GgmlType.IQ4_XS]: GgmlType.IQ4_NL,
};

/**
 * The ggml type of one tensor of `config`'s model in `mix`, by its GGUF name and HF shape
 * ([rows, columns] for a matrix). `pure` false gives llama-quantize's default choices even for
 * the mixes herd writes --pure (the memory planner prices files as people download them).
 */
export function ggmlTypeFor(mix: GgufMix, ggufName: string, shape: readonly number[], config: LlamaConfig, pure = GGUF_MIXES[mix].pure): GgmlType {
  if (shape.length < 2 || ggufName.endsWith('_norm.weight')) return GgmlType.F32;
  const { defaultType } = GGUF_MIXES[mix];
  // llama.cpp applies neither the recipe nor the fallback to a float default type.
  if (defaultType === GgmlType.F16) return GgmlType.F16;
  const columns = shape[shape.length - 1]!;
  return fitRows(pure ? defaultType : recipeType(mix, ggufName, columns, config), columns);
}

/** llama_tensor_get_type_impl for a Llama, the branches the mixes above reach. */
function recipeType(mix: GgufMix, ggufName: string, columns: number, config: LlamaConfig): GgmlType {
  const { defaultType } = GGUF_MIXES[mix];
  const isOutput = ggufName === 'output.weight' || (config.tieWordEmbeddings && ggufName === 'token_embd.weight');
  if (isOutput) {
    if (columns % GGML_LAYOUT[defaultType].block !== 0) return GgmlType.Q8_0;
    return defaultType === GgmlType.Q8_0 ? GgmlType.Q8_0 : GgmlType.Q6_K;
  }
  // llama.cpp counts attn_v and ffn_down tensors as it meets them, layer by layer; for a Llama
  // (one of each per layer) the count is the layer number and the total the layer count.
  const layer = layerOf(ggufName);
  const layers = config.numHiddenLayers;
  if (ggufName.endsWith('.attn_v.weight')) {
    const type = attnVType(mix, layer, layers, config) ?? defaultType;
    // LLM_TYPE_70B: 8 query heads share each attn_v, so a few more bits cost little.
    return isLlama70B(config) && (type === GgmlType.Q3_K || type === GgmlType.Q4_K) ? GgmlType.Q5_K : type;
  }
  if (ggufName.endsWith('.ffn_down.weight')) return ffnDownType(mix, layer, layers) ?? defaultType;
  if (ggufName.endsWith('.attn_output.weight')) return ATTN_OUTPUT_TYPES[mix] ?? defaultType;
  return defaultType;
}

/** The mixes that give attn_output a type of its own. */
const ATTN_OUTPUT_TYPES: Partial<Record<GgufMix, GgmlType>> = { Q2_K: GgmlType.Q3_K, Q3_K_M: GgmlType.Q4_K, Q3_K_L: GgmlType.Q5_K };

/** llama.cpp's attn_v choice before the 70B rule, or undefined for the mix's type. */
function attnVType(mix: GgufMix, layer: number, layers: number, config: LlamaConfig): GgmlType | undefined {
  const queriesPerKvHead = config.numAttentionHeads / config.numKeyValueHeads;
  switch (mix) {
    case 'Q2_K': return queriesPerKvHead >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
    case 'Q3_K_M': return layer < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
    case 'Q3_K_L': return GgmlType.Q5_K;
    case 'IQ4_NL': case 'IQ4_XS': return queriesPerKvHead >= 4 ? GgmlType.Q5_K : undefined;
    case 'Q4_K_M': case 'Q5_K_M': return useMoreBits(layer, layers) ? GgmlType.Q6_K : undefined;
    default: return undefined;
  }
}

/** llama.cpp's ffn_down choice, or undefined for the mix's type. */
function ffnDownType(mix: GgufMix, layer: number, layers: number): GgmlType | undefined {
  switch (mix) {
    case 'Q2_K': return GgmlType.Q3_K;
    case 'Q3_K_M': return layer < Math.trunc(layers / 16) ? GgmlType.Q5_K : GgmlType.Q4_K;
    case 'Q3_K_L': return GgmlType.Q5_K;
    case 'IQ4_NL': case 'IQ4_XS': return layer < Math.trunc(layers / 8) ? GgmlType.Q5_K : undefined;
    case 'Q4_K_M': case 'Q5_K_M': return useMoreBits(layer, layers) ? GgmlType.Q6_K : undefined;
    default: return undefined;
  }
}

/** llama.cpp's use_more_bits: the first and last eighth of the layers and every third in between. */
export function useMoreBits(layer: number, layers: number): boolean {
  const eighth = Math.trunc(layers / 8);
  return layer < eighth || layer >= Math.trunc((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

/** llama.cpp's LLM_TYPE_70B for a Llama: 80 layers with fewer KV heads than query heads (80 with as many is 65B). */
function isLlama70B(config: LlamaConfig): boolean {
  return config.numHiddenLayers === 80 && config.numKeyValueHeads !== config.numAttentionHeads;
}

function layerOf(ggufName: string): number {
  return Number(/^blk\.(\d+)\./.exec(ggufName)?.[1] ?? -1);
}

/** tensor_type_fallback: the wanted type if the rows split into its blocks, else llama.cpp's fallback, else F16. */
function fitRows(wanted: GgmlType, columns: number): GgmlType {
  const fits = (type: GgmlType) => columns % GGML_LAYOUT[type].block === 0;
  if (fits(wanted)) return wanted;
  const fallback = ROW_FALLBACK[wanted];
  return fallback !== undefined && fits(fallback) ? fallback : GgmlType.F16;
}
