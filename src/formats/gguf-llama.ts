import fs from 'node:fs';
import { HerdError } from '../errors.js';
import type { LlamaConfig } from '../spec/llama-config.js';
import { floatsToHalves } from './half.js';
import type { PackedFormat, PackedTensor, WeightSource } from './weights.js';
import { configFromGgufMetadata, type GgufModelDescription } from '../spec/gguf-metadata.js';
import { ropeFrequencyFactors } from '../spec/rope.js';
import { ggufNameOf, permutedHeadsOf } from '../spec/tensors.js';
import { readGgufModel } from './gguf-split.js';
import { checkLlamaMetadataAgainstTensors } from './gguf-checks.js';
import { endOfGenerationIds } from './gguf-tokenizer.js';
import type { HostTensor } from './safetensors.js';
import { openForReading } from './files.js';
import { quantizeBlocks } from './ggml-blocks.js';
import { quantizeQ4K } from './ggml-k-blocks.js';
import { quantizeLegacyBlocks } from './ggml-quantize-legacy.js';
import { quantizeQ5K, quantizeQ6K } from './ggml-quantize-k.js';
import { dequantizeGgml, type TensorPlace } from './ggml-dequantize.js';
import { GGUF_MIXES, ggmlTypeFor, type GgufMix } from './gguf-recipe.js';
import { GGML_LAYOUT, GgmlType, GgufValueType, type GgufFile, type GgufMetadata, type GgufTensorInfo, type GgufTensorToWrite } from './gguf.js';

/**
 * Llama in GGUF, as llama.cpp's convert_hf_to_gguf.py writes it: tensor names (token_embd,
 * blk.N.attn_q, …), the q/k row permutation (rows of each head interleaved for llama.cpp's
 * RoPE, which pairs adjacent elements), `llama.*` hyper-parameters, and `rope_freqs` for
 * Llama 3.1's RoPE scaling.
 */


/**
 * llama.cpp's `permute`: within each head, HF row half·D/2 + i moves to 2i + half. `inverse`
 * undoes it. Works on rows of any byte width (float or packed blocks).
 */
export function permuteRows(rows: Uint8Array, rowCount: number, heads: number, inverse: boolean): Uint8Array {
  const rowBytes = rows.length / rowCount;
  const out = new Uint8Array(rows.length);
  for (let hf = 0; hf < rowCount; hf++) {
    const gguf = ggufRowOf(hf, rowCount, heads);
    const [from, to] = inverse ? [gguf, hf] : [hf, gguf];
    out.set(rows.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes);
  }
  return out;
}

/** Where GGUF keeps row `hf` of a q or k projection: each head's two rotary halves interleaved. */
function ggufRowOf(hf: number, rowCount: number, heads: number): number {
  const headDim = rowCount / heads;
  const head = Math.floor(hf / headDim);
  const within = hf % headDim;
  const half = within < headDim / 2 ? 0 : 1;
  return head * headDim + 2 * (within - half * (headDim / 2)) + half;
}

/**
 * Writes a matrix of `rowLength`-wide rows as GGUF blocks of `type` byte for byte as the writers
 * below, or returns null to leave it to them. The quant layer passes the native C quantizers this
 * way (the formats layer never imports src/native).
 */
export type BlockQuantizer = (type: GgmlType, data: Float32Array, rowLength: number) => Uint8Array | null;

export function encodeTensor(type: GgmlType, data: Float32Array, rowLength = data.length, quantize?: BlockQuantizer): Uint8Array {
  const quantized = type === GgmlType.F32 || type === GgmlType.F16 ? null : quantize?.(type, data, rowLength);
  if (quantized) return quantized;
  switch (type) {
    case GgmlType.F32: return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    case GgmlType.F16: return new Uint8Array(floatsToHalves(data).buffer);
    case GgmlType.Q8_0: return quantizeBlocks('Q8_0', data);
    case GgmlType.Q4_0: return quantizeBlocks('Q4_0', data);
    case GgmlType.Q4_1: return quantizeLegacyBlocks('Q4_1', data);
    case GgmlType.Q5_0: return quantizeLegacyBlocks('Q5_0', data);
    case GgmlType.Q5_1: return quantizeLegacyBlocks('Q5_1', data);
    case GgmlType.Q4_K: return quantizeQ4K(data);
    case GgmlType.Q5_K: return quantizeQ5K(data);
    case GgmlType.Q6_K: return quantizeQ6K(data);
    default: throw new HerdError(`herd does not write ggml type ${GgmlType[type]}`);
  }
}

/** A stored tensor as float32, through the one entry point for every ggml type (ggml-dequantize.ts). */
export function decodeTensor(type: GgmlType, bytes: Uint8Array, count: number, place?: TensorPlace): Float32Array {
  return dequantizeGgml(type, bytes, count, place);
}

/** One HF tensor as a GGUF tensor: renamed, typed by the mix's recipe, q/k rows permuted, encoded. */
export function ggufTensor(tensor: HostTensor, mix: GgufMix, config: LlamaConfig, quantize?: BlockQuantizer): GgufTensorToWrite {
  const name = ggufNameOf(tensor.name);
  const type = ggmlTypeFor(mix, name, tensor.shape, config);
  let bytes = encodeTensor(type, tensor.data, tensor.shape.at(-1), quantize);
  const heads = permutedHeadsOf(tensor.name, config);
  if (heads !== null) bytes = permuteRows(bytes, tensor.shape[0]!, heads, false);
  return { name, type, dims: [...tensor.shape].reverse(), bytes };
}

/** llama.cpp's rope_freqs.weight for a llama3-scaled config (convert_hf_to_gguf.py writes it), else null. */
export function ropeFreqsTensor(config: LlamaConfig): GgufTensorToWrite | null {
  const factors = ropeFrequencyFactors(config);
  return factors && { name: 'rope_freqs.weight', type: GgmlType.F32, dims: [factors.length], bytes: new Uint8Array(factors.buffer) };
}

/** general.* and llama.* metadata from the config. */
export function llamaMetadata(config: LlamaConfig, name: string, mix: GgufMix): GgufMetadata {
  const u32 = (value: number) => ({ type: GgufValueType.UINT32 as const, value });
  const f32 = (value: number) => ({ type: GgufValueType.FLOAT32 as const, value });
  const metadata: GgufMetadata = new Map();
  metadata.set('general.architecture', { type: GgufValueType.STRING, value: 'llama' });
  metadata.set('general.name', { type: GgufValueType.STRING, value: name });
  metadata.set('general.file_type', u32(GGUF_MIXES[mix].fileType));
  metadata.set('general.quantization_version', u32(2));
  metadata.set('llama.block_count', u32(config.numHiddenLayers));
  metadata.set('llama.context_length', u32(config.maxPositionEmbeddings));
  metadata.set('llama.embedding_length', u32(config.hiddenSize));
  metadata.set('llama.feed_forward_length', u32(config.intermediateSize));
  metadata.set('llama.attention.head_count', u32(config.numAttentionHeads));
  metadata.set('llama.attention.head_count_kv', u32(config.numKeyValueHeads));
  metadata.set('llama.attention.key_length', u32(config.headDim));
  metadata.set('llama.attention.value_length', u32(config.headDim));
  metadata.set('llama.rope.freq_base', f32(config.ropeTheta));
  metadata.set('llama.rope.dimension_count', u32(config.headDim));
  metadata.set('llama.attention.layer_norm_rms_epsilon', f32(config.rmsNormEps));
  metadata.set('llama.vocab_size', u32(config.vocabSize));
  if (config.ropeScaling?.type === 'linear') {
    metadata.set('llama.rope.scaling.type', { type: GgufValueType.STRING, value: 'linear' });
    metadata.set('llama.rope.scaling.factor', f32(config.ropeScaling.factor));
  }
  return metadata;
}

/** A GGUF header as the spec's metadata parser reads it. */
export function describeGgufModel(file: GgufFile): GgufModelDescription {
  const readRopeFactors = () => {
    const info = file.tensors.get('rope_freqs.weight')!;
    // A split model's parts each hold their own tensors: read this one from its part.
    const fd = openForReading(info.file);
    try {
      return decodeTensor(info.type, readTensorBytes(fd, info), info.dims[0]!, { file: info.file, tensor: info.name });
    } finally {
      fs.closeSync(fd);
    }
  };
  return { metadata: file.metadata, tensorDims: (name) => file.tensors.get(name)?.dims, readRopeFactors, source: file.file };
}

/**
 * A GGUF file as the engine's weight source: HF names in, float32 (q/k rows back in HF order) or,
 * for the types in PACKED_FORMATS, the packed blocks herd's kernels compute on.
 */
export class GgufWeights implements WeightSource {
  /** Open descriptors by file: a split model reads each tensor from the part that holds it. */
  private readonly fds = new Map<string, number>();
  private cached: { name: string; bytes: Uint8Array } | null = null;

  constructor(readonly file: GgufFile, private readonly config: LlamaConfig) {}

  /** Opens a GGUF file, or a split model from its first part. */
  static open(path: string): { weights: GgufWeights; config: LlamaConfig } {
    const file = readGgufModel(path);
    checkLlamaMetadataAgainstTensors(file);
    // llama.cpp's end-of-generation set (eos, eot, eom) from the tokenizer metadata, not just eos.
    const config = { ...configFromGgufMetadata(describeGgufModel(file)), eosTokenIds: endOfGenerationIds(file.metadata) };
    return { weights: new GgufWeights(file, config), config };
  }

  /** Checks that every tensor the config implies is present with its shape. */
  validate(expected: Map<string, number[]>): void {
    for (const [name, shape] of expected) {
      const info = this.info(name);
      if (info.dims.join() !== [...shape].reverse().join()) {
        throw new HerdError(`${this.file.file}: tensor ${info.name} has dims [${info.dims.join(', ')}] but the metadata implies [${[...shape].reverse().join(', ')}]`);
      }
    }
  }

  readFloat(name: string): HostTensor {
    const info = this.info(name);
    const shape = [...info.dims].reverse();
    const data = decodeTensor(info.type, this.bytes(name), shape.reduce((a, b) => a * b, 1), { file: info.file, tensor: info.name });
    return { name, shape, data };
  }

  describePacked(name: string): PackedTensor | null {
    const info = this.info(name);
    const format = PACKED_FORMATS[info.type];
    return format ? { format, shape: [...info.dims].reverse(), byteLength: info.byteLength } : null;
  }

  dequantizedAtLoad(name: string): { type: string; bytesPerWeight: number } | null {
    const { type } = this.info(name);
    const { block, bytes } = GGML_LAYOUT[type];
    return PACKED_FORMATS[type] || block === 1 ? null : { type: GgmlType[type], bytesPerWeight: bytes / block };
  }

  /** Reads straight from the file; q and k rows one at a time, each from its place in GGUF's order. */
  readPackedInto(name: string, target: Uint8Array, byteOffset = 0): void {
    const info = this.info(name);
    const fd = this.descriptor(info);
    const heads = permutedHeadsOf(name, this.config);
    if (heads === null) {
      readRange(fd, info, byteOffset, target);
      return;
    }
    const rowCount = info.dims[1]!;
    const rowBytes = info.byteLength / rowCount;
    if (byteOffset % rowBytes !== 0 || target.length % rowBytes !== 0) throw new HerdError(`${info.file}: tensor ${info.name} must be read in whole rows`);
    for (let k = 0; k < target.length / rowBytes; k++) {
      const row = ggufRowOf(byteOffset / rowBytes + k, rowCount, heads);
      readRange(fd, info, row * rowBytes, target.subarray(k * rowBytes, (k + 1) * rowBytes));
    }
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
    this.cached = null;
  }

  private descriptor(info: GgufTensorInfo): number {
    let fd = this.fds.get(info.file);
    if (fd === undefined) {
      fd = openForReading(info.file);
      this.fds.set(info.file, fd);
    }
    return fd;
  }

  private info(hfName: string): GgufTensorInfo {
    const info = this.file.tensors.get(ggufNameOf(hfName));
    if (!info) throw new HerdError(`${this.file.file}: missing tensor ${ggufNameOf(hfName)} (${hfName})`);
    return info;
  }

  /** The stored bytes in HF row order; the last tensor is kept for the kernels' row-range reads. */
  private bytes(hfName: string): Uint8Array {
    if (this.cached?.name === hfName) return this.cached.bytes;
    const info = this.info(hfName);
    let bytes = readTensorBytes(this.descriptor(info), info);
    const heads = permutedHeadsOf(hfName, this.config);
    if (heads !== null) bytes = permuteRows(bytes, info.dims[1]!, heads, true);
    this.cached = { name: hfName, bytes };
    return bytes;
  }
}

function readTensorBytes(fd: number, info: GgufTensorInfo): Uint8Array {
  const bytes = new Uint8Array(info.byteLength);
  readRange(fd, info, 0, bytes);
  return bytes;
}

/** Fills `target` with the tensor's bytes from `byteOffset` on. */
function readRange(fd: number, info: GgufTensorInfo, byteOffset: number, target: Uint8Array): void {
  const file = info.file;
  if (byteOffset + target.length > info.byteLength) throw new HerdError(`${file}: read past the end of tensor ${info.name}`);
  let done = 0;
  while (done < target.length) {
    const read = fs.readSync(fd, target, done, target.length - done, info.begin + byteOffset + done);
    if (read === 0) throw new HerdError(`${file}: tensor ${info.name} is truncated`);
    done += read;
  }
}

/** The GGUF tensor types herd's kernels compute on as stored. */
const PACKED_FORMATS: Partial<Record<GgmlType, PackedFormat>> = {
  [GgmlType.F32]: 'F32', [GgmlType.F16]: 'F16', [GgmlType.Q8_0]: 'Q8_0', [GgmlType.Q4_0]: 'Q4_0', [GgmlType.Q4_K]: 'Q4_K',
  [GgmlType.BF16]: 'BF16', [GgmlType.Q4_1]: 'Q4_1', [GgmlType.Q5_0]: 'Q5_0', [GgmlType.Q5_1]: 'Q5_1', [GgmlType.IQ4_NL]: 'IQ4_NL',
  [GgmlType.Q6_K]: 'Q6_K', [GgmlType.Q5_K]: 'Q5_K', [GgmlType.Q3_K]: 'Q3_K', [GgmlType.Q2_K]: 'Q2_K', [GgmlType.IQ4_XS]: 'IQ4_XS',
};
