import { checkFit, type MemoryDemand } from '../src/memory/fit.js';
import { findAccelerator, type Hardware } from '../src/memory/hardware.js';
import { buildPlan } from '../src/memory/plan.js';
import { DEFAULT_RECIPE_OPTIONS } from '../src/memory/precision.js';
import { presetModel } from '../src/memory/presets.js';
import { verdictText } from '../src/memory/report.js';
import { DEFAULT_TRAINING_OPTIONS } from '../src/memory/training.js';

const GIB = 2 ** 30;
const device = (gib: number, devices = 1): Hardware => ({ label: `${gib}GiB`, devices, bytesPerDevice: gib * GIB, reserveBytes: 0 });
const demand = (weightsGib: number, kvGibPerToken: number): MemoryDemand => ({
  fixedShardedBytes: weightsGib * GIB,
  perTokenShardedBytes: kvGibPerToken * GIB,
  replicatedBytes: 0,
  perTokenReplicatedBytes: 0,
});

describe('fit', () => {
  test('fits when weights + cache are within the device', () => {
    const fit = checkFit(demand(10, 0.001), device(24), 8000, 131072);
    expect(fit).toMatchObject({ fits: true, maxTokens: 14000, devicesNeeded: 1 });
  });

  test('a context that is too long gives the largest one that fits, and the devices for the asked one', () => {
    const fit = checkFit(demand(10, 0.001), device(24), 20000, 131072);
    expect(fit.fits).toBe(false);
    expect(fit.maxTokens).toBe(14000);
    expect(fit.devicesNeeded).toBe(2); // 30 GiB over 24 GiB devices
    expect(verdictText(fit, device(24), 'context')).toBe('fits with context ≤ 14,000; needs 2 × 24GiB');
  });

  test('weights larger than the device need more devices, split evenly', () => {
    const fit = checkFit(demand(100, 0), device(24), 1, 131072);
    expect(fit).toMatchObject({ fits: false, maxTokens: 0, devicesNeeded: 5 });
    expect(checkFit(demand(100, 0), device(24, 5), 1, 131072).fits).toBe(true);
  });

  test("the largest context is capped at the model's own", () => {
    expect(checkFit(demand(1, 1e-9), device(80), 1, 131072).maxTokens).toBe(131072);
  });

  test('per-device memory that never shrinks (workspace, activations) can make no device count enough', () => {
    const fit = checkFit({ ...demand(1, 0), replicatedBytes: 30 * GIB }, device(24), 1, 131072);
    expect(fit.devicesNeeded).toBeNull();
  });

  test('GPU names are found by id, label or alias; an unknown one is one clear error', () => {
    expect(findAccelerator('H100 80GB').bytes).toBe(80 * GIB);
    expect(findAccelerator('h100').id).toBe('h100-80gb');
    expect(findAccelerator('RTX-4090').bytes).toBe(24 * GIB);
    expect(() => findAccelerator('a100')).toThrow(/unknown GPU "a100"/);
  });
});

describe('plans on real hardware', () => {
  const plan = (preset: string, hardware: Hardware, contexts: number[]) =>
    buildPlan({
      model: presetModel(preset),
      precisions: ['bf16', 'int4'],
      recipe: DEFAULT_RECIPE_OPTIONS,
      contexts,
      batch: 1,
      kvDtype: 'bf16',
      trainingMethods: ['full', 'qlora'],
      training: DEFAULT_TRAINING_OPTIONS,
      hardware,
    });
  const h100 = (devices: number): Hardware => ({ label: 'H100', devices, bytesPerDevice: 80 * GIB, reserveBytes: GIB });

  test('70B in bf16 (131 GiB of weights) needs two H100s; in int4 it fits on one at 8k', () => {
    const [bf16, int4] = plan('llama-3.1-70b', h100(1), [8192]).inference;
    expect(bf16?.fit).toMatchObject({ fits: false, maxTokens: 0, devicesNeeded: 2 });
    expect(int4?.fit?.fits).toBe(true);
  });

  test('full fine-tuning of 8B (16 bytes × 8.03B = 120 GiB of states) needs two H100s; QLoRA fits on one', () => {
    const [full, qlora] = plan('llama-3.1-8b', h100(1), [8192]).training;
    expect(full?.fit).toMatchObject({ fits: false, devicesNeeded: 2 });
    expect(qlora?.fit?.fits).toBe(true);
  });
});
