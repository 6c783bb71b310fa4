import os from 'node:os';
import { KernelOps } from '../kernels/wasm-ops.js';
import { loadNativeAddon, type NativeAddon } from '../native/addon.js';
import { percentile } from './serve-load.js';

/** One thread's reads in a bandwidth probe: `bytes` read from `start` to `end` (seconds, one clock for all threads). */
export interface ThreadReads {
  bytes: number;
  start: number;
  end: number;
}

/**
 * Bytes per second the threads read together: all their bytes over the wall time from the first
 * thread's start to the last one's end. Not the sum of each thread's own rate, which would count
 * threads that did not read at the same time as if they had.
 */
export function parallelReadRate(reads: readonly ThreadReads[]): number {
  const bytes = reads.reduce((total, read) => total + read.bytes, 0);
  const seconds = Math.max(...reads.map((read) => read.end)) - Math.min(...reads.map((read) => read.start));
  return bytes / seconds;
}

/** Which probe measured: the native addon's (its widest loads, on its own threads) or the WASM kernels' (128-bit loads). */
export type BandwidthProbe = 'native' | 'wasm';

export interface ReadBandwidth {
  bandwidth_probe: BandwidthProbe;
  bandwidth_threads: number;
  /** The best repetition's rate (the native probe's best of several; the WASM probe takes one). */
  read_bytes_per_second: number;
  /** The native probe's median repetition: on a machine whose bandwidth moves, how far the best one stands above the ordinary ones. */
  read_bytes_per_second_median?: number;
}


// Each thread's buffer: well beyond the L3 cache (32 MiB on the machines herd is measured on).
const BYTES_PER_THREAD = 256 * 2 ** 20;
const NATIVE_PASSES = 2;
const NATIVE_REPETITIONS = 5;

/** The machine's read bandwidth on `threads` threads: by the native addon's probe when it loads, else by the WASM kernels'. */
export async function measureReadBandwidth(threads: number | undefined): Promise<ReadBandwidth> {
  const { addon } = loadNativeAddon();
  if (addon) return nativeReadBandwidth(addon, threads ?? os.availableParallelism());
  const kernels = await KernelOps.create({ threads });
  try {
    return { bandwidth_probe: 'wasm', bandwidth_threads: kernels.threads, read_bytes_per_second: Math.round(kernels.measureReadBandwidth()) };
  } finally {
    await kernels.close();
  }
}

/** The best and the median of a few repetitions of the addon's probe; the addon's threads are put back as they were (a loaded model may use them). */
function nativeReadBandwidth(addon: NativeAddon, threads: number): ReadBandwidth {
  const before = addon.info().threads;
  addon.startThreads(threads);
  try {
    const intervals = addon.readBandwidth(BYTES_PER_THREAD, NATIVE_PASSES, NATIVE_REPETITIONS);
    const rates = Array.from({ length: NATIVE_REPETITIONS }, (_, repetition) =>
      parallelReadRate(
        Array.from({ length: threads }, (_, thread) => {
          const at = (repetition * threads + thread) * 2;
          return { bytes: BYTES_PER_THREAD * NATIVE_PASSES, start: intervals[at]!, end: intervals[at + 1]! };
        }),
      ),
    );
    return {
      bandwidth_probe: 'native',
      bandwidth_threads: threads,
      read_bytes_per_second: Math.round(Math.max(...rates)),
      read_bytes_per_second_median: Math.round(percentile(rates, 0.5)!),
    };
  } finally {
    addon.startThreads(before);
  }
}
