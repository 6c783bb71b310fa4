import { HerdError } from '../errors.js';
import type { HostTensor } from '../formats/safetensors.js';
import type { Activations } from './awq.js';
import { GPTQ_MIN_ZERO, type GptqOptions } from '../formats/gptq.js';
import { nativeCalibration, type GptqColumnOptions, type NativeCalibration } from './native-calibration.js';
import { checkGroupable, dequantizeCode, emptyInt4, groupParams, matrixShape, quantizeCode, type GroupParams, type Int4Matrix } from '../formats/int4.js';

/** H = 2/n · XᵀX over the calibration rows (float64). */
export function hessian(x: Activations): Float64Array {
  const n = x.cols;
  const h = new Float64Array(n * n);
  for (let r = 0; r < x.rows; r++) {
    const row = x.data.subarray(r * n, (r + 1) * n);
    for (let i = 0; i < n; i++) {
      const xi = row[i]!;
      if (xi === 0) continue;
      for (let j = 0; j <= i; j++) h[i * n + j] = h[i * n + j]! + xi * row[j]!;
    }
  }
  const factor = 2 / Math.max(x.rows, 1);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      h[i * n + j] = h[i * n + j]! * factor;
      h[j * n + i] = h[i * n + j]!;
    }
  }
  return h;
}

/**
 * The GPTQ algorithm (Frantar et al. 2022; AutoGPTQ `GPTQ.fasterquant`): dead inputs zeroed,
 * optional act-order (columns by descending Hessian diagonal), dampening, the upper Cholesky
 * factor of H⁻¹, then column by column: quantize, divide the error by the factor's diagonal and
 * spread it over the remaining columns of the block, and after each block over all later columns.
 * Group parameters are taken when a group's first column comes up, from the error-compensated
 * weights. `native`: the same loops on the addon's threads (null: this file's TypeScript, the reference).
 */
export function quantizeGptq(weight: HostTensor, x: Activations, options: GptqOptions, native: NativeCalibration | null = nativeCalibration()): Int4Matrix {
  const [rows, cols] = matrixShape(weight);
  checkGroupable(weight.name, rows, cols, options.groupSize);
  if (x.cols !== cols) throw new HerdError(`tensor ${weight.name}: calibration inputs have ${x.cols} features, the weight ${cols}`);
  const h = native ? native.hessian(x) : hessian(x);
  const w = Float64Array.from(weight.data);
  for (let c = 0; c < cols; c++) {
    if (h[c * cols + c] === 0) {
      h[c * cols + c] = 1;
      for (let r = 0; r < rows; r++) w[r * cols + c] = 0;
    }
  }
  const perm = options.actOrder ? descendingDiagonal(h, cols) : Int32Array.from({ length: cols }, (_, c) => c);
  const wp = permuteColumns(w, rows, cols, perm);
  const hp = permuteSymmetric(h, cols, perm);
  let meanDiagonal = 0;
  for (let c = 0; c < cols; c++) meanDiagonal += hp[c * cols + c]! / cols;
  for (let c = 0; c < cols; c++) hp[c * cols + c] = hp[c * cols + c]! + options.dampPercent * meanDiagonal;
  const u = native ? (native.upperCholeskyOfInverse(hp, cols) ?? notPositiveDefinite(weight.name)) : upperCholeskyOfInverse(hp, cols, weight.name);

  const result = emptyInt4(rows, cols, options.groupSize);
  const columnOptions = { groupSize: options.groupSize, blockSize: options.blockSize, symmetric: options.symmetric, minZero: GPTQ_MIN_ZERO };
  if (native) native.gptqColumns(wp, u, perm, columnOptions, result);
  else quantizeColumns(wp, u, perm, columnOptions, result);
  perm.forEach((column, position) => (result.groupOfColumn[column] = Math.floor(position / options.groupSize)));
  return result;
}

/**
 * Column by column: quantize, divide the error by the factor's diagonal and spread it over the
 * remaining columns of the block, and after each block over all later columns (`wp` in place).
 */
export function quantizeColumns(wp: Float64Array, u: Float64Array, perm: Int32Array, options: GptqColumnOptions, result: Int4Matrix): void {
  const { rows, cols } = result;
  const params: GroupParams[] = new Array(rows);
  const errors = new Float64Array(rows * options.blockSize);
  for (let start = 0; start < cols; start += options.blockSize) {
    const end = Math.min(start + options.blockSize, cols);
    for (let c = start; c < end; c++) {
      const group = Math.floor(c / options.groupSize);
      if (c % options.groupSize === 0) takeGroupParams(wp, rows, cols, c, options, params, result, group);
      const d = u[c * cols + c]!;
      for (let r = 0; r < rows; r++) {
        const value = wp[r * cols + c]!;
        const code = quantizeCode(value, params[r]!);
        result.codes[r * cols + perm[c]!] = code;
        const error = (value - dequantizeCode(code, params[r]!)) / d;
        errors[r * options.blockSize + (c - start)] = error;
        for (let k = c + 1; k < end; k++) wp[r * cols + k] = wp[r * cols + k]! - error * u[c * cols + k]!;
      }
    }
    for (let r = 0; r < rows; r++) {
      for (let c = start; c < end; c++) {
        const error = errors[r * options.blockSize + (c - start)]!;
        for (let k = end; k < cols; k++) wp[r * cols + k] = wp[r * cols + k]! - error * u[c * cols + k]!;
      }
    }
  }
}

function takeGroupParams(
  wp: Float64Array, rows: number, cols: number, first: number, options: GptqColumnOptions, params: GroupParams[], result: Int4Matrix, group: number,
): void {
  const values = new Float64Array(options.groupSize);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < options.groupSize; k++) values[k] = wp[r * cols + first + k]!;
    params[r] = groupParams(values, options.symmetric, options.minZero);
    result.scales[group * rows + r] = params[r]!.scale;
    result.zeros[group * rows + r] = params[r]!.zero;
  }
}

function descendingDiagonal(h: Float64Array, n: number): Int32Array {
  const order = Array.from({ length: n }, (_, c) => c).sort((a, b) => h[b * n + b]! - h[a * n + a]! || a - b);
  return Int32Array.from(order);
}

function permuteColumns(w: Float64Array, rows: number, cols: number, perm: Int32Array): Float64Array {
  const out = new Float64Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = w[r * cols + perm[c]!]!;
  return out;
}

function permuteSymmetric(h: Float64Array, n: number, perm: Int32Array): Float64Array {
  const out = new Float64Array(h.length);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i * n + j] = h[perm[i]! * n + perm[j]!]!;
  return out;
}

function notPositiveDefinite(what: string): never {
  throw new HerdError(`${what}: the damped Hessian is not positive definite; raise --damp`);
}

/** Lower Cholesky factor L (H = L Lᵀ), in place of a copy. */
export function cholesky(a: Float64Array, n: number, what: string): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = a[i * n + j]!;
      for (let k = 0; k < j; k++) sum -= l[i * n + k]! * l[j * n + k]!;
      if (i === j) {
        if (!(sum > 0)) notPositiveDefinite(what);
        l[i * n + i] = Math.sqrt(sum);
      } else {
        l[i * n + j] = sum / l[j * n + j]!;
      }
    }
  }
  return l;
}

/** U upper-triangular with H⁻¹ = Uᵀ U (torch: cholesky(cholesky_inverse(cholesky(H)), upper=True)). */
export function upperCholeskyOfInverse(h: Float64Array, n: number, what: string): Float64Array {
  const l = cholesky(h, n, what);
  // L⁻¹ by forward substitution, then H⁻¹ = L⁻ᵀ L⁻¹.
  const li = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    li[i * n + i] = 1 / l[i * n + i]!;
    for (let j = 0; j < i; j++) {
      let sum = 0;
      for (let k = j; k < i; k++) sum += l[i * n + k]! * li[k * n + j]!;
      li[i * n + j] = -sum / l[i * n + i]!;
    }
  }
  const inverse = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = 0;
      for (let k = i; k < n; k++) sum += li[k * n + i]! * li[k * n + j]!;
      inverse[i * n + j] = sum;
      inverse[j * n + i] = sum;
    }
  }
  const lower = cholesky(inverse, n, what);
  const upper = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) upper[j * n + i] = lower[i * n + j]!;
  return upper;
}
