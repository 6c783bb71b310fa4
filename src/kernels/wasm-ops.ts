import { HerdError } from '../errors.js';
import type { KvCache, KvCacheShape, Ops, PackedFormat, WeightSource } from '../engine/ops.js';
import type { RopeTables } from '../engine/rope.js';
import { KernelInstance } from './wasm-memory.js';

/** Activations: float32 rows in the kernels' memory. */
export interface KernelTensor {
  offset: number;
  rows: number;
  cols: number;
}

/** A weight as stored (floats or GGUF blocks), rows of [out, in], in the kernels' memory. */
export interface KernelWeight {
  offset: number;
  byteLength: number;
  format: PackedFormat;
  rows: number;
  cols: number;
}

const FLOAT_DTYPE_CODE: Partial<Record<PackedFormat, number>> = { F32: 0, F16: 1, BF16: 2 };
// GGML type ids, as the kernels take them.
const QUANT_FORMAT_CODE: Partial<Record<PackedFormat, number>> = { Q8_0: 8, Q4_0: 2 };
const QUANT_BLOCK = 32;

class KernelKvCache implements KvCache {
  length = 0;

  constructor(
    readonly shape: KvCacheShape,
    readonly layers: Array<{ keys: number; values: number }>,
    private readonly release: () => void,
  ) {}

  dispose(): void {
    this.release();
    this.length = 0;
  }
}

/**
 * The model's ops on herd's WASM SIMD kernels: linear layers compute directly on the stored
 * weights (F32, F16, BF16, Q8_0, Q4_0) without a float copy.
 */
export class KernelOps implements Ops<KernelTensor, KernelWeight> {
  readonly name = 'kernels';
  private readonly instance = new KernelInstance();

  linearWeight(name: string, source: WeightSource): KernelWeight {
    const packed = source.describePacked?.(name);
    if (packed && source.readPackedInto) {
      const offset = this.instance.allocate(packed.byteLength);
      source.readPackedInto(name, this.instance.bytes(offset, packed.byteLength));
      const [rows, cols] = packed.shape as [number, number];
      return { offset, byteLength: packed.byteLength, format: packed.format, rows, cols };
    }
    return this.floatWeight(name, source);
  }

  embeddingWeight(name: string, source: WeightSource): KernelWeight {
    return this.linearWeight(name, source);
  }

  vectorWeight(name: string, source: WeightSource): KernelWeight {
    return this.floatWeight(name, source);
  }

  embedding(table: KernelWeight, ids: Int32Array): KernelTensor {
    const idsOffset = this.instance.scratch(ids.byteLength);
    new Int32Array(this.instance.kernels.memory.buffer, idsOffset, ids.length).set(ids);
    const out = this.tensor(ids.length, table.cols);
    const floatCode = FLOAT_DTYPE_CODE[table.format];
    if (floatCode !== undefined) this.instance.kernels.embedding_float(floatCode, table.offset, idsOffset, out.offset, table.cols, ids.length);
    else this.instance.kernels.embedding_q(quantCode(table), table.offset, idsOffset, out.offset, table.cols, ids.length);
    return out;
  }

  linear(x: KernelTensor, weight: KernelWeight): KernelTensor {
    const y = this.tensor(x.rows, weight.rows);
    const kernels = this.instance.kernels;
    const floatCode = FLOAT_DTYPE_CODE[weight.format];
    if (floatCode !== undefined) {
      kernels.linear_float(floatCode, weight.offset, x.offset, y.offset, weight.cols, weight.rows, x.rows, 0, weight.rows);
      return y;
    }
    // Quantized weights multiply activations quantized to Q8_0 blocks, as llama.cpp does.
    const quantized = this.instance.scratch(x.rows * x.cols);
    const scales = this.instance.scratch((x.rows * x.cols) / QUANT_BLOCK * 4);
    kernels.quantize_q8_rows(x.offset, quantized, scales, x.cols, x.rows);
    kernels.linear_q(quantCode(weight), weight.offset, quantized, scales, y.offset, weight.cols, weight.rows, x.rows, 0, weight.rows);
    return y;
  }

  rmsNorm(x: KernelTensor, weight: KernelWeight, eps: number): KernelTensor {
    const y = this.tensor(x.rows, x.cols);
    this.instance.kernels.rmsnorm(x.offset, weight.offset, y.offset, x.cols, x.rows, eps);
    return y;
  }

  rope(x: KernelTensor, heads: number, tables: RopeTables): KernelTensor {
    const y = this.copy(x);
    const cos = this.upload(tables.cos);
    const sin = this.upload(tables.sin);
    this.instance.kernels.rope(y.offset, cos, sin, x.rows, heads, tables.headDim);
    return y;
  }

  attention(q: KernelTensor, k: KernelTensor, v: KernelTensor, cache: KvCache, layer: number, start: number): KernelTensor {
    const { kvHeads, headDim, capacity } = cache.shape;
    const storage = (cache as KernelKvCache).layers[layer]!;
    const kernels = this.instance.kernels;
    kernels.cache_write(k.offset, storage.keys, k.rows, start, kvHeads, headDim, capacity);
    kernels.cache_write(v.offset, storage.values, v.rows, start, kvHeads, headDim, capacity);
    const out = this.tensor(q.rows, q.cols);
    const scores = this.instance.scratch((start + q.rows) * 4);
    kernels.attention(q.offset, storage.keys, storage.values, out.offset, scores, q.rows, start, q.cols / headDim, kvHeads, headDim, capacity);
    return out;
  }

  swiglu(gate: KernelTensor, up: KernelTensor): KernelTensor {
    const out = this.tensor(gate.rows, gate.cols);
    this.instance.kernels.swiglu(gate.offset, up.offset, out.offset, gate.rows * gate.cols);
    return out;
  }

  add(a: KernelTensor, b: KernelTensor): KernelTensor {
    const out = this.tensor(a.rows, a.cols);
    this.instance.kernels.add(a.offset, b.offset, out.offset, a.rows * a.cols);
    return out;
  }

  lastRows(x: KernelTensor, count: number): KernelTensor {
    return { offset: x.offset + (x.rows - count) * x.cols * 4, rows: count, cols: x.cols };
  }

  read(x: KernelTensor): Float32Array {
    return this.instance.floats(x.offset, x.rows * x.cols).slice();
  }

  createKvCache(shape: KvCacheShape): KvCache {
    const bytes = shape.kvHeads * shape.capacity * shape.headDim * 4;
    const layers = Array.from({ length: shape.layers }, () => ({ keys: this.instance.allocate(bytes), values: this.instance.allocate(bytes) }));
    return new KernelKvCache(shape, layers, () => {
      for (const { keys, values } of layers) {
        this.instance.free(keys, bytes);
        this.instance.free(values, bytes);
      }
    });
  }

  scope<R>(fn: () => R): R {
    return this.instance.scope(fn);
  }

  disposeWeight(weight: KernelWeight): void {
    this.instance.free(weight.offset, weight.byteLength);
  }

  private floatWeight(name: string, source: WeightSource): KernelWeight {
    const host = source.readFloat(name);
    const offset = this.instance.allocate(host.data.byteLength);
    this.instance.floats(offset, host.data.length).set(host.data);
    const [rows, cols] = host.shape.length === 2 ? (host.shape as [number, number]) : [1, host.shape[0]!];
    return { offset, byteLength: host.data.byteLength, format: 'F32', rows, cols };
  }

  private tensor(rows: number, cols: number): KernelTensor {
    return { offset: this.instance.scratch(rows * cols * 4), rows, cols };
  }

  private copy(x: KernelTensor): KernelTensor {
    const y = this.tensor(x.rows, x.cols);
    this.instance.bytes(y.offset, x.rows * x.cols * 4).set(this.instance.bytes(x.offset, x.rows * x.cols * 4));
    return y;
  }

  private upload(values: Float32Array): number {
    const offset = this.instance.scratch(values.byteLength);
    this.instance.floats(offset, values.length).set(values);
    return offset;
  }
}

function quantCode(weight: KernelWeight): number {
  const code = QUANT_FORMAT_CODE[weight.format];
  if (code === undefined) throw new HerdError(`the CPU kernels cannot compute on ${weight.format} weights`);
  if (weight.cols % QUANT_BLOCK !== 0) throw new HerdError(`${weight.format} rows must be a multiple of ${QUANT_BLOCK} long, got ${weight.cols}`);
  return code;
}
