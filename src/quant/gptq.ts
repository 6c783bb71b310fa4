import { HerdError } from '../errors.js';
import type { HostTensor } from '../engine/safetensors.js';
import type { Activations } from './awq.js';
import type { QuantizedLayout, QuantizedTensors } from './layout.js';
import {
  SEQUENTIAL_ORDER, checkGroupable, dequantizeCode, dequantizeInt4, emptyInt4, groupParams, matrixShape, packNibbles,
  quantizeCode, unpackNibbles, type GroupParams, type Int4Matrix,
} from './int4.js';
import { expectPart, f16Tensor, i32Tensor, moduleOf, readF16, readI32, type StoredTensors } from './tensors.js';

/**
 * GPTQ INT4 in AutoGPTQ's v1 checkpoint format (auto_gptq/nn_modules/qlinear, which transformers'
 * GPTQConfig, optimum and vLLM read):
 *
 * - `qweight` I32 [in / 8, out]: word [r, o] holds input rows 8r..8r+7 of output column o, nibble j
 *   being row 8r + j (codes 1..8 pack to 0x87654321);
 * - `qzeros` I32 [in / group, out / 8]: zero − 1 (the v1 convention), packed sequentially along out
 *   (zero 8 → 0x77777777);
 * - `scales` F16 [in / group, out]; `g_idx` I32 [in]: the group of each input row (not monotonic
 *   with act-order); w[o, i] = (q − zero) · scale of group g_idx[i].
 *
 * Asymmetric zero-points are kept in 1..15 so that zero − 1 is never negative (v1 would wrap it).
 */
export interface GptqOptions {
  groupSize: number;
  symmetric: boolean;
  actOrder: boolean;
  /** Fraction of the mean Hessian diagonal added to it (AutoGPTQ damp_percent). */
  dampPercent: number;
  /** Columns updated together before the lazy batch update (AutoGPTQ blocksize). */
  blockSize: number;
}

export const DEFAULT_GPTQ: GptqOptions = { groupSize: 128, symmetric: true, actOrder: false, dampPercent: 0.01, blockSize: 128 };

/** v1 stores zero − 1; the smallest zero it can store without wrapping is 1. */
export const GPTQ_MIN_ZERO = 1;

export function packGptq(prefix: string, m: Int4Matrix): QuantizedTensors {
  const { rows: out, cols: inFeatures, groupSize } = m;
  const groups = inFeatures / groupSize;
  const qweight = new Int32Array((inFeatures / 8) * out);
  const eight = new Uint8Array(8);
  for (let r = 0; r < inFeatures / 8; r++) {
    for (let o = 0; o < out; o++) {
      for (let j = 0; j < 8; j++) eight[j] = m.codes[o * inFeatures + r * 8 + j]!;
      qweight[r * out + o] = packNibbles(eight, SEQUENTIAL_ORDER);
    }
  }
  const qzeros = new Int32Array(groups * (out / 8));
  for (let w = 0; w < qzeros.length; w++) {
    for (let j = 0; j < 8; j++) eight[j] = m.zeros[w * 8 + j]! - 1;
    qzeros[w] = packNibbles(eight, SEQUENTIAL_ORDER);
  }
  return [
    i32Tensor(`${prefix}.qweight`, [inFeatures / 8, out], qweight),
    i32Tensor(`${prefix}.qzeros`, [groups, out / 8], qzeros),
    f16Tensor(`${prefix}.scales`, [groups, out], m.scales),
    i32Tensor(`${prefix}.g_idx`, [inFeatures], m.groupOfColumn),
  ];
}

export function unpackGptq(stored: StoredTensors, prefix: string, out: number, inFeatures: number, groupSize: number): Int4Matrix {
  const m = emptyInt4(out, inFeatures, groupSize);
  const qweight = readI32(stored, `${prefix}.qweight`);
  const eight = new Uint8Array(8);
  for (let r = 0; r < inFeatures / 8; r++) {
    for (let o = 0; o < out; o++) {
      unpackNibbles(qweight[r * out + o]!, SEQUENTIAL_ORDER, eight);
      for (let j = 0; j < 8; j++) m.codes[o * inFeatures + r * 8 + j] = eight[j]!;
    }
  }
  readI32(stored, `${prefix}.qzeros`).forEach((word, w) => {
    unpackNibbles(word, SEQUENTIAL_ORDER, eight);
    for (let j = 0; j < 8; j++) m.zeros[w * 8 + j] = eight[j]! + 1;
  });
  m.scales.set(readF16(stored, `${prefix}.scales`));
  const groupIndex = readI32(stored, `${prefix}.g_idx`);
  const groups = inFeatures / groupSize;
  groupIndex.forEach((g, i) => {
    if (g < 0 || g >= groups) throw new HerdError(`tensor ${prefix}.g_idx: row ${i} names group ${g} of ${groups}`);
  });
  m.groupOfColumn.set(groupIndex);
  return m;
}

/** AutoGPTQ's BaseQuantizeConfig.to_dict(), the keys transformers' GPTQConfig reads. */
export function gptqQuantizationConfig(options: GptqOptions): Record<string, unknown> {
  return {
    bits: 4,
    checkpoint_format: 'gptq',
    damp_percent: options.dampPercent,
    desc_act: options.actOrder,
    group_size: options.groupSize,
    model_file_base_name: null,
    model_name_or_path: null,
    quant_method: 'gptq',
    static_groups: false,
    sym: options.symmetric,
    true_sequential: true,
  };
}

export function gptqLayout(groupSize: number): QuantizedLayout {
  return {
    method: 'gptq',
    partsOf(name, stored) {
      const prefix = moduleOf(name);
      return stored.has(`${prefix}.qweight`) ? ['qweight', 'qzeros', 'scales', 'g_idx'].map((part) => `${prefix}.${part}`) : null;
    },
    check(name, [out, inFeatures], stored) {
      const prefix = moduleOf(name);
      checkGroupable(name, out!, inFeatures!, groupSize);
      expectPart(stored, `${prefix}.qweight`, 'I32', [inFeatures! / 8, out!]);
      expectPart(stored, `${prefix}.qzeros`, 'I32', [inFeatures! / groupSize, out! / 8]);
      expectPart(stored, `${prefix}.scales`, 'F16', [inFeatures! / groupSize, out!]);
      expectPart(stored, `${prefix}.g_idx`, 'I32', [inFeatures!]);
    },
    dequantize(name, [out, inFeatures], stored) {
      return dequantizeInt4(unpackGptq(stored, moduleOf(name), out!, inFeatures!, groupSize));
    },
    int4: {
      groupSize,
      groupOfColumns: (name, _shape, stored) => readI32(stored, `${moduleOf(name)}.g_idx`),
      unpack: (name, [out, inFeatures], stored) => unpackGptq(stored, moduleOf(name), out!, inFeatures!, groupSize),
    },
  };
}

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
 * weights.
 */
export function quantizeGptq(weight: HostTensor, x: Activations, options: GptqOptions): Int4Matrix {
  const [rows, cols] = matrixShape(weight);
  checkGroupable(weight.name, rows, cols, options.groupSize);
  if (x.cols !== cols) throw new HerdError(`tensor ${weight.name}: calibration inputs have ${x.cols} features, the weight ${cols}`);
  const h = hessian(x);
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
  const u = upperCholeskyOfInverse(hp, cols, weight.name);

  const result = emptyInt4(rows, cols, options.groupSize);
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
  perm.forEach((column, position) => (result.groupOfColumn[column] = Math.floor(position / options.groupSize)));
  return result;
}

function takeGroupParams(
  wp: Float64Array, rows: number, cols: number, first: number, options: GptqOptions, params: GroupParams[], result: Int4Matrix, group: number,
): void {
  const values = new Float64Array(options.groupSize);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < options.groupSize; k++) values[k] = wp[r * cols + first + k]!;
    params[r] = groupParams(values, options.symmetric, GPTQ_MIN_ZERO);
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

/** Lower Cholesky factor L (H = L Lᵀ), in place of a copy. */
export function cholesky(a: Float64Array, n: number, what: string): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = a[i * n + j]!;
      for (let k = 0; k < j; k++) sum -= l[i * n + k]! * l[j * n + k]!;
      if (i === j) {
        if (!(sum > 0)) throw new HerdError(`${what}: the damped Hessian is not positive definite; raise --damp`);
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
