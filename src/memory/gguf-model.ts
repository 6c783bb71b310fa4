import { basename } from 'node:path';
import { gguf, GGMLQuantizationType } from '@huggingface/gguf';
import { HerdError } from '../errors.js';
import type { LlamaArchitecture, ModelSpec, StoredTensor } from './architecture.js';

/** Bits per weight of the GGML tensor types Llama GGUF files use: block bytes × 8 / block weights. */
const GGML_BITS_PER_WEIGHT: Partial<Record<GGMLQuantizationType, number>> = {
  [GGMLQuantizationType.F32]: 32,
  [GGMLQuantizationType.F16]: 16,
  [GGMLQuantizationType.BF16]: 16,
  [GGMLQuantizationType.Q8_0]: (34 * 8) / 32,
  [GGMLQuantizationType.Q4_0]: (18 * 8) / 32,
  [GGMLQuantizationType.Q4_1]: (20 * 8) / 32,
  [GGMLQuantizationType.Q5_0]: (22 * 8) / 32,
  [GGMLQuantizationType.Q5_1]: (24 * 8) / 32,
  [GGMLQuantizationType.Q2_K]: (84 * 8) / 256,
  [GGMLQuantizationType.Q3_K]: (110 * 8) / 256,
  [GGMLQuantizationType.Q4_K]: (144 * 8) / 256,
  [GGMLQuantizationType.Q5_K]: (176 * 8) / 256,
  [GGMLQuantizationType.Q6_K]: (210 * 8) / 256,
  [GGMLQuantizationType.IQ4_NL]: (18 * 8) / 32,
  [GGMLQuantizationType.IQ4_XS]: (136 * 8) / 256,
};

/** Reads a GGUF file's header only (metadata and tensor table); no tensor data is loaded. */
export async function readGgufModel(path: string): Promise<ModelSpec> {
  let header: Awaited<ReturnType<typeof gguf>>;
  try {
    header = await gguf(path, { allowLocalFile: true });
  } catch (error) {
    throw new HerdError(`cannot read GGUF header of ${path}: ${(error as Error).message}`);
  }
  const metadata = header.metadata as unknown as Record<string, unknown>;
  const tensors = header.tensorInfos
    // rope_freqs is a precomputed RoPE table llama.cpp adds for Llama 3.1, not a weight.
    .filter((info) => !info.name.startsWith('rope_freqs'))
    .map((info) => storedTensor(info.name, info.shape, info.dtype, path));
  return {
    name: typeof metadata['general.name'] === 'string' ? metadata['general.name'] : basename(path),
    source: path,
    architecture: architectureFromGguf(metadata, tensors, path),
    storedTensors: tensors,
  };
}

function storedTensor(name: string, shape: bigint[], dtype: GGMLQuantizationType, path: string): StoredTensor {
  const bitsPerWeight = GGML_BITS_PER_WEIGHT[dtype];
  if (bitsPerWeight === undefined) {
    throw new HerdError(`${path}: tensor ${name} has GGML type ${GGMLQuantizationType[dtype] ?? dtype}, which herd memory cannot price`);
  }
  const elements = shape.reduce((product, dim) => product * Number(dim), 1);
  return { name, elements, bitsPerWeight, typeName: GGMLQuantizationType[dtype] ?? String(dtype) };
}

function architectureFromGguf(metadata: Record<string, unknown>, tensors: StoredTensor[], path: string): LlamaArchitecture {
  const arch = metadata['general.architecture'];
  if (arch !== 'llama') {
    throw new HerdError(`${path}: general.architecture is ${JSON.stringify(arch)}; herd memory plans Llama models only`);
  }
  const field = (key: string, fallback?: number): number => {
    const value = metadata[`llama.${key}`] ?? fallback;
    const number = typeof value === 'bigint' ? Number(value) : value;
    if (typeof number !== 'number' || !Number.isSafeInteger(number) || number <= 0) {
      throw new HerdError(`${path}: GGUF metadata llama.${key} is missing or not a positive whole number`);
    }
    return number;
  };
  const tokens = metadata['tokenizer.ggml.tokens'];
  const hiddenSize = field('embedding_length');
  const numAttentionHeads = field('attention.head_count');
  return {
    hiddenSize,
    intermediateSize: field('feed_forward_length'),
    numLayers: field('block_count'),
    numAttentionHeads,
    numKeyValueHeads: field('attention.head_count_kv', numAttentionHeads),
    headDim: field('attention.key_length', hiddenSize / numAttentionHeads),
    vocabSize: field('vocab_size', Array.isArray(tokens) ? tokens.length : undefined),
    // A GGUF without output.weight reuses token_embd for the head.
    tieWordEmbeddings: !tensors.some((tensor) => tensor.name === 'output.weight'),
    attentionBias: tensors.some((tensor) => tensor.name.endsWith('attn_q.bias')),
    mlpBias: tensors.some((tensor) => tensor.name.endsWith('ffn_up.bias')),
    maxContext: field('context_length', 2048),
  };
}
