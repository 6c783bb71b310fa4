import type { QuantizedLayout, QuantizedTensors } from './quantized-layout.js';
import { checkGroupable, contiguousGroups, dequantizeInt4, emptyInt4, packNibbles, unpackNibbles, type Int4Matrix } from './int4.js';
import { expectPart, f16Tensor, i32Tensor, moduleOf, readF16, readI32, type StoredTensors } from './stored-tensors.js';

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
