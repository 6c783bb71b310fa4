import type { KernelInstance } from './wasm-memory.js';

/**
 * The KV cache of some kv heads (all of them on one thread; a share of them per thread
 * otherwise), for every layer, in one instance's memory: per layer, keys and values of
 * [kvHeads, capacity, headDim], stored as F32 (kvDtype 0) or F16 (kvDtype 1).
 */
export interface CacheShard {
  layers: Array<{ keys: number; values: number }>;
  kvHeads: number;
  headDim: number;
  capacity: number;
  kvDtype: number;
}

export function allocateCacheShard(instance: KernelInstance, shape: Omit<CacheShard, 'layers'>, layers: number): CacheShard {
  const bytes = cacheBlockBytes(shape);
  return { ...shape, layers: Array.from({ length: layers }, () => ({ keys: instance.allocate(bytes), values: instance.allocate(bytes) })) };
}

export function freeCacheShard(instance: KernelInstance, shard: CacheShard): void {
  const bytes = cacheBlockBytes(shard);
  for (const { keys, values } of shard.layers) {
    instance.free(keys, bytes);
    instance.free(values, bytes);
  }
}

/** Copies positions 0..positions-1 of every layer's keys and values between two shards of the same heads in one instance (capacities may differ). */
export function copyCacheShard(instance: KernelInstance, from: CacheShard, to: CacheShard, positions: number): void {
  const elementBytes = from.kvDtype === 1 ? 2 : 4;
  const headBytes = (shard: CacheShard) => shard.capacity * shard.headDim * elementBytes;
  const length = positions * from.headDim * elementBytes;
  const memory = instance.bytes(0, instance.kernels.memory.buffer.byteLength);
  from.layers.forEach((layer, index) => {
    for (const which of ['keys', 'values'] as const) {
      for (let head = 0; head < from.kvHeads; head++) {
        const source = layer[which] + head * headBytes(from);
        memory.copyWithin(to.layers[index]![which] + head * headBytes(to), source, source + length);
      }
    }
  });
}

function cacheBlockBytes({ kvHeads, capacity, headDim, kvDtype }: Omit<CacheShard, 'layers'>): number {
  return kvHeads * capacity * headDim * (kvDtype === 1 ? 2 : 4);
}

/**
 * Writes the shard's heads of k and v ([rows, kvHeads · headDim] at `k`, `v`) into `layer` at
 * positions start.., then writes causal attention of q ([rows, kvHeads · group · headDim], `group`
 * query heads per kv head) over positions 0..start+rows-1 to `out` (same shape as q). Offsets
 * are in the instance's memory; runs inside its scratch scope.
 */
export function attendShard(instance: KernelInstance, shard: CacheShard, layer: number, group: number, q: number, k: number, v: number, out: number, rows: number, start: number): void {
  const { kvHeads, headDim, capacity, kvDtype } = shard;
  const { keys, values } = shard.layers[layer]!;
  const kernels = instance.kernels;
  kernels.cache_write(kvDtype, k, keys, rows, start, kvHeads, headDim, capacity);
  kernels.cache_write(kvDtype, v, values, rows, start, kvHeads, headDim, capacity);
  const scores = instance.scratch(group * (start + rows) * 4);
  kernels.attention(kvDtype, q, keys, values, out, scores, rows, start, kvHeads * group, kvHeads, headDim, capacity);
}
