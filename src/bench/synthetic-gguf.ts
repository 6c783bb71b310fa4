import type { LlamaConfig } from '../spec/llama-config.js';
import { SyntheticWeights } from '../engine/synthetic.js';
import { HerdError } from '../errors.js';
import { GgmlType, writeGguf, type GgufTensorToWrite } from '../formats/gguf.js';
import { llamaMetadata, ropeFreqsTensor } from '../formats/gguf-llama.js';
import type { GgufMix } from '../formats/gguf-recipe.js';
import { ggufNameOf } from '../spec/tensors.js';
import { tokenizerMetadata } from '../formats/gguf-tokenizer.js';

const GGML_TYPES: Partial<Record<string, [GgmlType, GgufMix]>> = {
  F16: [GgmlType.F16, 'F16'], Q8_0: [GgmlType.Q8_0, 'Q8_0'], Q4_0: [GgmlType.Q4_0, 'Q4_0'], Q4_K: [GgmlType.Q4_K, 'Q4_K'],
};

/**
 * Writes a model of a published shape with random weights in one format as a GGUF file, with a
 * real tokenizer's metadata, so llama.cpp and herd can be timed on the very same file without
 * downloading a checkpoint. (Random rows need no q/k permutation: any order is as random.)
 */
export function writeSyntheticGguf(file: string, config: LlamaConfig, weights: SyntheticWeights, tokenizerDir: string, label: string): void {
  const format = weights.describePacked('model.layers.0.self_attn.q_proj.weight')!.format;
  const types = GGML_TYPES[format];
  if (types === undefined) throw new HerdError(`--write-gguf writes q8_0, q4_0, q4_k or f16 weights, not ${format}`);
  const [type, weightType] = types;
  const tensors: GgufTensorToWrite[] = weights.names().map((name) => {
    const packed = weights.describePacked(name);
    if (!packed) {
      const { shape, data } = weights.readFloat(name);
      return { name: ggufNameOf(name), type: GgmlType.F32, dims: [...shape].reverse(), bytes: new Uint8Array(data.buffer) };
    }
    const bytes = new Uint8Array(packed.byteLength);
    weights.readPackedInto(name, bytes);
    return { name: ggufNameOf(name), type, dims: [...packed.shape].reverse(), bytes };
  });
  const ropeFreqs = ropeFreqsTensor(config);
  if (ropeFreqs) tensors.unshift(ropeFreqs);
  const metadata = llamaMetadata(config, label, weightType);
  for (const [key, value] of tokenizerMetadata(tokenizerDir, config.bosTokenId, config.eosTokenIds)) metadata.set(key, value);
  writeGguf(file, metadata, tensors);
}
