import { HerdError } from '../errors.js';
import type { HostTensor } from './safetensors.js';

/**
 * 4-bit integer group quantization as AWQ and GPTQ share it: each output row is cut into groups
 * of `groupSize` input columns, each group gets a scale and an integer zero-point, and
 * w ≈ (q − zero) · scale with q in 0..15.
 */
export const INT4_MAX = 15;

export interface GroupParams {
  scale: number;
  zero: number;
}

/**
 * Scale and zero of one group, following GPTQ's `Quantizer.find_params`: the range always
 * contains 0; symmetric puts the zero at 8; a constant-zero group gets a harmless range.
 * `minZero` lets GPTQ's v1 layout (which stores zero − 1) keep every zero storable.
 */
export function groupParams(values: ArrayLike<number>, symmetric: boolean, minZero = 0): GroupParams {
  let low = 0;
  let high = 0;
  for (let i = 0; i < values.length; i++) {
    low = Math.min(low, values[i]!);
    high = Math.max(high, values[i]!);
  }
  if (symmetric) {
    high = Math.max(-low, high);
    if (low < 0) low = -high;
  }
  if (low === 0 && high === 0) {
    low = -1;
    high = 1;
  }
  const scale = Math.fround((high - low) / INT4_MAX);
  const zero = symmetric ? (INT4_MAX + 1) / 2 : Math.min(INT4_MAX, Math.max(minZero, roundHalfEven(-low / scale)));
  return { scale, zero };
}

export function quantizeCode(x: number, params: GroupParams): number {
  return Math.min(INT4_MAX, Math.max(0, roundHalfEven(x / params.scale) + params.zero));
}

export function dequantizeCode(code: number, params: GroupParams): number {
  return (code - params.zero) * params.scale;
}

/** Round-to-nearest 4-bit quantization of a whole [out, in] matrix: codes, and scales/zeros [groups][out]. */
export interface Int4Matrix {
  rows: number;
  cols: number;
  groupSize: number;
  /** Codes 0..15, row-major [out, in]. */
  codes: Uint8Array;
  /** [in / groupSize, out], as both AWQ and GPTQ store them. */
  scales: Float32Array;
  zeros: Uint8Array;
  /** Group of each input column ([in]); GPTQ's act-order makes it non-monotonic. */
  groupOfColumn: Int32Array;
}

export function matrixShape(weight: HostTensor): [number, number] {
  if (weight.shape.length !== 2) throw new HerdError(`tensor ${weight.name} is not a matrix`);
  return weight.shape as [number, number];
}

export function checkGroupable(name: string, rows: number, cols: number, groupSize: number): void {
  if (cols % groupSize !== 0) throw new HerdError(`tensor ${name}: ${cols} input features are not a multiple of the group size ${groupSize}`);
  if (rows % 8 !== 0 || cols % 8 !== 0) throw new HerdError(`tensor ${name}: [${rows}, ${cols}] must be multiples of 8 to pack 4-bit codes`);
}

/** Plain round-to-nearest (the baseline AWQ and GPTQ are measured against). */
export function quantizeInt4Rtn(weight: HostTensor, groupSize: number, symmetric: boolean, minZero = 0): Int4Matrix {
  return quantizeInt4Groups(weight, groupSize, (values) => groupParams(values, symmetric, minZero));
}

/** Round-to-nearest 4-bit quantization of every group with the parameters `paramsOf` chooses for it. */
export function quantizeInt4Groups(weight: HostTensor, groupSize: number, paramsOf: (values: Float32Array) => GroupParams): Int4Matrix {
  const [rows, cols] = matrixShape(weight);
  checkGroupable(weight.name, rows, cols, groupSize);
  const groups = cols / groupSize;
  const result = emptyInt4(rows, cols, groupSize);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const start = r * cols + g * groupSize;
      const params = paramsOf(weight.data.subarray(start, start + groupSize));
      result.scales[g * rows + r] = params.scale;
      result.zeros[g * rows + r] = params.zero;
      for (let c = 0; c < groupSize; c++) result.codes[start + c] = quantizeCode(weight.data[start + c]!, params);
    }
  }
  return result;
}

export function emptyInt4(rows: number, cols: number, groupSize: number): Int4Matrix {
  const groups = cols / groupSize;
  return { rows, cols, groupSize, codes: new Uint8Array(rows * cols), scales: new Float32Array(groups * rows), zeros: new Uint8Array(groups * rows), groupOfColumn: contiguousGroups(cols, groupSize) };
}

/** Group of each input column when groups are runs of `groupSize` columns in order (no act-order). */
export function contiguousGroups(cols: number, groupSize: number): Int32Array {
  return Int32Array.from({ length: cols }, (_, c) => Math.floor(c / groupSize));
}

/** The float matrix [out, in] an Int4Matrix stands for. */
export function dequantizeInt4(m: Int4Matrix): Float32Array {
  const out = new Float32Array(m.rows * m.cols);
  for (let r = 0; r < m.rows; r++) {
    for (let c = 0; c < m.cols; c++) {
      const at = m.groupOfColumn[c]! * m.rows + r;
      out[r * m.cols + c] = (m.codes[r * m.cols + c]! - m.zeros[at]!) * m.scales[at]!;
    }
  }
  return out;
}

/**
 * Packs eight 4-bit values into one little-endian int32: nibble j (bits 4j..4j+3) holds
 * values[order[j]]. Sequential order is 0..7; AutoAWQ's GEMM order is [0, 2, 4, 6, 1, 3, 5, 7].
 */
export function packNibbles(values: ArrayLike<number>, order: readonly number[]): number {
  let word = 0;
  for (let j = 0; j < 8; j++) word |= (values[order[j]!]! & 0xf) << (4 * j);
  return word | 0;
}

export function unpackNibbles(word: number, order: readonly number[], into: Uint8Array | number[]): void {
  for (let j = 0; j < 8; j++) into[order[j]!] = (word >>> (4 * j)) & 0xf;
}

export const SEQUENTIAL_ORDER = [0, 1, 2, 3, 4, 5, 6, 7] as const;

/** Round half to even, as torch.round does. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export function int32Bytes(words: Int32Array): Uint8Array {
  return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
}
