import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSafetensorsHeader, readFloatTensor } from '../src/formats/safetensors.js';
import { openForReading } from '../src/formats/files.js';
import { loadExamples, tokenizeRow, type TrainingExample } from '../src/train/data.js';
import { validateLoraSettings } from '../src/formats/peft.js';
import { HerdInterrupted } from '../src/errors.js';
import { meanLoss } from '../src/train/loss.js';
import { loadLoraModel, train, type TrainEvent, type TrainOptions } from '../src/train/trainer.js';
import { DATA, STORIES, TINY_LLAMA } from './fixtures.js';

// Training runs on the wasm backend, the fastest tfjs backend here.
const BACKEND = 'wasm';
let tmp: string;
beforeAll(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-fttrain-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function options(overrides: Partial<TrainOptions>): TrainOptions {
  return {
    learningRate: 1e-3, schedulerType: 'constant', warmupSteps: 0, warmupRatio: 0, weightDecay: 0, maxGradNorm: 1, batchSize: 1,
    gradientAccumulationSteps: 1, numEpochs: 1, maxSteps: 0, seed: 42, loggingSteps: 1, evalSteps: 0, saveSteps: 0,
    outputDir: path.join(tmp, 'out'), resume: false, baseModelName: 'test', ...overrides,
  };
}

/** TinyStories stories as {"text"} rows: the file separates stories by a blank line. */
function storyRows(from: number, count: number): string {
  const stories = fs.readFileSync(path.join(DATA, 'text/tinystories-valid-head.txt'), 'utf8').split('\n\n').slice(from, from + count);
  const file = path.join(tmp, `stories-${from}-${count}.jsonl`);
  fs.writeFileSync(file, stories.map((text) => JSON.stringify({ text: text.trim() })).join('\n') + '\n');
  return file;
}

test('LoRA on stories260K over TinyStories lowers the held-out loss', async () => {
  const settings = validateLoraSettings({ r: 8, alpha: 16, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
  const model = await loadLoraModel(STORIES, settings, 1, { backend: BACKEND });
  try {
    const data = { maxSeqLength: 128, trainOnPrompt: false };
    const trainSet = await loadExamples(storyRows(0, 48), model.loaded.tokenizer, data);
    const heldOut = await loadExamples(storyRows(100, 12), model.loaded.tokenizer, data);
    const before = meanLoss(model.loaded.model, heldOut);
    const events: TrainEvent[] = [];
    const result = await train(model, trainSet, heldOut, options({ learningRate: 3e-3, maxSteps: 24, batchSize: 2, evalSteps: 12, outputDir: path.join(tmp, 'stories') }), (e) => events.push(e));
    const evals = events.filter((e): e is Extract<TrainEvent, { kind: 'eval' }> => e.kind === 'eval').map((e) => e.evalLoss);
    expect(evals).toHaveLength(2);
    expect(result.evalLoss).toBe(evals[1]);
    expect(evals[1]!).toBeLessThan(before - 0.02);
    expect(fs.existsSync(path.join(tmp, 'stories', 'adapter_model.safetensors'))).toBe(true);
  } finally {
    model.loaded.model.dispose();
  }
});

test('the tiny Llama 3.1 fixture overfits a gsm8k chat row, with the prompt masked', async () => {
  const settings = validateLoraSettings({ r: 8, alpha: 16, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
  const model = await loadLoraModel(TINY_LLAMA, settings, 1, { backend: BACKEND });
  try {
    // The shortest row of the whole file (row 2349, the last the copy keeps): 67 prompt tokens, 41 answer tokens.
    const row = JSON.parse(fs.readFileSync(path.join(DATA, 'sft/gsm8k-chat-train.jsonl'), 'utf8').split('\n')[2348]!);
    const example: TrainingExample = tokenizeRow(row, 2349, model.loaded.tokenizer, { maxSeqLength: 256, trainOnPrompt: false });
    const trained = example.trained.reduce((n, flag) => n + flag, 0);
    expect(trained).toBeLessThan(example.ids.length / 2);
    expect(example.trained.subarray(0, example.ids.length - trained).every((flag) => flag === 0)).toBe(true);
    const losses: number[] = [];
    await train(model, [example], null, options({ learningRate: 1e-2, maxSteps: 20, outputDir: path.join(tmp, 'gsm8k') }), (e) => e.kind === 'step' && losses.push(e.loss));
    // Random weights start near ln(128256) = 11.76 per token. The frozen final RMSNorm and head
    // (rows of norm ≈ 0.02·√64) bound any logit to about ±1.5, so no adapter can get below about
    // 10.5 nats: a drop of more than 1 nat is most of the way there.
    expect(losses[0]!).toBeGreaterThan(11.5);
    expect(losses[19]!).toBeLessThan(losses[0]! - 1);
    expect(meanLoss(model.loaded.model, [example])).toBeLessThan(losses[0]! - 1);
  } finally {
    model.loaded.model.dispose();
  }
});

function tensors(file: string): Map<string, Float32Array> {
  const fd = openForReading(file);
  try {
    return new Map(readSafetensorsHeader(file).map((entry) => [entry.name, readFloatTensor(entry, fd).data]));
  } finally {
    fs.closeSync(fd);
  }
}

test('a resumed run continues with the same step, optimizer state and data order as an uninterrupted one', async () => {
  const settings = validateLoraSettings({ r: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'v_proj'] });
  const file = storyRows(200, 5);
  const run = async (outputDir: string, resume: boolean, seed: number, extra: Partial<TrainOptions> = {}) => {
    const model = await loadLoraModel(STORIES, settings, seed, { backend: BACKEND });
    try {
      const examples = await loadExamples(file, model.loaded.tokenizer, { maxSeqLength: 64, trainOnPrompt: false });
      const events: TrainEvent[] = [];
      await train(model, examples, null, options({ outputDir, resume, maxSteps: 6, saveSteps: 3, gradientAccumulationSteps: 2, schedulerType: 'cosine', warmupSteps: 2, weightDecay: 0.01, ...extra }), (e) => events.push(e));
      return events;
    } finally {
      model.loaded.model.dispose();
    }
  };
  const whole = path.join(tmp, 'whole');
  const uninterrupted = await run(whole, false, 42);
  // The second run starts from the step-3 checkpoint alone, with a different LoRA initialization that resume must overwrite.
  const resumed = path.join(tmp, 'resumed');
  fs.cpSync(path.join(whole, 'checkpoint-3'), path.join(resumed, 'checkpoint-3'), { recursive: true });
  const continued = await run(resumed, true, 7);
  expect(continued[0]).toMatchObject({ kind: 'start', step: 3, totalSteps: 6 });
  const steps = (events: TrainEvent[]) => events.filter((e) => e.kind === 'step').map((e) => e.kind === 'step' && [e.step, e.loss, e.learningRate]);
  expect(steps(continued)).toEqual(steps(uninterrupted).slice(3));
  const final = tensors(path.join(whole, 'adapter_model.safetensors'));
  const again = tensors(path.join(resumed, 'adapter_model.safetensors'));
  expect([...again.keys()]).toEqual([...final.keys()]);
  for (const [name, data] of final) expect(again.get(name)).toEqual(data);

  // Ctrl-C after step 4 (between two checkpoints): a checkpoint of step 4 is saved, and --resume continues from it exactly.
  const stopped = path.join(tmp, 'stopped');
  let updates = 0;
  await expect(run(stopped, false, 42, { shouldStop: () => ++updates >= 4 })).rejects.toThrow(
    new HerdInterrupted(`interrupted after step 4 of 6: ${path.join(stopped, 'checkpoint-4')} is saved; the same command with --resume continues from it`),
  );
  expect(fs.existsSync(path.join(stopped, 'adapter_model.safetensors'))).toBe(false);
  const finished = await run(stopped, true, 7);
  expect(finished[0]).toMatchObject({ kind: 'start', step: 4, totalSteps: 6 });
  expect(steps(finished)).toEqual(steps(uninterrupted).slice(4));
  const afterStop = tensors(path.join(stopped, 'adapter_model.safetensors'));
  for (const [name, data] of final) expect(afterStop.get(name)).toEqual(data);
});
