/**
 * From a model's raw outputs for one document (a sample record) to its metric values: filters
 * for generated answers (lm-eval's regex / take_first / remove_whitespace), then the task's
 * metrics. The live run and --rescore both score through here.
 */
import { HerdError } from '../errors.js';
import type { FilterConfig, MetricConfig, TaskConfig } from './task-config.js';
import { resultsFunction, type Doc } from './task-functions.js';
import { exactMatch, multipleChoiceScores, pythonRegex, squadExactMatch, squadF1, type WeightedItem } from './metrics.js';

/** What the model produced for one document, as written to the samples jsonl. */
export type RawOutput =
  | { kind: 'multiple_choice'; choices: string[]; gold: number | number[]; loglikelihoods: number[]; is_greedy: boolean[] }
  | { kind: 'generate_until'; references: string[]; response: string }
  | { kind: 'loglikelihood_rolling'; loglikelihood: number; words: number; bytes: number }
  | { kind: 'loglikelihood'; loglikelihood: number; is_greedy: boolean };

/** Per-document values keyed "metric,filter" as in lm-eval's results; weighted metrics keep (loglikelihood, units). */
export type DocScores = Record<string, number | WeightedItem>;

export const NO_FILTER = 'none';

/** `doc` is the processed document, for tasks whose process_results reads its gold answers (drop). */
export function scoreOutput(config: TaskConfig, output: RawOutput, doc: Doc): { scores: DocScores; filtered: Record<string, string> } {
  const scores: DocScores = {};
  const filtered: Record<string, string> = {};
  if (output.kind === 'multiple_choice') {
    const mc = multipleChoiceScores(output.loglikelihoods, output.choices, output.gold, output.is_greedy);
    for (const { metric } of config.metric_list) scores[`${metric},${NO_FILTER}`] = pick(mc, metric, config);
  } else if (output.kind === 'loglikelihood_rolling') {
    for (const { metric } of config.metric_list) {
      const units = metric === 'word_perplexity' ? output.words : output.bytes;
      if (!['word_perplexity', 'byte_perplexity', 'bits_per_byte'].includes(metric)) throw unknownMetric(config, metric);
      scores[`${metric},${NO_FILTER}`] = [output.loglikelihood, units];
    }
  } else if (output.kind === 'loglikelihood') {
    for (const { metric } of config.metric_list) {
      if (metric === 'acc') scores[`acc,${NO_FILTER}`] = output.is_greedy ? 1 : 0;
      else if (metric === 'perplexity') scores[`perplexity,${NO_FILTER}`] = output.loglikelihood;
      else throw unknownMetric(config, metric);
    }
  } else {
    const filters: FilterConfig[] = config.filter_list.length > 0 ? config.filter_list : [{ name: NO_FILTER, filter: [{ function: 'take_first' }] }];
    const fromResults = config.process_results ? resultsFunction(config.process_results) : null;
    for (const filter of filters) {
      const answer = applyFilter(filter, output.response);
      filtered[filter.name] = answer;
      const results = fromResults?.(doc, answer);
      for (const metric of config.metric_list) {
        scores[`${metric.metric},${filter.name}`] = results ? resultValue(config, results, metric.metric) : generatedScore(config, metric, answer, output.references);
      }
    }
  }
  return { scores, filtered };
}

function pick(mc: ReturnType<typeof multipleChoiceScores>, metric: string, config: TaskConfig): number {
  if (metric === 'acc' || metric === 'acc_norm' || metric === 'exact_match') return mc[metric];
  throw unknownMetric(config, metric);
}

function resultValue(config: TaskConfig, results: Record<string, number>, metric: string): number {
  const value = results[metric];
  if (value === undefined) throw new HerdError(`${config.source}: task ${config.task}: process_results gives ${Object.keys(results).join(', ')}, not "${metric}"`);
  return value;
}

function generatedScore(config: TaskConfig, metric: MetricConfig, answer: string, references: string[]): number {
  switch (metric.metric) {
    case 'exact_match':
      return exactMatch(answer, references, metric);
    case 'squad_exact_match':
      return squadExactMatch(answer, references);
    case 'squad_f1':
      return squadF1(answer, references);
    default:
      throw unknownMetric(config, metric.metric);
  }
}

function unknownMetric(config: TaskConfig, metric: string): HerdError {
  return new HerdError(`${config.source}: task ${config.task}: metric "${metric}" is not available for output_type ${config.output_type}`);
}

/** Runs one filter pipeline over a generated response. */
export function applyFilter(filter: FilterConfig, response: string): string {
  let text = response;
  for (const step of filter.filter) {
    switch (step.function) {
      case 'take_first':
        break;
      case 'remove_whitespace':
        text = text.trimStart();
        break;
      case 'lowercase':
        text = text.toLowerCase();
        break;
      case 'regex':
        text = regexExtract(text, step.regex_pattern ?? '#### (\\-?[0-9\\.\\,]+)', step.group_select ?? 0, step.fallback ?? '[invalid]');
        break;
      default:
        throw new HerdError(`filter "${filter.name}": function "${step.function}" is not available (regex, take_first, remove_whitespace, lowercase)`);
    }
  }
  return text;
}

/** lm-eval's RegexFilter: Python findall, the group_select-th match, the first non-empty group of a tuple, stripped. */
function regexExtract(text: string, pattern: string, groupSelect: number, fallback: string): string {
  const regex = pythonRegex(pattern, 'g');
  const matches = [...text.matchAll(regex)].map((match) => {
    const groups = match.slice(1);
    if (groups.length === 0) return match[0];
    if (groups.length === 1) return groups[0] ?? '';
    return groups as Array<string | undefined>;
  });
  if (matches.length === 0) return fallback;
  const selected = matches.at(groupSelect);
  if (selected === undefined) return fallback;
  if (typeof selected === 'string') return selected.trim();
  const first = selected.find((group) => group);
  return first === undefined ? fallback : first.trim();
}
