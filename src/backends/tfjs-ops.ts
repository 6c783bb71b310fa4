import * as tf from '@tensorflow/tfjs-core';
import { copyInto, kvCacheBytes, type AttentionSlice, type KvCache, type KvCacheShape, type Ops } from '../engine/ops.js';
import type { WeightSource } from '../formats/weights.js';
import type { RopeTables } from '../engine/rope.js';

/**
 * A weight on tfjs. Linear weights are stored transposed ([in, out]) because tfjs' matMul with
 * transposeB is several times slower for multi-row inputs; an embedding table stays [vocab, hidden]
 * for gather, and serves as a tied head through matMul(x, table, false, true).
 */
export interface TfjsWeight {
  tensor: tf.Tensor;
  layout: 'in-out' | 'out-in';
}

/** One layer's keys and values, [kvHeads, positions, headDim], kept across forward passes. */
interface TfjsLayerCache {
  keys: tf.Tensor3D | null;
  values: tf.Tensor3D | null;
}

class TfjsKvCache implements KvCache {
  length = 0;
  readonly layers: TfjsLayerCache[];
  readonly bytes: number;

  constructor(readonly shape: KvCacheShape) {
    this.layers = Array.from({ length: shape.layers }, () => ({ keys: null, values: null }));
    this.bytes = kvCacheBytes(shape, 4);
  }

  dispose(): void {
    for (const layer of this.layers) {
      layer.keys?.dispose();
      layer.values?.dispose();
      layer.keys = layer.values = null;
    }
    this.length = 0;
  }
}

/** The Ops of the model definition on whichever tfjs backend is active (tensorflow, wasm, cpu). */
export class TfjsOps implements Ops<tf.Tensor2D, TfjsWeight> {
  constructor(readonly name: string) {}

  linearWeight(name: string, source: WeightSource): TfjsWeight {
    const host = source.readFloat(name);
    const [out, inFeatures] = host.shape as [number, number];
    const tensor = tf.tidy(() => tf.transpose(tf.tensor2d(host.data, [out, inFeatures])));
    return { tensor, layout: 'in-out' };
  }

  embeddingWeight(name: string, source: WeightSource): TfjsWeight {
    const host = source.readFloat(name);
    return { tensor: tf.tensor2d(host.data, host.shape as [number, number]), layout: 'out-in' };
  }

  vectorWeight(name: string, source: WeightSource): TfjsWeight {
    return { tensor: tf.tensor1d(source.readFloat(name).data), layout: 'in-out' };
  }

  embedding(table: TfjsWeight, ids: Int32Array): tf.Tensor2D {
    return tf.gather(table.tensor, tf.tensor1d(ids, 'int32')) as tf.Tensor2D;
  }

  linear(x: tf.Tensor2D, weight: TfjsWeight): tf.Tensor2D {
    return tf.matMul(x, weight.tensor as tf.Tensor2D, false, weight.layout === 'out-in');
  }

  rmsNorm(x: tf.Tensor2D, weight: TfjsWeight, eps: number): tf.Tensor2D {
    const meanSquare = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps))), weight.tensor);
  }

  rope(x: tf.Tensor2D, heads: number, tables: RopeTables): tf.Tensor2D {
    const { count, headDim } = tables;
    const half = headDim / 2;
    const perHead = tf.reshape(x, [count, heads, headDim]);
    const cos = tf.tensor3d(tables.cos, [count, 1, headDim]);
    const sin = tf.tensor3d(tables.sin, [count, 1, headDim]);
    const firstHalf = tf.slice(perHead, [0, 0, 0], [count, heads, half]);
    const secondHalf = tf.slice(perHead, [0, 0, half], [count, heads, half]);
    const rotated = tf.concat([tf.neg(secondHalf), firstHalf], 2);
    return tf.reshape(tf.add(tf.mul(perHead, cos), tf.mul(rotated, sin)), [count, heads * headDim]);
  }

  /** Each slice attends on its own rows against its own cache; one slice needs no slicing (and keeps the training graph as it was). */
  attention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, layer: number, slices: readonly AttentionSlice[]): tf.Tensor2D {
    if (slices.length === 1) return attendOne(q, k, v, slices[0]!.cache, layer, slices[0]!.start);
    let first = 0;
    const outputs = slices.map(({ cache, start, rows }) => {
      const part = (x: tf.Tensor2D) => tf.slice(x, [first, 0], [rows, x.shape[1]]);
      const attended = attendOne(part(q), part(k), part(v), cache, layer, start);
      first += rows;
      return attended;
    });
    return tf.concat(outputs, 0);
  }

  swiglu(gate: tf.Tensor2D, up: tf.Tensor2D): tf.Tensor2D {
    return tf.mul(tf.mul(gate, tf.sigmoid(gate)), up);
  }

  add(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
    return tf.add(a, b);
  }

  lastRows(x: tf.Tensor2D, count: number): tf.Tensor2D {
    return tf.slice(x, [x.shape[0] - count, 0], [count, x.shape[1]]);
  }

  pickRows(x: tf.Tensor2D, rows: readonly number[]): tf.Tensor2D {
    return tf.gather(x, tf.tensor1d(Int32Array.from(rows), 'int32'));
  }

  read(x: tf.Tensor2D, into?: Float32Array): Float32Array {
    const values = x.dataSync() as Float32Array;
    return into ? copyInto(values, into) : values;
  }

  createKvCache(shape: KvCacheShape): KvCache {
    return new TfjsKvCache(shape);
  }

  copyKvCache(from: KvCache, to: KvCache, positions: number): void {
    const source = (from as TfjsKvCache).layers;
    (to as TfjsKvCache).layers.forEach((layer, index) => {
      for (const which of ['keys', 'values'] as const) {
        const kept = source[index]![which];
        layer[which]?.dispose();
        layer[which] = kept && positions > 0 ? tf.keep(tf.slice(kept, [0, 0, 0], [kept.shape[0], positions, kept.shape[2]])) : null;
      }
    });
    to.length = positions;
  }

  scope<R>(fn: () => R): R {
    tf.engine().startScope();
    try {
      return fn();
    } finally {
      tf.engine().endScope();
    }
  }

  disposeWeight(weight: TfjsWeight): void {
    weight.tensor.dispose();
  }

  storedBytes(weight: TfjsWeight): number {
    return weight.tensor.size * 4;
  }

  /** tfjs' backend is process-wide and starts no threads of herd's: nothing to end (weights go with disposeWeight). */
  async close(): Promise<void> {}
}

/**
 * Writes k and v into the cache of `layer` at positions start.., then returns causal grouped-query
 * attention of q over positions 0..start+rows-1.
 */
function attendOne(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, cache: KvCache, layer: number, start: number): tf.Tensor2D {
  const { kvHeads, headDim } = cache.shape;
  const rows = q.shape[0];
  const heads = q.shape[1] / headDim;
  const group = heads / kvHeads;
  const layerCache = (cache as TfjsKvCache).layers[layer]!;
  const keys = appendToCache(layerCache, 'keys', toHeads(k, kvHeads, headDim), start);
  const values = appendToCache(layerCache, 'values', toHeads(v, kvHeads, headDim), start);
  const positions = start + rows;

  // Query heads kvHead*group .. kvHead*group+group-1 share one key/value head (HF's repeat_kv).
  const queries = tf.reshape(toHeads(q, heads, headDim), [kvHeads, group * rows, headDim]);
  let scores = tf.mul(tf.matMul(queries, keys, false, true), 1 / Math.sqrt(headDim));
  if (rows > 1) {
    const masked = tf.add(tf.reshape(scores, [kvHeads, group, rows, positions]), causalMask(rows, start));
    scores = tf.reshape(masked, [kvHeads, group * rows, positions]);
  }
  const attended = tf.matMul(tf.softmax(scores), values);
  const perHead = tf.reshape(attended, [heads, rows, headDim]);
  return tf.reshape(tf.transpose(perHead, [1, 0, 2]), [rows, heads * headDim]);
}

/** [rows, heads * headDim] → [heads, rows, headDim]. */
function toHeads(x: tf.Tensor2D, heads: number, headDim: number): tf.Tensor3D {
  return tf.transpose(tf.reshape(x, [x.shape[0], heads, headDim]), [1, 0, 2]);
}

/**
 * Keeps positions 0..start-1 of the cached tensor, appends the new ones, and stores the result
 * outside the current scope so it survives the forward pass.
 */
function appendToCache(layer: TfjsLayerCache, which: 'keys' | 'values', fresh: tf.Tensor3D, start: number): tf.Tensor3D {
  const previous = layer[which];
  let kept: tf.Tensor3D | null = null;
  if (previous && start > 0) {
    kept = start === previous.shape[1] ? previous : tf.slice(previous, [0, 0, 0], [previous.shape[0], start, previous.shape[2]]);
  }
  const combined = tf.keep(kept ? tf.concat([kept, fresh], 1) : fresh.clone());
  previous?.dispose();
  layer[which] = combined;
  return combined;
}

/** Additive mask [rows, start+rows]: row i sees positions 0..start+i. */
function causalMask(rows: number, start: number): tf.Tensor2D {
  const positions = start + rows;
  const mask = new Float32Array(rows * positions);
  for (let i = 0; i < rows; i++) mask.fill(-Infinity, i * positions + start + i + 1, (i + 1) * positions);
  return tf.tensor2d(mask, [rows, positions]);
}
