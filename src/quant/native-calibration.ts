import os from 'node:os';
import { loadNativeAddon, type NativeAddon } from '../native/addon.js';
import type { HostTensor } from '../formats/safetensors.js';
import { checkGroupable, type Int4Matrix } from '../formats/int4.js';
import type { Activations } from './awq.js';
import { QUANT_BACKEND } from './scorecard.js';

/**
 * The heavy loops of AWQ and GPTQ on the native addon's threads (src/native/calibrate.c). Each
 * returns the same bits as the TypeScript it replaces (hessian, searchAwqClip, scaledPseudoQuantized,
 * GPTQ's column loop), which stays the reference and runs when the addon is unavailable
 * (HERD_NATIVE=0, or no compiler at install).
 */
export interface NativeCalibration {
  hessian(x: Activations): Float64Array;
  clipBounds(weight: HostTensor, x: Activations, groupSize: number): Float32Array;
  /** AWQ's candidate Q(W·diag(s))·diag(1/s) (awq-search.ts scaledPseudoQuantized). */
  scaledPseudoQuantized(weight: HostTensor, scales: Float32Array, groupSize: number): HostTensor;
  /** U upper-triangular with H⁻¹ = UᵀU (gptq.ts upperCholeskyOfInverse), or null when h is not positive definite. */
  upperCholeskyOfInverse(h: Float64Array, n: number): Float64Array | null;
  /** Quantizes the act-ordered float64 weights `wp` (changed in place) into `result`, column by column. */
  gptqColumns(wp: Float64Array, u: Float64Array, perm: Int32Array, options: GptqColumnOptions, result: Int4Matrix): void;
}

export interface GptqColumnOptions {
  groupSize: number;
  blockSize: number;
  symmetric: boolean;
  minZero: number;
}

let chosen: NativeCalibration | null | undefined;

/** The native calibration loops, or null (the TypeScript path) when the addon does not load. */
export function nativeCalibration(): NativeCalibration | null {
  if (chosen === undefined) {
    const { addon } = loadNativeAddon();
    // A quantize job runs no native model, so its pool is still the caller's thread alone: use every core.
    if (addon && addon.info().threads === 1) addon.startThreads(os.availableParallelism());
    chosen = addon ? nativeLoops(addon) : null;
  }
  return chosen;
}

function nativeLoops(addon: NativeAddon): NativeCalibration {
  return {
    hessian(x) {
      const h = new Float64Array(x.cols * x.cols);
      addon.calibrationHessian(x.data, x.rows, x.cols, h);
      return h;
    },
    clipBounds(weight, x, groupSize) {
      const [out, cols] = weight.shape as [number, number];
      const bounds = new Float32Array(out * (cols / groupSize));
      addon.awqClip(weight.data, out, cols, x.data, x.rows, groupSize, bounds);
      return bounds;
    },
    scaledPseudoQuantized(weight, scales, groupSize) {
      const [rows, cols] = weight.shape as [number, number];
      checkGroupable(weight.name, rows, cols, groupSize); // the TypeScript's quantizeAwq refuses the same shapes
      const data = new Float32Array(rows * cols);
      addon.awqPseudoQuantize(weight.data, rows, cols, scales, groupSize, data);
      return { name: weight.name, shape: weight.shape, data };
    },
    upperCholeskyOfInverse(h, n) {
      const upper = new Float64Array(n * n);
      return addon.gptqFactor(h, n, upper) ? upper : null;
    },
    gptqColumns(wp, u, perm, options, result) {
      const { rows, cols } = result;
      addon.gptqColumns(wp, rows, cols, u, perm, options.groupSize, options.blockSize, options.symmetric ? 1 : 0, options.minZero, result.codes, result.scales, result.zeros);
    },
  };
}

/**
 * The backend the calibration pass and AWQ's block outputs and lone linears' outputs run on
 * (DecoderLayerRunner) unless `herd quantize --backend` says otherwise: the
 * native kernels when the addon loads, else the WASM kernels. Their sums differ in order (about
 * 1e-7 relative), so a grid ratio whose error ties another's that closely, or a GPTQ code at a
 * rounding edge, can come out differently: stories260K's default AWQ differs between the two in
 * 0.8 % of its bytes and GPTQ in 18, at the same quality (perplexity 6.222 against 6.226 on the
 * calibration text, base 5.804).
 */
export function layerRunnerBackend(): string {
  return nativeCalibration() ? 'native' : QUANT_BACKEND;
}
