import os from 'node:os';
import { copyInto, kvCacheBytes, type AttentionSlice, type KvCache, type KvCacheShape, type KvCacheType, type Ops } from '../engine/ops.js';
import type { RopeTables } from '../engine/rope.js';
import type { PackedFormat, WeightSource } from '../formats/weights.js';
import { packedBytes } from '../formats/weights.js';
import { ActivationPool } from './activation-pool.js';
import { requireNativeAddon, type NativeAddon, type NativeInfo } from './addon.js';

/** Stored formats the native kernels compute on, with the codes of src/native/herd_native.h. */
export const NATIVE_FORMAT_CODES: Partial<Record<PackedFormat, number>> = {
  F32: 0, F16: 1, BF16: 2, Q8_0: 3, Q4_0: 4, Q4_K: 5,
  Q6_K: 6, Q5_K: 7, Q3_K: 8, Q2_K: 9,
  Q4_1: 10, Q5_0: 11, Q5_1: 12, IQ4_NL: 13, IQ4_XS: 14, INT4_G128: 15,
};

/** Most weights one linearMany call takes (MAX_LINEAR_OUTPUTS in src/native/addon.c). */
const MAX_LINEAR_OUTPUTS = 8;

/** Activations: float32 rows in host memory. */
export interface NativeTensor {
  data: Float32Array;
  rows: number;
  cols: number;
}

/** A weight as stored (format code and bytes), or a float vector. */
export interface NativeWeight {
  format: PackedFormat;
  /** The code the kernels compute with: the format's, or a load-time repacked layout's (src/native/repack.h). */
  code: number;
  bytes: Uint8Array;
  rows: number;
  cols: number;
  /** The bytes as floats, for 1-D weights (norm scales). */
  floats: Float32Array | null;
}

/** Keys and values of each layer, [kvHeads, capacity, headDim] as float32 or IEEE half. */
class NativeKvCache implements KvCache {
  length = 0;
  readonly bytes: number;
  readonly keys: Array<Float32Array | Uint16Array>;
  readonly values: Array<Float32Array | Uint16Array>;

  constructor(
    readonly shape: KvCacheShape,
    readonly f16: boolean,
  ) {
    const elements = shape.kvHeads * shape.capacity * shape.headDim;
    const make = () => (f16 ? new Uint16Array(elements) : new Float32Array(elements));
    this.keys = Array.from({ length: shape.layers }, make);
    this.values = Array.from({ length: shape.layers }, make);
    this.bytes = kvCacheBytes(shape, f16 ? 2 : 4);
  }

  dispose(): void {
    this.length = 0;
  }
}

export interface NativeOptions {
  /** Threads computing each op, the caller's included (default: the cores available). */
  threads?: number;
  kvCacheType?: KvCacheType;
  /** Where one-line notices go (default: stderr), e.g. that a weight type is widened to float32. */
  notice?: (line: string) => void;
}

/**
 * The model's ops on herd's native C kernels (src/native/*.c): weights stay as stored, in memory
 * outside the JavaScript heap, read once into place; every linear layer and attention is shared
 * out over one pool of native threads inside the addon, on the instruction-set path chosen at
 * load (NativeInfo). The smaller ops (norms, RoPE, SwiGLU) run on the calling thread.
 */
export class NativeOps implements Ops<NativeTensor, NativeWeight> {
  readonly name = 'native';
  /**
   * A quarter of the model's default part: the activations a part holds (ActivationPool) shrink
   * with it, from 23 MiB to 6 on the 1B shape, while a 512-token prefill there took 1-4 % more CPU
   * time than in parts of 128 (compute-bound either way; docs/performance.md, "Peak RSS").
   */
  readonly prefillChunkTokens = 32;
  private readonly notice: (line: string) => void;
  private readonly widenedTypes = new Set<string>();
  private readonly activations: ActivationPool;

  private constructor(
    private readonly addon: NativeAddon,
    private readonly options: NativeOptions,
  ) {
    this.notice = options.notice ?? ((line) => process.stderr.write(`herd: ${line}\n`));
    this.activations = new ActivationPool((buffer) => addon.discardPages(buffer));
  }

  static create(options: NativeOptions = {}): NativeOps {
    const addon = requireNativeAddon();
    addon.startThreads(Math.max(1, options.threads ?? os.availableParallelism()));
    return new NativeOps(addon, options);
  }

  /** The instruction-set path, why it was chosen, and the threads. */
  get info(): NativeInfo {
    return this.addon.info();
  }

  get threads(): number {
    return this.addon.info().threads;
  }

  /**
   * A matrix as stored, then repacked in place where the chosen path computes faster on another
   * layout (src/native/repack.h). HERD_NATIVE_REPACK=0 keeps the stored layout, to measure one
   * against the other.
   */
  linearWeight(name: string, source: WeightSource): NativeWeight {
    const weight = this.loadMatrix(name, source);
    if (process.env.HERD_NATIVE_REPACK === '0') return weight;
    return { ...weight, code: this.addon.repackRows(weight.code, weight.bytes, weight.rows, weight.cols, false) };
  }

  /** Repacked too: a tied output head is this table, and the addon looks rows up in either layout. */
  embeddingWeight(name: string, source: WeightSource): NativeWeight {
    return this.linearWeight(name, source);
  }

  vectorWeight(name: string, source: WeightSource): NativeWeight {
    const floats = source.readFloat(name).data.slice();
    return { format: 'F32', code: NATIVE_FORMAT_CODES.F32!, bytes: new Uint8Array(floats.buffer), rows: 1, cols: floats.length, floats };
  }

  /**
   * Reads a matrix's stored bytes straight into their final place (native memory, no float
   * copy); a stored type the kernels do not compute on is widened to float32, with a notice.
   */
  private loadMatrix(name: string, source: WeightSource): NativeWeight {
    const packed = source.describePacked?.(name) ?? null;
    if (packed && source.readPackedInto && NATIVE_FORMAT_CODES[packed.format] !== undefined) {
      const [rows, cols] = packed.shape as [number, number];
      const bytes = new Uint8Array(Buffer.allocUnsafeSlow(packedBytes(packed.format, rows, cols)).buffer);
      // Before the first write: 2 MiB pages where Linux gives them, as decode streams every weight once a token.
      this.addon.adviseHugePages(bytes);
      source.readPackedInto(name, bytes);
      return { format: packed.format, code: NATIVE_FORMAT_CODES[packed.format]!, bytes, rows, cols, floats: null };
    }
    if (packed && !this.widenedTypes.has(packed.format)) {
      this.widenedTypes.add(packed.format);
      this.notice(`the native kernels do not compute on ${packed.format} weights yet; widening them to float32 (4 bytes a weight)`);
    }
    const host = source.readFloat(name);
    const [rows, cols] = host.shape as [number, number];
    return { format: 'F32', code: NATIVE_FORMAT_CODES.F32!, bytes: new Uint8Array(host.data.buffer, host.data.byteOffset, host.data.byteLength), rows, cols, floats: null };
  }

  embedding(table: NativeWeight, ids: Int32Array): NativeTensor {
    const out = this.tensor(ids.length, table.cols);
    this.addon.embedding(table.code, table.bytes, table.rows, table.cols, ids, out.data);
    return out;
  }

  linear(x: NativeTensor, weight: NativeWeight): NativeTensor {
    const y = this.tensor(x.rows, weight.rows);
    this.addon.linear(weight.code, weight.bytes, weight.rows, weight.cols, x.data, x.rows, y.data);
    return y;
  }

  /**
   * The products of several weights with the same x (a layer's q/k/v, gate/up) in one call: the
   * activations are quantized once and the threads dispatched once. Weights of different formats
   * or widths go one at a time.
   */
  linearMany(x: NativeTensor, weights: readonly NativeWeight[]): NativeTensor[] {
    const [first] = weights;
    if (!first || weights.some((w) => w.code !== first.code || w.cols !== first.cols) || weights.length > MAX_LINEAR_OUTPUTS) return weights.map((w) => this.linear(x, w));
    const ys = weights.map((w) => this.tensor(x.rows, w.rows));
    this.addon.linearMany(
      first.code,
      weights.map((w) => w.bytes),
      weights.map((w) => w.rows),
      first.cols,
      x.data,
      x.rows,
      ys.map((y) => y.data),
    );
    return ys;
  }

  rmsNorm(x: NativeTensor, weight: NativeWeight, eps: number): NativeTensor {
    const y = this.tensor(x.rows, x.cols);
    this.addon.rmsnorm(x.data, weight.floats!, y.data, x.cols, eps);
    return y;
  }

  rope(x: NativeTensor, heads: number, tables: RopeTables): NativeTensor {
    const y = this.tensor(x.rows, x.cols);
    y.data.set(x.data);
    this.addon.rope(y.data, tables.cos, tables.sin, heads, tables.headDim);
    return y;
  }

  /** Each slice writes its rows' keys and values into its own cache and attends over it. */
  attention(q: NativeTensor, k: NativeTensor, v: NativeTensor, layer: number, slices: readonly AttentionSlice[]): NativeTensor {
    const out = this.tensor(q.rows, q.cols);
    let row = 0;
    for (const slice of slices) {
      const cache = slice.cache as NativeKvCache;
      const { kvHeads, headDim, capacity } = cache.shape;
      const rows = (x: NativeTensor) => x.data.subarray(row * x.cols, (row + slice.rows) * x.cols);
      this.addon.attention(cache.keys[layer]!, cache.values[layer]!, kvHeads, headDim, capacity, rows(q), rows(k), rows(v), rows(out), slice.start, q.cols / headDim);
      row += slice.rows;
    }
    return out;
  }

  swiglu(gate: NativeTensor, up: NativeTensor): NativeTensor {
    const out = this.tensor(gate.rows, gate.cols);
    this.addon.swiglu(gate.data, up.data, out.data);
    return out;
  }

  add(a: NativeTensor, b: NativeTensor): NativeTensor {
    const out = this.tensor(a.rows, a.cols);
    this.addon.add(a.data, b.data, out.data);
    return out;
  }

  lastRows(x: NativeTensor, count: number): NativeTensor {
    return { data: x.data.subarray((x.rows - count) * x.cols), rows: count, cols: x.cols };
  }

  pickRows(x: NativeTensor, rows: readonly number[]): NativeTensor {
    const y = this.tensor(rows.length, x.cols);
    rows.forEach((row, i) => y.data.set(x.data.subarray(row * x.cols, (row + 1) * x.cols), i * x.cols));
    return y;
  }

  read(x: NativeTensor, into?: Float32Array): Float32Array {
    return into ? copyInto(x.data, into) : x.data.slice();
  }

  createKvCache(shape: KvCacheShape): KvCache {
    return new NativeKvCache(shape, this.options.kvCacheType === 'f16');
  }

  /** Each kv head's first `positions` rows of every layer (the caches' capacities may differ). */
  copyKvCache(from: KvCache, to: KvCache, positions: number): void {
    const [source, target] = [from as NativeKvCache, to as NativeKvCache];
    const { kvHeads, headDim } = source.shape;
    for (let layer = 0; layer < source.shape.layers; layer++) {
      for (const [a, b] of [
        [source.keys[layer]!, target.keys[layer]!],
        [source.values[layer]!, target.values[layer]!],
      ] as const) {
        for (let g = 0; g < kvHeads; g++) {
          const from = g * source.shape.capacity * headDim;
          b.set(a.subarray(from, from + positions * headDim), g * target.shape.capacity * headDim);
        }
      }
    }
    to.length = positions;
  }

  /** The activations made inside go back to the pool (except those under what fn returns). */
  scope<R>(fn: () => R): R {
    return this.activations.scope(fn);
  }

  /** A layer's activations, and its input, go back to the pool as soon as it has run. */
  runLayer(input: NativeTensor, run: (input: NativeTensor) => NativeTensor): NativeTensor {
    const mark = this.activations.mark();
    const output = run(input);
    this.activations.endLayer(mark, input.data, output.data);
    return output;
  }

  /** Bytes of activation buffers the backend holds for reuse (the largest pass's working set). */
  get activationBytes(): number {
    return this.activations.bytes;
  }

  disposeWeight(): void {
    // The weight's bytes go with its last reference.
  }

  storedBytes(weight: NativeWeight): number {
    return weight.bytes.byteLength;
  }

  /** Ends the native threads; the backend computes on the calling thread alone afterwards. */
  async close(): Promise<void> {
    this.addon.stopThreads();
  }

  private tensor(rows: number, cols: number): NativeTensor {
    return { data: this.activations.take(rows * cols), rows, cols };
  }
}
