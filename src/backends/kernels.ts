import type { Ops } from '../engine/ops.js';
import { kernelsComputeOn, storageBytes } from '../kernels/linear.js';
import { KernelOps } from '../kernels/wasm-ops.js';
import { kernelModule } from '../kernels/wasm-memory.js';
import { float32Bytes, kernelKvElementBytes, type Backend, type BackendProbe } from './backend.js';

/** herd's WASM SIMD kernels on worker threads: every float and quantized type herd reads, as stored. */
export const KERNELS: Backend = {
  name: 'kernels',
  description: "herd's WASM SIMD kernels on worker threads, on the weights as stored",
  memory: 'host',
  probe: async () => probeKernels(),
  computesOn: kernelsComputeOn,
  // As the kernels place it (Q4_K's scales unpacked, row groups padded).
  heldBytes: (format, rows, cols) => (kernelsComputeOn(format) ? storageBytes(format, rows, cols) : float32Bytes(rows, cols)),
  kvElementBytes: kernelKvElementBytes,
  create: async (options) => (await KernelOps.create(options)) as Ops<unknown, unknown>,
};

function probeKernels(): BackendProbe {
  try {
    kernelModule();
    return { name: 'kernels', available: true, reason: "herd's WASM SIMD kernels (float, 8-bit, 4-bit and K-quant weights as stored)" };
  } catch (error) {
    return { name: 'kernels', available: false, reason: (error as Error).message };
  }
}
