import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { HerdError } from '../errors.js';

/** The N-API surface of src/native/addon.c. Arrays are passed by reference; sizes are checked in C. */
export interface NativeAddon {
  choose(forced?: string): void;
  info(): NativeInfo;
  startThreads(threads: number): void;
  stopThreads(): void;
  linear(format: number, weights: Uint8Array, rows: number, cols: number, x: Float32Array, tokens: number, y: Float32Array): void;
  /** linear for each of several weights of one format and width (at most 8) on the same x, in one call. */
  linearMany(format: number, weights: Uint8Array[], rows: number[], cols: number, x: Float32Array, tokens: number, ys: Float32Array[]): void;
  /**
   * Repacks a linear weight's bytes in place for the chosen path's tiled product where it has one
   * (Q4_0, Q8_0, Q4_K and Q6_K into groups of 16 interleaved rows; `always` repacks on any path, for tests) and returns
   * the format code to compute with: the repacked layout's, or `format` when nothing changed.
   */
  repackRows(format: number, bytes: Uint8Array, rows: number, cols: number, always: boolean): number;
  /**
   * Asks the OS for 2 MiB pages under an array's memory (Linux's transparent huge pages), to be
   * called before the array is first written; returns the bytes advised (0 where not possible).
   */
  adviseHugePages(bytes: Uint8Array): number;
  /** Gives an array's whole pages back to the OS (they read as zeros afterwards; the array stays valid); returns the bytes discarded. */
  discardPages(array: Float32Array): number;
  embedding(format: number, table: Uint8Array, rows: number, cols: number, ids: Int32Array, out: Float32Array): void;
  rmsnorm(x: Float32Array, weight: Float32Array, y: Float32Array, dim: number, eps: number): void;
  rope(x: Float32Array, cos: Float32Array, sin: Float32Array, heads: number, headDim: number): void;
  swiglu(gate: Float32Array, up: Float32Array, out: Float32Array): void;
  add(a: Float32Array, b: Float32Array, out: Float32Array): void;
  attention(
    keys: Float32Array | Uint16Array,
    values: Float32Array | Uint16Array,
    kvHeads: number,
    headDim: number,
    capacity: number,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    out: Float32Array,
    start: number,
    heads: number,
  ): void;
  /** GGUF blocks of x [rows, cols] as ggml type `ggmlType` (GgmlType), on the threads; out is rows × the type's row bytes. */
  quantize(ggmlType: number, x: Float32Array, rows: number, cols: number, out: Uint8Array): void;
  /** AWQ/GPTQ calibration (calibrate.c); results bit-identical to src/quant's TypeScript. h = 2/rows · XᵀX. */
  calibrationHessian(x: Float32Array, rows: number, cols: number, h: Float64Array): void;
  /** AWQ's clipping bound of every [row, group] of W. */
  awqClip(w: Float32Array, out: number, cols: number, x: Float32Array, xRows: number, groupSize: number, bounds: Float32Array): void;
  /** AWQ's candidate Q(W·diag(s))·diag(1/s) of W [rows, cols] into out (awq-search.ts scaledPseudoQuantized, the same bits). */
  awqPseudoQuantize(w: Float32Array, rows: number, cols: number, scales: Float32Array, groupSize: number, out: Float32Array): void;
  /** U upper-triangular with H⁻¹ = UᵀU; false when h is not positive definite. */
  gptqFactor(h: Float64Array, n: number, upper: Float64Array): boolean;
  /** GPTQ's column loop on wp (float64, act order, in place) with u the upper Cholesky factor of H⁻¹. */
  gptqColumns(
    wp: Float64Array, rows: number, cols: number, u: Float64Array, perm: Int32Array, groupSize: number, blockSize: number, symmetric: number,
    minZero: number, codes: Uint8Array, scales: Float32Array, zeros: Uint8Array,
  ): void;
  /**
   * The read-bandwidth probe (src/native/bandwidth.h): every thread of the pool reads its own
   * buffer of bytesPerThread (rounded up to whole 512-byte iterations) `passes` times, all
   * starting together, `repetitions` times over; returns each repetition's and thread's
   * [start, end] in seconds of one monotonic clock.
   */
  readBandwidth(bytesPerThread: number, passes: number, repetitions: number): Float64Array;
}

export interface NativeInfo {
  /** The instruction-set path the kernels run on. */
  isa: string;
  /** Why that path: the best the CPU supports, or forced by HERD_CPU_ISA. */
  reason: string;
  threads: number;
  /** Every path this build has: "" when this CPU runs it, else what it lacks. */
  paths: Record<string, string>;
}

/** The paths HERD_CPU_ISA may force: x86-64 builds have the AVX ones, arm64 builds the NEON ones (info().paths lists a build's own). */
export const ISA_NAMES = ['scalar', 'avx2', 'avxvnni', 'avx512', 'amx', 'neon', 'neon-dotprod'] as const;

// build/Release sits at the repository root, two folders above both src/native and dist/native.
const ADDON_FILE = fileURLToPath(new URL('../../build/Release/herd_native.node', import.meta.url));

type Loaded = { addon: NativeAddon; reason: null } | { addon: null; reason: string };
let loaded: Loaded | null = null;

/**
 * The native kernels, or null with the reason they are unavailable: switched off (HERD_NATIVE=0,
 * as the fallback tests do), never built (no compiler at install), or failing to load. A path
 * forced with HERD_CPU_ISA that this CPU cannot run is an error, not a silent fallback.
 */
export function loadNativeAddon(): Loaded {
  loaded ??= loadOnce();
  return loaded;
}

function loadOnce(): Loaded {
  if (process.env.HERD_NATIVE === '0') return { addon: null, reason: 'switched off by HERD_NATIVE=0' };
  if (!fs.existsSync(ADDON_FILE)) return { addon: null, reason: `not built (${ADDON_FILE} is missing: node-gyp found no compiler at install, or run npm run build:native)` };
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(ADDON_FILE) as NativeAddon;
  } catch (error) {
    return { addon: null, reason: `failed to load: ${(error as Error).message.split('\n')[0]}` };
  }
  const forced = process.env.HERD_CPU_ISA;
  if (forced) {
    try {
      addon.choose(forced);
    } catch (error) {
      throw new HerdError((error as Error).message);
    }
  }
  return { addon, reason: null };
}

/** The addon, or a HerdError saying why there is none (for --backend native). */
export function requireNativeAddon(): NativeAddon {
  const { addon, reason } = loadNativeAddon();
  if (!addon) throw new HerdError(`the native kernels are unavailable: ${reason}`);
  return addon;
}
