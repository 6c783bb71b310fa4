import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GgmlType, readGgufHeader } from '../src/formats/gguf.js';
import { dequantizeGgml } from '../src/formats/ggml-dequantize.js';
import { GgufWeights } from '../src/formats/gguf-llama.js';
import type { LlamaConfig } from '../src/spec/llama-config.js';

// Every expectation below comes from ggml's definitions, written out by hand: the block sizes of
// ggml-common.h's static_asserts and the formulas of ggml-quants.c's dequantize_row_*.

/** [elements per block, bytes per block] of every ggml type, from ggml-common.h's block structs. */
const GEOMETRY: Array<[string, number, number, number]> = [
  ['F32', 0, 1, 4], ['F16', 1, 1, 2], ['Q4_0', 2, 32, 18], ['Q4_1', 3, 32, 20], ['Q5_0', 6, 32, 22], ['Q5_1', 7, 32, 24],
  ['Q8_0', 8, 32, 34], ['Q8_1', 9, 32, 36], ['Q2_K', 10, 256, 84], ['Q3_K', 11, 256, 110], ['Q4_K', 12, 256, 144],
  ['Q5_K', 13, 256, 176], ['Q6_K', 14, 256, 210], ['Q8_K', 15, 256, 292], ['IQ2_XXS', 16, 256, 66], ['IQ2_XS', 17, 256, 74],
  ['IQ3_XXS', 18, 256, 98], ['IQ1_S', 19, 256, 50], ['IQ4_NL', 20, 32, 18], ['IQ3_S', 21, 256, 110], ['IQ2_S', 22, 256, 82],
  ['IQ4_XS', 23, 256, 136], ['I8', 24, 1, 1], ['I16', 25, 1, 2], ['I32', 26, 1, 4], ['I64', 27, 1, 8], ['F64', 28, 1, 8],
  ['IQ1_M', 29, 256, 56], ['BF16', 30, 1, 2], ['TQ1_0', 34, 256, 54], ['TQ2_0', 35, 256, 66], ['MXFP4', 39, 32, 17],
];

interface RawTensor {
  name: string;
  type: number;
  dims: number[];
  bytes: number;
}

/**
 * A GGUF v3 file built byte by byte (herd's writer only writes the types herd produces): no
 * metadata, the tensor table, then each tensor's bytes (filled with `fill`) at 32-byte alignment.
 */
function rawGguf(tensors: RawTensor[], dataBytes?: number): string {
  const parts: Buffer[] = [];
  const u32 = (x: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(x); parts.push(b); };
  const u64 = (x: number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(x)); parts.push(b); };
  u32(0x46554747);
  u32(3);
  u64(tensors.length);
  u64(0);
  let offset = 0;
  for (const tensor of tensors) {
    u64(Buffer.byteLength(tensor.name));
    parts.push(Buffer.from(tensor.name));
    u32(tensor.dims.length);
    tensor.dims.forEach(u64);
    u32(tensor.type);
    u64(offset);
    offset += Math.ceil(tensor.bytes / 32) * 32;
  }
  const header = Buffer.concat(parts);
  const start = Math.ceil(header.length / 32) * 32;
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'herd-ggml-types-')), 'types.gguf');
  fs.writeFileSync(file, Buffer.concat([header, Buffer.alloc(start - header.length), Buffer.alloc(dataBytes ?? offset, 7)]));
  return file;
}

describe('the GGUF header knows every ggml type', () => {
  test('a file with a tensor of each type opens, and each tensor has the size of its blocks', () => {
    // Two blocks per row and three rows: 6 blocks each.
    const tensors = GEOMETRY.map(([name, id, block, bytes]) => ({ name: `t.${name}`, type: id, dims: [2 * block, 3], bytes: 6 * bytes }));
    const file = rawGguf(tensors);
    const header = readGgufHeader(file);
    let begin = header.tensors.get('t.F32')!.begin;
    for (const [name, id, , bytes] of GEOMETRY) {
      const info = header.tensors.get(`t.${name}`)!;
      expect([name, info.type, GgmlType[info.type], info.byteLength, info.begin]).toEqual([name, id, name, 6 * bytes, begin]);
      begin += Math.ceil((6 * bytes) / 32) * 32;
    }
  });

  test('an unknown type id is one line naming the file and the tensor', () => {
    const file = rawGguf([{ name: 'blk.0.ffn_up.weight', type: 31, dims: [32, 2], bytes: 64 }]);
    expect(() => readGgufHeader(file)).toThrow(/^types\.gguf: tensor blk\.0\.ffn_up\.weight has unknown ggml type 31$/);
  });

  test('data shorter than a tensor of that type needs is one line naming the file and the tensor', () => {
    // Q5_1 [64, 2] needs 4 blocks of 24 bytes = 96; the file holds 95.
    const file = rawGguf([{ name: 'blk.0.attn_q.weight', type: 7, dims: [64, 2], bytes: 96 }], 95);
    expect(() => readGgufHeader(file)).toThrow(/^types\.gguf: tensor blk\.0\.attn_q\.weight ends past the end of the file \(truncated\)$/);
  });

  test('rows that do not split into whole blocks are refused', () => {
    const file = rawGguf([{ name: 'blk.0.attn_k.weight', type: 20, dims: [48, 1], bytes: 36 }]);
    expect(() => readGgufHeader(file)).toThrow(/^types\.gguf: tensor blk\.0\.attn_k\.weight has rows of 48 values, not a multiple of IQ4_NL's block of 32$/);
  });
});

// ---------------------------------------------------------------------------------------------
// Blocks written by hand

const F16 = { one: 0x3c00, half: 0x3800, minusTwo: 0xc000, max: 0x7bff, minusMax: 0xfbff, tiniest: 0x0001, smallestNormal: 0x0400, zero: 0 };
const F16_VALUE = { one: 1, half: 0.5, minusTwo: -2, max: 65504, minusMax: -65504, tiniest: 2 ** -24, smallestNormal: 2 ** -14, zero: 0 };

const le16 = (x: number) => [x & 0xff, (x >> 8) & 0xff];
const le32 = (x: number) => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, (x >>> 24) & 0xff];

/** 16 bytes holding 32 4-bit codes: element j in the low nibble of byte j, j + 16 in its high nibble. */
const nibbles = (codes: number[]) => Array.from({ length: 16 }, (_, j) => (codes[j]! & 15) | ((codes[j + 16]! & 15) << 4));
/** Q5's qh: bit j is the fifth bit of code j. */
const fifthBits = (codes: number[]) => le32(codes.reduce((word, q, j) => word | (((q >> 4) & 1) << j), 0) >>> 0);

const codes16 = Array.from({ length: 32 }, (_, j) => (j * 7 + 3) % 16);
const codes32 = Array.from({ length: 32 }, (_, j) => (j * 13 + 5) % 32);
const dequantize = (type: GgmlType, bytes: number[], count: number) => [...dequantizeGgml(type, Uint8Array.from(bytes), count)];
const f32 = Math.fround;

describe('dequantization follows ggml\'s block definitions', () => {
  test('Q4_1: x = q·d + m', () => {
    const cases: Array<[keyof typeof F16, keyof typeof F16]> = [['half', 'minusTwo'], ['max', 'minusMax'], ['tiniest', 'zero'], ['zero', 'one'], ['smallestNormal', 'tiniest']];
    for (const [d, m] of cases) {
      const out = dequantize(GgmlType.Q4_1, [...le16(F16[d]), ...le16(F16[m]), ...nibbles(codes16)], 32);
      expect(out).toEqual(codes16.map((q) => f32(q * F16_VALUE[d] + F16_VALUE[m])));
    }
  });

  test('Q4_1 reads element j from the low nibble and j + 16 from the high one', () => {
    const bytes = [...le16(F16.one), ...le16(F16.zero), 0x21, ...new Array(15).fill(0)];
    const out = dequantize(GgmlType.Q4_1, bytes, 32);
    expect([out[0], out[16], out[1]]).toEqual([1, 2, 0]);
  });

  test('Q5_0: x = (q − 16)·d with the fifth bits in qh', () => {
    for (const d of ['half', 'max', 'tiniest', 'zero'] as const) {
      const out = dequantize(GgmlType.Q5_0, [...le16(F16[d]), ...fifthBits(codes32), ...nibbles(codes32)], 32);
      expect(out).toEqual(codes32.map((q) => (q - 16) * F16_VALUE[d]));
    }
    // Only bit 31 of qh set: element 31 is 16 + 0 − 16 = 0, every other element −16·d.
    const high = dequantize(GgmlType.Q5_0, [...le16(F16.one), 0, 0, 0, 0x80, ...new Array(16).fill(0)], 32);
    expect(high).toEqual([...new Array(31).fill(-16), 0]);
  });

  test('Q5_1: x = q·d + m with the fifth bits in qh', () => {
    for (const [d, m] of [['half', 'minusTwo'], ['max', 'minusMax'], ['tiniest', 'smallestNormal']] as const) {
      const out = dequantize(GgmlType.Q5_1, [...le16(F16[d]), ...le16(F16[m]), ...fifthBits(codes32), ...nibbles(codes32)], 32);
      expect(out).toEqual(codes32.map((q) => f32(q * F16_VALUE[d] + F16_VALUE[m])));
    }
  });

  test('IQ4_NL: x = d · level[q] on its 16 non-linear levels', () => {
    const levels = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
    for (const d of ['half', 'max', 'tiniest', 'zero'] as const) {
      const out = dequantize(GgmlType.IQ4_NL, [...le16(F16[d]), ...nibbles(codes16)], 32);
      expect(out).toEqual(codes16.map((q) => f32(levels[q]! * F16_VALUE[d])));
    }
  });

  test('BF16 is the upper half of a float32', () => {
    // 1, −2, the largest finite bfloat16, the smallest subnormal, −0.
    const bits = [0x3f80, 0xc000, 0x7f7f, 0x0001, 0x8000];
    expect(dequantize(GgmlType.BF16, bits.flatMap(le16), 5)).toEqual([1, -2, f32((2 - 2 ** -7) * 2 ** 127), 2 ** -133, -0]);
  });

  test('MXFP4: E2M1 codes times the block\'s power of two', () => {
    // E2M1's values; ggml's table (int8, doubled) has no −0, so code 8 is +0.
    const e2m1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6];
    const all = Array.from({ length: 32 }, (_, j) => j % 16);
    // E8M0 exponent 127 is a scale of 1, 130 of 8, 0 of 2^−127.
    for (const [e, scale] of [[127, 1], [130, 8], [0, 2 ** -127]]) {
      expect(dequantize(GgmlType.MXFP4, [e!, ...nibbles(all)], 32)).toEqual(all.map((q) => f32(e2m1[q]! * scale!)));
    }
  });

  test('Q8_1: x = q·d (the stored sum is not part of the value)', () => {
    const q = Array.from({ length: 32 }, (_, j) => (j * 37) % 255 - 127);
    const out = dequantize(GgmlType.Q8_1, [...le16(F16.half), ...le16(F16.max), ...q.map((v) => v & 0xff)], 32);
    expect(out).toEqual(q.map((v) => v * 0.5));
  });

  test('Q8_K: a float32 scale for 256 int8 codes', () => {
    const q = Array.from({ length: 256 }, (_, j) => ((j * 11) % 256) - 128);
    const d = new Uint8Array(Float32Array.of(0.1).buffer);
    const out = dequantize(GgmlType.Q8_K, [...d, ...q.map((v) => v & 0xff), ...new Array(32).fill(0)], 256);
    expect(out).toEqual(q.map((v) => f32(v * f32(0.1))));
  });

  test('TQ2_0: x = (q − 1)·d, bit pair l of byte m giving element 32l + m of its 128', () => {
    const digits = Array.from({ length: 256 }, (_, i) => (i * 5 + (i >> 3)) % 3); // codes 0..2
    const qs = Array.from({ length: 64 }, (_, byte) => {
      const half = byte >> 5, m = byte & 31;
      return [0, 1, 2, 3].reduce((b, l) => b | (digits[half * 128 + 32 * l + m]! << (2 * l)), 0);
    });
    expect(dequantize(GgmlType.TQ2_0, [...qs, ...le16(F16.half)], 256)).toEqual(digits.map((q) => (q - 1) * 0.5));
  });

  test('TQ1_0: five base-3 digits per byte as a fraction of 243, four in each qh byte', () => {
    const digits = Array.from({ length: 256 }, (_, i) => (i * 7 + (i >> 4)) % 3);
    // A byte's digits d0 (most significant) … d4 are stored as ⌈(Σ d_n·3^(4−n)) · 256 / 243⌉.
    const pack = (ds: number[]) => Math.ceil((ds.reduce((v, d) => v * 3 + d, 0) * 256) / 243);
    // Bytes 0..31: digit n of byte m is element 32n + m; bytes 32..47: element 160 + 16n + m;
    // qh byte j: digit n (of 4, padded with a fifth 0) is element 240 + 4n + j.
    const qs = [
      ...Array.from({ length: 32 }, (_, m) => pack([0, 1, 2, 3, 4].map((n) => digits[32 * n + m]!))),
      ...Array.from({ length: 16 }, (_, m) => pack([0, 1, 2, 3, 4].map((n) => digits[160 + 16 * n + m]!))),
      ...Array.from({ length: 4 }, (_, j) => pack([...[0, 1, 2, 3].map((n) => digits[240 + 4 * n + j]!), 0])),
    ];
    expect(dequantize(GgmlType.TQ1_0, [...qs, ...le16(F16.minusTwo)], 256)).toEqual(digits.map((q) => (q - 1) * -2));
  });

  test('element types widen exactly', () => {
    expect(dequantize(GgmlType.F64, [...new Uint8Array(Float64Array.of(0.1, -3).buffer)], 2)).toEqual([f32(0.1), -3]);
    expect(dequantize(GgmlType.I8, [0xff, 0x7f], 2)).toEqual([-1, 127]);
    expect(dequantize(GgmlType.I16, [...le16(0x8000), ...le16(7)], 2)).toEqual([-32768, 7]);
    expect(dequantize(GgmlType.I32, [...le32(0xfffffffe)], 1)).toEqual([-2]);
    expect(dequantize(GgmlType.I64, [...new Uint8Array(BigInt64Array.of(-5n).buffer)], 1)).toEqual([-5]);
  });
});

describe('types herd cannot dequantize', () => {
  test('the IQ grids are refused in one line naming the file, the type and the tensor', () => {
    const place = { file: 'model.gguf', tensor: 'blk.0.ffn_up.weight' };
    for (const [type, bytes] of [[GgmlType.IQ2_XS, 74], [GgmlType.IQ1_M, 56], [GgmlType.IQ3_S, 110]] as const) {
      expect(() => dequantizeGgml(type, new Uint8Array(bytes), 256, place)).toThrow(
        new RegExp(`^model\\.gguf: herd cannot compute on or dequantize ${GgmlType[type]} \\(tensor blk\\.0\\.ffn_up\\.weight\\)$`),
      );
    }
  });

  test('bytes that are not the tensor\'s size are refused', () => {
    expect(() => dequantizeGgml(GgmlType.Q5_0, new Uint8Array(21), 32, { file: 'model.gguf', tensor: 'output.weight' })).toThrow(
      /^model\.gguf: Q5_0 data of 21 bytes is not 32 elements in blocks of 32 \(tensor output\.weight\)$/,
    );
  });
});

describe('GGUF tensors as a weight source', () => {
  // ffn tensors only: the config matters just for q and k, whose rows GGUF permutes.
  const config = { numAttentionHeads: 1, numKeyValueHeads: 1 } as LlamaConfig;
  const tensors = [
    { name: 'blk.0.ffn_up.weight', type: GgmlType.Q5_1, dims: [64, 2], bytes: 4 * 24 },
    { name: 'blk.0.ffn_down.weight', type: GgmlType.BF16, dims: [64, 2], bytes: 256 },
    { name: 'blk.0.ffn_gate.weight', type: GgmlType.IQ2_XS, dims: [256, 1], bytes: 74 },
    { name: 'blk.1.ffn_up.weight', type: GgmlType.Q8_K, dims: [256, 1], bytes: 292 },
    { name: 'blk.1.ffn_down.weight', type: GgmlType.Q4_0, dims: [32, 1], bytes: 18 },
  ];

  test('the kernels get Q4_1/Q5_0/Q5_1/IQ4_NL and BF16 as stored; other quantized types say they are dequantized at load', () => {
    const weights = new GgufWeights(readGgufHeader(rawGguf(tensors)), config);
    expect(weights.describePacked('model.layers.0.mlp.up_proj.weight')).toEqual({ format: 'Q5_1', shape: [2, 64], byteLength: 96 });
    expect(weights.describePacked('model.layers.0.mlp.down_proj.weight')).toEqual({ format: 'BF16', shape: [2, 64], byteLength: 256 });
    expect(weights.describePacked('model.layers.1.mlp.up_proj.weight')).toBeNull();
    expect(weights.dequantizedAtLoad('model.layers.1.mlp.up_proj.weight')).toEqual({ type: 'Q8_K', bytesPerWeight: 292 / 256 });
    expect(weights.dequantizedAtLoad('model.layers.1.mlp.down_proj.weight')).toBeNull();
    expect(weights.dequantizedAtLoad('model.layers.0.mlp.down_proj.weight')).toBeNull();
    weights.close();
  });

  test('reading a type herd cannot dequantize is one line naming the file, the type and the tensor', () => {
    const weights = new GgufWeights(readGgufHeader(rawGguf(tensors)), config);
    expect(() => weights.readFloat('model.layers.0.mlp.gate_proj.weight')).toThrow(/\/types\.gguf: herd cannot compute on or dequantize IQ2_XS \(tensor blk\.0\.ffn_gate\.weight\)$/);
    weights.close();
  });
});
