import type { Ops } from '../src/engine/ops.js';
import { dequantizeGgml } from '../src/formats/ggml-dequantize.js';
import { GgmlType } from '../src/formats/gguf.js';
import type { HostTensor } from '../src/formats/safetensors.js';
import type { PackedFormat, PackedTensor, WeightSource } from '../src/formats/weights.js';

/** The formats a test can hold as stored bytes: every ggml layout the kernels take (not AWQ/GPTQ's int4 rows). */
export type StoredFormat = Exclude<PackedFormat, 'INT4_G128'>;

/**
 * Weights held in memory as stored, for the kernel tests: readFloat dequantizes them with the
 * formats layer's own dequantizer (held to ggml's block definitions by the ggml-*.test.ts files),
 * so a kernel's product can be compared with exact math on the very same weights.
 */
export class StoredWeights implements WeightSource {
  private readonly tensors = new Map<string, { format: StoredFormat; shape: number[]; bytes: Uint8Array }>();

  addPacked(name: string, format: StoredFormat, shape: number[], bytes: Uint8Array): this {
    this.tensors.set(name, { format, shape, bytes });
    return this;
  }

  /** Float values, kept as F32. */
  addFloat(name: string, shape: number[], values: Float32Array): this {
    return this.addPacked(name, 'F32', shape, new Uint8Array(Float32Array.from(values).buffer));
  }

  readFloat(name: string): HostTensor {
    const { format, shape, bytes } = this.tensor(name);
    return { name, shape, data: dequantizeGgml(GgmlType[format], bytes, shape.reduce((a, b) => a * b, 1)) };
  }

  describePacked(name: string): PackedTensor {
    const { format, shape, bytes } = this.tensor(name);
    return { format, shape, byteLength: bytes.length };
  }

  readPackedInto(name: string, target: Uint8Array, byteOffset = 0): void {
    target.set(this.tensor(name).bytes.subarray(byteOffset, byteOffset + target.length));
  }

  private tensor(name: string) {
    const tensor = this.tensors.get(name);
    if (!tensor) throw new Error(`no tensor ${name}`);
    return tensor;
  }
}

type AnyOps = Ops<unknown, unknown>;

/** y = x · Wᵀ on `ops` for x [tokens, cols] and the weight named `weight`; x enters as rows of an F32 table. */
export function linearOn(ops: AnyOps, source: StoredWeights, weight: string, x: Float32Array, cols: number): Float32Array {
  const tokens = x.length / cols;
  source.addFloat('x', [tokens, cols], x);
  const table = ops.embeddingWeight('x', source);
  const matrix = ops.linearWeight(weight, source);
  const y = ops.scope(() => ops.read(ops.linear(ops.embedding(table, Int32Array.from({ length: tokens }, (_, i) => i)), matrix)));
  ops.disposeWeight(table);
  ops.disposeWeight(matrix);
  return y;
}

/** In float64: the exact products y = x · Wᵀ, and Σ|w·x| per output, the scale of float32 rounding error. */
export function exactProducts(w: Float32Array, x: Float32Array, rows: number, cols: number): { exact: Float64Array; magnitude: Float64Array } {
  const tokens = x.length / cols;
  const exact = new Float64Array(rows * tokens), magnitude = new Float64Array(rows * tokens);
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) {
      let sum = 0, size = 0;
      for (let k = 0; k < cols; k++) {
        const product = w[r * cols + k]! * x[t * cols + k]!;
        sum += product;
        size += Math.abs(product);
      }
      exact[t * rows + r] = sum;
      magnitude[t * rows + r] = size;
    }
  }
  return { exact, magnitude };
}
