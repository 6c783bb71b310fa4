import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { HerdError, HerdInterrupted } from '../errors.js';
import { stopRequested, type ShouldStop } from '../stop-signal.js';
import { TfjsOps } from '../backends/tfjs-ops.js';
import { loadModel } from '../backends/load.js';
import type { LoadedModel } from '../engine/load.js';
import type { KvCache } from '../engine/ops.js';
import { readFloatTensor, readSafetensorsHeader, writeSafetensors, type HostTensor } from '../formats/safetensors.js';
import { openForReading, writeFileAtomically } from '../formats/files.js';
import { seededRandom } from '../engine/sampling.js';
import { readPeftAdapter, writePeftAdapter, peftTensorName, type LoraMatrices, type LoraSettings } from '../formats/peft.js';
import type { TrainingExample } from './data.js';
import { LoraOps, mixSeed, type TrainingMemory } from './lora.js';
import { nf4HeldBytes } from './qlora.js';
import { linearModuleOf } from '../spec/tensors.js';
import { SUPERVISED } from './loss.js';
import { meanMetrics, type Metrics, type TrainingObjective } from './objective.js';
import { AdamW, ADAMW_DEFAULTS, clipByGlobalNorm, learningRateAt, warmupStepsFor, type MomentState, type SchedulerType } from './optimizer.js';

export interface LoraModel {
  loaded: LoadedModel;
  lora: LoraOps;
}

export interface LoraLoadOptions extends Partial<TrainingMemory> {
  backend?: string;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Loads a base model on a tfjs backend (autodiff needs tfjs) with LoRA parameters on its target
 * modules; `loadIn4bit` holds the base in NF4 (QLoRA), `gradientCheckpointing` recomputes layers.
 */
export async function loadLoraModel(dir: string, settings: LoraSettings, seed: number, options: LoraLoadOptions = {}): Promise<LoraModel> {
  if (options.backend === 'kernels') throw new HerdError("training needs a tfjs backend (automatic differentiation); herd's kernels only run inference");
  let lora: LoraOps | null = null;
  const loaded = await loadModel(dir, {
    backend: options.backend ?? 'tfjs',
    onProgress: options.onProgress,
    // QLoRA holds the decoder layers' projections in NF4, not in tfjs' float32.
    heldBytes: options.loadIn4bit ? (tensor, bytes) => (linearModuleOf(tensor.name) === null ? bytes : nf4HeldBytes(tensor.shape[0]! * tensor.shape[1]!)) : undefined,
    wrapOps: (ops) => {
      if (!(ops instanceof TfjsOps)) throw new HerdError(`training needs a tfjs backend, not ${ops.name}`);
      lora = new LoraOps(ops, settings, seed, { gradientCheckpointing: options.gradientCheckpointing ?? false, loadIn4bit: options.loadIn4bit ?? false });
      return lora as never;
    },
  });
  const attached = lora as LoraOps | null;
  if (attached === null) throw new HerdError('the backend was never wrapped for LoRA');
  try {
    attached.checkTargetsFound(loaded.config);
  } catch (error) {
    loaded.model.dispose();
    throw error;
  }
  return { loaded, lora: attached };
}

export interface TrainOptions {
  learningRate: number;
  schedulerType: SchedulerType;
  warmupSteps: number;
  warmupRatio: number;
  weightDecay: number;
  maxGradNorm: number;
  batchSize: number;
  gradientAccumulationSteps: number;
  /** Used when maxSteps is 0. */
  numEpochs: number;
  maxSteps: number;
  seed: number;
  /** Log the training loss every N updates. */
  loggingSteps: number;
  /** Eval loss every N updates (0: only at the end) when eval data is given. */
  evalSteps: number;
  /** Checkpoint every N updates (0: none). */
  saveSteps: number;
  outputDir: string;
  /** Continue from the newest checkpoint-N in outputDir. */
  resume: boolean;
  /** Asked between updates: Ctrl-C saves a checkpoint there and stops (HerdInterrupted). */
  shouldStop?: ShouldStop;
  /** Written into adapter_config.json as base_model_name_or_path. */
  baseModelName: string;
}

export type TrainEvent =
  | { kind: 'start'; step: number; totalSteps: number; trainableParameters: number; examples: number }
  | { kind: 'step'; step: number; totalSteps: number; loss: number; learningRate: number; gradNorm: number; epoch: number; tokensPerSecond: number; elapsedMs: number; log: boolean; metrics: Metrics }
  | { kind: 'eval'; step: number; evalLoss: number; metrics: Metrics }
  | { kind: 'checkpoint'; step: number; dir: string }
  | { kind: 'done'; step: number; adapterDir: string };

export interface TrainResult {
  steps: number;
  lastLoss: number;
  evalLoss: number | null;
  adapterDir: string;
}

const OPTIMIZER_FILE = 'optimizer.safetensors';
const STATE_FILE = 'trainer_state.json';

/**
 * Supervised fine-tuning of the LoRA parameters: the summed token losses of an update divided by
 * the number of trained tokens in the whole update (as transformers does with num_items_in_batch).
 */
export function train(model: LoraModel, examples: readonly TrainingExample[], evalExamples: readonly TrainingExample[] | null, options: TrainOptions, onEvent: (event: TrainEvent) => void = () => {}): Promise<TrainResult> {
  return trainObjective(SUPERVISED, model, examples, evalExamples, options, onEvent);
}

/**
 * Fine-tunes the LoRA parameters on any objective: each update takes batchSize ×
 * gradientAccumulationSteps examples in a seeded per-epoch shuffle, and the objective's loss is
 * normalized over the whole update, so accumulation gives the same gradient as one large batch.
 */
export async function trainObjective<E>(objective: TrainingObjective<E>, model: LoraModel, examples: readonly E[], evalExamples: readonly E[] | null, options: TrainOptions, onEvent: (event: TrainEvent) => void = () => {}): Promise<TrainResult> {
  if (examples.length === 0) throw new HerdError('no training examples');
  const parameters = model.lora.variables();
  const optimizer = new AdamW(parameters, { ...ADAMW_DEFAULTS, weightDecay: options.weightDecay });
  try {
    const perUpdate = options.batchSize * options.gradientAccumulationSteps;
    const totalSteps = options.maxSteps > 0 ? options.maxSteps : Math.max(1, Math.ceil((options.numEpochs * examples.length) / perUpdate));
    const warmupSteps = warmupStepsFor(totalSteps, options.warmupSteps, options.warmupRatio);
    const order = new DataOrder(examples.length, options.seed);
    const startStep = options.resume ? resumeFromLatest(model, optimizer, options.outputDir) : 0;
    onEvent({ kind: 'start', step: startStep, totalSteps, trainableParameters: parameters.reduce((n, p) => n + p.size, 0), examples: examples.length });

    const started = performance.now();
    let tokensSeen = 0;
    let lastLoss = NaN;
    let evalLoss: number | null = null;
    for (let step = startStep; step < totalSteps; step++) {
      const batch = Array.from({ length: perUpdate }, (_, i) => examples[order.at(step * perUpdate + i)]!);
      const learningRate = learningRateAt(options.schedulerType, options.learningRate, step, warmupSteps, totalSteps);
      // A dropout stream per update, fixed by the seed, so a resumed run draws the same masks.
      model.lora.setDropoutSeed(mixSeed(options.seed, step));
      const { loss, gradNorm, metrics } = update(objective, model, optimizer, batch, options, learningRate);
      model.lora.setDropoutSeed(null);
      lastLoss = loss;
      tokensSeen += batch.reduce((n, example) => n + objective.tokens(example), 0);
      const done = step + 1;
      const elapsedMs = performance.now() - started;
      const log = done % options.loggingSteps === 0 || done === totalSteps;
      onEvent({ kind: 'step', step: done, totalSteps, loss, learningRate, gradNorm, epoch: (done * perUpdate) / examples.length, tokensPerSecond: (tokensSeen / elapsedMs) * 1000, elapsedMs, log, metrics });
      if (evalExamples && ((options.evalSteps > 0 && done % options.evalSteps === 0) || done === totalSteps)) {
        const evaluated = objective.evaluate(model, evalExamples);
        evalLoss = evaluated.loss;
        onEvent({ kind: 'eval', step: done, evalLoss, metrics: evaluated.metrics });
      }
      if (options.saveSteps > 0 && done % options.saveSteps === 0 && done < totalSteps) {
        const dir = saveCheckpoint(model, optimizer, options, done);
        onEvent({ kind: 'checkpoint', step: done, dir });
      }
      if (done < totalSteps && (await stopRequested(options.shouldStop))) {
        const dir = saveCheckpoint(model, optimizer, options, done);
        onEvent({ kind: 'checkpoint', step: done, dir });
        throw new HerdInterrupted(`interrupted after step ${done} of ${totalSteps}: ${dir} is saved; the same command with --resume continues from it`);
      }
    }
    writePeftAdapter(options.outputDir, model.lora.settings, options.baseModelName, loraMatrices(model.lora));
    onEvent({ kind: 'done', step: totalSteps, adapterDir: options.outputDir });
    return { steps: totalSteps, lastLoss, evalLoss, adapterDir: options.outputDir };
  } finally {
    optimizer.dispose();
  }
}

/** One optimizer update over `batch`, in micro-batches of batchSize; returns the update's loss and mean metrics. */
function update<E>(objective: TrainingObjective<E>, model: LoraModel, optimizer: AdamW, batch: E[], options: TrainOptions, learningRate: number): { loss: number; gradNorm: number; metrics: Metrics } {
  const parameters = model.lora.variables();
  const normalizer = objective.normalizer(batch);
  let gradients: tf.Tensor[] | null = null;
  let loss = 0;
  const metrics: Metrics[] = [];
  for (let start = 0; start < batch.length; start += options.batchSize) {
    const micro = batch.slice(start, start + options.batchSize).filter((example) => objective.trains(example));
    if (micro.length === 0) continue;
    objective.prepare(model, micro);
    const caches: KvCache[] = [];
    const openCache = (length: number) => {
      caches.push(model.loaded.model.createCache(length));
      return caches[caches.length - 1]!;
    };
    try {
      const { value, grads } = tf.variableGrads(() => {
        const microLoss = objective.loss(model, micro, normalizer, openCache);
        metrics.push(...microLoss.metrics);
        return microLoss.loss;
      }, parameters);
      loss += value.dataSync()[0]!;
      value.dispose();
      const ordered = parameters.map((p) => grads[p.name] ?? tf.zerosLike(p));
      gradients = gradients === null ? ordered : addInto(gradients, ordered);
    } finally {
      caches.forEach((cache) => cache.dispose());
    }
  }
  if (gradients === null) return { loss: 0, gradNorm: 0, metrics: {} };
  const gradNorm = clipByGlobalNorm(gradients, options.maxGradNorm);
  optimizer.apply(gradients, learningRate);
  gradients.forEach((g) => g.dispose());
  return { loss, gradNorm, metrics: meanMetrics(metrics) };
}

function addInto(total: tf.Tensor[], more: tf.Tensor[]): tf.Tensor[] {
  return total.map((sum, i) => {
    const next = tf.add(sum, more[i]!);
    sum.dispose();
    more[i]!.dispose();
    return next;
  });
}

/**
 * The data order: example positions of an endless run of epochs, each a seeded Fisher-Yates
 * shuffle, so position k is the same in a resumed run as in an uninterrupted one.
 */
export class DataOrder {
  private readonly epochs = new Map<number, Uint32Array>();

  constructor(private readonly count: number, private readonly seed: number) {}

  at(position: number): number {
    const epoch = Math.floor(position / this.count);
    let permutation = this.epochs.get(epoch);
    if (!permutation) {
      permutation = shuffled(this.count, seededRandom(this.seed + epoch));
      this.epochs.set(epoch, permutation);
    }
    return permutation[position % this.count]!;
  }
}

function shuffled(count: number, random: () => number): Uint32Array {
  const order = Uint32Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** The current A and B of every adapted module, host-side. */
export function loraMatrices(lora: LoraOps): LoraMatrices[] {
  return lora.pairs.map(({ module, a, b }) => ({ module, a: hostTensor(peftTensorName(module, 'A'), a), b: hostTensor(peftTensorName(module, 'B'), b) }));
}

function hostTensor(name: string, tensor: tf.Tensor): HostTensor {
  return { name, shape: tensor.shape, data: Float32Array.from(tensor.dataSync() as Float32Array) };
}

/** Sets A and B from saved matrices (a checkpoint, or an adapter to keep training). */
export function assignLoraMatrices(lora: LoraOps, matrices: Map<string, LoraMatrices>): void {
  for (const pair of lora.pairs) {
    const saved = matrices.get(pair.module);
    if (!saved) throw new HerdError(`the saved adapter has no matrices for ${pair.module}`);
    pair.a.assign(tf.tensor(saved.a.data, pair.a.shape));
    pair.b.assign(tf.tensor(saved.b.data, pair.b.shape));
  }
}

/** output-dir/checkpoint-STEP: the adapter, the AdamW moments and the step (as transformers' Trainer lays it out). */
function saveCheckpoint(model: LoraModel, optimizer: AdamW, options: TrainOptions, step: number): string {
  const dir = path.join(options.outputDir, `checkpoint-${step}`);
  writePeftAdapter(dir, model.lora.settings, options.baseModelName, loraMatrices(model.lora));
  const names = model.lora.variables().map((_, i) => momentName(model.lora, i));
  const tensors = optimizer.state().flatMap((state, i) => [
    floatTensor(`${names[i]}.exp_avg`, state.m, model.lora.variables()[i]!.shape),
    floatTensor(`${names[i]}.exp_avg_sq`, state.v, model.lora.variables()[i]!.shape),
  ]);
  writeSafetensors(path.join(dir, OPTIMIZER_FILE), tensors);
  const state = { global_step: step, max_steps: options.maxSteps, seed: options.seed, lora_r: model.lora.settings.r, target_modules: model.lora.settings.targetModules };
  writeFileAtomically(path.join(dir, STATE_FILE), [Buffer.from(JSON.stringify(state, null, 2) + '\n')]);
  return dir;
}

function momentName(lora: LoraOps, index: number): string {
  const pair = lora.pairs[Math.floor(index / 2)]!;
  return peftTensorName(pair.module, index % 2 === 0 ? 'A' : 'B');
}

function floatTensor(name: string, data: Float32Array, shape: number[]) {
  return { name, dtype: 'F32', shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** Restores the newest checkpoint-N of outputDir; returns N, the step to continue from. */
function resumeFromLatest(model: LoraModel, optimizer: AdamW, outputDir: string): number {
  const dir = latestCheckpoint(outputDir);
  const state = JSON.parse(fs.readFileSync(path.join(dir, STATE_FILE), 'utf8')) as { global_step: number };
  assignLoraMatrices(model.lora, readPeftAdapter(dir, model.loaded.config).matrices);
  const file = path.join(dir, OPTIMIZER_FILE);
  const entries = new Map(readSafetensorsHeader(file).map((entry) => [entry.name, entry]));
  const fd = openForReading(file);
  try {
    const moments: MomentState[] = model.lora.variables().map((_, i) => {
      const read = (suffix: string) => {
        const entry = entries.get(`${momentName(model.lora, i)}.${suffix}`);
        if (!entry) throw new HerdError(`${file}: no ${suffix} for ${momentName(model.lora, i)}`);
        return readFloatTensor(entry, fd).data;
      };
      return { m: read('exp_avg'), v: read('exp_avg_sq') };
    });
    optimizer.restore(state.global_step, moments);
  } finally {
    fs.closeSync(fd);
  }
  return state.global_step;
}

export function latestCheckpoint(outputDir: string): string {
  const steps = (fs.existsSync(outputDir) ? fs.readdirSync(outputDir) : [])
    .map((name) => /^checkpoint-(\d+)$/.exec(name))
    .filter((match): match is RegExpExecArray => match !== null && fs.existsSync(path.join(outputDir, match[0], STATE_FILE)))
    .map((match) => Number(match[1]));
  if (steps.length === 0) throw new HerdError(`--resume: ${outputDir} has no checkpoint-N folder to resume from`);
  return path.join(outputDir, `checkpoint-${Math.max(...steps)}`);
}
