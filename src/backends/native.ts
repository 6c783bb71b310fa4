import type { Ops } from '../engine/ops.js';
import { packedBytes, type PackedFormat } from '../formats/weights.js';
import { loadNativeAddon } from '../native/addon.js';
import { NATIVE_FORMAT_CODES, NativeOps } from '../native/native-ops.js';
import { float32Bytes, kernelKvElementBytes, type Backend, type BackendProbe } from './backend.js';

const computesOn = (format: PackedFormat): boolean => NATIVE_FORMAT_CODES[format] !== undefined;

/** herd's native C kernels (src/native) on a pool of native threads, on the weights as stored. */
export const NATIVE: Backend = {
  name: 'native',
  description: "herd's native C kernels on native threads, on the weights as stored",
  memory: 'host',
  probe: async () => probeNative(),
  computesOn,
  // Read once into place, as stored; other types are widened to float32.
  heldBytes: (format, rows, cols) => (computesOn(format) ? packedBytes(format, rows, cols) : float32Bytes(rows, cols)),
  kvElementBytes: kernelKvElementBytes,
  create: async (options) => NativeOps.create(options) as Ops<unknown, unknown>,
};

/** Whether the native kernels loaded, and the instruction-set path they chose and why. */
function probeNative(): BackendProbe {
  const { addon, reason } = loadNativeAddon();
  if (!addon) return { name: 'native', available: false, reason };
  const { isa, reason: why } = addon.info();
  const formats = Object.keys(NATIVE_FORMAT_CODES).join(', ');
  return { name: 'native', available: true, reason: `herd's native C kernels on the ${isa} path (${why}; ${formats} weights)` };
}
