/**
 * Choosing the next token from logits, with transformers' semantics and order: repetition
 * penalty, then OpenAI's presence and frequency penalties, then temperature, top-k, top-p, min-p,
 * then a draw from a seeded generator.
 */

export interface SamplingOptions {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Keep the k most likely tokens; 0 disables. */
  topK: number;
  /** Keep the smallest set whose probability reaches p; 1 disables. */
  topP: number;
  /** Drop tokens less likely than minP × the top probability; 0 disables. */
  minP: number;
  /** CTRL-style penalty on tokens already seen (divide positive logits, multiply negative); 1 disables. */
  repetitionPenalty: number;
  /** OpenAI's presence_penalty: subtracted once from the logit of every token generated so far; 0 (or absent) disables. */
  presencePenalty?: number;
  /** OpenAI's frequency_penalty: subtracted from a token's logit once per time it was generated; 0 (or absent) disables. */
  frequencyPenalty?: number;
  seed: number;
}

export const GREEDY: SamplingOptions = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0 };

/** mulberry32: small, fast and fully determined by its 32-bit seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Sampler {
  private readonly random: () => number;

  constructor(readonly options: SamplingOptions) {
    this.random = seededRandom(options.seed);
  }

  /**
   * Picks the next id; `previous` is the prompt and everything generated so far, `generated` the
   * generated part alone (what the presence and frequency penalties count).
   */
  next(logits: Float32Array, previous: readonly number[], generated: readonly number[] = []): number {
    const { repetitionPenalty, presencePenalty = 0, frequencyPenalty = 0 } = this.options;
    const penalized = applyPresenceFrequencyPenalties(applyRepetitionPenalty(logits, previous, repetitionPenalty), generated, presencePenalty, frequencyPenalty);
    if (this.options.temperature <= 0) return argmax(penalized);
    const probabilities = filteredProbabilities(penalized, this.options);
    return drawFrom(probabilities, this.random());
  }
}

export function applyRepetitionPenalty(logits: Float32Array, previous: readonly number[], penalty: number): Float32Array {
  if (penalty === 1 || previous.length === 0) return logits;
  const out = Float32Array.from(logits);
  for (const id of new Set(previous)) {
    const value = logits[id]!;
    out[id] = value < 0 ? value * penalty : value / penalty;
  }
  return out;
}

/**
 * OpenAI's definition: logit[j] -= count[j] · frequencyPenalty + (count[j] > 0) · presencePenalty,
 * count[j] being how often token j was generated (the prompt does not count).
 */
export function applyPresenceFrequencyPenalties(logits: Float32Array, generated: readonly number[], presencePenalty: number, frequencyPenalty: number): Float32Array {
  if ((presencePenalty === 0 && frequencyPenalty === 0) || generated.length === 0) return logits;
  const counts = new Map<number, number>();
  for (const id of generated) counts.set(id, (counts.get(id) ?? 0) + 1);
  const out = Float32Array.from(logits);
  for (const [id, count] of counts) out[id] = logits[id]! - count * frequencyPenalty - presencePenalty;
  return out;
}

/**
 * The distribution the draw is made from: softmax(logits / temperature) restricted by top-k,
 * top-p and min-p and renormalised. Returned as (id, probability) pairs, most likely first.
 */
export function filteredProbabilities(logits: Float32Array, options: SamplingOptions): Array<[number, number]> {
  // Top-k first: softmax over the k kept logits equals softmax over all of them, renormalised over
  // the k, and it spares sorting the whole vocabulary (128,256 entries for Llama 3) at every token.
  const kept = options.topK > 0 ? topEntries(logits, options.topK) : sortedEntries(logits);
  let candidates = softmax(kept, options.temperature);
  if (options.topP < 1) candidates = nucleus(candidates, options.topP);
  if (options.minP > 0) {
    const threshold = options.minP * candidates[0]![1];
    candidates = candidates.filter(([, p]) => p >= threshold);
  }
  const total = candidates.reduce((sum, [, p]) => sum + p, 0);
  return candidates.map(([id, p]) => [id, p / total]);
}

/** Every (id, logit), largest first (ties: lower id first). */
function sortedEntries(logits: Float32Array): Array<[number, number]> {
  return Array.from(logits, (logit, id): [number, number] => [id, logit]).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
}

/** softmax(logit / temperature) over sorted (id, logit) entries, keeping their order. */
function softmax(sorted: Array<[number, number]>, temperature: number): Array<[number, number]> {
  const max = sorted[0]![1];
  const weights = sorted.map(([id, logit]): [number, number] => [id, Math.exp((logit - max) / temperature)]).filter(([, weight]) => weight > 0);
  const total = weights.reduce((sum, [, weight]) => sum + weight, 0);
  return weights.map(([id, weight]) => [id, weight / total]);
}

/** The smallest prefix whose probability reaches p (always at least one token). */
function nucleus(sorted: Array<[number, number]>, p: number): Array<[number, number]> {
  let cumulative = 0;
  for (let i = 0; i < sorted.length; i++) {
    cumulative += sorted[i]![1];
    if (cumulative >= p) return sorted.slice(0, i + 1);
  }
  return sorted;
}

function drawFrom(distribution: Array<[number, number]>, uniform: number): number {
  let cumulative = 0;
  for (const [id, p] of distribution) {
    cumulative += p;
    if (uniform < cumulative) return id;
  }
  return distribution[distribution.length - 1]![0];
}

export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** Natural-log softmax of the raw logits, in float64. */
export function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const value of logits) if (value > max) max = value;
  let total = 0;
  for (const value of logits) total += Math.exp(value - max);
  const logTotal = Math.log(total) + max;
  return Float64Array.from(logits, (value) => value - logTotal);
}

/** The n largest entries as (id, value), largest first. */
export function topEntries(values: ArrayLike<number>, n: number): Array<[number, number]> {
  // A few entries keep a sorted list of the best so far in one pass; many (a whole vocabulary's
  // logprobs) would re-sort that list for most ids, so every id is sorted once instead.
  if (n > FEW_ENTRIES) return Array.from(values, (value, id): [number, number] => [id, value]).sort(byValueThenId).slice(0, n);
  const top: Array<[number, number]> = [];
  for (let id = 0; id < values.length; id++) {
    const value = values[id]!;
    if (top.length < n || value > top[top.length - 1]![1]) {
      top.push([id, value]);
      top.sort(byValueThenId);
      if (top.length > n) top.pop();
    }
  }
  return top;
}

const FEW_ENTRIES = 64;

/** Highest value first; equal values by the lower id. */
function byValueThenId(a: [number, number], b: [number, number]): number {
  return b[1] - a[1] || a[0] - b[0];
}
