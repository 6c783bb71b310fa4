import fs from 'node:fs';
import path from 'node:path';
import { Args, Flags } from '@oclif/core';
import chalk from 'chalk';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { InterruptWatch } from '../cli/interrupt.js';
import { SCHEMAS } from '../cli/json-output.js';
import { connectEndpoint, endpointFlags, endpointJson, type EndpointFlags } from '../cli/endpoint.js';
import { modelFlags } from '../cli/flags.js';
import { loadModelWithProgress } from '../cli/load.js';
import { progressBar } from '../cli/progress.js';
import { HerdError, HerdUsageError } from '../errors.js';
import type { LoadedModel } from '../engine/load.js';
import { compareDistributions, pairedDelta, type DistributionAgreement, type MetricDelta } from '../eval/compare.js';
import { aggregate, rescore, resultsJson, writeReport, type EvalReport } from '../eval/results.js';
import { clearEvalProgress, EvalProgress } from '../eval/progress.js';
import { runTask, type RunOptions } from '../eval/runner.js';
import type { EvalModel } from '../eval/eval-model.js';
import { RemoteEvalModel } from '../remote/eval-model.js';
import { builtinTaskNames, resolveTask } from '../eval/task-config.js';

export default class Eval extends HerdCommand {
  static override summary = 'Evaluate a model on benchmark tasks defined as lm-eval task YAML (accuracy, exact match, F1, perplexity).';

  static override description = `Tasks are built-in (${builtinTaskNames().join(', ')}) or paths to lm-evaluation-harness task YAML files. Data is read from local files in Hugging Face layouts (jsonl, csv, parquet) under --data.
One KV cache is kept across a task's requests: a context is encoded once for all its choices, and few-shot examples shared by consecutive documents once for all of them. Few-shot examples are drawn as lm-eval draws them (random.Random(seed).sample, seed 1234).
--compare runs a second model on the same documents and reports metric deltas with a paired significance test, plus per-token KL divergence and top-1 agreement on --compare-text.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> eval tinystories --data ../shared/data',
    '<%= config.bin %> eval arc_challenge,hellaswag --model ~/models/Llama-3.1-8B --data ~/data --limit 100 --output runs/base --log-samples',
    '<%= config.bin %> eval mmlu --model ~/models/Llama-3.1-8B-Instruct --data ~/data --apply-chat-template --fewshot-as-multiturn',
    '<%= config.bin %> eval --rescore runs/base',
    '<%= config.bin %> eval hellaswag --endpoint http://gpu-box:8000 --template-from ~/models/Llama-3.1-70B --data ~/data --concurrency 16',
    '<%= config.bin %> eval arc_challenge --model ~/models/base --compare ~/models/base-q8 --data ~/data --limit 200 --compare-text ~/data/text/wikitext-2-raw-test.txt',
  ];

  static override args = {
    // ignoreStdin: oclif would read a missing argument from stdin (and trim it); tasks are only ever named.
    tasks: Args.string({ description: 'Comma-separated task names or task YAML files.', ignoreStdin: true }),
  };

  static override flags = {
    ...modelFlags,
    ...endpointFlags,
    concurrency: Flags.integer({ description: 'With --endpoint: most requests in flight at once.', default: 4, min: 1 }),
    data: Flags.string({ description: 'Folder with the datasets (e.g. DIR/arc_challenge/test.jsonl, DIR/text/…).' }),
    limit: Flags.integer({ description: 'Evaluate only the first N documents of each task.', min: 1 }),
    seed: Flags.integer({ description: 'Seed of the few-shot sampler (lm-eval: 1234).', default: 1234 }),
    'num-fewshot': Flags.integer({ description: "Few-shot examples per prompt (default: the task's num_fewshot).", min: 0 }),
    'apply-chat-template': Flags.boolean({ description: "Wrap prompts in the model's chat template.", default: false }),
    'fewshot-as-multiturn': Flags.boolean({ description: 'With --apply-chat-template: each few-shot example as a user/assistant turn.', default: false }),
    system: Flags.string({ description: 'System instruction placed before the prompt (a system turn with --apply-chat-template).' }),
    output: Flags.string({ char: 'o', description: 'Write results.json (lm-eval layout) into this folder.' }),
    'log-samples': Flags.boolean({ description: 'With --output: also write samples_<task>.jsonl with prompts, loglikelihoods, predictions and scores.', default: false }),
    rescore: Flags.string({ description: 'Recompute metrics from a folder written with --output --log-samples, without running a model.' }),
    compare: Flags.string({ description: 'A second model folder (quantized, fine-tuned…) to run on the same documents.' }),
    'compare-adapter': Flags.string({ description: 'With --compare: a PEFT adapter for the second model (--adapter applies to --model only).' }),
    'compare-text': Flags.string({ description: 'With --compare: a text file for per-token KL divergence and top-1 agreement.' }),
    'compare-tokens': Flags.integer({ description: 'With --compare-text: how many tokens of it to compare.', default: 2048, min: 1 }),
    'max-length': Flags.integer({ description: "Longest model input in tokens (default: the model's context, at most 4096).", min: 2 }),
    'max-gen-toks': Flags.integer({ description: "Most tokens generated per answer (default: the task's max_gen_toks, 256).", min: 1 }),
    'bootstrap-iters': Flags.integer({ description: 'Bootstrap resamples for the perplexity stderrs (lm-eval: 100000).', default: 100000, min: 0 }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Eval);
    if (flags['log-samples'] && !flags.output) throw new HerdError('--log-samples needs --output DIR');
    if (flags['fewshot-as-multiturn'] && !flags['apply-chat-template']) throw new HerdError('--fewshot-as-multiturn needs --apply-chat-template');
    if (flags.rescore) {
      const report = rescore(flags.rescore, flags['bootstrap-iters']);
      if (flags.output) writeReport(flags.output, report, false);
      return this.print(report, flags.json);
    }
    if (!args.tasks) throw new HerdError(`name the tasks to run (built-in: ${builtinTaskNames().join(', ')}) or pass --rescore DIR`);
    const configs = args.tasks.split(',').map((name) => resolveTask(name.trim()));
    const base = flags.endpoint === undefined ? localTarget(await loadModelWithProgress(flags)) : await remoteTarget({ ...flags, endpoint: flags.endpoint });
    if (base.loaded === null && flags.compare) throw new HerdUsageError('--compare runs two local models; it does not take --endpoint');
    const runOptions = (target: EvalTarget): Omit<RunOptions, 'onDocument'> => ({
      dataDir: flags.data,
      limit: flags.limit,
      fewshotSeed: flags.seed,
      numFewshot: flags['num-fewshot'],
      applyChatTemplate: flags['apply-chat-template'],
      fewshotAsMultiturn: flags['fewshot-as-multiturn'],
      systemInstruction: flags.system,
      maxLength: flags['max-length'] ?? Math.min(target.contextLength, 4096),
      maxGenToks: flags['max-gen-toks'],
    });
    const settings = {
      limit: flags.limit ?? null, fewshot_seed: flags.seed, bootstrap_iters: flags['bootstrap-iters'], apply_chat_template: flags['apply-chat-template'], fewshot_as_multiturn: flags['fewshot-as-multiturn'], system_instruction: flags.system ?? null, backend: base.backend,
      ...(base.endpoint && { endpoint: base.endpoint }),
    };
    const interrupt = new InterruptWatch();
    try {
      // With --output, each document's record is kept as it finishes, so Ctrl-C loses nothing that ran.
      const progressOf = (target: EvalTarget, adapter: string | undefined) => flags.output ? new EvalProgress(flags.output, { model: target.progressName, adapter: adapter ?? null, options: runOptions(target) }) : undefined;
      const jobOptions = (target: EvalTarget, adapter: string | undefined) => ({ ...runOptions(target), progress: progressOf(target, adapter), shouldStop: () => interrupt.interrupted });
      const report = await this.evaluate(base, configs, jobOptions(base, flags.adapter), flags, settings);
      if (!flags.compare) {
        this.finishReport(report, flags);
        return this.print(report, flags.json);
      }
      const variant = localTarget(await loadModelWithProgress({ ...flags, model: flags.compare, adapter: flags['compare-adapter'] }));
      const variantReport = await this.evaluate(variant, configs, jobOptions(variant, flags['compare-adapter']), flags, settings);
      this.finishReport(report, flags);
      this.compare(base.loaded!, variant.loaded!, report, variantReport, flags, runOptions(base).maxLength);
    } finally {
      interrupt.dispose();
    }
  }

  /** Writes results.json (and the samples) when --output asks, then drops the kept progress. */
  private finishReport(report: EvalReport, flags: { output?: string; 'log-samples': boolean }): void {
    if (!flags.output) return;
    writeReport(flags.output, report, flags['log-samples']);
    clearEvalProgress(flags.output);
  }

  private compare(base: LoadedModel, variant: LoadedModel, report: EvalReport, variantReport: EvalReport, flags: { json: boolean; 'compare-text'?: string; 'compare-tokens': number }, maxLength: number): void {
    const deltas = report.tasks.flatMap((entry, i) => entry.metrics.map((metric, k) => pairedDelta(entry.run.config.task, metric, variantReport.tasks[i]!.metrics[k]!)));
    const agreement = flags['compare-text'] ? compareText(base, variant, flags['compare-text'], flags['compare-tokens'], maxLength) : null;
    this.printComparison(report, variantReport, deltas, agreement, flags.json);
  }

  private async evaluate(target: EvalTarget, configs: ReturnType<typeof resolveTask>[], options: Omit<RunOptions, 'onDocument'>, flags: { json: boolean; 'bootstrap-iters': number }, settings: Record<string, unknown>): Promise<EvalReport> {
    const tasks: EvalReport['tasks'] = [];
    for (const config of configs) {
      const progress = progressBar(`${config.task}`, !flags.json);
      try {
        const run = await runTask(target.model, config, { ...options, onDocument: (done, total) => progress.update(done, total) });
        tasks.push({ run, metrics: aggregate(config, run.samples, flags['bootstrap-iters']) });
      } finally {
        progress.stop();
      }
      for (const warning of tasks.at(-1)!.run.warnings) process.stderr.write(chalk.yellow(`herd: ${config.task}: ${warning}\n`));
    }
    return { tasks, model: target.name, settings };
  }

  private print(report: EvalReport, json: boolean): void {
    if (json) return this.printJson(SCHEMAS.eval, resultsJson(report));
    const rows = report.tasks.flatMap(({ run, metrics }) =>
      metrics.map((m) => [run.config.task, String(run.numFewshot), m.filter, m.metric, formatValue(m.value), Number.isFinite(m.stderr) ? `± ${formatValue(m.stderr)}` : '', String(run.samples.length)]),
    );
    this.log(table(['task', 'shots', 'filter', 'metric', 'value', 'stderr', 'n'], rows));
  }

  private printComparison(base: EvalReport, variant: EvalReport, deltas: MetricDelta[], agreement: DistributionAgreement | null, json: boolean): void {
    if (json) {
      return this.printJson(SCHEMAS.evalCompare, { base: resultsJson(base), variant: resultsJson(variant), deltas, distribution: agreement });
    }
    const rows = deltas.map((d) => {
      const significant = d.pValue !== null && d.pValue < 0.05;
      const deltaText = `${d.delta >= 0 ? '+' : ''}${formatValue(d.delta)}`;
      return [d.task, d.filter, d.metric, formatValue(d.base), formatValue(d.variant), significant ? chalk.bold(deltaText) : deltaText, d.pValue === null ? 'n/a' : d.pValue.toFixed(4)];
    });
    this.log(table(['task', 'filter', 'metric', 'base', 'variant', 'delta', 'p (paired)'], rows));
    if (agreement) {
      this.log(`\nnext-token distributions over ${agreement.tokens} tokens: mean KL(base‖variant) ${agreement.meanKl.toExponential(3)} nats (max ${agreement.maxKl.toExponential(3)}), top-1 agreement ${(agreement.top1Agreement * 100).toFixed(2)}%`);
    }
  }
}

/** A model to evaluate: the engine in this process, or a server. */
interface EvalTarget {
  model: EvalModel | LoadedModel;
  /** What results.json records as the model (model_args pretrained=…). */
  name: string;
  /** What kept progress is matched against when a run resumes. */
  progressName: string;
  contextLength: number;
  backend: string;
  endpoint: { url: string; model: string } | null;
  /** The local model, for --compare. */
  loaded: LoadedModel | null;
}

function localTarget(loaded: LoadedModel): EvalTarget {
  return { model: loaded, name: loaded.dir, progressName: path.resolve(loaded.dir), contextLength: loaded.config.maxPositionEmbeddings, backend: loaded.model.backendName, endpoint: null, loaded };
}

/** A server: prompts are built and tokenized with --template-from's tokenizer, as a local run would. */
async function remoteTarget(flags: EndpointFlags & { endpoint: string; concurrency: number }): Promise<EvalTarget> {
  if (flags['template-from'] === undefined) throw new HerdUsageError("--endpoint: herd eval needs --template-from, a folder with the served model's tokenizer.json, to build and tokenize prompts as a local run does");
  const target = await connectEndpoint(flags, flags.concurrency);
  const { capabilities } = target;
  const name = `${capabilities.endpoint}/v1 ${capabilities.model}`;
  return {
    model: new RemoteEvalModel(target.client, capabilities, target.template!.tokenizer, flags.concurrency),
    name,
    progressName: name,
    contextLength: capabilities.contextLength ?? 131_072,
    backend: 'endpoint',
    endpoint: endpointJson(capabilities),
    loaded: null,
  };
}

function compareText(base: LoadedModel, variant: LoadedModel, file: string, tokens: number, window: number): DistributionAgreement {
  if (!fs.existsSync(file)) throw new HerdError(`--compare-text ${file} does not exist`);
  const ids = base.tokenizer.encode(fs.readFileSync(file, 'utf8'), true).slice(0, tokens);
  return compareDistributions(base, variant, ids, window);
}

function formatValue(value: number): string {
  return Math.abs(value) >= 100 ? value.toFixed(2) : value.toFixed(4);
}

/** A plain aligned table; the header is bold and dim rules separate it (chalk prints no colour when piped). */
function table(header: string[], rows: string[][]): string {
  const visible = (text: string) => text.replace(/\u001b\[[0-9;]*m/g, '').length;
  const widths = header.map((title, i) => Math.max(visible(title), ...rows.map((row) => visible(row[i]!))));
  const line = (cells: string[]) => cells.map((cell, i) => cell + ' '.repeat(widths[i]! - visible(cell))).join('  ');
  return [chalk.bold(line(header)), chalk.dim(widths.map((w) => '─'.repeat(w)).join('  ')), ...rows.map((row) => line([chalk.cyan(row[0]!), ...row.slice(1)]))].join('\n');
}
