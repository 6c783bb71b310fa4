import type { KvCacheType, Ops } from '../engine/ops.js';
import type { PackedFormat } from '../formats/weights.js';

/** The backends herd knows: tfjs ones in the order auto-detection tries them, then herd's own kernels (WASM, native C). */
export const BACKEND_NAMES = ['node-gpu', 'node', 'wasm', 'cpu', 'kernels', 'native'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BackendProbe {
  name: BackendName;
  available: boolean;
  /** Why it is or is not usable, for `herd env` and --verbose. */
  reason: string;
}

export interface BackendOptions {
  /** Threads for herd's kernels (default: the cores available). */
  threads?: number;
  /** KV cache storage for herd's kernels (tfjs keeps float32). */
  kvCacheType?: KvCacheType;
}

/**
 * One compute backend as the registry sees it (after ggml's backend registry): what it is, whether
 * it runs here, which stored weight types it computes on, what a model costs it in memory, and how
 * to start it. Nothing is loaded or started until `create`.
 */
export interface Backend {
  readonly name: BackendName;
  /** One line for `herd env` and --help. */
  readonly description: string;
  /** Where it keeps weights: host memory (checked against the machine's before loading) or an accelerator's. */
  readonly memory: 'host' | 'device';
  /** Whether it can run here, and why or why not, without activating it. */
  probe(): Promise<BackendProbe>;
  /** Whether it multiplies weights stored as `format` as stored (otherwise it widens them to float32 at load). */
  computesOn(format: PackedFormat): boolean;
  /** Bytes a [rows, cols] weight stored as `format` takes once loaded. */
  heldBytes(format: PackedFormat, rows: number, cols: number): number;
  /** Bytes of one cached key or value element with the requested cache type. */
  kvElementBytes(type: KvCacheType | undefined): number;
  /** Starts it: threads, memories, tfjs' active backend. Close the Ops to end them. */
  create(options: BackendOptions): Promise<Ops<unknown, unknown>>;
}

/** Bytes of a weight widened to float32, as a backend that does not compute on its stored type holds it. */
export function float32Bytes(rows: number, cols: number): number {
  return rows * cols * 4;
}

/** The cache types herd's own kernels keep: IEEE half when asked, else float32. */
export function kernelKvElementBytes(type: KvCacheType | undefined): number {
  return type === 'f16' ? 2 : 4;
}
