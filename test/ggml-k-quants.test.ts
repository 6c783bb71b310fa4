import fs from 'node:fs';
import path from 'node:path';
import { HerdError } from '../src/errors.js';
import { dequantizeKQuant, K_QUANT_BYTES, type KQuantType } from '../src/formats/ggml-k-quants.js';
import { GgmlType, readGgufHeader } from '../src/formats/gguf.js';
import { readFloatTensor, readSafetensorsHeader } from '../src/formats/safetensors.js';
import { GGUF_LLAMACPP } from './fixtures.js';

// Super-blocks written byte by byte from ggml-common.h's block structs, with codes and scales
// chosen so that every element has its own code and every 16 (or 32) elements their own scale:
// a code read from the wrong byte, nibble or bit, or a scale applied to the wrong elements,
// changes some element. Expected values follow each type's definition, rounding to float32
// where ggml's float arithmetic rounds.

const f32 = Math.fround;
// f16 bit patterns and their values.
const F16_ONE = 0x3c00;
const F16_HALF = 0x3800;
const F16_MAX = 0x7bff; // 65504
const F16_SMALLEST_SUBNORMAL = 0x0001; // 2^-24
const F16_ZERO = 0x0000;
const HALF_VALUES: Record<number, number> = { [F16_ONE]: 1, [F16_HALF]: 0.5, [F16_MAX]: 65504, [F16_SMALLEST_SUBNORMAL]: 2 ** -24, [F16_ZERO]: 0 };

function putHalf(block: Uint8Array, at: number, bits: number): void {
  block[at] = bits & 0xff;
  block[at + 1] = bits >> 8;
}

/** Element e = 128·h + 32·i + l of the types that split a super-block into halves and quarters. */
function position(e: number): { h: number; i: number; l: number } {
  return { h: e >> 7, i: (e >> 5) & 3, l: e & 31 };
}

/** A code for each of the 256 elements: every value of `levels` appears, neighbours differ. */
const codes = (levels: number, stride: number) => Array.from({ length: 256 }, (_, e) => (e * stride + (e >> 4)) % levels);

/** Packs eight 6-bit scales and eight 6-bit mins into 12 bytes as Q4_K and Q5_K store them. */
function packScalesAndMins(scales: number[], mins: number[]): Uint8Array {
  const bytes = new Uint8Array(12);
  for (let j = 0; j < 4; j++) {
    bytes[j] = (scales[j]! & 63) | ((scales[j + 4]! >> 4) << 6);
    bytes[j + 4] = (mins[j]! & 63) | ((mins[j + 4]! >> 4) << 6);
    bytes[j + 8] = (scales[j + 4]! & 0xf) | ((mins[j + 4]! & 0xf) << 4);
  }
  return bytes;
}

interface HandBuilt {
  block: Uint8Array;
  expected: Float32Array;
}

/** Q6_K: ql[128], qh[64], int8 scales[16], f16 d; w = d·scale·(q − 32), q of 6 bits. */
function q6kBlock(dBits: number): HandBuilt {
  const block = new Uint8Array(210);
  const q = codes(64, 37);
  const scales = Array.from({ length: 16 }, (_, j) => (j % 2 === 0 ? 1 : -1) * (j * 8 + 7)); // ±7 … ±127
  q.forEach((code, e) => {
    const { h, i, l } = position(e);
    block[64 * h + 32 * (i & 1) + l]! |= (code & 0xf) << (i < 2 ? 0 : 4);
    block[128 + 32 * h + l]! |= (code >> 4) << (2 * i);
  });
  scales.forEach((scale, j) => (block[192 + j] = scale & 0xff));
  putHalf(block, 208, dBits);
  const d = HALF_VALUES[dBits]!;
  return { block, expected: Float32Array.from(q, (code, e) => f32(d * scales[e >> 4]!) * (code - 32)) };
}

/** Q5_K: f16 d, f16 dmin, 12 bytes of scales and mins, qh[32], qs[128]; w = d·sc·q − dmin·m, q of 5 bits. */
function q5kBlock(dBits: number, dminBits: number): HandBuilt {
  const block = new Uint8Array(176);
  const q = codes(32, 7);
  const scales = [1, 63, 17, 40, 5, 33, 62, 48];
  const mins = [0, 9, 63, 21, 60, 2, 35, 50];
  putHalf(block, 0, dBits);
  putHalf(block, 2, dminBits);
  block.set(packScalesAndMins(scales, mins), 4);
  q.forEach((code, e) => {
    const j = e >> 5, l = e & 31;
    block[48 + 32 * (j >> 1) + l]! |= (code & 0xf) << (j % 2 === 0 ? 0 : 4);
    block[16 + l]! |= (code >> 4) << j;
  });
  const d = HALF_VALUES[dBits]!, dmin = HALF_VALUES[dminBits]!;
  return { block, expected: Float32Array.from(q, (code, e) => f32(f32(d * scales[e >> 5]!) * code) - f32(dmin * mins[e >> 5]!)) };
}

/** Q3_K: hmask[32], qs[64], 12 bytes of sixteen 6-bit scales (offset 32), f16 d; w = d·(s − 32)·(q − 4), q of 3 bits. */
function q3kBlock(dBits: number): HandBuilt {
  const block = new Uint8Array(110);
  const q = codes(8, 3);
  const scales = [0, 63, 1, 62, 17, 48, 32, 31, 5, 40, 22, 59, 12, 33, 45, 8];
  q.forEach((code, e) => {
    const { h, i, l } = position(e);
    block[32 + 32 * h + l]! |= (code & 3) << (2 * i);
    block[l]! |= (code >> 2) << (4 * h + i);
  });
  scales.forEach((s, j) => {
    block[96 + (j % 8)]! |= (s & 0xf) << (j < 8 ? 0 : 4);
    block[96 + 8 + (j % 4)]! |= (s >> 4) << (2 * Math.floor(j / 4));
  });
  putHalf(block, 108, dBits);
  const d = HALF_VALUES[dBits]!;
  return { block, expected: Float32Array.from(q, (code, e) => f32(d * (scales[e >> 4]! - 32)) * (code - 4)) };
}

/** Q2_K: scales[16] (low nibble scale, high nibble min), qs[64], f16 d, f16 dmin; w = d·sc·q − dmin·m, q of 2 bits. */
function q2kBlock(dBits: number, dminBits: number): HandBuilt {
  const block = new Uint8Array(84);
  const q = codes(4, 1);
  const scales = Array.from({ length: 16 }, (_, j) => (j * 7 + 1) % 16);
  const mins = Array.from({ length: 16 }, (_, j) => (j * 5 + 3) % 16);
  scales.forEach((s, j) => (block[j] = s | (mins[j]! << 4)));
  q.forEach((code, e) => {
    const { h, i, l } = position(e);
    block[16 + 32 * h + l]! |= code << (2 * i);
  });
  putHalf(block, 80, dBits);
  putHalf(block, 82, dminBits);
  const d = HALF_VALUES[dBits]!, dmin = HALF_VALUES[dminBits]!;
  return { block, expected: Float32Array.from(q, (code, e) => f32(f32(d * scales[e >> 4]!) * code) - f32(dmin * mins[e >> 4]!)) };
}

// ggml's kvalues_iq4nl, written out here from ggml-common.h.
const IQ4_LEVELS = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/** IQ4_XS: f16 d, u16 scales_h, scales_l[4], qs[128]; w = d·(s − 32)·level[index], a 6-bit s per 32. */
function iq4xsBlock(dBits: number): HandBuilt {
  const block = new Uint8Array(136);
  const indexes = codes(16, 5);
  const scales = [0, 63, 32, 31, 1, 47, 16, 58];
  putHalf(block, 0, dBits);
  let scalesHigh = 0;
  scales.forEach((s, b) => {
    block[4 + (b >> 1)]! |= (s & 0xf) << (4 * (b & 1));
    scalesHigh |= (s >> 4) << (2 * b);
  });
  putHalf(block, 2, scalesHigh);
  indexes.forEach((index, e) => {
    const b = e >> 5, l = e & 31;
    block[8 + 16 * b + (l & 15)]! |= index << (l < 16 ? 0 : 4);
  });
  const d = HALF_VALUES[dBits]!;
  return { block, expected: Float32Array.from(indexes, (index, e) => f32(d * (scales[e >> 5]! - 32)) * IQ4_LEVELS[index]!) };
}

/** One hand-built super-block of each type for a super-scale d (dmin 1/2 where the type has one). */
const HAND_BUILT: Record<KQuantType, (dBits: number) => HandBuilt> = {
  Q6_K: q6kBlock,
  Q5_K: (dBits) => q5kBlock(dBits, F16_HALF),
  Q3_K: q3kBlock,
  Q2_K: (dBits) => q2kBlock(dBits, F16_HALF),
  IQ4_XS: iq4xsBlock,
};

const TYPES = Object.keys(HAND_BUILT) as KQuantType[];

describe('dequantization follows the block definitions', () => {
  const scales = [['1', F16_ONE], ['the f16 maximum', F16_MAX], ['the smallest f16 subnormal', F16_SMALLEST_SUBNORMAL], ['zero', F16_ZERO]] as const;
  describe.each(TYPES)('%s', (type) => {
    test.each(scales)('super-scale d = %s', (_, dBits) => {
      const { block, expected } = HAND_BUILT[type](dBits);
      expect(block).toHaveLength(K_QUANT_BYTES[type]);
      expect([...dequantizeKQuant(type, block, 256)]).toEqual([...expected]);
    });

    test('two super-blocks in a row each use their own scales', () => {
      const first = HAND_BUILT[type](F16_ONE), second = HAND_BUILT[type](F16_MAX);
      const bytes = new Uint8Array([...first.block, ...second.block]);
      expect([...dequantizeKQuant(type, bytes, 512)]).toEqual([...first.expected, ...second.expected]);
    });

    test('a count that is not whole super-blocks, or too few bytes, is one clear error', () => {
      const { block } = HAND_BUILT[type](F16_ONE);
      expect(() => dequantizeKQuant(type, block, 200)).toThrow(new HerdError(`${type}: 200 weights are not whole super-blocks of 256`));
      expect(() => dequantizeKQuant(type, block, 512)).toThrow(HerdError);
    });
  });

  // With dmin at the f16 extremes too: the min term alone (codes 0) or swamping the scaled code.
  test.each([['Q5_K', q5kBlock], ['Q2_K', q2kBlock]] as const)('%s with dmin at the f16 maximum, a subnormal and zero', (type, build) => {
    for (const dminBits of [F16_MAX, F16_SMALLEST_SUBNORMAL, F16_ZERO]) {
      const { block, expected } = build(F16_ONE, dminBits);
      expect([...dequantizeKQuant(type, block, 256)]).toEqual([...expected]);
    }
  });
});

// llama.cpp quantized the source checkpoint's F32 weights into these files; dequantized, they
// must come back close to the source. ffn_down, ffn_up and output keep HF's row order in GGUF.
describe("llama.cpp's own K-quant files dequantize close to their F32 source", () => {
  const source = path.join(GGUF_LLAMACPP, 'source/model.safetensors');
  const entries = new Map(readSafetensorsHeader(source).map((entry) => [entry.name, entry]));
  const HF_NAMES: Record<string, string> = {
    'output.weight': 'lm_head.weight',
    'blk.0.ffn_up.weight': 'model.layers.0.mlp.up_proj.weight',
    'blk.1.ffn_down.weight': 'model.layers.1.mlp.down_proj.weight',
    'blk.2.ffn_down.weight': 'model.layers.2.mlp.down_proj.weight',
    'blk.3.ffn_up.weight': 'model.layers.3.mlp.up_proj.weight',
  };

  function relativeRmsError(file: string, tensor: string, type: KQuantType): number {
    const header = readGgufHeader(path.join(GGUF_LLAMACPP, file));
    const info = header.tensors.get(tensor)!;
    expect(GgmlType[info.type]).toBe(type);
    const bytes = new Uint8Array(info.byteLength);
    const fd = fs.openSync(header.file, 'r');
    const sourceFd = fs.openSync(source, 'r');
    try {
      fs.readSync(fd, bytes, 0, bytes.length, info.begin);
      const reference = readFloatTensor(entries.get(HF_NAMES[tensor]!)!, sourceFd);
      expect([...info.dims].reverse()).toEqual(reference.shape);
      const values = dequantizeKQuant(type, bytes, reference.data.length);
      let error = 0, energy = 0;
      reference.data.forEach((x, i) => {
        error += (values[i]! - x) ** 2;
        energy += x * x;
      });
      return Math.sqrt(error / energy);
    } finally {
      fs.closeSync(fd);
      fs.closeSync(sourceFd);
    }
  }

  // 6 bits with a scale per 16 weights: about 1–2 % relative RMS error for these weights.
  test.each(['output.weight', 'blk.0.ffn_up.weight', 'blk.1.ffn_down.weight'])('Q6_K %s in model-Q6_K.gguf', (tensor) => {
    const error = relativeRmsError('model-Q6_K.gguf', tensor, 'Q6_K');
    expect(error).toBeGreaterThan(0.005);
    expect(error).toBeLessThan(0.025);
  });

  test.each(['output.weight', 'blk.2.ffn_down.weight'])('Q6_K %s in model-Q5_K_M.gguf', (tensor) => {
    const error = relativeRmsError('model-Q5_K_M.gguf', tensor, 'Q6_K');
    expect(error).toBeGreaterThan(0.005);
    expect(error).toBeLessThan(0.025);
  });

  // 5 bits with a scale and min per 32: about 3–4 %.
  test.each(['blk.0.ffn_up.weight', 'blk.1.ffn_down.weight', 'blk.3.ffn_up.weight'])('Q5_K %s in model-Q5_K_M.gguf', (tensor) => {
    const error = relativeRmsError('model-Q5_K_M.gguf', tensor, 'Q5_K');
    expect(error).toBeGreaterThan(0.02);
    expect(error).toBeLessThan(0.05);
  });
});
