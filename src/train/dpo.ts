import * as tf from '@tensorflow/tfjs-core';
import type { KvCache } from '../engine/ops.js';
import { exampleLossSum, exampleLossValue } from './loss.js';
import { meanMetrics, type Metrics, type TrainingObjective } from './objective.js';
import type { PreferencePair } from './preference-data.js';
import type { LoraModel } from './trainer.js';

/** TRL's DPOConfig default beta. */
export const DEFAULT_BETA = 0.1;

/** Summed log-probabilities of a pair's chosen and rejected completion tokens. */
export interface PairLogps {
  chosen: number;
  rejected: number;
}

/**
 * The sigmoid DPO loss per pair (Rafailov et al. 2023; TRL's loss_type="sigmoid" without label
 * smoothing): -log σ(β · [(log πθ(y_w|x) − log π_ref(y_w|x)) − (log πθ(y_l|x) − log π_ref(y_l|x))]),
 * from summed completion log-probabilities.
 */
export function sigmoidDpoLosses(policyChosen: tf.Tensor1D, policyRejected: tf.Tensor1D, referenceChosen: tf.Tensor1D, referenceRejected: tf.Tensor1D, beta: number): tf.Tensor1D {
  const logits = tf.sub(tf.sub(policyChosen, policyRejected), tf.sub(referenceChosen, referenceRejected));
  return negativeLogSigmoid(tf.mul(logits, beta)) as tf.Tensor1D;
}

/**
 * −log σ(z) = softplus(−z), which stays finite where σ(z) rounds to 0, with its gradient
 * −σ(−z). tf.logSigmoid's own gradient reads its input after the forward pass has freed it, so
 * this one saves z.
 */
const negativeLogSigmoid = tf.customGrad((...args: unknown[]) => {
  const z = args[0] as tf.Tensor;
  const save = args[args.length - 1] as tf.GradSaveFunc;
  save([z]);
  return {
    value: tf.softplus(tf.neg(z)),
    gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => tf.mul(dy, tf.neg(tf.sigmoid(tf.neg(saved!)))),
  };
});

/** A pair's metrics under TRL's names; the rewards are β times the policy-minus-reference log-ratio. */
export function dpoMetrics(policy: PairLogps, reference: PairLogps, beta: number): Metrics {
  const chosen = beta * (policy.chosen - reference.chosen);
  const rejected = beta * (policy.rejected - reference.rejected);
  return {
    'rewards/chosen': chosen,
    'rewards/rejected': rejected,
    'rewards/accuracies': chosen > rejected ? 1 : 0,
    'rewards/margins': chosen - rejected,
    'logps/chosen': policy.chosen,
    'logps/rejected': policy.rejected,
  };
}

/**
 * Direct Preference Optimization on the LoRA parameters. The reference model is the same model
 * with its adapter switched off (LoraOps.withAdapterDisabled), so no second copy of the weights
 * exists; its log-probabilities never change during training (the base is frozen), so each
 * pair's are computed once, without gradients, the first time the pair is met, and kept.
 * The loss of an update is the mean over its pairs, as TRL's per-batch mean with transformers'
 * division by the accumulation steps.
 */
export class DpoObjective implements TrainingObjective<PreferencePair> {
  private readonly references = new Map<PreferencePair, PairLogps>();

  constructor(readonly beta: number = DEFAULT_BETA) {}

  tokens(pair: PreferencePair): number {
    return pair.chosen.ids.length + pair.rejected.ids.length;
  }

  trains(): boolean {
    // Preference rows are refused at load unless both completions keep a trained token.
    return true;
  }

  normalizer(batch: readonly PreferencePair[]): number {
    return batch.length;
  }

  prepare(model: LoraModel, micro: readonly PreferencePair[]): void {
    for (const pair of micro) this.reference(model, pair);
  }

  loss(model: LoraModel, micro: readonly PreferencePair[], normalizer: number, openCache: (length: number) => KvCache): { loss: tf.Scalar; metrics: Metrics[] } {
    const logps = micro.map((pair) => policyLogps(model, pair, openCache));
    const policyChosen = tf.concat(logps.map((pair) => pair.chosen));
    const policyRejected = tf.concat(logps.map((pair) => pair.rejected));
    const references = micro.map((pair) => this.reference(model, pair));
    const losses = sigmoidDpoLosses(policyChosen, policyRejected, tf.tensor1d(references.map((r) => r.chosen)), tf.tensor1d(references.map((r) => r.rejected)), this.beta);
    const chosenValues = policyChosen.dataSync();
    const rejectedValues = policyRejected.dataSync();
    const metrics = references.map((reference, i) => dpoMetrics({ chosen: chosenValues[i]!, rejected: rejectedValues[i]! }, reference, this.beta));
    return { loss: tf.div(tf.sum(losses), normalizer), metrics };
  }

  evaluate(model: LoraModel, pairs: readonly PreferencePair[]): { loss: number; metrics: Metrics } {
    let total = 0;
    const metrics: Metrics[] = [];
    for (const pair of pairs) {
      const reference = this.reference(model, pair);
      const policy = sequenceLogps(model, pair);
      total += tf.tidy(() => sigmoidDpoLosses(tf.tensor1d([policy.chosen]), tf.tensor1d([policy.rejected]), tf.tensor1d([reference.chosen]), tf.tensor1d([reference.rejected]), this.beta).dataSync()[0]!);
      metrics.push(dpoMetrics(policy, reference, this.beta));
    }
    return { loss: pairs.length === 0 ? 0 : total / pairs.length, metrics: meanMetrics(metrics) };
  }

  /** The pair's reference log-probabilities: the base model alone, computed once. */
  private reference(model: LoraModel, pair: PreferencePair): PairLogps {
    let logps = this.references.get(pair);
    if (!logps) {
      logps = model.lora.withAdapterDisabled(() => sequenceLogps(model, pair));
      this.references.set(pair, logps);
    }
    return logps;
  }
}

/** The policy's summed completion log-probabilities as [1] tensors under the caller's tape. */
function policyLogps(model: LoraModel, pair: PreferencePair, openCache: (length: number) => KvCache): { chosen: tf.Tensor1D; rejected: tf.Tensor1D } {
  const logp = (side: PreferencePair['chosen']) => tf.reshape(tf.neg(exampleLossSum(model.loaded.model, side, openCache(side.ids.length))), [1]) as tf.Tensor1D;
  return { chosen: logp(pair.chosen), rejected: logp(pair.rejected) };
}

/** Summed completion log-probabilities of both sides, without gradients. */
function sequenceLogps(model: LoraModel, pair: PreferencePair): PairLogps {
  return { chosen: -exampleLossValue(model.loaded.model, pair.chosen), rejected: -exampleLossValue(model.loaded.model, pair.rejected) };
}
