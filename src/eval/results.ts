/**
 * Aggregating per-document scores into task metrics with standard errors, the results JSON in
 * lm-eval's shape, the per-task samples jsonl, and --rescore from saved samples.
 */
import fs from 'node:fs';
import path from 'node:path';
import { HerdError } from '../errors.js';
import { writeFileAtomically } from '../formats/files.js';
import { bitsPerByte, bootstrapStderr, mean, meanStderr, weightedPerplexity, type WeightedItem } from './metrics.js';
import type { TaskRun, SampleRecord } from './runner.js';
import { scoreOutput } from './scoring.js';
import type { TaskConfig } from './task-config.js';

export interface MetricValue {
  /** "acc", "exact_match", … */
  metric: string;
  /** The filter the value was computed after ("none" for log-likelihood tasks). */
  filter: string;
  value: number;
  stderr: number;
  higherIsBetter: boolean;
  /** Per-document values for paired comparisons (absent for corpus-level perplexities). */
  perDoc?: number[];
}

const CORPUS_METRICS: Record<string, (items: readonly WeightedItem[]) => number> = {
  word_perplexity: weightedPerplexity,
  byte_perplexity: weightedPerplexity,
  bits_per_byte: bitsPerByte,
};

/** Means with mean_stderr; perplexities as weighted corpus values with a bootstrap stderr. */
export function aggregate(config: TaskConfig, samples: readonly SampleRecord[], bootstrapIters: number): MetricValue[] {
  const keys = [...new Set(samples.flatMap((sample) => Object.keys(sample.metrics)))];
  return keys.map((key) => {
    const [metric, filter] = key.split(',') as [string, string];
    const higherIsBetter = config.metric_list.find((m) => m.metric === metric)?.higher_is_better ?? !(metric in CORPUS_METRICS);
    const corpus = CORPUS_METRICS[metric];
    if (corpus) {
      const items = samples.map((sample) => sample.metrics[key] as WeightedItem);
      return { metric, filter, value: corpus(items), stderr: bootstrapStderr(corpus, items, bootstrapIters), higherIsBetter };
    }
    const values = samples.map((sample) => sample.metrics[key] as number);
    return { metric, filter, value: mean(values), stderr: meanStderr(values), higherIsBetter, perDoc: values };
  });
}

export interface EvalReport {
  tasks: Array<{ run: TaskRun; metrics: MetricValue[] }>;
  model: string;
  settings: Record<string, unknown>;
}

/** The results JSON in lm-eval's layout ("acc,none", "acc_stderr,none", configs, versions, n-shot, n-samples). */
export function resultsJson(report: EvalReport): Record<string, unknown> {
  const byTask = <T>(make: (entry: EvalReport['tasks'][number]) => T) => Object.fromEntries(report.tasks.map((entry) => [entry.run.config.task, make(entry)]));
  return {
    results: byTask(({ run, metrics }) => {
      const row: Record<string, unknown> = { alias: run.config.task };
      for (const m of metrics) {
        row[`${m.metric},${m.filter}`] = m.value;
        row[`${m.metric}_stderr,${m.filter}`] = Number.isFinite(m.stderr) ? m.stderr : 'N/A';
      }
      return row;
    }),
    configs: byTask(({ run }) => ({ ...run.config, num_fewshot: run.numFewshot })),
    versions: byTask(({ run }) => run.config.version),
    'n-shot': byTask(({ run }) => run.numFewshot),
    higher_is_better: byTask(({ metrics }) => Object.fromEntries(metrics.map((m) => [m.metric, m.higherIsBetter]))),
    'n-samples': byTask(({ run }) => ({ original: run.totalDocs, effective: run.samples.length })),
    warnings: byTask(({ run }) => run.warnings),
    config: { model: 'herd', model_args: `pretrained=${report.model}`, ...report.settings },
    date: Date.now() / 1000,
  };
}

export function samplesFileName(task: string): string {
  return `samples_${task}.jsonl`;
}

export function writeReport(dir: string, report: EvalReport, logSamples: boolean): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'results.json');
  writeFileAtomically(file, [Buffer.from(JSON.stringify(resultsJson(report), null, 2) + "\n")]);
  if (logSamples) {
    for (const { run } of report.tasks) {
      const lines = run.samples.map((sample) => JSON.stringify(sample)).join('\n') + '\n';
      writeFileAtomically(path.join(dir, samplesFileName(run.config.task)), [Buffer.from(lines)]);
    }
  }
  return file;
}

/** Reads a --output folder written with --log-samples and scores its samples again, without a model. */
export function rescore(dir: string, bootstrapIters: number): EvalReport {
  const file = path.join(dir, 'results.json');
  if (!fs.existsSync(file)) throw new HerdError(`${file} does not exist (--rescore needs a folder written by --output … --log-samples)`);
  const results = JSON.parse(fs.readFileSync(file, 'utf8')) as { configs?: Record<string, TaskConfig & { num_fewshot: number }>; 'n-samples'?: Record<string, { original: number }>; config?: { model_args?: string } };
  const configs = results.configs ?? {};
  const tasks = Object.entries(configs).map(([task, config]) => {
    const samplesFile = path.join(dir, samplesFileName(task));
    if (!fs.existsSync(samplesFile)) throw new HerdError(`${samplesFile} does not exist (the run was not made with --log-samples)`);
    const samples = readSamples(samplesFile).map((sample) => ({ ...sample, ...rescored(config, sample) }));
    const run: TaskRun = { config, numFewshot: config.num_fewshot, totalDocs: results['n-samples']?.[task]?.original ?? samples.length, samples, warnings: [] };
    return { run, metrics: aggregate(config, samples, bootstrapIters) };
  });
  return { tasks, model: (results.config?.model_args ?? '').replace(/^pretrained=/, ''), settings: { rescored_from: dir } };
}

function rescored(config: TaskConfig, sample: SampleRecord): Pick<SampleRecord, 'metrics' | 'filtered_resps'> {
  const { scores, filtered } = scoreOutput(config, sample.output, sample.doc);
  return { metrics: scores, filtered_resps: filtered };
}

function readSamples(file: string): SampleRecord[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, i) => {
      try {
        const sample = JSON.parse(line) as SampleRecord;
        if (typeof sample.output?.kind !== 'string') throw new Error('no "output" record');
        return sample;
      } catch (error) {
        throw new HerdError(`${file}: line ${i + 1}: not a herd sample (${(error as Error).message})`);
      }
    });
}
