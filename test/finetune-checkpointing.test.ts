import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { seededRandom } from '../src/engine/sampling.js';
import type { TrainingExample } from '../src/train/data.js';
import { validateLoraSettings } from '../src/formats/peft.js';
import { exampleLossSum } from '../src/train/loss.js';
import { loadLoraModel, loraMatrices, train, type LoraModel, type TrainOptions } from '../src/train/trainer.js';
import { readJson, TINY_LLAMA } from './fixtures.js';

// --gradient-checkpointing on the tiny Llama 3.1 fixture (tfjs's wasm backend): the same gradients as
// keeping every activation, with fewer tensors alive when the forward pass ends.
const SETTINGS = validateLoraSettings({ r: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'v_proj', 'o_proj', 'down_proj'] });
const reference = readJson<{ cases: Array<{ name: string; prompt_ids: number[] }> }>(path.join(TINY_LLAMA, 'reference.json'));
const PROMPT = Int32Array.from(reference.cases.find((c) => c.name === 'hello_digits')!.prompt_ids);
const EXAMPLE: TrainingExample = { row: 1, ids: PROMPT, trained: Uint8Array.from(PROMPT, (_, i) => (i >= 3 ? 1 : 0)), truncated: false };

let tmp: string;
let plain: LoraModel;
let checkpointed: LoraModel;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-ftckpt-'));
  plain = await loadLoraModel(TINY_LLAMA, SETTINGS, 7, { backend: 'wasm' });
  checkpointed = await loadLoraModel(TINY_LLAMA, SETTINGS, 7, { backend: 'wasm', gradientCheckpointing: true });
  // The same non-zero B in both, so every A and B has a gradient.
  for (const model of [plain, checkpointed]) {
    const random = seededRandom(3);
    for (const pair of model.lora.pairs) pair.b.assign(tf.tensor(Float32Array.from({ length: pair.b.size }, () => (random() * 2 - 1) * 0.3), pair.b.shape));
  }
});

afterAll(() => {
  plain.loaded.model.dispose();
  checkpointed.loaded.model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Loss, gradients (in variable order) and the tensors and bytes the forward pass leaves alive for the backward pass. */
function lossAndGradients(model: LoraModel) {
  const cache = model.loaded.model.createCache(PROMPT.length);
  model.lora.setDropoutSeed(123);
  let atForwardEnd = { tensors: 0, bytes: 0 };
  const before = tf.memory();
  try {
    const variables = model.lora.variables();
    const { value, grads } = tf.variableGrads(() => {
      const loss = exampleLossSum(model.loaded.model, EXAMPLE, cache);
      const memory = tf.memory();
      atForwardEnd = { tensors: memory.numTensors - before.numTensors, bytes: memory.numBytes - before.numBytes };
      return loss;
    }, variables);
    const gradients = variables.map((v) => Float32Array.from(grads[v.name]!.dataSync() as Float32Array));
    const loss = value.dataSync()[0]!;
    tf.dispose([value, ...Object.values(grads)]);
    return { loss, gradients, atForwardEnd };
  } finally {
    model.lora.setDropoutSeed(null);
    cache.dispose();
  }
}

test('gradients with --gradient-checkpointing equal those without, with fewer tensors alive after the forward pass', () => {
  const tensorsBefore = tf.memory().numTensors;
  const expected = lossAndGradients(plain);
  const actual = lossAndGradients(checkpointed);
  expect(actual.loss).toBeCloseTo(expected.loss, 4);
  expect(actual.gradients).toHaveLength(2 * 4 * 2);
  for (let i = 0; i < expected.gradients.length; i++) {
    const want = expected.gradients[i]!;
    const got = actual.gradients[i]!;
    const scale = Math.max(...want.map(Math.abs));
    expect(scale).toBeGreaterThan(1e-4);
    let worst = 0;
    for (let k = 0; k < want.length; k++) worst = Math.max(worst, Math.abs(got[k]! - want[k]!));
    expect(worst).toBeLessThan(1e-4 * scale);
  }
  expect(actual.atForwardEnd.tensors).toBeLessThan(expected.atForwardEnd.tensors);
  expect(actual.atForwardEnd.bytes).toBeLessThan(expected.atForwardEnd.bytes);
  // Both passes free what they made: nothing is left behind by the recomputation.
  expect(tf.memory().numTensors).toBe(tensorsBefore);
});

test('a few training steps give the same losses and adapter with and without checkpointing', async () => {
  const options = (outputDir: string): TrainOptions => ({
    learningRate: 1e-2, schedulerType: 'constant', warmupSteps: 0, warmupRatio: 0, weightDecay: 0.01, maxGradNorm: 1, batchSize: 1,
    gradientAccumulationSteps: 1, numEpochs: 1, maxSteps: 2, seed: 5, loggingSteps: 1, evalSteps: 0, saveSteps: 0, outputDir, resume: false, baseModelName: 'test',
  });
  const run = async (model: LoraModel, name: string) => {
    const losses: number[] = [];
    await train(model, [EXAMPLE], null, options(path.join(tmp, name)), (event) => event.kind === 'step' && losses.push(event.loss));
    return { losses, matrices: loraMatrices(model.lora) };
  };
  const expected = await run(plain, 'plain');
  const actual = await run(checkpointed, 'checkpointed');
  expect(expected.losses[1]!).toBeLessThan(expected.losses[0]!);
  for (let i = 0; i < 2; i++) expect(Math.abs(actual.losses[i]! - expected.losses[i]!)).toBeLessThan(1e-4 * expected.losses[i]!);
  expected.matrices.forEach((want, i) => {
    const got = actual.matrices[i]!;
    for (const [w, g] of [[want.a, got.a], [want.b, got.b]] as const) {
      let worst = 0;
      for (let k = 0; k < w.data.length; k++) worst = Math.max(worst, Math.abs(g.data[k]! - w.data[k]!));
      expect(worst).toBeLessThan(1e-5);
    }
  });
});
