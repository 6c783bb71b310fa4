import type * as tf from '@tensorflow/tfjs-core';
import type { KvCache } from '../engine/ops.js';
import type { LoraModel } from './trainer.js';

/** Named values logged with the loss, under TRL's names (e.g. "rewards/margins"). */
export type Metrics = Record<string, number>;

/**
 * What the one trainer minimises: supervised cross-entropy (SFT) or a preference loss (DPO).
 * The trainer owns the data order, accumulation, clipping, the optimizer, checkpoints and resume;
 * an objective only says how a batch of its examples becomes a loss.
 */
export interface TrainingObjective<E> {
  /** Tokens the model reads for one example (for tokens/s). */
  tokens(example: E): number;
  /** Whether the example carries any loss; those that do not are left out of their micro-batch. */
  trains(example: E): boolean;
  /**
   * What an update's summed losses are divided by (trained tokens, or pairs), taken over the whole
   * update so that accumulated micro-batches give the gradient of one large batch.
   */
  normalizer(batch: readonly E[]): number;
  /** Work done without gradients before a micro-batch's backward pass (DPO: the reference log-probabilities). */
  prepare(model: LoraModel, micro: readonly E[]): void;
  /**
   * The micro-batch's summed loss divided by `normalizer`, built under the gradient tape, with
   * each example's metrics. Sequences run in caches from `openCache`, which the caller disposes
   * after the backward pass (the attention's gradient reads the keys and values kept there).
   */
  loss(model: LoraModel, micro: readonly E[], normalizer: number, openCache: (length: number) => KvCache): { loss: tf.Scalar; metrics: Metrics[] };
  /** The mean loss over held-out examples and their mean metrics, without gradients. */
  evaluate(model: LoraModel, examples: readonly E[]): { loss: number; metrics: Metrics };
}

/** The mean of each metric over examples (TRL averages its logged metrics over the batch). */
export function meanMetrics(perExample: readonly Metrics[]): Metrics {
  const mean: Metrics = {};
  if (perExample.length === 0) return mean;
  for (const key of Object.keys(perExample[0]!)) mean[key] = perExample.reduce((sum, metrics) => sum + metrics[key]!, 0) / perExample.length;
  return mean;
}
