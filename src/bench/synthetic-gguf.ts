import type { LlamaConfig } from '../spec/llama-config.js';
import type { SyntheticFormat, SyntheticWeights } from '../engine/synthetic.js';
import { HerdError } from '../errors.js';
import { GgmlType, writeGguf, type GgufTensorToWrite } from '../formats/gguf.js';
import { llamaMetadata, ropeFreqsTensor } from '../formats/gguf-llama.js';
import { ggmlTypeFor, type GgufMix } from '../formats/gguf-recipe.js';
import type { PackedFormat } from '../formats/weights.js';
import { ggufNameOf } from '../spec/tensors.js';
import { tokenizerMetadata } from '../formats/gguf-tokenizer.js';

/** The one-format GGUF files --write-gguf writes, and the mix each is written as. */
const SINGLE_FORMAT_MIXES: Partial<Record<PackedFormat, GgufMix>> = { F16: 'F16', Q8_0: 'Q8_0', Q4_0: 'Q4_0', Q4_K: 'Q4_K' };

/** The mixes --synthetic makes besides one format for every matrix. */
export const SYNTHETIC_MIXES = { q4_k_m: 'Q4_K_M' } as const satisfies Record<string, GgufMix>;

/**
 * Each matrix's stored format in a llama.cpp mix (Q4_K_M: Q6_K for the output and some attn_v and
 * ffn_down), as llama-quantize would choose it for `config`'s model.
 */
export function mixFormat(config: LlamaConfig, mix: GgufMix): SyntheticFormat {
  return (name, shape) => GgmlType[ggmlTypeFor(mix, ggufNameOf(name), shape, config, false)] as PackedFormat;
}

/**
 * Writes a model of a published shape with random weights as a GGUF file, with a real
 * tokenizer's metadata, so llama.cpp and herd can be timed on the very same file without
 * downloading a checkpoint. `mix` is the file type it declares: one of the single formats, or the
 * mix `weights` was made in. (Random rows need no q/k permutation: any order is as random.)
 */
export function writeSyntheticGguf(file: string, config: LlamaConfig, weights: SyntheticWeights, tokenizerDir: string, label: string, mix?: GgufMix): void {
  const format = weights.describePacked('model.layers.0.self_attn.q_proj.weight')!.format;
  const fileMix = mix ?? SINGLE_FORMAT_MIXES[format];
  if (fileMix === undefined) throw new HerdError(`--write-gguf writes q8_0, q4_0, q4_k, q4_k_m or f16 weights, not ${format}`);
  const tensors: GgufTensorToWrite[] = weights.names().map((name) => {
    const packed = weights.describePacked(name);
    if (!packed) {
      const { shape, data } = weights.readFloat(name);
      return { name: ggufNameOf(name), type: GgmlType.F32, dims: [...shape].reverse(), bytes: new Uint8Array(data.buffer) };
    }
    const bytes = new Uint8Array(packed.byteLength);
    weights.readPackedInto(name, bytes);
    return { name: ggufNameOf(name), type: GgmlType[packed.format as keyof typeof GgmlType], dims: [...packed.shape].reverse(), bytes };
  });
  const ropeFreqs = ropeFreqsTensor(config);
  if (ropeFreqs) tensors.unshift(ropeFreqs);
  const metadata = llamaMetadata(config, label, fileMix);
  for (const [key, value] of tokenizerMetadata(tokenizerDir, config.bosTokenId, config.eosTokenIds)) metadata.set(key, value);
  writeGguf(file, metadata, tensors);
}
