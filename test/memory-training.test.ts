import { compareWithPost, POST_TRAINING_GB, TRAINING_TOLERANCE } from '../src/memory/post-tables.js';
import { presetModel } from '../src/memory/presets.js';
import { activationBytes, DEFAULT_TRAINING_OPTIONS, estimateTraining, loraParameters, parseLoraTargets, type TrainingOptions } from '../src/memory/training.js';

const arch8b = presetModel('llama-3.1-8b').architecture;
const P8B = 8_030_261_248;
const options = (overrides: Partial<TrainingOptions>): TrainingOptions => ({ ...DEFAULT_TRAINING_OPTIONS, method: 'full', includeActivations: false, ...overrides });

describe('training terms', () => {
  test('mixed-precision AdamW full fine-tuning is 16 bytes per parameter (2 + 2 + 4 + 8)', () => {
    const estimate = estimateTraining(arch8b, options({}));
    expect(estimate.totalBytes).toBe(16 * P8B);
    expect(estimate.terms.map((term) => term.bytes)).toEqual([2 * P8B, 2 * P8B, 4 * P8B, 8 * P8B]);
  });

  test('8-bit AdamW keeps 2 bytes of state per parameter; dropping master weights saves 4', () => {
    expect(estimateTraining(arch8b, options({ optimizer: 'adamw-8bit' })).totalBytes).toBe(10 * P8B);
    expect(estimateTraining(arch8b, options({ masterWeights: false })).totalBytes).toBe(12 * P8B);
  });

  test('LoRA rank 16 on all seven projections of 8B trains 41,943,040 parameters (as PEFT reports)', () => {
    expect(loraParameters(arch8b, 16, DEFAULT_TRAINING_OPTIONS.loraTargets)).toBe(41_943_040);
    // q and v only: 32 layers × 16 × ((4096 + 4096) + (4096 + 1024)) = 6,815,744.
    expect(loraParameters(arch8b, 16, parseLoraTargets('q,v'))).toBe(6_815_744);
  });

  test('LoRA = frozen bf16 base + 16 bytes per adapter parameter', () => {
    expect(estimateTraining(arch8b, options({ method: 'lora' })).totalBytes).toBe(2 * P8B + 16 * 41_943_040);
  });

  test('QLoRA stores the projections in nf4 and keeps embeddings, head and norms in bf16', () => {
    const linear = P8B - 2 * 128256 * 4096 - (32 * 2 + 1) * 4096;
    const base = (linear * (4 + 8 / 64 + 32 / (64 * 256))) / 8 + 2 * (P8B - linear);
    expect(estimateTraining(arch8b, options({ method: 'qlora' })).totalBytes).toBeCloseTo(base + 16 * 41_943_040, -1);
  });

  test('activations: checkpointing keeps one hidden vector per layer and token instead of the whole layer', () => {
    const { fullBytes, checkpointedBytes } = activationBytes(arch8b, { batch: 1, seqLen: 1 });
    const layer = 2 * (6 * 4096 + 2 * 1024 + 3 * 14336);
    const logits = 8 * 128256;
    expect(fullBytes).toBe(32 * layer + logits);
    expect(checkpointedBytes).toBe(32 * 2 * 4096 + layer + logits);
    expect(activationBytes(arch8b, { batch: 2, seqLen: 1024 }).fullBytes).toBe(2048 * fullBytes);
  });

  test('activations are a shown term when included', () => {
    const estimate = estimateTraining(arch8b, options({ includeActivations: true, seqLen: 2048 }));
    expect(estimate.terms.at(-1)?.name).toBe('activations (with gradient checkpointing)');
    expect(estimate.totalBytes).toBe(16 * P8B + estimate.activations.checkpointedBytes);
  });

  test('an unknown LoRA target is one clear error', () => {
    expect(() => parseLoraTargets('q,lm_head')).toThrow(/unknown LoRA target "lm_head_proj"/);
  });
});

describe("the post's training table", () => {
  const cells = compareWithPost().filter((cell) => cell.table === 'training');

  test(`every cell is within the stated tolerance (±${TRAINING_TOLERANCE * 100}%) of the post`, () => {
    expect(cells).toHaveLength(9);
    for (const cell of cells) {
      expect(cell.post).toBe(POST_TRAINING_GB[cell.model][cell.column as 'full' | 'lora' | 'qlora']);
      expect(Math.abs(cell.computed - cell.post) / cell.post).toBeLessThanOrEqual(TRAINING_TOLERANCE);
    }
  });

  test('405B full fine-tuning at 8 bytes per parameter gives the post\'s 3.25 TB', () => {
    const cell = cells.find((c) => c.model === 'llama-3.1-405b' && c.column === 'full');
    expect(cell?.computed).toBeCloseTo((8 * 405_853_388_800) / 1e9, 6);
    expect(Math.round((cell?.computed ?? 0) / 10) * 10).toBe(3250);
  });
});
