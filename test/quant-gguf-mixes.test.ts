import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openModelFolder } from '../src/engine/load.js';
import { GGML_LAYOUT, GgmlType, readGgufHeader, type GgufFile, type GgufTensorInfo } from '../src/formats/gguf.js';
import { GgufWeights } from '../src/formats/gguf-llama.js';
import { ggufNameOf } from '../src/spec/tensors.js';
import { ggmlTypeFor, useMoreBits, type GgufMix } from '../src/formats/gguf-recipe.js';
import { quantizeLegacyBlocks } from '../src/formats/ggml-quantize-legacy.js';
import type { LlamaConfig } from '../src/spec/llama-config.js';
import { DEFAULT_CALIBRATION_FILE } from '../src/quant/calibration.js';
import { runQuantizeJob, type FormatResult, type QuantFormat } from '../src/quant/job.js';
import { GGUF_LLAMACPP, STORIES, readJson } from './fixtures.js';

/**
 * herd's llama.cpp mixes against llama.cpp's own files of the fixture's model (gguf-llamacpp:
 * Q4_K_M, Q5_K_M, Q6_K and Q8_0 quantized by llama_model_quantize from the F32 checkpoint in
 * source/): the type of every tensor, general.file_type, and the quantized bytes themselves.
 */

const SOURCE = path.join(GGUF_LLAMACPP, 'source');

interface ReferenceFile {
  file: string | null;
  'general.file_type': number;
  tensor_types: Record<string, string>;
}
const reference = readJson<{ files: Record<string, ReferenceFile> }>(path.join(GGUF_LLAMACPP, 'reference.json'));

/** herd's format for each llama.cpp file of the fixture. */
const LLAMA_CPP_FILES: Array<[string, QuantFormat]> = [['Q4_K_M', 'gguf-q4_k_m'], ['Q5_K_M', 'gguf-q5_k_m'], ['Q6_K', 'gguf-q6_k'], ['Q8_0', 'gguf-q8_0']];

function typesOf(file: GgufFile): Record<string, string> {
  return Object.fromEntries([...file.tensors.values()].map((t) => [t.name, GgmlType[t.type]]));
}

function tensorBytes(file: GgufFile, info: GgufTensorInfo): Uint8Array {
  const fd = fs.openSync(file.file, 'r');
  try {
    const bytes = new Uint8Array(info.byteLength);
    fs.readSync(fd, bytes, 0, bytes.length, info.begin);
    return bytes;
  } finally {
    fs.closeSync(fd);
  }
}

/** rms(back − original) / rms(original). */
function relativeRmsError(original: Float32Array, back: Float32Array): number {
  let error = 0;
  let energy = 0;
  original.forEach((v, i) => {
    error += (back[i]! - v) ** 2;
    energy += v * v;
  });
  return Math.sqrt(error / energy);
}

describe('herd writes llama.cpp mixes of the fixture model as llama.cpp does', () => {
  let results: FormatResult[];
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-gguf-mixes-'));

  beforeAll(async () => {
    results = await runQuantizeJob({
      modelDir: SOURCE, outDir: out, formats: LLAMA_CPP_FILES.map(([, format]) => format),
      calibration: { file: DEFAULT_CALIBRATION_FILE, samples: 1, seqLen: 32 }, gptq: { symmetric: true, actOrder: false, dampPercent: 0.01 }, nf4DoubleQuant: false,
    });
  });

  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  test.each(LLAMA_CPP_FILES)('%s: every tensor has llama.cpp\'s type and general.file_type is llama.cpp\'s', (name, format) => {
    const written = readGgufHeader(results.find((r) => r.format === format)!.path);
    expect(typesOf(written)).toEqual(reference.files[name]!.tensor_types);
    expect(written.metadata.get('general.file_type')).toBe(reference.files[name]!['general.file_type']);
    expect(written.metadata.get('general.quantization_version')).toBe(2);
  });

  // llama.cpp quantized the same F32 tensors (q/k rows permuted as herd writes them) with its reference
  // quantizers; herd's float32 ports reproduce them bit for bit, block by block. The F32 tensors
  // (norms, rope_freqs) are compared whole.
  test.each(LLAMA_CPP_FILES)('%s: every block herd writes is byte-identical to llama.cpp\'s', (name, format) => {
    const theirs = readGgufHeader(path.join(GGUF_LLAMACPP, reference.files[name]!.file!));
    const ours = readGgufHeader(results.find((r) => r.format === format)!.path);
    const counts = new Map<string, { blocks: number; identical: number }>();
    for (const info of theirs.tensors.values()) {
      const mine = ours.tensors.get(info.name)!;
      expect([info.name, GgmlType[mine.type], mine.byteLength]).toEqual([info.name, GgmlType[info.type], info.byteLength]);
      const blockBytes = info.type === GgmlType.F32 ? info.byteLength : GGML_LAYOUT[info.type].bytes;
      const [a, b] = [tensorBytes(ours, mine), tensorBytes(theirs, info)];
      const count = counts.get(GgmlType[info.type]) ?? { blocks: 0, identical: 0 };
      for (let at = 0; at < b.length; at += blockBytes) {
        count.blocks++;
        if (Buffer.compare(a.subarray(at, at + blockBytes), b.subarray(at, at + blockBytes)) === 0) count.identical++;
      }
      counts.set(GgmlType[info.type], count);
    }
    console.log(`${name}: ${[...counts].map(([type, c]) => `${type} ${c.identical}/${c.blocks}`).join(', ')} blocks identical to llama.cpp's`);
    for (const [type, c] of counts) expect([type, c.identical]).toEqual([type, c.blocks]);
  });

  // Round trip: herd reads back what it wrote (GgufWeights, q/k rows returned to HF order). Bounds from
  // uniform quantization, rms error ≈ step/√12 with ~2^bits steps over a block's ±2σ: about 0.08σ for
  // 4 bits, 0.04σ for 5, 0.02σ for 6, 0.005σ for 8; a wrong row order would give ≈ 1.4σ.
  const BOUND: Partial<Record<string, number>> = { Q4_K: 0.12, Q5_K: 0.06, Q6_K: 0.03, Q8_0: 0.01, F32: 0 };
  test.each(LLAMA_CPP_FILES)('%s: herd reads its file back into the source tensors within the type\'s rounding', (_name, format) => {
    const { weights } = GgufWeights.open(results.find((r) => r.format === format)!.path);
    const source = openModelFolder(SOURCE).checkpoint;
    try {
      for (const hf of source.names()) {
        const original = source.readFloat(hf).data;
        const back = weights.readFloat(hf).data;
        const type = GgmlType[weights.file.tensors.get(ggufNameOf(hf))!.type];
        expect([hf, type, relativeRmsError(original, back) <= BOUND[type]!]).toEqual([hf, type, true]);
      }
    } finally {
      weights.close();
      source.close();
    }
  });
});


/**
 * The types llama.cpp's rules give stories260K, whose rows do not split into super-blocks of 256:
 * hidden 64 (the columns of token_embd, attn_q/k/v/output, ffn_gate/up), intermediate 172 (the
 * columns of ffn_down), 5 layers, tied embeddings (no output.weight, so llama.cpp quantizes
 * token_embd as the output). use_more_bits(i, 5) holds for i = 2 ((2 − 5/8) % 3 == 2) and i = 4
 * (i ≥ 7·5/8 = 4).
 */
interface StoriesTypes {
  tokenEmbd: string;
  /** attn_q, attn_k, attn_output, ffn_gate, ffn_up. */
  matrix: string;
  /** attn_v of layers 0, 1, 3 and of the use_more_bits layers 2, 4. */
  attnV: [string, string];
  /** ffn_down: 172 columns fit neither 256 nor 32, so whatever the recipe wants ends as F16. */
  ffnDown: string;
}

const STORIES_TYPES: Array<[QuantFormat, StoriesTypes]> = [
  // Q4_K does not fit 64 columns → Q5_0; the output rule: 64 % 256 ≠ 0 → Q8_0; attn_v of layers 2, 4 wants Q6_K → Q8_0.
  ['gguf-q4_k_m', { tokenEmbd: 'Q8_0', matrix: 'Q5_0', attnV: ['Q5_0', 'Q8_0'], ffnDown: 'F16' }],
  // Q5_K → Q5_1.
  ['gguf-q5_k_m', { tokenEmbd: 'Q8_0', matrix: 'Q5_1', attnV: ['Q5_1', 'Q8_0'], ffnDown: 'F16' }],
  // Q6_K → Q8_0 everywhere.
  ['gguf-q6_k', { tokenEmbd: 'Q8_0', matrix: 'Q8_0', attnV: ['Q8_0', 'Q8_0'], ffnDown: 'F16' }],
  // 32-block mixes: the output rule wants Q6_K (64 % 32 = 0, not Q8_0), which falls back to Q8_0. For ffn_down
  // llama.cpp defines no fallback from a 32-block type and stops; herd writes F16.
  ['gguf-q4_1', { tokenEmbd: 'Q8_0', matrix: 'Q4_1', attnV: ['Q4_1', 'Q4_1'], ffnDown: 'F16' }],
  ['gguf-q5_0', { tokenEmbd: 'Q8_0', matrix: 'Q5_0', attnV: ['Q5_0', 'Q5_0'], ffnDown: 'F16' }],
  ['gguf-q8_0', { tokenEmbd: 'Q8_0', matrix: 'Q8_0', attnV: ['Q8_0', 'Q8_0'], ffnDown: 'F16' }],
  // --pure files: no output rule, token_embd is a matrix like the others (Q4_K → Q5_0).
  ['gguf-q4_k', { tokenEmbd: 'Q5_0', matrix: 'Q5_0', attnV: ['Q5_0', 'Q5_0'], ffnDown: 'F16' }],
  ['gguf-q4_0', { tokenEmbd: 'Q4_0', matrix: 'Q4_0', attnV: ['Q4_0', 'Q4_0'], ffnDown: 'F16' }],
  ['gguf-f16', { tokenEmbd: 'F16', matrix: 'F16', attnV: ['F16', 'F16'], ffnDown: 'F16' }],
];

function storiesExpected(types: StoriesTypes): Record<string, string> {
  const expected: Record<string, string> = { 'token_embd.weight': types.tokenEmbd, 'output_norm.weight': 'F32' };
  for (let layer = 0; layer < 5; layer++) {
    const tensor = (name: string, type: string) => (expected[`blk.${layer}.${name}.weight`] = type);
    for (const name of ['attn_q', 'attn_k', 'attn_output', 'ffn_gate', 'ffn_up']) tensor(name, types.matrix);
    tensor('attn_v', types.attnV[layer === 2 || layer === 4 ? 1 : 0]);
    tensor('ffn_down', types.ffnDown);
    tensor('attn_norm', 'F32');
    tensor('ffn_norm', 'F32');
  }
  return expected;
}

describe('rows that are not whole super-blocks fall back as llama.cpp\'s rules say (stories260K)', () => {
  let results: FormatResult[];
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-gguf-fallback-'));

  beforeAll(async () => {
    results = await runQuantizeJob({
      modelDir: STORIES, outDir: out, formats: STORIES_TYPES.map(([format]) => format),
      calibration: { file: DEFAULT_CALIBRATION_FILE, samples: 1, seqLen: 32 }, gptq: { symmetric: true, actOrder: false, dampPercent: 0.01 }, nf4DoubleQuant: false,
    });
  });

  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  test.each(STORIES_TYPES)('%s', (format, types) => {
    const written = readGgufHeader(results.find((r) => r.format === format)!.path);
    expect(typesOf(written)).toEqual(storiesExpected(types));
    // The header's byte lengths (blocks × block bytes) are checked against the file by readGgufHeader.
    for (const info of written.tensors.values()) expect(info.byteLength).toBe((info.dims.reduce((a, b) => a * b, 1) / GGML_LAYOUT[info.type].block) * GGML_LAYOUT[info.type].bytes);
  });

  // Q4_1, Q5_0 and Q5_1 come back through the kernels branch's dequantizers within their rounding (bounds as above).
  test.each([['gguf-q4_1', 'Q4_1', 0.12], ['gguf-q5_0', 'Q5_0', 0.06], ['gguf-q5_k_m', 'Q5_1', 0.06]] as const)('%s: herd reads its %s matrices back within %s of their rms', (format, typeName, bound) => {
    const { weights } = GgufWeights.open(results.find((r) => r.format === format)!.path);
    const source = openModelFolder(STORIES).checkpoint;
    try {
      const names = source.names().filter((hf) => GgmlType[weights.file.tensors.get(ggufNameOf(hf))!.type] === typeName);
      expect(names.length).toBeGreaterThan(10);
      for (const hf of names) {
        const original = source.readFloat(hf).data;
        const back = weights.readFloat(hf).data;
        expect([hf, relativeRmsError(original, back) <= bound]).toEqual([hf, true]);
      }
    } finally {
      weights.close();
      source.close();
    }
  });
});

describe('the recipe on Llama 3.1 8B and 70B shapes (ggmlTypeFor)', () => {
  const { config: fixture, checkpoint } = openModelFolder(path.join(GGUF_LLAMACPP, 'source'));
  checkpoint.close();
  const llama8B: LlamaConfig = { ...fixture, hiddenSize: 4096, intermediateSize: 14336, numHiddenLayers: 32, numAttentionHeads: 32, numKeyValueHeads: 8, vocabSize: 128256 };
  const llama70B: LlamaConfig = { ...llama8B, hiddenSize: 8192, intermediateSize: 28672, numHiddenLayers: 80, numAttentionHeads: 64 };
  const typeOf = (mix: GgufMix, name: string, shape: number[], config: LlamaConfig) => GgmlType[ggmlTypeFor(mix, name, shape, config)];
  const layersWhere = (config: LlamaConfig, mix: GgufMix, tensor: string, shape: number[], type: string) =>
    Array.from({ length: config.numHiddenLayers }, (_, i) => i).filter((i) => typeOf(mix, `blk.${i}.${tensor}.weight`, shape, config) === type);

  test('use_more_bits: the first and last eighth of the layers and every third layer between', () => {
    // 32 layers: i < 4, i ≥ 28, (i − 4) % 3 == 2.
    expect(Array.from({ length: 32 }, (_, i) => i).filter((i) => useMoreBits(i, 32))).toEqual([0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
  });

  test('8B Q4_K_M: output Q6_K, token_embd Q4_K, attn_v and ffn_down Q6_K in the use_more_bits layers, Q4_K elsewhere', () => {
    expect(typeOf('Q4_K_M', 'output.weight', [128256, 4096], llama8B)).toBe('Q6_K');
    expect(typeOf('Q4_K_M', 'token_embd.weight', [128256, 4096], llama8B)).toBe('Q4_K');
    const moreBits = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
    expect(layersWhere(llama8B, 'Q4_K_M', 'attn_v', [1024, 4096], 'Q6_K')).toEqual(moreBits);
    expect(layersWhere(llama8B, 'Q4_K_M', 'ffn_down', [4096, 14336], 'Q6_K')).toEqual(moreBits);
    expect(layersWhere(llama8B, 'Q4_K_M', 'attn_v', [1024, 4096], 'Q4_K')).toHaveLength(32 - moreBits.length);
    expect(layersWhere(llama8B, 'Q4_K_M', 'attn_q', [4096, 4096], 'Q4_K')).toHaveLength(32);
    expect(typeOf('Q4_K_M', 'blk.0.attn_norm.weight', [4096], llama8B)).toBe('F32');
  });

  test('8B: the 32-block mixes keep their type except the output (Q6_K); Q8_0 keeps a Q8_0 output; F16 stays F16', () => {
    for (const mix of ['Q4_1', 'Q5_0'] as const) {
      expect(typeOf(mix, 'output.weight', [128256, 4096], llama8B)).toBe('Q6_K');
      expect(typeOf(mix, 'blk.0.attn_v.weight', [1024, 4096], llama8B)).toBe(mix);
      expect(typeOf(mix, 'blk.0.ffn_down.weight', [4096, 14336], llama8B)).toBe(mix);
    }
    expect(typeOf('Q8_0', 'output.weight', [128256, 4096], llama8B)).toBe('Q8_0');
    expect(typeOf('F16', 'output.weight', [128256, 4096], llama8B)).toBe('F16');
  });

  test('70B (80 layers, 8 KV heads): use_more_bits layers i < 10, i ≥ 70, (i − 10) % 3 == 2; the other attn_v get Q5_K in Q4_K_M', () => {
    const moreBits = Array.from({ length: 80 }, (_, i) => i).filter((i) => i < 10 || i >= 70 || (i - 10) % 3 === 2);
    expect(layersWhere(llama70B, 'Q4_K_M', 'attn_v', [1024, 8192], 'Q6_K')).toEqual(moreBits);
    expect(layersWhere(llama70B, 'Q4_K_M', 'attn_v', [1024, 8192], 'Q5_K')).toHaveLength(80 - moreBits.length);
    expect(layersWhere(llama70B, 'Q4_K_M', 'ffn_down', [8192, 28672], 'Q4_K')).toHaveLength(80 - moreBits.length);
    // The 8B shape does not get the 70B bump.
    expect(typeOf('Q4_K_M', 'blk.4.attn_v.weight', [1024, 4096], llama8B)).toBe('Q4_K');
  });
});

/** One block of 32 from a function of the element index. */
const block32 = (value: (i: number) => number) => Float32Array.from({ length: 32 }, (_, i) => value(i));
/** qs of codes c[j] = c[j + 16] = j: byte j is j | j << 4. */
const NIBBLES_0_TO_15 = Array.from({ length: 16 }, (_, j) => j * 17);

describe('Q4_1, Q5_0 and Q5_1 blocks from first principles', () => {
  test('Q4_1: d = (max − min) / 15, m = min, q = ⌊(x − min)/d + ½⌋ (halves round up)', () => {
    // x_i = −1 + 0.25·(i mod 16): min −1, max 2.75, d = 3.75 / 15 = 0.25 (f16 0x3400), m = −1 (0xBC00),
    // codes i mod 16. Element 0 is moved to −0.875, exactly half a step: (0.125 / 0.25) + ½ = 1 → code 1.
    const x = block32((i) => -1 + 0.25 * (i % 16));
    x[0] = -0.875;
    const expected = [0x00, 0x34, 0x00, 0xbc, 0x01 | (0 << 4), ...NIBBLES_0_TO_15.slice(1)];
    expect([...quantizeLegacyBlocks('Q4_1', x)]).toEqual(expected);
  });

  test('Q4_1: a constant block has d = 0 and stores the value as m', () => {
    // 0.3 as f16 is 0x34CD (0.30004883); every code is 0.
    expect([...quantizeLegacyBlocks('Q4_1', block32(() => 0.3))]).toEqual([0, 0, 0xcd, 0x34, ...new Array(16).fill(0)]);
  });

  test('Q5_0: d = v / −16 for the value v of largest magnitude, q = ⌊x/d + 16.5⌋ (clamped to 31), 5th bits in qh', () => {
    // x_i = (i − 16)·0.125: v = −2, d = 0.125 (0x3000), x/d + 16 = i, so codes 0..31: qh = bits 16..31 set.
    expect([...quantizeLegacyBlocks('Q5_0', block32((i) => (i - 16) * 0.125))]).toEqual([0x00, 0x30, 0x00, 0x00, 0xff, 0xff, ...NIBBLES_0_TO_15]);
    // Mirrored (v = +2): d = −0.125 (0xB000) and the same codes.
    expect([...quantizeLegacyBlocks('Q5_0', block32((i) => (16 - i) * 0.125))]).toEqual([0x00, 0xb0, 0x00, 0x00, 0xff, 0xff, ...NIBBLES_0_TO_15]);
  });

  test('Q5_1: d = (max − min) / 31, m = min, q = ⌊(x − min)/d + ½⌋', () => {
    // x_i = 0.5 + i/16: min 0.5 (0x3800), max 2.4375, d = 1.9375 / 31 = 0.0625 (0x2C00), codes i.
    expect([...quantizeLegacyBlocks('Q5_1', block32((i) => 0.5 + i / 16))]).toEqual([0x00, 0x2c, 0x00, 0x38, 0x00, 0x00, 0xff, 0xff, ...NIBBLES_0_TO_15]);
  });

  test('a row that is not whole blocks of 32 is refused', () => {
    expect(() => quantizeLegacyBlocks('Q5_0', new Float32Array(48))).toThrow('Q5_0 needs rows that are a multiple of 32 long');
  });
});
