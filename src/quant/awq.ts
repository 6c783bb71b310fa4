import type { HostTensor } from '../engine/safetensors.js';
import type { QuantizedLayout, QuantizedTensors } from './layout.js';
import {
  INT4_MAX, checkGroupable, contiguousGroups, dequantizeInt4, emptyInt4, packNibbles, quantizeInt4Groups, roundHalfEven, unpackNibbles, type GroupParams, type Int4Matrix,
} from './int4.js';
import { expectPart, f16Tensor, i32Tensor, moduleOf, readF16, readI32, type StoredTensors } from './tensors.js';

/**
 * AWQ INT4 in AutoAWQ's GEMM layout (awq/modules/linear/gemm.py WQLinear_GEMM.from_linear, which
 * transformers' AwqConfig and vLLM read):
 *
 * - `qweight` I32 [in, out / 8]: word [i, p] holds output columns 8p..8p+7 of input row i, nibble j
 *   being column 8p + AWQ_ORDER[j] (codes 1..8 pack to 0x86427531);
 * - `qzeros` I32 [in / group, out / 8]: the zero-points packed the same way (zero 8 → 0x88888888);
 * - `scales` F16 [in / group, out]; w[o, i] = (q − zero) · scale.
 */
export const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7] as const;

export function packAwq(prefix: string, m: Int4Matrix): QuantizedTensors {
  const { rows: out, cols: inFeatures, groupSize } = m;
  const groups = inFeatures / groupSize;
  const qweight = new Int32Array(inFeatures * (out / 8));
  const eight = new Uint8Array(8);
  for (let i = 0; i < inFeatures; i++) {
    for (let p = 0; p < out / 8; p++) {
      for (let k = 0; k < 8; k++) eight[k] = m.codes[(p * 8 + k) * inFeatures + i]!;
      qweight[i * (out / 8) + p] = packNibbles(eight, AWQ_ORDER);
    }
  }
  return [
    i32Tensor(`${prefix}.qweight`, [inFeatures, out / 8], qweight),
    i32Tensor(`${prefix}.qzeros`, [groups, out / 8], packRows(m.zeros, groups, out)),
    f16Tensor(`${prefix}.scales`, [groups, out], m.scales),
  ];
}

/** Packs a [groups, out] byte matrix along out, AWQ order. */
function packRows(values: Uint8Array, groups: number, out: number): Int32Array {
  const words = new Int32Array(groups * (out / 8));
  for (let w = 0; w < words.length; w++) words[w] = packNibbles(values.subarray(w * 8, w * 8 + 8), AWQ_ORDER);
  return words;
}

export function unpackAwq(stored: StoredTensors, prefix: string, out: number, inFeatures: number, groupSize: number): Int4Matrix {
  const m = emptyInt4(out, inFeatures, groupSize);
  const qweight = readI32(stored, `${prefix}.qweight`);
  const eight = new Uint8Array(8);
  for (let i = 0; i < inFeatures; i++) {
    for (let p = 0; p < out / 8; p++) {
      unpackNibbles(qweight[i * (out / 8) + p]!, AWQ_ORDER, eight);
      for (let k = 0; k < 8; k++) m.codes[(p * 8 + k) * inFeatures + i] = eight[k]!;
    }
  }
  const qzeros = readI32(stored, `${prefix}.qzeros`);
  qzeros.forEach((word, w) => unpackNibbles(word, AWQ_ORDER, m.zeros.subarray(w * 8, w * 8 + 8)));
  m.scales.set(readF16(stored, `${prefix}.scales`));
  return m;
}

/**
 * AutoAWQ's `pseudo_quantize_tensor` with zero-point: scale = max(max − min, 1e-5) / 15 and
 * zero = clamp(−round(min / scale), 0, 15) per group. Unlike GPTQ's parameters, the range is the
 * group's own min..max, not widened to contain 0.
 */
export function awqGroupParams(values: ArrayLike<number>): GroupParams {
  let low = Infinity;
  let high = -Infinity;
  for (let i = 0; i < values.length; i++) {
    low = Math.min(low, values[i]!);
    high = Math.max(high, values[i]!);
  }
  const scale = Math.fround(Math.max(high - low, 1e-5) / INT4_MAX);
  return { scale, zero: Math.min(INT4_MAX, Math.max(0, -roundHalfEven(low / scale))) };
}

/** AWQ's 4-bit quantization of a (scaled, clipped) weight [out, in]. */
export function quantizeAwq(weight: HostTensor, groupSize: number): Int4Matrix {
  return quantizeInt4Groups(weight, groupSize, awqGroupParams);
}

/** transformers' AwqConfig keys as AutoAWQ writes them into config.json. */
export function awqQuantizationConfig(groupSize: number): Record<string, unknown> {
  return { bits: 4, group_size: groupSize, modules_to_not_convert: null, quant_method: 'awq', version: 'gemm', zero_point: true };
}

export function awqLayout(groupSize: number): QuantizedLayout {
  return {
    method: 'awq',
    partsOf(name, stored) {
      const prefix = moduleOf(name);
      return stored.has(`${prefix}.qweight`) ? ['qweight', 'qzeros', 'scales'].map((part) => `${prefix}.${part}`) : null;
    },
    check(name, [out, inFeatures], stored) {
      const prefix = moduleOf(name);
      checkGroupable(name, out!, inFeatures!, groupSize);
      expectPart(stored, `${prefix}.qweight`, 'I32', [inFeatures!, out! / 8]);
      expectPart(stored, `${prefix}.qzeros`, 'I32', [inFeatures! / groupSize, out! / 8]);
      expectPart(stored, `${prefix}.scales`, 'F16', [inFeatures! / groupSize, out!]);
    },
    dequantize(name, [out, inFeatures], stored) {
      return dequantizeInt4(unpackAwq(stored, moduleOf(name), out!, inFeatures!, groupSize));
    },
    int4: {
      groupSize,
      groupOfColumns: (_name, [, inFeatures]) => contiguousGroups(inFeatures!, groupSize),
      unpack: (name, [out, inFeatures], stored) => unpackAwq(stored, moduleOf(name), out!, inFeatures!, groupSize),
    },
  };
}

/** Activations X [tokens, in] that reach a group of linears sharing one input. */
export interface Activations {
  rows: number;
  cols: number;
  data: Float32Array;
}

/** X [rows, in] · Wᵀ for W [out, in]. */
export function matmulTransposed(x: Activations, w: Float32Array, out: number): Float32Array {
  const result = new Float32Array(x.rows * out);
  for (let r = 0; r < x.rows; r++) {
    const xr = x.data.subarray(r * x.cols, (r + 1) * x.cols);
    for (let o = 0; o < out; o++) {
      let sum = 0;
      const wo = o * x.cols;
      for (let c = 0; c < x.cols; c++) sum += xr[c]! * w[wo + c]!;
      result[r * out + o] = sum;
    }
  }
  return result;
}

/** Multiplies the input columns of W by s (in place). */
export function scaleColumns(weight: HostTensor, scales: Float32Array): void {
  const cols = weight.shape[1]!;
  for (let i = 0; i < weight.data.length; i++) weight.data[i] = weight.data[i]! * scales[i % cols]!;
}

/** Divides the output rows of a projection (or a norm vector) by s, in place. */
export function divideRows(weight: HostTensor, scales: Float32Array): void {
  const cols = weight.shape.length === 2 ? weight.shape[1]! : 1;
  for (let i = 0; i < weight.data.length; i++) weight.data[i] = weight.data[i]! / scales[Math.floor(i / cols)]!;
}
