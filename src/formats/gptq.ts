import { HerdError } from '../errors.js';
import type { QuantizedLayout, QuantizedTensors } from './quantized-layout.js';
import { SEQUENTIAL_ORDER, checkGroupable, dequantizeInt4, emptyInt4, packNibbles, unpackNibbles, type Int4Matrix } from './int4.js';
import { expectPart, f16Tensor, i32Tensor, moduleOf, readF16, readI32, type StoredTensors } from './stored-tensors.js';

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
