import os from 'node:os';
import { kvCacheBytes, type KvCacheShape, type KvCacheType } from '../engine/ops.js';
import type { StoredTensor } from '../engine/load.js';
import { HerdError } from '../errors.js';
import { float32Bytes, type Backend } from './backend.js';

/** What holding a model costs a backend: its weights as it keeps them, and one KV cache of the context asked. */
export interface MemoryNeed {
  weightBytes: number;
  kvCacheBytes: number;
}

/** `heldBytes` (optional): what a weight costs instead, given what the backend would hold (a decorator that keeps some weights its own way). */
export function memoryNeed(
  backend: Backend,
  tensors: readonly StoredTensor[],
  kvCache: { shape: KvCacheShape; type?: KvCacheType },
  heldBytes: (tensor: StoredTensor, backendBytes: number) => number = (_tensor, bytes) => bytes,
): MemoryNeed {
  const weightBytes = tensors.reduce((sum, tensor) => sum + heldBytes(tensor, tensorHeldBytes(backend, tensor.format, tensor.shape)), 0);
  return { weightBytes, kvCacheBytes: kvCacheBytes(kvCache.shape, backend.kvElementBytes(kvCache.type)) };
}

/** Matrices as the backend keeps them; 1-D weights (norm scales) are float32 on every backend. */
function tensorHeldBytes(backend: Backend, format: StoredTensor['format'], shape: readonly number[]): number {
  if (shape.length !== 2) return float32Bytes(1, shape.reduce((a, b) => a * b, 1));
  return backend.heldBytes(format, shape[0]!, shape[1]!);
}

/** The memory a model must fit in, and what the figure is (for the refusal's wording). */
export interface MachineMemory {
  bytes: number;
  source: string;
}

/**
 * The machine's total memory, or the container's limit when that is lower; HERD_MEMORY_LIMIT
 * (bytes) sets a lower one (to leave room for other work, and for tests). Total rather than free:
 * the check refuses what can never fit. Free memory moves by the minute on a shared machine and
 * leaves out the page cache and idle processes' pages the kernel hands back when a model needs
 * them, so a model that would load could be refused.
 */
export function machineMemory(env: NodeJS.ProcessEnv = process.env): MachineMemory {
  const forced = env.HERD_MEMORY_LIMIT;
  if (forced !== undefined) {
    if (!/^\d+$/.test(forced.trim()) || Number(forced) <= 0) throw new HerdError(`HERD_MEMORY_LIMIT="${forced}" must be a positive number of bytes`);
    return { bytes: Number(forced), source: 'HERD_MEMORY_LIMIT allows' };
  }
  const total = os.totalmem();
  // Node reports 2^64 (or 0) when no control group limits the process.
  const limit = process.constrainedMemory?.() ?? 0;
  if (limit > 0 && limit < total) return { bytes: limit, source: "this process's memory limit (cgroup) is" };
  return { bytes: total, source: 'this machine has' };
}

/** Refuses, with the numbers, a model the backend would keep in more host memory than there is. */
export function checkFitsInMemory(backend: Backend, need: MemoryNeed, memory: MachineMemory): void {
  if (backend.memory !== 'host' || need.weightBytes + need.kvCacheBytes <= memory.bytes) return;
  throw new HerdError(
    `the model does not fit in memory: on the ${backend.name} backend it needs ${sizeText(need.weightBytes)} for weights + ${sizeText(need.kvCacheBytes)} KV cache; ${memory.source} ${sizeText(memory.bytes)}`,
    { kind: 'model' },
  );
}

/** GiB with one decimal, or MiB below one GiB (so a small model's figures never read as 0.0). */
export function sizeText(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
