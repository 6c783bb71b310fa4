import { basename } from 'node:path';
import { HerdError } from '../errors.js';
import { GGML_LAYOUT, GgmlType, type GgufTensorInfo } from '../formats/gguf.js';
import { readGgufModel } from '../formats/gguf-split.js';
import { describeGgufModel } from '../formats/gguf-llama.js';
import { configFromGgufMetadata } from '../spec/gguf-metadata.js';
import type { ModelSpec, StoredTensor } from './architecture.js';

/** Reads a GGUF file's header only (metadata and tensor table; every part of a split model) with herd's GGUF reader; no tensor data is loaded. */
export async function ggufModelSpec(path: string): Promise<ModelSpec> {
  const file = readGgufModel(path, { headerOnly: true });
  const tensors = [...file.tensors.values()]
    // rope_freqs is a precomputed RoPE table llama.cpp adds for Llama 3.1, not a weight.
    .filter((info) => !info.name.startsWith('rope_freqs'))
    .map((info) => storedTensor(info, path));
  const name = file.metadata.get('general.name');
  return {
    name: typeof name === 'string' ? name : basename(path),
    source: path,
    // The header alone: the rope_freqs table's data is not read (nor needed to plan memory).
    architecture: configFromGgufMetadata({ ...describeGgufModel(file), readRopeFactors: undefined }),
    storedTensors: tensors,
  };
}

/** Bits per weight of the stored type: block bytes × 8 / block weights. */
function storedTensor(info: GgufTensorInfo, path: string): StoredTensor {
  const layout = GGML_LAYOUT[info.type];
  if (!layout) throw new HerdError(`${path}: tensor ${info.name} has GGML type ${GgmlType[info.type] ?? info.type}, which herd memory cannot price`);
  const elements = info.dims.reduce((product, dim) => product * dim, 1);
  return { name: info.name, elements, bitsPerWeight: (layout.bytes * 8) / layout.block, typeName: GgmlType[info.type] ?? String(info.type) };
}
