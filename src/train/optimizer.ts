import * as tf from '@tensorflow/tfjs-core';
import { HerdError } from '../errors.js';

/**
 * AdamW as torch.optim.AdamW (decoupled weight decay), learning-rate schedules as transformers'
 * get_*_schedule_with_warmup, and clipping by global norm as torch.nn.utils.clip_grad_norm_.
 */

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
}

/** transformers' TrainingArguments defaults. */
export const ADAMW_DEFAULTS: AdamWOptions = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 };

/** The moments of one parameter, host-side, for checkpoints. */
export interface MomentState {
  m: Float32Array;
  v: Float32Array;
}

export class AdamW {
  private readonly moments: Array<{ m: tf.Tensor; v: tf.Tensor }>;
  /** Updates done so far (torch's per-parameter `step`, the same for every parameter here). */
  step = 0;

  constructor(private readonly parameters: readonly tf.Variable[], private readonly options: AdamWOptions = ADAMW_DEFAULTS) {
    this.moments = parameters.map((p) => ({ m: tf.keep(tf.zerosLike(p)), v: tf.keep(tf.zerosLike(p)) }));
  }

  /**
   * One update with learning rate `lr`, in torch's order: p ← p·(1 − lr·wd); m, v updated;
   * p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε).
   */
  apply(gradients: readonly tf.Tensor[], lr: number): void {
    const { beta1, beta2, epsilon, weightDecay } = this.options;
    this.step += 1;
    const stepSize = lr / (1 - beta1 ** this.step);
    const correction2Root = Math.sqrt(1 - beta2 ** this.step);
    this.parameters.forEach((parameter, index) => {
      const gradient = gradients[index]!;
      const state = this.moments[index]!;
      const [m, v] = tf.tidy(() => [
        tf.add(tf.mul(state.m, beta1), tf.mul(gradient, 1 - beta1)),
        tf.add(tf.mul(state.v, beta2), tf.mul(tf.square(gradient), 1 - beta2)),
      ]);
      state.m.dispose();
      state.v.dispose();
      state.m = tf.keep(m!);
      state.v = tf.keep(v!);
      tf.tidy(() => {
        const decayed = weightDecay === 0 ? parameter : tf.mul(parameter, 1 - lr * weightDecay);
        const denominator = tf.add(tf.div(tf.sqrt(state.v), correction2Root), epsilon);
        parameter.assign(tf.sub(decayed, tf.mul(tf.div(state.m, denominator), stepSize)));
      });
    });
  }

  state(): MomentState[] {
    return this.moments.map(({ m, v }) => ({ m: m.dataSync() as Float32Array, v: v.dataSync() as Float32Array }));
  }

  restore(step: number, moments: readonly MomentState[]): void {
    if (moments.length !== this.moments.length) throw new HerdError(`optimizer state has ${moments.length} parameters, the model ${this.moments.length}`);
    this.step = step;
    this.moments.forEach((state, index) => {
      const saved = moments[index]!;
      const shape = this.parameters[index]!.shape;
      state.m.dispose();
      state.v.dispose();
      state.m = tf.keep(tf.tensor(saved.m, shape));
      state.v = tf.keep(tf.tensor(saved.v, shape));
    });
  }

  dispose(): void {
    for (const { m, v } of this.moments) {
      m.dispose();
      v.dispose();
    }
  }
}

/**
 * Scales the gradients in place so their global L2 norm is at most maxNorm (0: no clipping);
 * returns the norm before clipping, as transformers logs grad_norm.
 */
export function clipByGlobalNorm(gradients: tf.Tensor[], maxNorm: number): number {
  const norm = Math.sqrt(gradients.reduce((sum, g) => sum + tf.tidy(() => tf.sum(tf.square(g)).dataSync()[0]!), 0));
  const coefficient = maxNorm / (norm + 1e-6);
  if (maxNorm > 0 && coefficient < 1) {
    gradients.forEach((gradient, index) => {
      gradients[index] = tf.mul(gradient, coefficient);
      gradient.dispose();
    });
  }
  return norm;
}

export const SCHEDULER_TYPES = ['linear', 'cosine', 'constant', 'constant_with_warmup'] as const;
export type SchedulerType = (typeof SCHEDULER_TYPES)[number];

/**
 * The learning rate of update number `step` (0-based), as transformers' LambdaLR schedules give
 * it: the first update after warmup starts uses step 0, so with warmup it runs at lr 0.
 */
export function learningRateAt(type: SchedulerType, peak: number, step: number, warmupSteps: number, totalSteps: number): number {
  if (type === 'constant') return peak;
  if (step < warmupSteps) return (peak * step) / Math.max(1, warmupSteps);
  if (type === 'constant_with_warmup') return peak;
  const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  if (type === 'linear') return peak * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
  return peak * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/** transformers' get_warmup_steps: explicit steps win, else ceil(ratio × total). */
export function warmupStepsFor(totalSteps: number, warmupSteps: number, warmupRatio: number): number {
  return warmupSteps > 0 ? warmupSteps : Math.ceil(totalSteps * warmupRatio);
}
