import { type Hardware, usableBytesPerDevice } from './hardware.js';

/**
 * Memory a workload needs as a function of its token count t on N devices:
 * (fixedSharded + perTokenSharded × t) / N + replicated + perTokenReplicated × t.
 * Inference: weights and KV cache split by tensor parallelism, runtime workspace on every device.
 * Training: weights, gradients and optimizer states split by FSDP / ZeRO-3, activations on every device.
 */
export interface MemoryDemand {
  fixedShardedBytes: number;
  perTokenShardedBytes: number;
  replicatedBytes: number;
  perTokenReplicatedBytes: number;
}

export interface FitResult {
  /** Whether it fits on the given devices at the requested token count. */
  fits: boolean;
  perDeviceBytes: number;
  usableBytesPerDevice: number;
  /** Most tokens that fit on the given devices, capped at the model's context; 0 if even the weights don't fit. */
  maxTokens: number;
  /** Fewest devices of this kind that hold the requested token count; null when no number does. */
  devicesNeeded: number | null;
}

export function perDeviceBytes(demand: MemoryDemand, devices: number, tokens: number): number {
  return (demand.fixedShardedBytes + demand.perTokenShardedBytes * tokens) / devices + demand.replicatedBytes + demand.perTokenReplicatedBytes * tokens;
}

export function checkFit(demand: MemoryDemand, hardware: Hardware, tokens: number, modelMaxTokens: number): FitResult {
  const usable = usableBytesPerDevice(hardware);
  const needed = perDeviceBytes(demand, hardware.devices, tokens);
  return {
    fits: needed <= usable,
    perDeviceBytes: needed,
    usableBytesPerDevice: usable,
    maxTokens: maxTokens(demand, hardware.devices, usable, modelMaxTokens),
    devicesNeeded: devicesNeeded(demand, usable, tokens),
  };
}

function maxTokens(demand: MemoryDemand, devices: number, usable: number, cap: number): number {
  const room = usable - demand.replicatedBytes - demand.fixedShardedBytes / devices;
  const perToken = demand.perTokenShardedBytes / devices + demand.perTokenReplicatedBytes;
  if (room <= 0) return 0;
  return perToken === 0 ? cap : Math.min(cap, Math.floor(room / perToken));
}

function devicesNeeded(demand: MemoryDemand, usable: number, tokens: number): number | null {
  const roomPerDevice = usable - demand.replicatedBytes - demand.perTokenReplicatedBytes * tokens;
  if (roomPerDevice <= 0) return null;
  return Math.max(1, Math.ceil((demand.fixedShardedBytes + demand.perTokenShardedBytes * tokens) / roomPerDevice));
}
