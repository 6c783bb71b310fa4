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
  /** RMSNorm over the last axis in float32: x / sqrt(mean(x²) + eps) * weight. */
  rmsNorm(x: T, weight: W, eps: number): T;
  /** Rotary embedding with HF's rotate_half on x [rows, heads * headDim], one table row per row of x. */
  rope(x: T, heads: number, tables: RopeTables): T;
  /**
   * Writes k and v ([rows, kvHeads * headDim]) into the cache of `layer` at positions
   * start..start+rows-1, then returns causal grouped-query attention of q over positions
   * 0..start+rows-1: [rows, heads * headDim].
   */
  attention(q: T, k: T, v: T, cache: KvCache, layer: number, start: number): T;
  /** silu(gate) * up, elementwise. */
  swiglu(gate: T, up: T): T;
  add(a: T, b: T): T;
  /** The last `count` rows of x. */
  lastRows(x: T, count: number): T;
  /** Copies x to host memory, row-major. */
  read(x: T): Float32Array;

  createKvCache(shape: KvCacheShape): KvCache;
  /** Runs fn and frees every intermediate tensor it made, except what it returns (host data). */
  scope<R>(fn: () => R): R;
  /** Frees a weight. */
  disposeWeight(weight: W): void;
  /**
   * Runs one decoder layer on `input`. Optional: a backend may use the layer's boundary to manage
   * memory. A training backend keeps only the layer's input and recomputes the layer in the
   * backward pass (gradient checkpointing); the CPU kernels free the layer's intermediate results.
   */
  runLayer?(input: T, run: (input: T) => T): T;
  /** Bytes the backend holds for a weight (as it computes on it: float32 on tfjs, as stored on the kernels). */
  storedBytes(weight: W): number;
}

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
  dispose(): void;
}
