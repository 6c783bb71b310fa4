import { quantizeAwq } from '../src/quant/awq.js';
import { AWQ_ORDER, awqQuantizationConfig, packAwq, unpackAwq } from '../src/formats/awq.js';
import { FP8_MAX, floatToFp8E4m3, fp8E4m3ToFloat, fp8QuantizationConfig, quantizeFp8, FP8_LAYOUT } from '../src/formats/fp8.js';
import { dequantizeQ4K, quantizeQ4K } from '../src/formats/ggml-k-blocks.js';
import { gptqQuantizationConfig, packGptq, unpackGptq, DEFAULT_GPTQ, GPTQ_MIN_ZERO } from '../src/formats/gptq.js';
import { dequantizeInt4, emptyInt4, packNibbles, quantizeInt4Rtn, SEQUENTIAL_ORDER } from '../src/formats/int4.js';
import { NF4_LAYOUT, NF4_TABLE, dynamicMap, nf4QuantizationConfig, quantizeNf4, quantizeNf4Flat } from '../src/formats/nf4.js';
import type { StoredTensors } from '../src/formats/stored-tensors.js';
import type { TensorToWrite } from '../src/formats/safetensors.js';
import { seededRandom } from '../src/engine/sampling.js';

/** Tensors as a layout reads them, straight from what a format wrote. */
function stored(tensors: TensorToWrite[]): StoredTensors {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return {
    has: (name) => byName.has(name),
    entry: (name) => ({ name, dtype: byName.get(name)!.dtype, shape: byName.get(name)!.shape, file: 'memory', begin: 0, end: byName.get(name)!.bytes.length }),
    raw: (name) => new Uint8Array(byName.get(name)!.bytes),
  };
}

function randomMatrix(rows: number, cols: number, seed: number, std = 0.05): Float32Array {
  const random = seededRandom(seed);
  // Box–Muller normal values.
  return Float32Array.from({ length: rows * cols }, () => std * Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random()));
}

function maxAbs(a: Float32Array): number {
  return a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
}

const word = (t: TensorToWrite, index = 0) => new DataView(t.bytes.buffer, t.bytes.byteOffset).getUint32(index * 4, true);

describe('4-bit packing as the loaders read it', () => {
  // One [8 out, 8 in] matrix whose output column o holds code o + 1 in every input row.
  const codes = emptyInt4(8, 8, 8);
  for (let o = 0; o < 8; o++) codes.codes.fill(o + 1, o * 8, o * 8 + 8);
  codes.zeros.fill(8);
  codes.scales.fill(1);

  test('AWQ: codes 1..8 along out pack to 0x86427531, zero-point 8 to 0x88888888', () => {
    expect(AWQ_ORDER).toEqual([0, 2, 4, 6, 1, 3, 5, 7]);
    const [qweight, qzeros, scales] = packAwq('m', codes);
    expect(qweight!.shape).toEqual([8, 1]);
    for (let i = 0; i < 8; i++) expect(word(qweight!, i)).toBe(0x86427531);
    expect(word(qzeros!)).toBe(0x88888888);
    expect(scales!.dtype).toBe('F16');
  });

  test('GPTQ: codes 1..8 along in pack to 0x87654321, zero-point 8 stored as 0x77777777 (v1 minus one)', () => {
    const transposed = emptyInt4(8, 8, 8);
    for (let o = 0; o < 8; o++) for (let i = 0; i < 8; i++) transposed.codes[o * 8 + i] = i + 1;
    transposed.zeros.fill(8);
    const [qweight, qzeros, , gIdx] = packGptq('m', transposed);
    expect(qweight!.shape).toEqual([1, 8]);
    for (let o = 0; o < 8; o++) expect(word(qweight!, o)).toBe(0x87654321);
    expect(word(qzeros!)).toBe(0x77777777);
    expect(gIdx!.dtype).toBe('I32');
    expect(packNibbles([1, 2, 3, 4, 5, 6, 7, 8], SEQUENTIAL_ORDER) >>> 0).toBe(0x87654321);
  });

  test('NF4: [0.5, -0.25, 0, 1] with absmax 1 packs to 0xC4 0x7F', () => {
    const { packed, absmax } = quantizeNf4Flat(Float32Array.from([0.5, -0.25, 0, 1]));
    expect([...packed]).toEqual([0xc4, 0x7f]);
    expect(absmax[0]).toBe(1);
    expect(NF4_TABLE.length).toBe(16);
  });
});

describe('round trips within each format\'s error bound (random matrices)', () => {
  const rows = 64;
  const cols = 256;
  const data = randomMatrix(rows, cols, 7);
  const weight = { name: 'w', shape: [rows, cols], data };

  // Half a step, plus the F16 rounding of the stored scale (≤ 2^-11 relative) times |q − zero| ≤ 8.
  test('AWQ and GPTQ (sym, asym): every weight within half a step of its group', () => {
    for (const [symmetric, minZero] of [[true, GPTQ_MIN_ZERO], [false, GPTQ_MIN_ZERO], [false, 0]] as const) {
      const m = quantizeInt4Rtn(weight, 128, symmetric, minZero);
      const viaAwq = unpackAwq(stored(packAwq('p', m)), 'p', rows, cols, 128);
      const back = dequantizeInt4(viaAwq);
      const viaGptq = minZero > 0 ? dequantizeInt4(unpackGptq(stored(packGptq('p', m)), 'p', rows, cols, 128)) : back;
      let worst = -Infinity;
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const scale = viaAwq.scales[Math.floor(c / 128) * rows + r]!;
          worst = Math.max(worst, Math.abs(back[r * cols + c]! - data[r * cols + c]!) - scale * (0.5 + 8 * 2 ** -11) - 1e-7);
        }
      }
      expect(worst).toBeLessThanOrEqual(0);
      expect(viaGptq).toEqual(back);
    }
  });

  test("AWQ's own min/max groups (AutoAWQ pseudo_quantize_tensor): every weight within half a step of (max − min) / 15", () => {
    const m = unpackAwq(stored(packAwq('p', quantizeAwq(weight, 128))), 'p', rows, cols, 128);
    const back = dequantizeInt4(m);
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < cols / 128; g++) {
        const scale = m.scales[g * rows + r]!;
        const group = data.subarray(r * cols + g * 128, r * cols + (g + 1) * 128);
        expect(scale).toBeCloseTo((Math.max(...group) - Math.min(...group)) / 15, 3);
        group.forEach((v, c) => expect(Math.abs(back[r * cols + g * 128 + c]! - v)).toBeLessThanOrEqual(scale * (0.5 + 8 * 2 ** -11) + 1e-7));
      }
    }
  });

  test('FP8 E4M3: decode table, ties to even, per-row scales; relative error ≤ 2^-4 above the subnormals', () => {
    expect(fp8E4m3ToFloat(0x7e)).toBe(448);
    expect(fp8E4m3ToFloat(0x01)).toBe(2 ** -9);
    expect(fp8E4m3ToFloat(0x38)).toBe(1);
    expect(Number.isNaN(fp8E4m3ToFloat(0x7f))).toBe(true);
    expect(floatToFp8E4m3(1 + 1 / 16)).toBe(0x38); // halfway between 1 and 1.125: even code
    expect(floatToFp8E4m3(1000)).toBe(0x7e);
    const tensors = quantizeFp8('m', weight);
    const back = FP8_LAYOUT.dequantize('m.weight', [rows, cols], stored(tensors));
    let worst = -Infinity;
    for (let r = 0; r < rows; r++) {
      const row = data.subarray(r * cols, (r + 1) * cols);
      const scale = maxAbs(row) / FP8_MAX;
      row.forEach((x, c) => (worst = Math.max(worst, Math.abs(back[r * cols + c]! - x) - Math.max(Math.abs(x) / 16, 2 ** -10 * scale) - 1e-9)));
    }
    expect(worst).toBeLessThanOrEqual(0);
  });

  // Half the widest NF4 gap (−1 → −0.6962) × absmax; double quantization adds the absmax error, at most
  // half the widest gap of the dynamic map (0.9 / 64 / 2 ≈ 0.0071) × the largest |absmax − mean|.
  test('NF4, plain and double-quantized: error ≤ half the widest NF4 gap × absmax (+ absmax error)', () => {
    const absmaxes = Array.from({ length: (rows * cols) / 64 }, (_, b) => maxAbs(data.subarray(b * 64, b * 64 + 64)));
    const mean = absmaxes.reduce((a, b) => a + b, 0) / absmaxes.length;
    const nested = Math.max(...absmaxes.map((a) => Math.abs(a - mean)));
    for (const doubleQuant of [false, true]) {
      const tensors = quantizeNf4('m', weight, doubleQuant, 'float32');
      const s = stored(tensors);
      NF4_LAYOUT.check('m.weight', [rows, cols], s);
      const back = NF4_LAYOUT.dequantize('m.weight', [rows, cols], s);
      let worst = -Infinity;
      for (let b = 0; b < (rows * cols) / 64; b++) {
        const block = data.subarray(b * 64, b * 64 + 64);
        const bound = ((1 - 0.6961928009986877) / 2) * absmaxes[b]! + (doubleQuant ? 0.0071 * nested : 0) + 1e-7;
        block.forEach((x, i) => (worst = Math.max(worst, Math.abs(back[b * 64 + i]! - x) - bound)));
      }
      expect(worst).toBeLessThanOrEqual(0);
    }
    const map = dynamicMap();
    expect(map.length).toBe(256);
    expect(map[0]).toBeCloseTo(-0.99297, 4);
    expect(map[255]).toBe(1);
  });

  test('Q4_K: each weight within one sub-block step of the original', () => {
    const back = dequantizeQ4K(quantizeQ4K(data), data.length);
    let worst = -Infinity;
    for (let s = 0; s < data.length / 32; s++) {
      const sub = data.subarray(s * 32, s * 32 + 32);
      const range = Math.max(...sub) - Math.min(0, Math.min(...sub));
      sub.forEach((x, i) => (worst = Math.max(worst, Math.abs(back[s * 32 + i]! - x) - range / 15 - 1e-4)));
    }
    expect(worst).toBeLessThanOrEqual(0);
    expect(quantizeQ4K(data).length).toBe((data.length / 256) * 144);
  });
});

describe('quantization_config keys and values as the loaders read them', () => {
  test('FbgemmFp8Config (transformers integrations/fbgemm_fp8.py; Meta Llama-3.1-405B-Instruct-FP8 config.json)', () => {
    expect(fp8QuantizationConfig(['lm_head'])).toEqual({ activation_scale_ub: 1200.0, modules_to_not_convert: ['lm_head'], quant_method: 'fbgemm_fp8' });
  });
  test('AwqConfig as AutoAWQ writes it (GEMM, zero point)', () => {
    expect(awqQuantizationConfig(128)).toEqual({ bits: 4, group_size: 128, modules_to_not_convert: null, quant_method: 'awq', version: 'gemm', zero_point: true });
  });
  test('GPTQConfig / AutoGPTQ BaseQuantizeConfig', () => {
    expect(gptqQuantizationConfig(DEFAULT_GPTQ)).toEqual({
      bits: 4, checkpoint_format: 'gptq', damp_percent: 0.01, desc_act: false, group_size: 128, model_file_base_name: null,
      model_name_or_path: null, quant_method: 'gptq', static_groups: false, sym: true, true_sequential: true,
    });
  });
  test('BitsAndBytesConfig.to_dict() for NF4', () => {
    expect(nf4QuantizationConfig(true, 'bfloat16')).toEqual({
      _load_in_4bit: true, _load_in_8bit: false, bnb_4bit_compute_dtype: 'bfloat16', bnb_4bit_quant_storage: 'uint8', bnb_4bit_quant_type: 'nf4',
      bnb_4bit_use_double_quant: true, llm_int8_enable_fp32_cpu_offload: false, llm_int8_has_fp16_weight: false, llm_int8_skip_modules: null,
      llm_int8_threshold: 6.0, load_in_4bit: true, load_in_8bit: false, quant_method: 'bitsandbytes',
    });
  });
});
