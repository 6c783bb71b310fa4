import { HerdError } from '../errors.js';
import type { WeightSource } from '../formats/weights.js';
import type { RopeTables } from './rope.js';

/**
 * The operations the one Llama model definition (model.ts) is written in. A backend implements
 * these on its own tensor type `T` (activations, shape [rows, features]) and weight type `W`;
 * the model never sees how either is stored, so tfjs and the WASM kernels plug in beneath the
 * same forward pass.
 */
export interface Ops<T, W> {
  /** Backend name as `herd env` and `--json` timings report it. */
  readonly name: string;
  /**
   * Tokens per pass through the layers the backend prefers for a long input (absent: the model's
   * PREFILL_CHUNK_TOKENS). The activations a pass holds grow with its tokens.
   */
  readonly prefillChunkTokens?: number;

  /**
   * Takes the weight `name` of nn.Linear layout [out, in] from the source into the backend. The
   * backend chooses how to read it: as float32, or (for kernels on packed weights) as stored.
   */
  linearWeight(name: string, source: WeightSource): W;
  /** An embedding table [vocab, hidden]; `linear` accepts it as a head when embeddings are tied. */
  embeddingWeight(name: string, source: WeightSource): W;
  /** A 1-D weight such as an RMSNorm scale. */
  vectorWeight(name: string, source: WeightSource): W;

  /** Rows of the table for each id: [ids.length, hidden]. */
  embedding(table: W, ids: Int32Array): T;
  /** x · Wᵀ for x [rows, in] and W [out, in]: [rows, out]. */
  linear(x: T, weight: W): T;
  /**
   * Optional: `linear` of x with each weight (a layer's q/k/v, or gate/up), equal to calling it
   * for each; a backend has it when one call costs less (the native kernels quantize x once and
   * dispatch their threads once).
   */
  linearMany?(x: T, weights: readonly W[]): T[];
  /** RMSNorm over the last axis in float32: x / sqrt(mean(x²) + eps) * weight. */
  rmsNorm(x: T, weight: W, eps: number): T;
  /** Rotary embedding with HF's rotate_half on x [rows, heads * headDim], one table row per row of x. */
  rope(x: T, heads: number, tables: RopeTables): T;
  /**
   * Causal grouped-query attention of several sequences at once. The rows of q, k and v are the
   * slices' rows one after another; for each slice, its k and v rows ([rows, kvHeads * headDim])
   * go into its cache's `layer` at positions start..start+rows-1, and its q rows attend over its
   * own cache's positions 0..start+rows-1 only. Returns [all rows, heads * headDim]. One slice is
   * the single-sequence forward.
   */
  attention(q: T, k: T, v: T, layer: number, slices: readonly AttentionSlice[]): T;
  /** silu(gate) * up, elementwise. */
  swiglu(gate: T, up: T): T;
  add(a: T, b: T): T;
  /** The last `count` rows of x. */
  lastRows(x: T, count: number): T;
  /** Rows `rows` of x, in that order (the positions of a batch whose logits are wanted). */
  pickRows(x: T, rows: readonly number[]): T;
  /** Copies x to host memory, row-major: into `into` (exactly x's size) when given, else a new array. */
  read(x: T, into?: Float32Array): Float32Array;

  createKvCache(shape: KvCacheShape): KvCache;
  /**
   * Copies the keys and values of positions 0..positions-1 of every layer from one cache into
   * another of the same backend and shape (capacities may differ), and sets `to.length`.
   */
  copyKvCache(from: KvCache, to: KvCache, positions: number): void;
  /** Runs fn and frees every intermediate tensor it made, except what it returns (host data). */
  scope<R>(fn: () => R): R;
  /** Frees a weight. */
  disposeWeight(weight: W): void;
  /**
   * Runs one decoder layer on `input`. Optional: a backend may use the layer's boundary to manage
   * memory. A training backend keeps only the layer's input and recomputes the layer in the
   * backward pass (gradient checkpointing); the CPU kernels free the layer's intermediate results.
   * The model reads `input` no more once the layer has run, so the native kernels reuse its memory.
   */
  runLayer?(input: T, run: (input: T) => T): T;
  /** Bytes the backend holds for a weight (as it computes on it: float32 on tfjs, as stored on the kernels). */
  storedBytes(weight: W): number;
  /**
   * Ends what the backend started (worker or native threads). Commands call it when they end;
   * a closed backend may still compute, on the calling thread alone, or not at all.
   */
  close(): Promise<void>;
}

/** How a KV cache stores keys and values: float32, or IEEE half (half the memory, as llama.cpp's default). */
export type KvCacheType = 'f32' | 'f16';
export const KV_CACHE_TYPES: readonly KvCacheType[] = ['f32', 'f16'];

export interface KvCacheShape {
  layers: number;
  kvHeads: number;
  headDim: number;
  /** Most positions the cache will hold. */
  capacity: number;
}

/**
 * Keys and values of the positions already computed. `length` is how many positions are valid;
 * lowering it (as eval does to reuse a shared context) makes the next forward overwrite the rest.
 */
export interface KvCache {
  readonly shape: KvCacheShape;
  length: number;
  /** Bytes the cache holds when full (what keeping it costs). */
  readonly bytes: number;
  dispose(): void;
}

/** One sequence's rows in a batched attention: its cache, and where in it those rows go. */
export interface AttentionSlice {
  cache: KvCache;
  /** Positions the cache held before these rows. */
  start: number;
  rows: number;
}

/** Bytes of a full cache of `shape` at `elementBytes` per stored key or value element. */
export function kvCacheBytes({ layers, kvHeads, headDim, capacity }: KvCacheShape, elementBytes: number): number {
  return 2 * layers * kvHeads * headDim * capacity * elementBytes;
}

/** Ops.read's `into`: the values copied into the caller's array, which must be exactly their size. */
export function copyInto(values: Float32Array, into: Float32Array): Float32Array {
  if (into.length !== values.length) throw new HerdError(`read into an array of ${into.length} floats; the tensor has ${values.length}`);
  into.set(values);
  return into;
}
