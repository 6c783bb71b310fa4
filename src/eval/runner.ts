/**
 * Running a task on a loaded model: documents from local files, lm-eval's prompts and requests,
 * the model's outputs, and a sample record per document that scoring and --rescore read.
 */
import { HerdError, HerdInterrupted } from '../errors.js';
import { stopRequested, type ShouldStop } from '../stop-signal.js';
import type { EvalProgress } from './progress.js';
import type { LoadedModel } from '../engine/load.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import { renderChatTemplate, selectChatTemplate } from '../templates/chat-template.js';
import { readSplit, type LocatedDoc } from './data.js';
import { asEvalModel, type EvalModel, type EvalRequests } from './eval-model.js';
import type { TokenRequest } from './loglikelihood.js';
import { fewshotContext, FewshotSampler, TaskPrompts, type Context, type PromptOptions } from './prompts.js';
import { scoreOutput, type DocScores, type RawOutput } from './scoring.js';
import type { TaskConfig } from './task-config.js';
import { countsFunction, countUnits, docsFunction, TaskFunctionError, type Doc } from './task-functions.js';

export interface RunOptions {
  dataDir?: string;
  limit?: number;
  /** Seed of the few-shot sampler (lm-eval's fewshot_random_seed, 1234). */
  fewshotSeed: number;
  /** Overrides the task's num_fewshot. */
  numFewshot?: number;
  applyChatTemplate: boolean;
  fewshotAsMultiturn: boolean;
  systemInstruction?: string;
  /** Longest model input in tokens (lm-eval's max_length). */
  maxLength: number;
  /** Overrides generation_kwargs.max_gen_toks. */
  maxGenToks?: number;
  onDocument?: (done: number, total: number) => void;
  /** Keeps each document's record as it finishes, and gives back those of an interrupted run. */
  progress?: EvalProgress;
  /** Asked after each document: Ctrl-C stops there (HerdInterrupted). */
  shouldStop?: ShouldStop;
}

/** One document's record: what lm-eval's --log_samples writes, plus what --rescore needs. */
export interface SampleRecord {
  doc_id: number;
  doc: Record<string, unknown>;
  source: { file: string; row: number };
  target: unknown;
  /** The model input: the prompt, and the continuations scored after it (multiple choice). */
  arguments: Array<[string, string]> | [string];
  output: RawOutput;
  filtered_resps: Record<string, string>;
  metrics: DocScores;
}

export interface TaskRun {
  config: TaskConfig;
  numFewshot: number;
  totalDocs: number;
  samples: SampleRecord[];
  /** Notes on where herd had to depart from the task definition (e.g. a missing few-shot split). */
  warnings: string[];
}

/** The evaluation documents (test split, else validation) and the few-shot pool of a task. */
export interface TaskDocs {
  evalDocs: LocatedDoc[];
  fewshotPool: LocatedDoc[];
  sameSplit: boolean;
  warnings: string[];
}

export async function loadTaskDocs(config: TaskConfig, dataDir: string | undefined, numFewshot: number): Promise<TaskDocs> {
  const evalSplit = config.test_split ?? config.validation_split!;
  const evalDocs = processDocs(config, await readSplit(config, dataDir, evalSplit));
  if (evalDocs === null) throw new HerdError(`task ${config.task}: no data file for split "${evalSplit}" under ${dataDir ?? '(no --data)'} (looked for ${config.task}/${evalSplit}.jsonl|csv|parquet and dataset_path folders)`);
  if (evalDocs.length === 0) throw new HerdError(`task ${config.task}: split "${evalSplit}" has no documents`);
  const warnings: string[] = [];
  if (numFewshot === 0) return { evalDocs, fewshotPool: [], sameSplit: false, warnings };
  if (config.fewshot_config.samples) {
    const pool = config.fewshot_config.samples.map((doc, row) => ({ doc, file: `${config.source} fewshot_config.samples`, row }));
    return { evalDocs, fewshotPool: pool, sameSplit: false, warnings };
  }
  // lm-eval: fewshot_split, else the training split, else validation, else test.
  const fewshotSplit = config.fewshot_split ?? config.training_split ?? config.validation_split ?? evalSplit;
  const pool = fewshotSplit === evalSplit ? evalDocs : processDocs(config, await readSplit(config, dataDir, fewshotSplit));
  if (pool !== null) return { evalDocs, fewshotPool: pool, sameSplit: fewshotSplit === evalSplit, warnings };
  warnings.push(`few-shot split "${fewshotSplit}" not found; few-shot examples are drawn from "${evalSplit}" excluding the document asked, as lm-eval does when fewshot_split is the test split`);
  return { evalDocs, fewshotPool: evalDocs, sameSplit: true, warnings };
}

function processDocs(config: TaskConfig, docs: LocatedDoc[] | null): LocatedDoc[] | null {
  if (docs === null || config.process_docs === null) return docs;
  let processed: Doc[];
  try {
    processed = docsFunction(config.process_docs)(docs.map((located) => located.doc));
  } catch (error) {
    if (error instanceof TaskFunctionError) throw new HerdError(`${docs[0]?.file ?? config.source}: task ${config.task}: process_docs: ${error.message}`);
    throw error;
  }
  // A 1:1 map keeps each document's file and row; a regrouping (wikitext articles) numbers its outputs.
  if (processed.length === docs.length) return processed.map((doc, i) => ({ ...docs[i]!, doc }));
  return processed.map((doc, row) => ({ doc, file: docs[0]?.file ?? config.source, row }));
}

export async function runTask(model: EvalModel | LoadedModel, config: TaskConfig, options: RunOptions): Promise<TaskRun> {
  const evalModel = asEvalModel(model);
  const numFewshot = options.numFewshot ?? config.num_fewshot;
  if (config.output_type === 'loglikelihood_rolling' && numFewshot > 0) throw new HerdError(`task ${config.task}: perplexity tasks take no few-shot examples`);
  const docs = await loadTaskDocs(config, options.dataDir, numFewshot);
  const selected = options.limit === undefined ? docs.evalDocs : docs.evalDocs.slice(0, options.limit);
  const prompts = new TaskPrompts(config, docs.evalDocs[0]!.doc);
  const sampler = numFewshot > 0 ? new FewshotSampler(prompts, docs.fewshotPool, docs.sameSplit, options.fewshotSeed) : null;
  const promptOptions: PromptOptions = { numFewshot, systemInstruction: options.systemInstruction, applyChatTemplate: options.applyChatTemplate, fewshotAsMultiturn: options.fewshotAsMultiturn };
  const requests = evalModel.open(config.output_type, options.maxLength);
  const samples: SampleRecord[] = options.progress?.kept(config).slice(0, selected.length) ?? [];
  // Documents start in order (the few-shot sampler draws as each is prepared) and finish in order; up to `concurrency` run at once.
  const running: Array<Promise<SampleRecord>> = [];
  try {
    for (const [docId, located] of selected.entries()) {
      if (docId < samples.length) {
        // A kept document still draws its few-shot examples: the sampler's stream must reach the next one where it would have.
        if (sampler) fewshotContext(prompts, sampler, located, promptOptions);
        options.onDocument?.(docId + 1, selected.length);
        continue;
      }
      const work = prepareDocument(evalModel, prompts, sampler, located, promptOptions);
      running.push(work(requests, options).then((record) => ({ doc_id: docId, ...record })));
      const last = docId + 1 === selected.length;
      while (running.length > 0 && (running.length >= evalModel.concurrency || last)) {
        const sample = await running.shift()!;
        samples.push(sample);
        options.progress?.record(config, sample);
        options.onDocument?.(sample.doc_id + 1, selected.length);
        if (sample.doc_id + 1 < selected.length && (await stopRequested(options.shouldStop))) {
          const kept = options.progress ? `they are kept in ${options.progress.describe()} and the same command resumes from them` : 'nothing is kept without --output DIR';
          throw new HerdInterrupted(`interrupted after ${sample.doc_id + 1} of ${selected.length} documents of ${config.task}: ${kept}`);
        }
      }
    }
  } finally {
    // Documents still running when one failed or Ctrl-C came are dropped, their failures with them.
    for (const pending of running) pending.catch(() => undefined);
    requests.dispose();
  }
  return { config, numFewshot, totalDocs: docs.evalDocs.length, samples, warnings: docs.warnings };
}

type DocumentRecord = Omit<SampleRecord, 'doc_id'>;

/**
 * Builds a document's prompt now (drawing its few-shot examples in document order) and returns the
 * work that asks the model about it.
 */
function prepareDocument(
  model: EvalModel,
  prompts: TaskPrompts,
  sampler: FewshotSampler | null,
  located: LocatedDoc,
  promptOptions: PromptOptions,
): (requests: EvalRequests, options: RunOptions) => Promise<DocumentRecord> {
  const config = prompts.config;
  const base = { doc: located.doc, source: { file: located.file, row: located.row } };
  if (config.output_type === 'loglikelihood_rolling') {
    const target = String(prompts.docToTarget(located));
    const units = config.process_results ? countsFunction(config.process_results)(located.doc, target) : countUnits(target);
    return async (requests) => {
      const loglikelihood = await requests.rollingLoglikelihood(model.tokenizer.encode(target, false));
      return finish(config, { ...base, target, arguments: [target] }, { kind: 'loglikelihood_rolling', loglikelihood, ...units });
    };
  }
  const context = fewshotContext(prompts, sampler, located, promptOptions);
  const contextText = renderContext(model.tokenizer, context);
  const chatRendered = context.kind === 'chat';
  if (config.output_type === 'multiple_choice') {
    const choices = prompts.docToChoice(located);
    const gold = prompts.goldIndex(located, choices);
    // With a chat template the answer follows the assistant header directly (lm-eval drops the delimiter).
    const delimiter = promptOptions.applyChatTemplate ? '' : config.target_delimiter;
    const pairs: Array<[string, string]> = prompts.isMultipleInput(located)
      ? choices.map((choice) => [contextText + choice, delimiter + String(prompts.docToTarget(located))])
      : choices.map((choice) => [contextText, delimiter + choice]);
    return async (requests) => {
      const scores = await requests.score(encodePairs(model, pairs, chatRendered));
      const output: RawOutput = { kind: 'multiple_choice', choices, gold, loglikelihoods: scores.map((s) => s.logprob), is_greedy: scores.map((s) => s.isGreedy) };
      return finish(config, { ...base, target: gold, arguments: pairs }, output);
    };
  }
  if (config.output_type === 'loglikelihood') {
    const target = String(prompts.docToTarget(located));
    return async (requests) => {
      const [score] = await requests.score(encodePairs(model, [[contextText, target]], chatRendered));
      return finish(config, { ...base, target, arguments: [[contextText, target]] }, { kind: 'loglikelihood', loglikelihood: score!.logprob, is_greedy: score!.isGreedy });
    };
  }
  const target = prompts.docToTarget(located);
  const references = (Array.isArray(target) ? target : [target]).map(String);
  return async (requests, options) => {
    const promptIds = model.tokenizer.encode(contextText, !chatRendered);
    const response = await requests.generateUntil(promptIds, options.maxGenToks ?? config.generation_kwargs.max_gen_toks, config.generation_kwargs.until);
    return finish(config, { ...base, target, arguments: [contextText] }, { kind: 'generate_until', references, response });
  };
}

function finish(config: TaskConfig, record: Pick<SampleRecord, 'doc' | 'source' | 'target' | 'arguments'>, output: RawOutput): DocumentRecord {
  const { scores, filtered } = scoreOutput(config, output, record.doc);
  return { ...record, output, filtered_resps: filtered, metrics: scores };
}

/** The prompt as text: as is, or rendered through the model's chat template with a generation prompt. */
function renderContext(tokenizer: HerdTokenizer, context: Context): string {
  if (context.kind === 'text') return context.text;
  const settings = tokenizer.settings;
  if (settings.chatTemplate === null) throw new HerdError('--apply-chat-template: this model has no chat template');
  const template = selectChatTemplate(settings.chatTemplate, { source: 'tokenizer_config.json', hasTools: false });
  return renderChatTemplate(template, { messages: context.messages, addGenerationPrompt: true, bosToken: settings.bosToken ?? '', eosToken: settings.eosToken ?? '' });
}

/**
 * lm-eval's _encode_pair: trailing spaces of the context move to the continuation, the pair is
 * encoded whole, and the continuation is what follows the context's own encoding. A chat-rendered
 * context carries its BOS already; plain text gets the tokenizer's BOS.
 */
function encodePairs(model: EvalModel, pairs: Array<[string, string]>, chatRendered: boolean): TokenRequest[] {
  const addSpecial = !chatRendered;
  return pairs.map(([context, continuation]) => {
    const spaces = context.length - context.trimEnd().length;
    const ctx = context.slice(0, context.length - spaces);
    const cont = context.slice(context.length - spaces) + continuation;
    if (ctx === '') return { context: [model.prefixToken], continuation: model.tokenizer.encode(cont, false) };
    const contextIds = model.tokenizer.encode(ctx, addSpecial);
    return { context: contextIds, continuation: model.tokenizer.encode(ctx + cont, addSpecial).slice(contextIds.length) };
  });
}
