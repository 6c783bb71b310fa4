import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { TfjsOps } from '../src/backends/tfjs-ops.js';
import { openModelFolder } from '../src/engine/load.js';
import { LlamaForCausalLM } from '../src/engine/model.js';
import type { WeightSource } from '../src/formats/weights.js';
import { seededRandom } from '../src/engine/sampling.js';
import { dequantizeNf4Flat, quantizeNf4Flat } from '../src/formats/nf4.js';
import { loadExamples, type TrainingExample } from '../src/train/data.js';
import { LoraOps } from '../src/train/lora.js';
import { linearModuleOf } from '../src/spec/tensors.js';
import { validateLoraSettings } from '../src/formats/peft.js';
import { exampleLossSum, meanLoss } from '../src/train/loss.js';
import { loadLoraModel, train, type LoraModel } from '../src/train/trainer.js';
import { DATA, STORIES } from './fixtures.js';

// QLoRA (--load-in-4bit) on stories260K with the wasm backend: the decoder layers' projections held
// in NF4 and dequantized inside each linear call.
const BACKEND = 'wasm';
const SETTINGS = validateLoraSettings({ r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
// stories260K: hidden 64, intermediate 172, 8 heads and 4 kv heads of 8, 5 layers (fixture README).
const LAYER_WEIGHTS = 64 * 64 * 2 + 32 * 64 * 2 + 172 * 64 * 3;

let tmp: string;
let qlora: LoraModel;
let example: TrainingExample;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-qlora-'));
  qlora = await loadLoraModel(STORIES, SETTINGS, 3, { backend: BACKEND, loadIn4bit: true });
  const stories = fs.readFileSync(path.join(DATA, 'text/tinystories-valid-head.txt'), 'utf8').split('\n\n');
  const file = path.join(tmp, 'stories.jsonl');
  fs.writeFileSync(file, stories.slice(0, 6).map((text) => JSON.stringify({ text: text.trim() })).join('\n') + '\n');
  example = (await loadExamples(file, qlora.loaded.tokenizer, { maxSeqLength: 48, trainOnPrompt: false }))[0]!;
});

afterAll(() => {
  qlora.loaded.model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The checkpoint with every decoder-layer projection quantized to NF4 and back (what QLoRA computes with). */
function roundTripped(source: WeightSource): WeightSource {
  return {
    readFloat(name) {
      const host = source.readFloat(name);
      if (linearModuleOf(name) === null) return host;
      const { packed, absmax } = quantizeNf4Flat(host.data);
      return { ...host, data: dequantizeNf4Flat(packed, absmax, host.data.length) };
    },
  };
}

/** stories260K on float LoRA ops over `source` (the same seed draws the same A as the QLoRA model). */
function floatLoraModel(wrap: (source: WeightSource) => WeightSource) {
  const { config, checkpoint } = openModelFolder(STORIES);
  try {
    const lora = new LoraOps(new TfjsOps(BACKEND), SETTINGS, 3);
    return { model: LlamaForCausalLM.load(config, wrap(checkpoint), lora), lora };
  } finally {
    checkpoint.close();
  }
}

function allLogits(model: LlamaForCausalLM<unknown, unknown>, ids: Int32Array): Float32Array {
  const cache = model.createCache(ids.length);
  try {
    return model.forward(ids, cache, { allPositions: true });
  } finally {
    cache.dispose();
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

function gradients(model: LlamaForCausalLM<unknown, unknown>, lora: LoraOps): Float32Array[] {
  const cache = model.createCache(example.ids.length);
  try {
    const variables = lora.variables();
    const { value, grads } = tf.variableGrads(() => exampleLossSum(model, example, cache), variables);
    const host = variables.map((v) => Float32Array.from(grads[v.name]!.dataSync() as Float32Array));
    tf.dispose([value, ...Object.values(grads)]);
    return host;
  } finally {
    cache.dispose();
  }
}

test('the 4-bit base gives the logits of the NF4 round-tripped weights, at 4.5 bits a weight', () => {
  const reference = floatLoraModel(roundTripped);
  const float = floatLoraModel((source) => source);
  try {
    const quantizedLogits = allLogits(qlora.loaded.model, example.ids);
    expect(maxAbsDiff(quantizedLogits, allLogits(reference.model, example.ids))).toBeLessThan(1e-4);
    // NF4 moves the logits well beyond float error, so the comparison above can tell the two apart.
    expect(maxAbsDiff(quantizedLogits, allLogits(float.model, example.ids))).toBeGreaterThan(1e-2);
    // Each projection weight: 4 bits plus a float32 absmax per 64 instead of 32 bits.
    const saved = float.model.bytesReadPerToken() - qlora.loaded.model.bytesReadPerToken();
    expect(saved).toBe(5 * LAYER_WEIGHTS * (4 - 4.5 / 8));
  } finally {
    reference.model.dispose();
    float.model.dispose();
  }
});

test('LoRA gradients through the 4-bit base equal those through the round-tripped float base', () => {
  const reference = floatLoraModel(roundTripped);
  try {
    for (const lora of [qlora.lora, reference.lora]) {
      const random = seededRandom(9);
      for (const pair of lora.pairs) pair.b.assign(tf.tensor(Float32Array.from({ length: pair.b.size }, () => (random() * 2 - 1) * 0.2), pair.b.shape));
    }
    const expected = gradients(reference.model, reference.lora);
    const actual = gradients(qlora.loaded.model as LlamaForCausalLM<unknown, unknown>, qlora.lora);
    expect(actual).toHaveLength(5 * 7 * 2);
    expected.forEach((want, i) => {
      const scale = Math.max(...want.map(Math.abs));
      expect(scale).toBeGreaterThan(1e-4);
      expect(maxAbsDiff(actual[i]!, want)).toBeLessThan(1e-3 * scale);
    });
  } finally {
    reference.model.dispose();
  }
});

test('QLoRA training lowers the loss', async () => {
  for (const pair of qlora.lora.pairs) pair.b.assign(tf.zeros(pair.b.shape));
  const before = meanLoss(qlora.loaded.model, [example]);
  await train(qlora, [example], null, {
    learningRate: 1e-2, schedulerType: 'constant', warmupSteps: 0, warmupRatio: 0, weightDecay: 0, maxGradNorm: 1, batchSize: 1,
    gradientAccumulationSteps: 1, numEpochs: 1, maxSteps: 8, seed: 1, loggingSteps: 1, evalSteps: 0, saveSteps: 0,
    outputDir: path.join(tmp, 'out'), resume: false, baseModelName: 'test',
  });
  expect(meanLoss(qlora.loaded.model, [example])).toBeLessThan(before - 0.1);
});
