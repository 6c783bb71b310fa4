import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadModel } from '../src/backends/load.js';
import { seededRandom } from '../src/engine/sampling.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, readPeftAdapter, writePeftAdapter } from '../src/formats/peft.js';
import type { TrainingExample } from '../src/train/data.js';
import { validateLoraSettings, type LoraSettings } from '../src/formats/peft.js';
import { exampleLossSum, meanLoss } from '../src/train/loss.js';
import { assignLoraMatrices, loadLoraModel, loraMatrices, type LoraModel } from '../src/train/trainer.js';
import { readSafetensorsHeader } from '../src/formats/safetensors.js';
import { readJson, TINY_LLAMA } from './fixtures.js';

// LoRA beneath the one model definition, on tiny-llama-3.1 with tfjs's wasm backend.
const SETTINGS: LoraSettings = validateLoraSettings({ r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj', 'o_proj', 'down_proj'] });
const reference = readJson<{ cases: Array<{ name: string; prompt_ids: number[] }> }>(path.join(TINY_LLAMA, 'reference.json'));
const PROMPT = Int32Array.from(reference.cases.find((c) => c.name === 'hello_digits')!.prompt_ids);
const EXAMPLE: TrainingExample = { row: 1, ids: PROMPT, trained: Uint8Array.from(PROMPT, (_, i) => (i >= 3 ? 1 : 0)), truncated: false };

let lora: LoraModel;
let tmp: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-lora-'));
  lora = await loadLoraModel(TINY_LLAMA, SETTINGS, 7, { backend: 'wasm' });
});

afterAll(() => {
  lora.loaded.model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function allLogits(model: LoraModel['loaded']['model'], ids: Int32Array): Float32Array {
  const cache = model.createCache(ids.length);
  try {
    return model.forward(ids, cache, { allPositions: true });
  } finally {
    cache.dispose();
  }
}

/** Gives every B a seeded random value so A's gradients are not zero and the adapter changes the model. */
function randomizeB(seed: number, std: number): void {
  const random = seededRandom(seed);
  for (const pair of lora.lora.pairs) pair.b.assign(tf.tensor(Float32Array.from({ length: pair.b.size }, () => (random() * 2 - 1) * std), pair.b.shape));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

test('with B at zero the adapted model gives exactly the base model logits', async () => {
  const base = await loadModel(TINY_LLAMA, { backend: 'wasm' });
  try {
    expect(lora.lora.pairs).toHaveLength(2 * 4);
    for (const pair of lora.lora.pairs) expect(Array.from(pair.b.dataSync()).every((v) => v === 0)).toBe(true);
    expect(maxAbsDiff(allLogits(lora.loaded.model, PROMPT), allLogits(base.model, PROMPT))).toBe(0);
  } finally {
    base.model.dispose();
  }
});

test('gradients of A and B equal central finite differences of the loss', () => {
  randomizeB(11, 0.3);
  const variables = lora.lora.variables();
  const loss = () => {
    const cache = lora.loaded.model.createCache(PROMPT.length);
    try {
      return tf.tidy(() => exampleLossSum(lora.loaded.model, EXAMPLE, cache).dataSync()[0]!);
    } finally {
      cache.dispose();
    }
  };
  const cache = lora.loaded.model.createCache(PROMPT.length);
  const { grads } = tf.variableGrads(() => exampleLossSum(lora.loaded.model, EXAMPLE, cache), variables);
  cache.dispose();
  // For a few matrices (A and B of layer 0's q_proj and of layer 1's down_proj), the entries with the largest gradient.
  const checked = [0, 1, 14, 15].map((index) => variables[index]!);
  let compared = 0;
  for (const variable of checked) {
    const gradient = grads[variable.name]!.dataSync() as Float32Array;
    const largest = [...gradient.keys()].sort((i, j) => Math.abs(gradient[j]!) - Math.abs(gradient[i]!)).slice(0, 2);
    for (const index of largest) {
      const values = Float32Array.from(variable.dataSync() as Float32Array);
      const original = values[index]!;
      const h = 1e-2;
      values[index] = original + h;
      variable.assign(tf.tensor(values, variable.shape));
      const up = loss();
      values[index] = original - h;
      variable.assign(tf.tensor(values, variable.shape));
      const down = loss();
      values[index] = original;
      variable.assign(tf.tensor(values, variable.shape));
      const estimate = (up - down) / (2 * h);
      expect(Math.abs(gradient[index]!)).toBeGreaterThan(1e-3);
      expect(Math.abs(estimate - gradient[index]!)).toBeLessThan(0.02 * Math.abs(gradient[index]!) + 2e-4);
      compared++;
    }
  }
  expect(compared).toBe(8);
  Object.values(grads).forEach((g) => g.dispose());
});

test('PEFT files: exact names, shapes and config keys; reloaded they give identical logits', async () => {
  randomizeB(5, 0.2);
  const dir = path.join(tmp, 'adapter');
  writePeftAdapter(dir, SETTINGS, 'meta-llama/Llama-3.1-8B-Instruct', loraMatrices(lora.lora));
  const config = readJson<Record<string, unknown>>(path.join(dir, ADAPTER_CONFIG));
  expect(config).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, lora_dropout: 0, task_type: 'CAUSAL_LM', bias: 'none', base_model_name_or_path: 'meta-llama/Llama-3.1-8B-Instruct', use_rslora: false, use_dora: false, fan_in_fan_out: false });
  expect([...(config.target_modules as string[])].sort()).toEqual(['down_proj', 'o_proj', 'q_proj', 'v_proj']);

  // Shapes from the fixture's README: q, o [64, 64], v [32, 64], down [64, 192] as [out, in].
  const shapes = Object.fromEntries(readSafetensorsHeader(path.join(dir, ADAPTER_WEIGHTS)).map((e) => [e.name, [e.dtype, ...e.shape]]));
  const expected: Record<string, unknown[]> = {};
  for (const layer of [0, 1]) {
    const p = `base_model.model.model.layers.${layer}`;
    Object.assign(expected, {
      [`${p}.self_attn.q_proj.lora_A.weight`]: ['F32', 4, 64], [`${p}.self_attn.q_proj.lora_B.weight`]: ['F32', 64, 4],
      [`${p}.self_attn.v_proj.lora_A.weight`]: ['F32', 4, 64], [`${p}.self_attn.v_proj.lora_B.weight`]: ['F32', 32, 4],
      [`${p}.self_attn.o_proj.lora_A.weight`]: ['F32', 4, 64], [`${p}.self_attn.o_proj.lora_B.weight`]: ['F32', 64, 4],
      [`${p}.mlp.down_proj.lora_A.weight`]: ['F32', 4, 192], [`${p}.mlp.down_proj.lora_B.weight`]: ['F32', 64, 4],
    });
  }
  expect(shapes).toEqual(expected);

  const adapted = allLogits(lora.loaded.model, PROMPT);
  const again = await loadLoraModel(TINY_LLAMA, SETTINGS, 99, { backend: 'wasm' });
  try {
    assignLoraMatrices(again.lora, readPeftAdapter(dir, again.loaded.config).matrices);
    expect(maxAbsDiff(allLogits(again.loaded.model, PROMPT), adapted)).toBe(0);
  } finally {
    again.loaded.model.dispose();
  }

  // Merged into the weights (generate --adapter), the logits equal base + adapter within float error.
  const merged = await loadModel(TINY_LLAMA, { backend: 'wasm', adapter: dir });
  try {
    const base = await loadModel(TINY_LLAMA, { backend: 'wasm' });
    const baseLogits = allLogits(base.model, PROMPT);
    base.model.dispose();
    const mergedLogits = allLogits(merged.model, PROMPT);
    expect(maxAbsDiff(adapted, baseLogits)).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(mergedLogits, adapted)).toBeLessThan(2e-5);
  } finally {
    merged.model.dispose();
  }
});

test('the mean loss counts only trained tokens', () => {
  const none: TrainingExample = { ...EXAMPLE, trained: new Uint8Array(PROMPT.length) };
  expect(meanLoss(lora.loaded.model, [none])).toBe(0);
  expect(meanLoss(lora.loaded.model, [EXAMPLE])).toBeGreaterThan(5);
});
