import os from 'node:os';
import { GGML_LAYOUT, GgmlType } from '../formats/gguf.js';
import type { BlockQuantizer } from '../formats/gguf-llama.js';
import { GGUF_MIXES, type GgufMix } from '../formats/gguf-recipe.js';
import { HerdError } from '../errors.js';
import { loadNativeAddon } from '../native/addon.js';

/** The ggml types src/native/quantize.c writes; the others stay with herd's TypeScript writers. */
export const NATIVE_QUANT_TYPES: ReadonlySet<GgmlType> = new Set([
  GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
  GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
]);

/** The types only the native quantizers write (herd has no TypeScript writer for them). */
export const NATIVE_ONLY_TYPES: ReadonlySet<GgmlType> = new Set([GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS]);

/** Which block quantizers a GGUF job uses, said in its result's notes. */
export interface GgufQuantizer {
  /** The native quantizers, or undefined for herd's TypeScript ones. */
  quantize: BlockQuantizer | undefined;
  description: string;
  /** Why the native quantizers are not there, or null when they are. */
  unavailable: string | null;
  /** Gives the addon's one thread pool back as it was (another user, a native model, may hold it). */
  close(): void;
}

/**
 * Refuses, before any work, a gguf-<mix> format whose main type only the native quantizers write
 * when they are not there (their description says why).
 */
export function refuseWithoutNativeWriter(format: string, quantizer: GgufQuantizer): void {
  const mix = format.slice('gguf-'.length).toUpperCase() as GgufMix;
  const { defaultType } = GGUF_MIXES[mix];
  if (quantizer.unavailable === null || !NATIVE_ONLY_TYPES.has(defaultType)) return;
  throw new HerdError(`--format ${format} needs herd's native quantizers (there is no TypeScript writer for ${GgmlType[defaultType]}), and they are unavailable: ${quantizer.unavailable}`);
}

/**
 * The native C quantizers on `threads` threads (default: the cores available) when the addon
 * loads, else herd's TypeScript quantizers (HERD_NATIVE=0, no compiler at install), which write
 * the same bytes more slowly.
 */
export function ggufQuantizer(threads?: number): GgufQuantizer {
  const { addon, reason } = loadNativeAddon();
  if (!addon) return { quantize: undefined, description: `GGUF blocks by herd's TypeScript quantizers (native quantizers unavailable: ${reason})`, unavailable: reason, close: () => {} };
  const before = addon.info().threads;
  addon.startThreads(Math.max(1, threads ?? os.availableParallelism()));
  const started = addon.info().threads;
  const quantize: BlockQuantizer = (type, data, rowLength) => {
    const block = GGML_LAYOUT[type];
    // Rows that are not whole blocks are refused by the TypeScript writers, with their message.
    if (!NATIVE_QUANT_TYPES.has(type) || rowLength % block.block !== 0 || data.length % rowLength !== 0) return null;
    const rows = data.length / rowLength;
    const out = new Uint8Array((data.length / block.block) * block.bytes);
    addon.quantize(type, data, rows, rowLength, out);
    return out;
  };
  return { quantize, description: `GGUF blocks by herd's native quantizers on ${started} thread${started === 1 ? '' : 's'}`, unavailable: null, close: () => (before > 1 ? addon.startThreads(before) : addon.stopThreads()) };
}
