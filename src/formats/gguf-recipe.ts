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
 * - Q4_K_M and Q5_K_M: `attn_v` and `ffn_down` of the layers `useMoreBits` picks are Q6_K; Llama 70B
 *   (80 layers, grouped KV heads) gets Q5_K for its other Q4_K `attn_v`.
 * - Everything else gets the mix's type.
 * - Then the row-length fallback: a K type whose rows are not a multiple of 256 becomes Q4_K → Q5_0,
 *   Q5_K → Q5_1, Q6_K → Q8_0, and F16 if even that does not fit. For the 32-block types llama.cpp
 *   defines no fallback and stops; herd writes F16 there (stories260K's ffn_down has 172 columns).
 *
 * `gguf-q4_0` and `gguf-q4_k` are llama.cpp's `--pure` files (every matrix the one type, only the
 * row-length fallback applies), as herd has always written them; the others follow the recipe.
 */
export type GgufMix = 'F16' | 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q4_K' | 'Q4_K_M' | 'Q5_K_M' | 'Q6_K';

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
};

/** llama.cpp's types for rows that are not whole super-blocks of 256. */
const ROW_FALLBACK: Partial<Record<GgmlType, GgmlType>> = {
  [GgmlType.Q4_K]: GgmlType.Q5_0,
  [GgmlType.Q5_K]: GgmlType.Q5_1,
  [GgmlType.Q6_K]: GgmlType.Q8_0,
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
  const mixedK = mix === 'Q4_K_M' || mix === 'Q5_K_M';
  // llama.cpp counts attn_v and ffn_down tensors as it meets them, layer by layer; for a Llama
  // (one of each per layer) the count is the layer number and the total the layer count.
  const layer = layerOf(ggufName);
  const layers = config.numHiddenLayers;
  if (ggufName.endsWith('.attn_v.weight')) {
    if (mixedK && useMoreBits(layer, layers)) return GgmlType.Q6_K;
    // LLM_TYPE_70B: 8 query heads share each attn_v, so a few more bits cost little.
    if (isLlama70B(config) && defaultType === GgmlType.Q4_K) return GgmlType.Q5_K;
    return defaultType;
  }
  if (ggufName.endsWith('.ffn_down.weight') && mixedK && useMoreBits(layer, layers)) return GgmlType.Q6_K;
  return defaultType;
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
