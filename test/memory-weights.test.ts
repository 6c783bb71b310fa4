import { countParameters, listWeightTensors } from '../src/memory/parameters.js';
import { DEFAULT_RECIPE_OPTIONS, estimateWeights, formatFor, parsePrecision } from '../src/memory/precision.js';
import { presetModel } from '../src/memory/presets.js';
import { compareWithPost, POST_INFERENCE_GB } from '../src/memory/post-tables.js';

const arch8b = presetModel('llama-3.1-8b').architecture;
const P8B = 8_030_261_248;
const weights = (precision: Parameters<typeof estimateWeights>[1], options = DEFAULT_RECIPE_OPTIONS) => estimateWeights(arch8b, precision, options);

describe('weights by precision', () => {
  test('bf16 and fp32 are 2 and 4 bytes per parameter', () => {
    expect(weights('bf16').bytes).toBe(2 * P8B);
    expect(weights('fp32').bytes).toBe(4 * P8B);
  });

  test('fp8 is one byte per matrix weight, norms stay bf16, plus a 4-byte scale per matrix', () => {
    const norms = countParameters(arch8b).norms;
    const matrices = 32 * 7 + 2;
    expect(weights('fp8').bytes).toBe(P8B - norms + 2 * norms + 4 * matrices);
  });

  test('int4 at group 128 costs 4 + (16-bit scale + 4-bit zero) / 128 = 4.15625 bits', () => {
    const estimate = weights('int4');
    const int4 = estimate.byFormat.find((share) => share.format === 'int4 g128');
    expect(int4?.bytes).toBeCloseTo(((P8B - countParameters(arch8b).norms) * 4.15625) / 8, 0);
  });

  test('a smaller group size costs more', () => {
    expect(weights('int4', { ...DEFAULT_RECIPE_OPTIONS, groupSize: 32 }).bytes).toBeGreaterThan(weights('int4').bytes);
  });

  test('nf4 with double quantization is 4.127 bits per weight (QLoRA paper)', () => {
    const nf4 = weights('nf4').byFormat.find((share) => share.format === 'nf4');
    expect(nf4 && (8 * nf4.bytes) / nf4.parameters).toBeCloseTo(4.127, 3);
  });

  test('GGUF Q8_0 and Q4_0 are 34 and 18 bytes per block of 32', () => {
    const q8 = weights('q8_0').byFormat.find((share) => share.format === 'Q8_0');
    expect(q8 && q8.bytes / q8.parameters).toBe(34 / 32);
    const q4 = weights('q4_0');
    expect(q4.byFormat.find((share) => share.format === 'Q6_K')?.parameters).toBe(128256 * 4096); // the head
    expect(q4.byFormat.find((share) => share.format === 'Q4_0')?.parameters).toBe(P8B - 128256 * 4096 - countParameters(arch8b).norms);
  });

  test('Q4_K_M gives Q6_K to attn_v and ffn_down in the first and last eighth and every third layer between', () => {
    const q6Layers = listWeightTensors(arch8b)
      .filter((tensor) => tensor.module === 'v_proj' && formatFor('q4_k_m', tensor, arch8b, DEFAULT_RECIPE_OPTIONS).label === 'Q6_K')
      .map((tensor) => tensor.layer);
    // 32 layers: eighth = 4 → layers 0-3, 28-31, and 4 + 3k + 2 = 6, 9, ..., 27.
    expect(q6Layers).toEqual([0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
  });

  test("Meta's FP8 recipe quantizes only the MLP projections, never in the first or last layer", () => {
    const estimate = weights('fp8-mlp');
    const fp8 = estimate.byFormat.find((share) => share.format === 'fp8 (row scales)');
    expect(fp8?.parameters).toBe(30 * 3 * 4096 * 14336);
    // one fp32 scale per output row: gate and up have 14336 rows, down 4096.
    expect(fp8?.bytes).toBe(30 * 3 * 4096 * 14336 + 30 * 4 * (14336 + 14336 + 4096));
  });

  test('keeping embeddings and head in 16-bit adds their bf16 size', () => {
    const kept = weights('int4', { ...DEFAULT_RECIPE_OPTIONS, keep16BitEmbeddings: true });
    expect(kept.byFormat.find((share) => share.format === 'bf16')?.parameters).toBe(2 * 128256 * 4096 + countParameters(arch8b).norms);
  });

  test('an unknown precision is one clear error', () => {
    expect(() => parsePrecision('int3')).toThrow(/unknown precision "int3"; choose from/);
  });
});

describe("the post's inference table", () => {
  const cells = compareWithPost().filter((cell) => cell.table === 'inference');

  test('nominal size × bytes per weight, in GB rounded to whole numbers, gives every printed figure', () => {
    const nominal = { 'llama-3.1-8b': 8e9, 'llama-3.1-70b': 70e9, 'llama-3.1-405b': 405e9 } as const;
    const bytes = { FP16: 2, FP8: 1, INT4: 0.5 } as const;
    for (const [model, row] of Object.entries(POST_INFERENCE_GB)) {
      for (const [column, post] of Object.entries(row)) {
        expect(Math.round((nominal[model as keyof typeof nominal] * bytes[column as keyof typeof bytes]) / 1e9)).toBe(post);
      }
    }
  });

  test('the exact counts are within 1% of every cell and every cell is marked as matching', () => {
    expect(cells).toHaveLength(9);
    for (const cell of cells) {
      expect(Math.abs(cell.computed - cell.post) / cell.post).toBeLessThan(0.01);
      expect(cell.matches).toBe(true);
    }
  });

  test('the 70B FP16 cell is 70,553,706,496 × 2 bytes', () => {
    expect(cells.find((cell) => cell.model === 'llama-3.1-70b' && cell.column === 'FP16')?.computed).toBeCloseTo(141.107412992, 9);
  });
});
