import { randomFillSync } from 'node:crypto';
import { floatToHalf } from '../formats/half.js';
import { tensorShapes } from '../spec/tensors.js';
import type { LlamaConfig } from '../spec/llama-config.js';
import { packedBytes, type PackedFormat, type PackedTensor, type WeightSource } from '../formats/weights.js';
import type { HostTensor } from '../formats/safetensors.js';

/**
 * Each quantized format's block (weights) and where its f16 scales lie in it, with small values:
 * for unsigned codes with a min (Q4_K, Q5_K, Q2_K) a min that centres the weights near zero
 * (Q4_K: d · 31.5 · 7.5 ≈ dmin · 31.5).
 */
const BLOCK_SCALES: Partial<Record<PackedFormat, { weights: number; scales: Array<[number, number]> }>> = {
  Q8_0: { weights: 32, scales: [[0, 0.001]] },
  Q4_0: { weights: 32, scales: [[0, 0.001]] },
  Q4_K: { weights: 256, scales: [[0, 0.001], [2, 0.0075]] },
  Q6_K: { weights: 256, scales: [[208, 0.0001]] },
  Q5_K: { weights: 256, scales: [[0, 0.0005], [2, 0.00775]] },
  Q3_K: { weights: 256, scales: [[108, 0.001]] },
  Q2_K: { weights: 256, scales: [[80, 0.001], [82, 0.0015]] },
  IQ4_XS: { weights: 256, scales: [[0, 0.0001]] },
};

/** One stored format for every matrix, or a format per matrix (a llama.cpp mix such as Q4_K_M). */
export type SyntheticFormat = PackedFormat | ((name: string, shape: readonly number[]) => PackedFormat);

/**
 * Random weights of a model's exact shapes in stored formats, made as they are read: for
 * speed and memory benchmarks of model shapes nobody has to download ("random weights are fine
 * for speed"). Norms are ones so activations stay finite; block scales are small.
 */
export class SyntheticWeights implements WeightSource {
  private readonly shapes: Map<string, number[]>;

  constructor(config: LlamaConfig, private readonly format: SyntheticFormat) {
    this.shapes = tensorShapes(config);
  }

  private formatOf(name: string): PackedFormat {
    return typeof this.format === 'string' ? this.format : this.format(name, this.shape(name));
  }

  names(): string[] {
    return [...this.shapes.keys()];
  }

  readFloat(name: string): HostTensor {
    const shape = this.shape(name);
    const data = new Float32Array(shape.reduce((a, b) => a * b));
    if (shape.length === 1) data.fill(1);
    else for (let i = 0; i < data.length; i++) data[i] = (Math.random() - 0.5) * 0.04;
    return { name, shape, data };
  }

  describePacked(name: string): PackedTensor | null {
    const shape = this.shape(name);
    if (shape.length !== 2) return null;
    const format = this.formatOf(name);
    return { format, shape, byteLength: packedBytes(format, shape[0]!, shape[1]!) };
  }

  readPackedInto(name: string, target: Uint8Array, byteOffset = 0): void {
    randomFillSync(target);
    const format = this.formatOf(name);
    if (format === 'F16' || format === 'BF16' || format === 'F32') {
      tameFloats(format, target, byteOffset);
      return;
    }
    const { weights, scales } = BLOCK_SCALES[format]!;
    const blockBytes = packedBytes(format, 1, weights);
    for (let block = Math.ceil(byteOffset / blockBytes) * blockBytes - byteOffset; block < target.length; block += blockBytes) {
      for (const [at, value] of scales) {
        const half = floatToHalf(value);
        if (block + at + 1 < target.length) target.set([half & 0xff, half >> 8], block + at);
      }
    }
  }

  private shape(name: string): number[] {
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`no tensor ${name}`);
    return shape;
  }
}

/** Random bits make huge or NaN floats: keep the mantissa random under a fixed small exponent. */
function tameFloats(format: 'F32' | 'F16' | 'BF16', target: Uint8Array, byteOffset: number): void {
  if (format === 'F32') {
    for (let at = (4 - (byteOffset % 4)) % 4 + 3; at < target.length; at += 4) target[at] = (target[at]! & 0x80) | 0x3c;
    return;
  }
  // The high byte of each half holds sign and exponent (BF16: 0x3c ≈ 2^-7; F16: 0x20 ≈ 2^-7).
  const high = format === 'BF16' ? 0x3c : 0x20;
  for (let at = (byteOffset % 2 === 0 ? 1 : 0); at < target.length; at += 2) target[at] = (target[at]! & 0x80) | high;
}
