import { classifierPlan, resolveClassifier } from '../src/memory/classifier.js';
import { countParameters } from '../src/memory/parameters.js';
import { presetModel } from '../src/memory/presets.js';
import { planRequestFromFlags } from '../src/memory/request.js';
import { readSafetensorsHeader } from '../src/formats/safetensors.js';
import { PROMPT_GUARD_TINY } from './fixtures.js';
import path from 'node:path';

/** herd memory for the safety models: Llama Guard 3 (1B, 8B, 8B INT8) and Prompt Guard (1 and 2). */

describe('Llama Guard 3', () => {
  test('1B: Llama 3.2 1B with an untied output head, counted by hand', () => {
    const hidden = 2048;
    const vocab = 128256;
    // Per layer: q and o 2048², k and v 2048 × 512 (8 kv heads × 64), gate/up/down 3 × 2048 × 8192, two norms.
    const layer = 2 * hidden * hidden + 2 * hidden * 512 + 3 * hidden * 8192 + 2 * hidden;
    expect(countParameters(presetModel('llama-guard-3-1b').architecture)).toMatchObject({ outputHead: vocab * hidden, total: 2 * vocab * hidden + 16 * layer + hidden });
  });

  test('8B INT8 is 8B\'s architecture, priced in int8 unless another precision is asked for', () => {
    const int8 = presetModel('llama-guard-3-8b-int8');
    expect(int8.architecture).toEqual(presetModel('llama-guard-3-8b').architecture);
    const flags = { 'keep-16bit-embeddings': false, 'kv-dtype': 'bf16', optimizer: 'adamw', 'master-weights': true, 'gradient-checkpointing': true, reserve: '1GiB', units: 'GiB' };
    expect(planRequestFromFlags(int8, flags).precisions).toEqual(['int8']);
    expect(planRequestFromFlags(int8, { ...flags, precision: ['bf16'] }).precisions).toEqual(['bf16']);
    expect(planRequestFromFlags(presetModel('llama-guard-3-8b'), flags).precisions).toEqual(['bf16', 'fp8', 'int4']);
  });
});

describe('Prompt Guard (DeBERTa-v2 classifiers)', () => {
  /** DeBERTa-v2 by hand: embeddings, per layer 4 H×H projections + H×I + I×H with biases and 2 LayerNorms, relative table, pooler, head. */
  function byHand(H: number, layers: number, I: number, vocab: number, buckets: number, labels: number): number {
    const layer = 4 * (H * H + H) + (H * I + I) + (I * H + H) + 2 * 2 * H;
    return vocab * H + 2 * H + layers * layer + 2 * buckets * H + 2 * H + (H * H + H) + (labels * H + labels);
  }

  test.each([
    ['prompt-guard-86m', byHand(768, 12, 3072, 251000, 256, 3)],
    ['llama-prompt-guard-2-86m', byHand(768, 12, 3072, 251000, 256, 2)],
    ['llama-prompt-guard-2-22m', byHand(384, 12, 1536, 128100, 256, 2)],
  ])('%s has %d parameters', (name, expected) => {
    const plan = classifierPlan(resolveClassifier(name)!);
    expect(plan.parameters.total).toBe(expected);
    expect(plan.weights).toEqual([{ precision: 'fp32', bytes: 4 * expected }, { precision: 'bf16', bytes: 2 * expected }]);
  });

  test('Prompt Guard 86M: 86M parameters besides its 192.8M embedding rows', () => {
    const { parameters } = classifierPlan(resolveClassifier('prompt-guard-86m')!);
    expect(parameters.embedding).toBe(251000 * 768);
    expect(parameters.total - parameters.embedding).toBe(86_043_651);
  });

  test('a folder: the count equals the elements stored in its checkpoint', () => {
    const stored = readSafetensorsHeader(path.join(PROMPT_GUARD_TINY, 'model.safetensors')).reduce((sum, entry) => sum + entry.shape.reduce((product, size) => product * size, 1), 0);
    expect(classifierPlan(resolveClassifier(PROMPT_GUARD_TINY)!).parameters.total).toBe(stored);
  });

  test('anything else is not a classifier (a Llama preset, a missing path)', () => {
    expect(resolveClassifier('llama-guard-3-8b')).toBeUndefined();
    expect(resolveClassifier('/no/such/folder')).toBeUndefined();
  });
});
