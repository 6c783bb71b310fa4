/**
 * Metric functions and aggregations as lm-eval defines them (lm_eval/api/metrics.py and the
 * multiple-choice branch of ConfigurableTask.process_results), with their standard errors.
 */
import { PythonRandom } from './python-random.js';

/** acc and acc_norm of one multiple-choice question. np.argmax takes the first maximum, so ties go to the lower index. */
export function multipleChoiceScores(loglikelihoods: readonly number[], choices: readonly string[], gold: number | readonly number[], isGreedy: readonly boolean[]) {
  const pred = firstArgmax(loglikelihoods);
  // acc_norm divides by the choice's length in characters (Python len: code points), without the target delimiter.
  const predNorm = firstArgmax(loglikelihoods.map((ll, i) => ll / [...choices[i]!].length));
  const golds = typeof gold === 'number' ? [gold] : gold;
  return {
    acc: golds.includes(pred) ? 1 : 0,
    acc_norm: golds.includes(predNorm) ? 1 : 0,
    exact_match: golds.some((g) => isGreedy[g]) ? 1 : 0,
    pred,
    pred_norm: predNorm,
  };
}

export function firstArgmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

export interface ExactMatchOptions {
  ignore_case?: boolean;
  ignore_punctuation?: boolean;
  regexes_to_ignore?: string[];
}

/** Python's string.punctuation. */
export const PUNCTUATION: ReadonlySet<string> = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');

/** lm-eval's exact_match (HF evaluate's): regexes removed, then case and punctuation, then equality; any of several references counts. */
export function exactMatch(prediction: string, references: readonly string[], options: ExactMatchOptions): number {
  const normalize = (text: string): string => {
    let out = text;
    for (const pattern of options.regexes_to_ignore ?? []) out = out.replace(pythonRegex(pattern, 'g'), '');
    if (options.ignore_case) out = out.toLowerCase();
    if (options.ignore_punctuation) out = [...out].filter((char) => !PUNCTUATION.has(char)).join('');
    return out;
  };
  const predicted = normalize(prediction);
  return references.some((reference) => normalize(reference) === predicted) ? 1 : 0;
}

/** A Python `re` pattern as a JavaScript RegExp: leading inline flags such as `(?s)` become flags. */
export function pythonRegex(pattern: string, flags = ''): RegExp {
  const inline = /^\(\?([aiLmsux]+)\)/.exec(pattern);
  if (!inline) return new RegExp(pattern, flags);
  const extra = [...inline[1]!].filter((flag) => 'ims'.includes(flag)).join('');
  return new RegExp(pattern.slice(inline[0].length), flags + extra);
}

/** The official SQuAD v1.1 normalization: lower case, no punctuation, no articles, single spaces. */
export function normalizeSquadAnswer(text: string): string {
  const lowered = text.toLowerCase();
  const noPunctuation = [...lowered].filter((char) => !PUNCTUATION.has(char)).join('');
  const noArticles = noPunctuation.replace(/\b(a|an|the)\b/g, ' ');
  return noArticles.split(/\s+/).filter(Boolean).join(' ');
}

export function squadExactMatch(prediction: string, references: readonly string[]): number {
  const predicted = normalizeSquadAnswer(prediction);
  return references.some((reference) => normalizeSquadAnswer(reference) === predicted) ? 1 : 0;
}

/** SQuAD token F1 (bag-of-tokens overlap after normalization), the maximum over the references. */
export function squadF1(prediction: string, references: readonly string[]): number {
  const predicted = normalizeSquadAnswer(prediction).split(' ').filter(Boolean);
  return Math.max(
    0,
    ...references.map((reference) => {
      const gold = normalizeSquadAnswer(reference).split(' ').filter(Boolean);
      const counts = new Map<string, number>();
      for (const token of gold) counts.set(token, (counts.get(token) ?? 0) + 1);
      let same = 0;
      for (const token of predicted) {
        const left = counts.get(token) ?? 0;
        if (left > 0) {
          same++;
          counts.set(token, left - 1);
        }
      }
      if (same === 0) return 0;
      const precision = same / predicted.length;
      const recall = same / gold.length;
      return (2 * precision * recall) / (precision + recall);
    }),
  );
}

export function mean(values: readonly number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / values.length;
}

/** lm-eval's mean_stderr: the sample standard deviation (n − 1) over √n. */
export function meanStderr(values: readonly number[]): number {
  if (values.length < 2) return Number.NaN;
  const mu = mean(values);
  const variance = values.reduce((sum, value) => sum + (value - mu) ** 2, 0) / (values.length - 1);
  return Math.sqrt(variance) / Math.sqrt(values.length);
}

/** A perplexity document: its total log-likelihood and its size in words or bytes. */
export type WeightedItem = readonly [loglikelihood: number, units: number];

export function weightedMean(items: readonly WeightedItem[]): number {
  let total = 0;
  let units = 0;
  for (const [ll, n] of items) {
    total += ll;
    units += n;
  }
  return total / units;
}

/** word_perplexity and byte_perplexity: exp(−Σ loglikelihood / Σ units). */
export const weightedPerplexity = (items: readonly WeightedItem[]): number => Math.exp(-weightedMean(items));

/** bits_per_byte: −Σ loglikelihood / Σ bytes / ln 2. */
export const bitsPerByte = (items: readonly WeightedItem[]): number => -weightedMean(items) / Math.LN2;

/**
 * lm-eval's bootstrap_stderr: `iters` resamples with replacement in chunks of 1000, chunk i drawn
 * with `random.Random(i).choices`, then the sample standard deviation of the statistic. (lm-eval
 * bootstraps only its `perplexity` aggregation and reports N/A for the weighted ones; herd applies
 * the same procedure to them.)
 */
export function bootstrapStderr<T>(statistic: (items: readonly T[]) => number, items: readonly T[], iters: number): number {
  if (items.length < 2 || iters < 2) return Number.NaN;
  const chunk = Math.min(1000, iters);
  const replicates: number[] = [];
  for (let i = 0; i < Math.floor(iters / chunk); i++) {
    const random = new PythonRandom(i);
    for (let j = 0; j < chunk; j++) replicates.push(statistic(random.choices(items, items.length)));
  }
  return meanStderr(replicates) * Math.sqrt(replicates.length);
}
