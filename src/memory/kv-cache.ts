import { HerdError } from '../errors.js';
import type { LlamaConfig } from '../spec/llama-config.js';

/** Bits per cached element (fp32 is what herd's own engine keeps); q8_0 and q4_0 are llama.cpp's quantized caches, block scales included. */
export const KV_CACHE_BITS = { fp32: 32, fp16: 16, bf16: 16, fp8: 8, q8_0: 8.5, q4_0: 4.5 } as const;
export type KvCacheDtype = keyof typeof KV_CACHE_BITS;
export const KV_CACHE_DTYPES = Object.keys(KV_CACHE_BITS) as KvCacheDtype[];

export function parseKvDtype(text: string): KvCacheDtype {
  const id = text.toLowerCase();
  if (Object.hasOwn(KV_CACHE_BITS, id)) return id as KvCacheDtype;
  throw new HerdError(`unknown KV cache type "${text}"; choose from ${KV_CACHE_DTYPES.join(', ')}`);
}

/** 2 (K and V) × layers × kv_heads × head_dim × bytes: what one token of one sequence costs. */
export function kvBytesPerToken(arch: LlamaConfig, dtype: KvCacheDtype): number {
  return (2 * arch.numHiddenLayers * arch.numKeyValueHeads * arch.headDim * KV_CACHE_BITS[dtype]) / 8;
}

export function kvCacheBytes(arch: LlamaConfig, dtype: KvCacheDtype, tokens: number, batch: number): number {
  return kvBytesPerToken(arch, dtype) * tokens * batch;
}
