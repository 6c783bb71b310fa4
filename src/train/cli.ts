import { Flags } from '@oclif/core';
import chalk from 'chalk';
import cliProgress from 'cli-progress';
import { numberFlag } from '../cli/flags.js';
import { jsonLine, SCHEMAS } from '../cli/json-output.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import type { TrainingExample } from './data.js';
import { LINEAR_MODULES } from '../spec/tensors.js';
import { SCHEDULER_TYPES } from './optimizer.js';
import type { TrainEvent } from './trainer.js';
import type { Metrics } from './objective.js';

/**
 * What `herd finetune` and `herd finetune check` share on the command line: flag names follow
 * TRL's SFTConfig / transformers' TrainingArguments and PEFT's LoraConfig (dashes for
 * underscores), so a TRL command translates one to one.
 */

export const dataFlags = {
  data: Flags.string({ description: 'Training data: .jsonl or .parquet rows of {"messages"}, {"prompt","completion"} or {"text"}; with --method dpo, {"prompt","chosen","rejected"} or {"chosen","rejected"}.', required: true }),
  'max-seq-length': Flags.integer({ description: 'Longest example in tokens; longer rows are truncated (TRL max_length).', default: 1024, min: 2 }),
  'train-on-prompt': Flags.boolean({ description: 'Take the loss on prompt, system and user tokens too (default: only assistant / completion tokens).', default: false }),
};

export const TRAINING_METHODS = ['sft', 'dpo'] as const;
export type TrainingMethod = (typeof TRAINING_METHODS)[number];

/** TRL's trainers: SFTTrainer, or DPOTrainer with DPOConfig's beta. */
export const methodFlags = {
  method: Flags.string({ description: 'sft: supervised loss on the completions; dpo: Direct Preference Optimization on chosen/rejected pairs.', options: [...TRAINING_METHODS], default: 'sft' }),
  beta: numberFlag({ description: 'DPO: how far the policy may move from the reference (the base without the adapter). Default: 0.1.', min: Number.MIN_VALUE }),
};

export const loraFlags = {
  'lora-r': Flags.integer({ description: 'LoRA rank r.', default: 16 }),
  'lora-alpha': numberFlag({ description: 'LoRA alpha; the update is scaled by alpha / r. Default: 32.' }),
  'lora-dropout': numberFlag({ description: 'Dropout on the LoRA input during training. Default: 0.05.' }),
  'lora-target-modules': Flags.string({
    description: `Modules to adapt (${LINEAR_MODULES.join(', ')}), space- or comma-separated.`,
    multiple: true,
    default: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
  }),
};

export const optimizationFlags = {
  'learning-rate': numberFlag({ description: 'Peak learning rate of AdamW. Default: 2e-4.', min: 0 }),
  'lr-scheduler-type': Flags.string({ description: 'Learning-rate schedule after warmup.', options: [...SCHEDULER_TYPES], default: 'linear' }),
  'warmup-ratio': numberFlag({ description: 'Fraction of the updates spent warming up linearly from 0. Default: 0.', min: 0, max: 1 }),
  'warmup-steps': Flags.integer({ description: 'Warmup updates (wins over --warmup-ratio).', default: 0, min: 0 }),
  'weight-decay': numberFlag({ description: 'Decoupled AdamW weight decay. Default: 0.', min: 0 }),
  'max-grad-norm': numberFlag({ description: 'Clip gradients to this global L2 norm (0: off). Default: 1.', min: 0 }),
  'per-device-train-batch-size': Flags.integer({ description: 'Examples per forward/backward micro-batch.', default: 1, min: 1 }),
  'gradient-accumulation-steps': Flags.integer({ description: 'Micro-batches per optimizer update.', default: 1, min: 1 }),
  'num-train-epochs': numberFlag({ description: 'Passes over the data (when --max-steps is not given). Default: 3.', min: 0 }),
  'max-steps': Flags.integer({ description: 'Optimizer updates to run (wins over --num-train-epochs).', default: 0, min: 0 }),
  seed: Flags.integer({ description: 'Seed for LoRA initialization, data order and dropout.', default: 42 }),
};

/** The example's text with each run of masked tokens in [brackets] (dimmed when colour is on). */
export function renderMasked(example: TrainingExample, tokenizer: HerdTokenizer, colour: boolean): string {
  let out = '';
  let start = 0;
  for (let i = 1; i <= example.ids.length; i++) {
    if (i < example.ids.length && example.trained[i] === example.trained[start]) continue;
    const text = tokenizer.decode([...example.ids.subarray(start, i)]);
    out += example.trained[start] === 1 ? text : colour ? chalk.dim(`[${text}]`) : `[${text}]`;
    start = i;
  }
  return out;
}

/**
 * Shows training as it runs: a bar with step, loss, learning rate, tokens/s and ETA on stderr for
 * a person at a terminal, log lines above it; with --json, one JSON object per line on stdout.
 */
export function trainingReporter(json: boolean, write: (line: string) => void): { onEvent: (event: TrainEvent) => void; stop: () => void } {
  const interactive = !json && Boolean(process.stderr.isTTY);
  const bars = interactive
    ? new cliProgress.MultiBar({ format: 'Training [{bar}] {value}/{total} | loss {loss} | lr {lr} | {speed} tok/s | ETA {eta_formatted}', stream: process.stderr, hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic)
    : null;
  let bar: cliProgress.SingleBar | null = null;
  const say = (text: string) => (bars ? bars.log(`${text}\n`) : write(text));
  const onEvent = (event: TrainEvent) => {
    if (json) {
      if (event.kind !== 'step' || event.log) write(jsonLine(SCHEMAS.finetune, jsonEvent(event)));
      return;
    }
    if (event.kind === 'start') {
      bar = bars?.create(event.totalSteps, event.step, { loss: '-', lr: '-', speed: '-' }) ?? null;
      say(`training ${event.trainableParameters.toLocaleString('en-US')} LoRA parameters on ${event.examples} examples, updates ${event.step + 1}..${event.totalSteps}`);
    } else if (event.kind === 'step') {
      bar?.update(event.step, { loss: event.loss.toFixed(4), lr: event.learningRate.toExponential(2), speed: event.tokensPerSecond.toFixed(0) });
      if (event.log) say(`step ${event.step}/${event.totalSteps}  loss ${event.loss.toFixed(4)}  lr ${event.learningRate.toExponential(3)}  grad_norm ${event.gradNorm.toFixed(3)}  epoch ${event.epoch.toFixed(2)}${metricsText(event.metrics, '')}`);
    } else if (event.kind === 'eval') {
      say(`step ${event.step}  eval_loss ${event.evalLoss.toFixed(4)}${metricsText(event.metrics, 'eval_')}`);
    } else if (event.kind === 'checkpoint') {
      say(`saved ${event.dir}`);
    } else {
      bars?.stop();
      say(`adapter written to ${event.adapterDir}`);
    }
  };
  return { onEvent, stop: () => bars?.stop() };
}

function metricsText(metrics: Metrics, prefix: string): string {
  return Object.entries(metrics).map(([key, value]) => `  ${prefix}${key} ${value.toFixed(4)}`).join('');
}

/** Metrics under their TRL names, held-out ones prefixed eval_ as transformers logs them. */
function prefixed(metrics: Metrics, prefix: string): Metrics {
  return Object.fromEntries(Object.entries(metrics).map(([key, value]) => [`${prefix}${key}`, value]));
}

/** Log lines with transformers' key names, for scripts. */
function jsonEvent(event: TrainEvent): Record<string, unknown> {
  switch (event.kind) {
    case 'start':
      return { event: 'start', step: event.step, max_steps: event.totalSteps, trainable_parameters: event.trainableParameters, examples: event.examples };
    case 'step':
      return { event: 'step', step: event.step, loss: event.loss, learning_rate: event.learningRate, grad_norm: event.gradNorm, epoch: event.epoch, tokens_per_second: event.tokensPerSecond, elapsed_ms: Math.round(event.elapsedMs), ...event.metrics };
    case 'eval':
      return { event: 'eval', step: event.step, eval_loss: event.evalLoss, ...prefixed(event.metrics, 'eval_') };
    case 'checkpoint':
      return { event: 'checkpoint', step: event.step, dir: event.dir };
    case 'done':
      return { event: 'done', step: event.step, adapter_dir: event.adapterDir };
  }
}
