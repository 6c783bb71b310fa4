import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { seededRandom } from '../src/engine/sampling.js';
import { readPeftAdapter, validateLoraSettings, type LoraSettings } from '../src/formats/peft.js';
import { HerdInterrupted } from '../src/errors.js';
import { DpoObjective, dpoMetrics, sigmoidDpoLosses } from '../src/train/dpo.js';
import type { TrainingExample } from '../src/train/data.js';
import { tokenizePreferenceRow, type PreferencePair } from '../src/train/preference-data.js';
import { loadLoraModel, trainObjective, type LoraModel, type TrainEvent, type TrainOptions } from '../src/train/trainer.js';
import { DATA, STORIES } from './fixtures.js';

// DPO on stories260K (wasm, the fastest tfjs backend here; float32): plain-text pairs whose prompt is a story's first
// words, chosen its next words and rejected the next words of another story.
const SETTINGS: LoraSettings = validateLoraSettings({ r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj', 'v_proj'] });
const BACKEND = 'wasm';

let tmp: string;
let base: LoadedModel;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-dpo-'));
  base = await loadModel(STORIES, { backend: BACKEND });
});
afterAll(() => {
  base.model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function storyRows(count: number): Array<{ prompt: string; chosen: string; rejected: string }> {
  const stories = fs.readFileSync(path.join(DATA, 'text/tinystories-valid-head.txt'), 'utf8').split('\n\n').slice(10, 10 + 2 * count);
  const words = (story: string, from: number, to: number) => story.trim().split(/\s+/).slice(from, to).join(' ');
  return Array.from({ length: count }, (_, i) => ({ prompt: words(stories[i]!, 0, 5), chosen: ` ${words(stories[i]!, 5, 9)}`, rejected: ` ${words(stories[count + i]!, 5, 9)}` }));
}

function pairsFor(model: LoraModel, count: number): PreferencePair[] {
  return storyRows(count).map((row, i) => tokenizePreferenceRow(row, i + 1, model.loaded.tokenizer, { maxSeqLength: 64 }));
}

function randomizeB(model: LoraModel, seed: number, std: number): void {
  const random = seededRandom(seed);
  for (const pair of model.lora.pairs) pair.b.assign(tf.tensor(Float32Array.from({ length: pair.b.size }, () => (random() * 2 - 1) * std), pair.b.shape));
}

function options(overrides: Partial<TrainOptions>): TrainOptions {
  return {
    learningRate: 1e-2, schedulerType: 'constant', warmupSteps: 0, warmupRatio: 0, weightDecay: 0, maxGradNorm: 1, batchSize: 2,
    gradientAccumulationSteps: 1, numEpochs: 1, maxSteps: 0, seed: 42, loggingSteps: 1, evalSteps: 0, saveSteps: 0,
    outputDir: path.join(tmp, 'out'), resume: false, baseModelName: 'test', ...overrides,
  };
}

test('the sigmoid DPO loss and its metrics on a hand-built batch equal the worked formula', () => {
  // Per pair: summed completion log-probabilities of the policy and of the reference.
  const batch = [
    { policy: { chosen: -10, rejected: -12 }, reference: { chosen: -11, rejected: -11.5 } },
    { policy: { chosen: -20, rejected: -14 }, reference: { chosen: -18, rejected: -15 } },
    { policy: { chosen: -3, rejected: -3 }, reference: { chosen: -3, rejected: -3 } },
  ];
  const beta = 0.5;
  // z = β((πc − rc) − (πr − rr)); loss = −log σ(z) = log(1 + e^(−z)):
  // pair 1: z = 0.5·(1 − (−0.5)) = 0.75; pair 2: z = 0.5·(−2 − 1) = −1.5; pair 3: z = 0, loss = log 2.
  const expected = [Math.log1p(Math.exp(-0.75)), Math.log1p(Math.exp(1.5)), Math.LN2];
  const column = (pick: (row: (typeof batch)[number]) => number) => tf.tensor1d(batch.map(pick));
  const losses = sigmoidDpoLosses(column((r) => r.policy.chosen), column((r) => r.policy.rejected), column((r) => r.reference.chosen), column((r) => r.reference.rejected), beta);
  Array.from(losses.dataSync()).forEach((loss, i) => expect(loss).toBeCloseTo(expected[i]!, 6));
  losses.dispose();
  expect(dpoMetrics(batch[0]!.policy, batch[0]!.reference, beta)).toEqual({
    'rewards/chosen': 0.5, 'rewards/rejected': -0.25, 'rewards/accuracies': 1, 'rewards/margins': 0.75, 'logps/chosen': -10, 'logps/rejected': -12,
  });
  expect(dpoMetrics(batch[1]!.policy, batch[1]!.reference, beta)).toMatchObject({ 'rewards/chosen': -1, 'rewards/rejected': 0.5, 'rewards/accuracies': 0, 'rewards/margins': -1.5 });
  // A margin of −1000 gives a loss of 1000 (softplus), not −log(0) = ∞.
  const far = sigmoidDpoLosses(tf.tensor1d([-1000]), tf.tensor1d([0]), tf.tensor1d([0]), tf.tensor1d([0]), 1);
  expect(far.dataSync()[0]).toBeCloseTo(1000, 3);
  far.dispose();
});

/** Σ log softmax(logits)[target] over the trained tokens, in float64 from the model's logits. */
function completionLogp(model: LoadedModel['model'], example: TrainingExample, vocab: number): number {
  const cache = model.createCache(example.ids.length);
  let logits: Float32Array;
  try {
    logits = model.forward(example.ids, cache, { allPositions: true });
  } finally {
    cache.dispose();
  }
  let total = 0;
  for (let t = 1; t < example.ids.length; t++) {
    if (example.trained[t] !== 1) continue;
    const row = logits.subarray((t - 1) * vocab, t * vocab);
    const max = Math.max(...row);
    const logSum = max + Math.log(row.reduce((sum, value) => sum + Math.exp(value - max), 0));
    total += row[example.ids[t]!]! - logSum;
  }
  return total;
}

test('on the model, the loss is the formula over completion log-probabilities, the reference being the base model; its gradient equals finite differences', async () => {
  const model = await loadLoraModel(STORIES, SETTINGS, 3, { backend: BACKEND });
  try {
    randomizeB(model, 5, 0.5);
    const pairs = pairsFor(model, 2);
    const beta = 1;
    const objective = new DpoObjective(beta);
    const vocab = model.loaded.config.vocabSize;
    // Worked from first principles: policy log-probabilities from the adapted model's logits, reference from the base model loaded on its own.
    const margins = pairs.map((pair) => {
      const policy = { chosen: completionLogp(model.loaded.model, pair.chosen, vocab), rejected: completionLogp(model.loaded.model, pair.rejected, vocab) };
      const reference = { chosen: completionLogp(base.model, pair.chosen, vocab), rejected: completionLogp(base.model, pair.rejected, vocab) };
      return beta * (policy.chosen - reference.chosen - (policy.rejected - reference.rejected));
    });
    expect(Math.max(...margins.map(Math.abs))).toBeGreaterThan(0.05);
    const expectedLoss = margins.reduce((sum, z) => sum + Math.log1p(Math.exp(-z)), 0) / pairs.length;
    const evaluated = objective.evaluate(model, pairs);
    expect(Math.abs(evaluated.loss - expectedLoss)).toBeLessThan(1e-4);
    expect(evaluated.metrics['rewards/margins']).toBeCloseTo(margins.reduce((a, b) => a + b, 0) / pairs.length, 3);

    // The gradient of the same loss, under the tape, against central differences of evaluate().
    const variables = model.lora.variables();
    const caches: Array<{ dispose(): void }> = [];
    const { value, grads } = tf.variableGrads(() => objective.loss(model, pairs, pairs.length, (length) => {
      const cache = model.loaded.model.createCache(length);
      caches.push(cache);
      return cache;
    }).loss, variables);
    caches.forEach((cache) => cache.dispose());
    expect(Math.abs(value.dataSync()[0]! - expectedLoss)).toBeLessThan(1e-4);
    value.dispose();
    // float32 logits put about 1e-5 of noise on each loss value; with h = 1e-2 that is 1e-3 on a
    // central difference, well under the 3% + 2e-3 allowed on the largest entry of each A and B
    // checked (layer 0's q_proj and the last layer's v_proj).
    let compared = 0;
    for (const variable of [variables[0]!, variables[1]!, variables[variables.length - 2]!, variables[variables.length - 1]!]) {
      const gradient = grads[variable.name]!.dataSync() as Float32Array;
      const largest = [...gradient.keys()].sort((i, j) => Math.abs(gradient[j]!) - Math.abs(gradient[i]!)).slice(0, 1);
      for (const index of largest) {
        const values = Float32Array.from(variable.dataSync() as Float32Array);
        const at = (x: number) => {
          values[index] = x;
          variable.assign(tf.tensor(values, variable.shape));
          return objective.evaluate(model, pairs).loss;
        };
        const original = values[index]!;
        const h = 1e-2;
        const estimate = (at(original + h) - at(original - h)) / (2 * h);
        at(original);
        expect(Math.abs(gradient[index]!)).toBeGreaterThan(2e-2);
        expect(Math.abs(estimate - gradient[index]!)).toBeLessThan(0.03 * Math.abs(gradient[index]!) + 2e-3);
        compared++;
      }
    }
    expect(compared).toBe(4);
    Object.values(grads).forEach((g) => g.dispose());
  } finally {
    model.loaded.model.dispose();
  }
});

test.each([
  ['LoRA', {}, 8],
  ['QLoRA with gradient checkpointing', { loadIn4bit: true, gradientCheckpointing: true }, 4],
])('%s: with B at zero the policy is the reference (loss log 2, margins 0); a few steps raise the reward accuracy and margins', async (_name, memory, maxSteps) => {
  const model = await loadLoraModel(STORIES, SETTINGS, 3, { backend: BACKEND, ...memory });
  try {
    const pairs = pairsFor(model, 4);
    const objective = new DpoObjective(0.1);
    const before = objective.evaluate(model, pairs);
    expect(Math.abs(before.loss - Math.LN2)).toBeLessThan(1e-7);
    expect(before.metrics).toMatchObject({ 'rewards/chosen': 0, 'rewards/rejected': 0, 'rewards/margins': 0, 'rewards/accuracies': 0 });

    const steps: Array<Extract<TrainEvent, { kind: 'step' }>> = [];
    await trainObjective(objective, model, pairs, null, options({ maxSteps, learningRate: 2e-2, outputDir: path.join(tmp, `rise-${maxSteps}`) }), (e) => e.kind === 'step' && steps.push(e));
    expect(Math.abs(steps[0]!.loss - Math.LN2)).toBeLessThan(1e-6);
    expect(steps[0]!.metrics['rewards/margins']).toBe(0);
    const after = objective.evaluate(model, pairs);
    expect(after.loss).toBeLessThan(Math.LN2 - 0.05);
    expect(after.metrics['rewards/accuracies']).toBe(1);
    expect(after.metrics['rewards/margins']).toBeGreaterThan(0.5);
    expect(Object.keys(steps[maxSteps - 1]!.metrics).sort()).toEqual(['logps/chosen', 'logps/rejected', 'rewards/accuracies', 'rewards/chosen', 'rewards/margins', 'rewards/rejected']);
  } finally {
    model.loaded.model.dispose();
  }
});

/** The adapter's A and B values by module, as PEFT files hold them. */
function adapter(dir: string): Map<string, Float32Array[]> {
  return new Map([...readPeftAdapter(dir, base.config).matrices].map(([module, { a, b }]) => [module, [a.data, b.data]]));
}

test('a resumed DPO run continues exactly as an uninterrupted one, and Ctrl-C saves a checkpoint to resume from', async () => {
  const settings = validateLoraSettings({ ...SETTINGS, dropout: 0.1 });
  const run = async (outputDir: string, resume: boolean, seed: number, extra: Partial<TrainOptions> = {}) => {
    const model = await loadLoraModel(STORIES, settings, seed, { backend: BACKEND });
    try {
      const events: TrainEvent[] = [];
      const pairs = pairsFor(model, 3);
      await trainObjective(new DpoObjective(0.1), model, pairs, null, options({ outputDir, resume, maxSteps: 4, saveSteps: 2, batchSize: 1, gradientAccumulationSteps: 2, schedulerType: 'cosine', warmupSteps: 1, ...extra }), (e) => events.push(e));
      return events;
    } finally {
      model.loaded.model.dispose();
    }
  };
  const steps = (events: TrainEvent[]) => events.filter((e) => e.kind === 'step').map((e) => e.kind === 'step' && [e.step, e.loss, e.learningRate, e.metrics]);
  const whole = path.join(tmp, 'whole');
  const uninterrupted = await run(whole, false, 42);
  // From the step-2 checkpoint alone, with another LoRA initialization that resume must overwrite.
  const resumed = path.join(tmp, 'resumed');
  fs.cpSync(path.join(whole, 'checkpoint-2'), path.join(resumed, 'checkpoint-2'), { recursive: true });
  const continued = await run(resumed, true, 7);
  expect(continued[0]).toMatchObject({ kind: 'start', step: 2, totalSteps: 4 });
  expect(steps(continued)).toEqual(steps(uninterrupted).slice(2));
  const final = adapter(whole);
  expect(adapter(resumed)).toEqual(final);

  const stopped = path.join(tmp, 'stopped');
  let updates = 0;
  await expect(run(stopped, false, 42, { shouldStop: () => ++updates >= 3 })).rejects.toThrow(HerdInterrupted);
  const finished = await run(stopped, true, 7);
  expect(finished[0]).toMatchObject({ kind: 'start', step: 3 });
  expect(steps(finished)).toEqual(steps(uninterrupted).slice(3));
  expect(adapter(stopped)).toEqual(final);
});
