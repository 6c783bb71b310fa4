import { HerdError } from '../errors.js';
import { GGML_LAYOUT, GgmlType } from '../formats/gguf.js';
import { ggmlTypeFor, type GgufMix } from '../formats/gguf-recipe.js';
import { ggufNameOf } from '../spec/tensors.js';
import type { StoredTensor } from './architecture.js';
import type { LlamaConfig } from '../spec/llama-config.js';
import { listWeightTensors, MLP_PROJECTIONS, tensorElements, type WeightTensor } from './parameters.js';

/** How one tensor is stored: bits per weight plus the scales a quantizer keeps per row or per tensor. */
export interface StorageFormat {
  label: string;
  bitsPerWeight: number;
  bitsPerRow: number;
  bitsPerTensor: number;
}

const plain = (label: string, bits: number): StorageFormat => ({ label, bitsPerWeight: bits, bitsPerRow: 0, bitsPerTensor: 0 });

const F32 = plain('fp32', 32);
const BF16 = plain('bf16', 16);
const FP16 = plain('fp16', 16);
// One fp32 scale per tensor (per-tensor FP8, as vLLM and TensorRT-LLM store it).
const FP8_TENSOR: StorageFormat = { label: 'fp8', bitsPerWeight: 8, bitsPerRow: 0, bitsPerTensor: 32 };
// Meta's FP8 checkpoints (fbgemm) keep one fp32 scale per output row.
const FP8_ROW: StorageFormat = { label: 'fp8 (row scales)', bitsPerWeight: 8, bitsPerRow: 32, bitsPerTensor: 0 };
// bitsandbytes LLM.int8 keeps one fp32 absmax per output row.
const INT8_ROW: StorageFormat = { label: 'int8 (row scales)', bitsPerWeight: 8, bitsPerRow: 32, bitsPerTensor: 0 };
// NF4 with double quantization: an 8-bit absmax per 64 weights, and one fp32 per 256 of those.
const NF4: StorageFormat = plain('nf4', 4 + 8 / 64 + 32 / (64 * 256));

/** AWQ/GPTQ: 4-bit weights with an fp16 scale and a packed 4-bit zero point per group. */
function int4Grouped(groupSize: number): StorageFormat {
  return plain(`int4 g${groupSize}`, 4 + (16 + 4) / groupSize);
}

export const PRECISION_IDS = ['fp32', 'bf16', 'fp16', 'fp8', 'fp8-mlp', 'int8', 'int4', 'nf4', 'q8_0', 'q4_0', 'q4_k_m'] as const;
export type PrecisionId = (typeof PRECISION_IDS)[number];

export const PRECISION_SUMMARIES: Record<PrecisionId, string> = {
  fp32: 'every tensor in fp32 (4 bytes)',
  bf16: 'every tensor in bf16 (2 bytes), as the checkpoints ship',
  fp16: 'every tensor in fp16 (2 bytes)',
  fp8: 'every matrix in FP8 with a per-tensor fp32 scale; norms in bf16',
  'fp8-mlp': "Meta's FP8 recipe: MLP projections in FP8 with row scales, except the first and last layers; the rest bf16",
  int8: 'LLM.int8: matrices in int8 with an fp32 scale per row; norms in bf16',
  int4: 'AWQ/GPTQ: 4-bit weights with an fp16 scale and 4-bit zero point per group (--group-size); norms in bf16',
  nf4: 'bitsandbytes NF4 with double quantization (4.127 bits per weight); norms in bf16',
  q8_0: 'GGUF Q8_0 (8.5 bits per weight); norms in fp32',
  q4_0: 'GGUF Q4_0 (4.5 bits per weight), output head Q6_K as llama.cpp does; norms in fp32',
  q4_k_m: "GGUF Q4_K_M: Q4_K, with Q6_K for the head and llama.cpp's 'more bits' layers of attn_v and ffn_down",
};

export interface RecipeOptions {
  /** Group size for int4 scales and zero points. */
  groupSize: number;
  /** Keep the embedding matrix and the output head in bf16 whatever the precision. */
  keep16BitEmbeddings: boolean;
}

export const DEFAULT_RECIPE_OPTIONS: RecipeOptions = { groupSize: 128, keep16BitEmbeddings: false };

export function parsePrecision(text: string): PrecisionId {
  const id = text.toLowerCase();
  if ((PRECISION_IDS as readonly string[]).includes(id)) return id as PrecisionId;
  throw new HerdError(`unknown precision "${text}"; choose from ${PRECISION_IDS.join(', ')}`);
}

/** The format a precision recipe gives one tensor. */
export function formatFor(precision: PrecisionId, tensor: WeightTensor, arch: LlamaConfig, options: RecipeOptions): StorageFormat {
  const isGguf = precision === 'q8_0' || precision === 'q4_0' || precision === 'q4_k_m';
  if (tensor.module === 'norm' || tensor.module === 'bias') {
    // 1-D tensors are never quantized; llama.cpp keeps them in fp32.
    return precision === 'fp32' || isGguf ? F32 : precision === 'fp16' ? FP16 : BF16;
  }
  const isEmbeddingOrHead = tensor.module === 'embedding' || tensor.module === 'lm_head';
  if (isEmbeddingOrHead && options.keep16BitEmbeddings) return BF16;
  switch (precision) {
    case 'fp32':
      return F32;
    case 'bf16':
      return BF16;
    case 'fp16':
      return FP16;
    case 'fp8':
      return FP8_TENSOR;
    case 'fp8-mlp':
      return isMetaFp8Tensor(tensor, arch) ? FP8_ROW : BF16;
    case 'int8':
      return INT8_ROW;
    case 'int4':
      return int4Grouped(options.groupSize);
    case 'nf4':
      return NF4;
    case 'q8_0':
      return ggufFormat('Q8_0', tensor, arch);
    case 'q4_0':
      return ggufFormat('Q4_0', tensor, arch);
    case 'q4_k_m':
      return ggufFormat('Q4_K_M', tensor, arch);
  }
}

/** Llama 3 paper §6.2: FP8 for the feed-forward projections only, never in the first or last layer. */
function isMetaFp8Tensor(tensor: WeightTensor, arch: LlamaConfig): boolean {
  const layer = tensor.layer ?? -1;
  return MLP_PROJECTIONS.includes(tensor.module) && layer > 0 && layer < arch.numHiddenLayers - 1;
}

/** A GGUF mix as llama-quantize writes it by default: the one recipe herd quantizes with (src/formats/gguf-recipe.ts). */
function ggufFormat(mix: GgufMix, tensor: WeightTensor, arch: LlamaConfig): StorageFormat {
  const shape = tensor.module === 'norm' || tensor.module === 'bias' ? [tensor.columns] : [tensor.rows, tensor.columns];
  const type = ggmlTypeFor(mix, ggufNameOf(tensor.name), shape, arch, false);
  const { block, bytes } = GGML_LAYOUT[type];
  return plain(GgmlType[type], (bytes * 8) / block);
}

export function tensorBytes(format: StorageFormat, elements: number, rows: number): number {
  return (elements * format.bitsPerWeight + rows * format.bitsPerRow + format.bitsPerTensor) / 8;
}

export interface FormatShare {
  format: string;
  parameters: number;
  bytes: number;
}

/** Memory for the weights at one precision, with the share each storage format takes. */
export interface WeightEstimate {
  precision: string;
  description: string;
  parameters: number;
  bytes: number;
  byFormat: FormatShare[];
}

export function estimateWeights(arch: LlamaConfig, precision: PrecisionId, options: RecipeOptions): WeightEstimate {
  const shares = new Map<string, FormatShare>();
  for (const tensor of listWeightTensors(arch)) {
    const format = formatFor(precision, tensor, arch, options);
    const elements = tensorElements(tensor);
    addShare(shares, format.label, elements, tensorBytes(format, elements, tensor.rows));
  }
  const description = precision === 'int4' ? PRECISION_SUMMARIES.int4.replace('--group-size', `group ${options.groupSize}`) : PRECISION_SUMMARIES[precision];
  return summarize(precision, description + (options.keep16BitEmbeddings ? '; embeddings and head kept in bf16' : ''), shares);
}

/** The weights exactly as a GGUF file stores them. */
export function storedWeights(tensors: readonly StoredTensor[]): WeightEstimate {
  const shares = new Map<string, FormatShare>();
  for (const tensor of tensors) addShare(shares, tensor.typeName, tensor.elements, (tensor.elements * tensor.bitsPerWeight) / 8);
  return summarize('file', 'as stored in the GGUF file', shares);
}

function addShare(shares: Map<string, FormatShare>, format: string, parameters: number, bytes: number): void {
  const share = shares.get(format) ?? { format, parameters: 0, bytes: 0 };
  share.parameters += parameters;
  share.bytes += bytes;
  shares.set(format, share);
}

function summarize(precision: string, description: string, shares: Map<string, FormatShare>): WeightEstimate {
  const byFormat = [...shares.values()].sort((a, b) => b.bytes - a.bytes);
  return {
    precision,
    description,
    parameters: byFormat.reduce((sum, share) => sum + share.parameters, 0),
    bytes: Math.ceil(byFormat.reduce((sum, share) => sum + share.bytes, 0)),
    byFormat,
  };
}
