/**
 * Base-vs-variant comparison: metric deltas with a paired significance test over the same
 * documents, and the per-token KL divergence and top-1 agreement of the two models' next-token
 * distributions on a text.
 */
import { HerdError } from '../errors.js';
import type { LoadedModel } from '../engine/load.js';
import { argmax, logSoftmax } from '../engine/sampling.js';
import { mean, meanStderr } from './metrics.js';
import type { MetricValue } from './results.js';

export interface MetricDelta {
  task: string;
  metric: string;
  filter: string;
  base: number;
  variant: number;
  delta: number;
  /** Paired test on per-document differences (normal approximation); null for corpus-level metrics. */
  stderr: number | null;
  pValue: number | null;
}

/**
 * Paired comparison: the per-document differences' mean over its standard error (sample
 * stddev/√n) as a z statistic, two-sided. For 0/1 metrics this is the normal form of McNemar's test.
 */
export function pairedDelta(task: string, base: MetricValue, variant: MetricValue): MetricDelta {
  const delta = variant.value - base.value;
  const common = { task, metric: base.metric, filter: base.filter, base: base.value, variant: variant.value, delta };
  if (!base.perDoc || !variant.perDoc || base.perDoc.length !== variant.perDoc.length) return { ...common, stderr: null, pValue: null };
  const differences = variant.perDoc.map((value, i) => value - base.perDoc![i]!);
  const stderr = meanStderr(differences);
  if (!(stderr > 0)) return { ...common, stderr, pValue: mean(differences) === 0 ? 1 : 0 };
  return { ...common, stderr, pValue: 2 * (1 - normalCdf(Math.abs(mean(differences) / stderr))) };
}

/** Φ(x) via the Abramowitz–Stegun 7.1.26 erf approximation (|error| < 1.5e-7). */
export function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * z);
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const erf = 1 - poly * Math.exp(-z * z);
  return x >= 0 ? (1 + erf) / 2 : (1 - erf) / 2;
}

export interface DistributionAgreement {
  tokens: number;
  /** Mean over positions of KL(base ‖ variant) in nats. */
  meanKl: number;
  maxKl: number;
  /** Fraction of positions where both models' most likely next token is the same. */
  top1Agreement: number;
}

/** Runs both models over the same token windows and compares their next-token distributions position by position. */
export function compareDistributions(base: LoadedModel, variant: LoadedModel, tokens: readonly number[], window: number): DistributionAgreement {
  if (base.config.vocabSize !== variant.config.vocabSize) throw new HerdError(`the models' vocabularies differ (${base.config.vocabSize} vs ${variant.config.vocabSize}); KL needs the same tokenizer`);
  let klTotal = 0;
  let klMax = 0;
  let agree = 0;
  let count = 0;
  for (let start = 0; start < tokens.length; start += window) {
    const ids = Int32Array.from(tokens.slice(start, start + window));
    const [p, q] = [base, variant].map((loaded) => allLogits(loaded, ids)) as [Float32Array, Float32Array];
    const vocab = base.config.vocabSize;
    for (let row = 0; row < ids.length; row++) {
      const { kl, sameTop1 } = positionDivergence(p.subarray(row * vocab, (row + 1) * vocab), q.subarray(row * vocab, (row + 1) * vocab));
      klTotal += kl;
      klMax = Math.max(klMax, kl);
      if (sameTop1) agree++;
      count++;
    }
  }
  if (count === 0) throw new HerdError('the comparison text has no tokens');
  return { tokens: count, meanKl: klTotal / count, maxKl: klMax, top1Agreement: agree / count };
}

/** How one position's next-token distribution under q departs from p: log-probabilities, KL(p ‖ q) in nats, same top-1. */
export function positionDivergence(logitsP: Float32Array, logitsQ: Float32Array): { logP: Float64Array; logQ: Float64Array; kl: number; sameTop1: boolean } {
  const logP = logSoftmax(logitsP);
  const logQ = logSoftmax(logitsQ);
  let kl = 0;
  for (let v = 0; v < logP.length; v++) kl += Math.exp(logP[v]!) * (logP[v]! - logQ[v]!);
  return { logP, logQ, kl, sameTop1: argmax(logitsP) === argmax(logitsQ) };
}

/** Logits of every position of `ids` ([ids.length × vocab]), run from an empty cache. */
export function allLogits(loaded: LoadedModel, ids: Int32Array): Float32Array {
  const cache = loaded.model.createCache(ids.length);
  try {
    return loaded.model.forward(ids, cache, { allPositions: true });
  } finally {
    cache.dispose();
  }
}
