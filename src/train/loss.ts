import * as tf from '@tensorflow/tfjs-core';
import type { KvCache } from '../engine/ops.js';
import type { LlamaForCausalLM } from '../engine/model.js';
import type { TrainingExample } from './data.js';
import type { TrainingObjective } from './objective.js';

/** A model whose backend tensors are tfjs tensors (what LoraOps runs on). */
export type TfjsModel = LlamaForCausalLM<unknown, unknown>;

/** Positions whose logits predict a trained token, and the tokens they predict. */
export function labelPositions(example: TrainingExample): { rows: number[]; targets: number[] } {
  const rows: number[] = [];
  const targets: number[] = [];
  for (let t = 1; t < example.ids.length; t++) {
    if (example.trained[t] === 1) {
      rows.push(t - 1);
      targets.push(example.ids[t]!);
    }
  }
  return { rows, targets };
}

export function labelCount(example: TrainingExample): number {
  return labelPositions(example).rows.length;
}

/**
 * The summed cross-entropy of an example's trained tokens, as a tf scalar in the caller's scope,
 * from logits of every position (HF's shifted labels with -100 on masked tokens). The example
 * runs in `cache` (fresh, sized to it), which the caller disposes after any backward pass: the
 * attention keeps its keys and values there and the gradient reads them.
 */
export function exampleLossSum(model: TfjsModel, example: TrainingExample, cache: KvCache): tf.Scalar {
  const { rows, targets } = labelPositions(example);
  const logits = model.logits(example.ids, cache, { allPositions: true }) as tf.Tensor2D;
  if (rows.length === 0) return tf.scalar(0);
  const vocab = logits.shape[1];
  const picked = tf.gather(logits, tf.tensor1d(rows, 'int32'));
  const targetIndex = tf.tensor1d(targets.map((target, i) => i * vocab + target), 'int32');
  const targetLogits = tf.gather(tf.reshape(picked, [-1]), targetIndex);
  return tf.sum(tf.sub(tf.logSumExp(picked, 1), targetLogits));
}

/** exampleLossSum as a number, without gradients, in a cache of its own. */
export function exampleLossValue(model: TfjsModel, example: TrainingExample): number {
  const cache = model.createCache(example.ids.length);
  try {
    return tf.tidy(() => exampleLossSum(model, example, cache).dataSync()[0]!);
  } finally {
    cache.dispose();
  }
}

/** Mean loss per trained token over examples, without gradients (eval, held-out checks). */
export function meanLoss(model: TfjsModel, examples: readonly TrainingExample[]): number {
  let total = 0;
  let count = 0;
  for (const example of examples) {
    total += exampleLossValue(model, example);
    count += labelCount(example);
  }
  return count === 0 ? 0 : total / count;
}

/**
 * Supervised fine-tuning as transformers does it with num_items_in_batch: the summed cross-entropy
 * of the trained tokens, divided by the trained tokens of the whole update.
 */
export const SUPERVISED: TrainingObjective<TrainingExample> = {
  tokens: (example) => example.ids.length,
  trains: (example) => labelCount(example) > 0,
  normalizer: (batch) => batch.reduce((n, example) => n + labelCount(example), 0),
  prepare: () => {},
  loss(model, micro, normalizer, openCache) {
    const sums = micro.map((example) => exampleLossSum(model.loaded.model, example, openCache(example.ids.length)));
    return { loss: tf.div(tf.addN(sums), normalizer), metrics: [] };
  },
  evaluate: (model, examples) => ({ loss: meanLoss(model.loaded.model, examples), metrics: {} }),
};
