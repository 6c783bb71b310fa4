/**
 * Runs a `herd synth` pipeline row by row: every generator answers the instruction, the answers
 * are combined into `generations` / `model_names`, the judge rates them (UltraFeedback) and a
 * preference pair is picked. Each finished row is appended to the run's progress file, so an
 * interrupted run resumes with the rows it lacks; the outputs are written whole at the end, in
 * source order, so a resumed run's files equal an uninterrupted one's.
 */
import { createHash } from 'node:crypto';
import { seededRandom } from '../engine/sampling.js';
import { HerdError, HerdInterrupted } from '../errors.js';
import type { ChatModel } from './chat-model.js';
import { selectPair, type DropReason } from './pairs.js';
import type { GeneratorSpec, JudgeSpec, PipelineConfig } from './pipeline-config.js';
import { SynthProgress } from './progress-store.js';
import { readSource, type Instruction } from './source.js';
import type { DownloadProgress } from '../hub/download-files.js';
import { judgeSystemPrompt, judgeUserPrompt, parseJudgeReply, type Aspect, type JudgeVerdict } from './ultrafeedback.js';
import { writeOutputs, type OutputFiles } from './outputs.js';

/** One output row, with distilabel's column names (null where a step did not run or found nothing). */
export interface SynthRow {
  instruction: string;
  generations: string[];
  model_names: string[];
  ratings?: Array<number | null>;
  rationales?: Array<string | null>;
  /** The judge (distilabel's UltraFeedback step names its model so). */
  model_name?: string;
  /** The judge's reply as it came, so a missing rating can be checked by hand. */
  raw_judge_output?: string;
  chosen?: ChatTurn[] | null;
  rejected?: ChatTurn[] | null;
  chosen_rating?: number | null;
  rejected_rating?: number | null;
  chosen_model?: string | null;
  rejected_model?: string | null;
  pair_dropped?: DropReason | null;
}

export interface ChatTurn {
  role: 'user' | 'assistant';
  content: string;
}

/** The models each step uses, opened by the caller (loaded once, shared when the same). */
export interface PipelineModels {
  generators: ChatModel[];
  judge: ChatModel | null;
}

export interface RunOptions {
  limit?: number;
  /** Checked before each row starts; true stops the run after the rows in flight. */
  shouldStop?: () => boolean;
  onRow?: (done: number, total: number) => void;
  /** Draws a Hub dataset source's download. */
  download?: DownloadProgress;
  /** The Hub's settings for a dataset source; process.env by default. */
  env?: NodeJS.ProcessEnv;
}

export interface SynthCounts {
  rows_read: number;
  duplicates_dropped: number;
  rows: number;
  rows_resumed: number;
  generations: number;
  ratings: number;
  missing_ratings: number;
  pairs: number;
  dropped: Record<DropReason, number>;
}

export interface SynthResult {
  files: OutputFiles;
  counts: SynthCounts;
  seconds: number;
}

export async function runPipeline(config: PipelineConfig, models: PipelineModels, options: RunOptions = {}): Promise<SynthResult> {
  const started = performance.now();
  const startedAt = new Date();
  const source = await readSource(config.source, { limit: options.limit, download: options.download, shouldStop: options.shouldStop, env: options.env });
  const progress = new SynthProgress(config.outputDir, progressSettings(config));
  const kept = progress.kept();
  const pending = source.instructions.filter((instruction) => !kept.has(instruction.key));
  const rows = new Map(kept);
  const total = source.instructions.length;
  const resumed = source.instructions.filter((instruction) => kept.has(instruction.key)).length;
  let done = resumed;
  options.onRow?.(done, total);

  await forEachConcurrently(pending, rowConcurrency(config), options.shouldStop ?? (() => false), async (instruction) => {
    const row = await synthesizeRow(config, models, instruction);
    progress.record(instruction.key, row);
    rows.set(instruction.key, row);
    done++;
    options.onRow?.(done, total);
  });
  if (done < total) {
    throw new HerdInterrupted(`stopped after ${done} of ${total} rows; they are kept in ${progress.describe()} and the same command resumes from them`);
  }
  const ordered = source.instructions.map((instruction) => rows.get(instruction.key)!);
  const counts = countRows(ordered, config.judge?.aspects ?? [], source.rowsRead, source.duplicatesDropped, resumed);
  const seconds = (performance.now() - started) / 1000;
  const files = writeOutputs(config, ordered, { counts, startedAt, seconds, generatedRows: total - resumed });
  progress.clear();
  return { files, counts, seconds };
}

/** Everything that decides a row's content: kept rows are reused only under the same settings. */
function progressSettings(config: PipelineConfig): unknown {
  return { source: config.source, generators: config.generators.map(({ maxConcurrentRequests: _, ...spec }) => spec), judge: config.judge && { ...config.judge, maxConcurrentRequests: undefined }, pairs: config.pairs, seed: config.seed, date: config.date };
}

/** As many rows at once as the busiest model takes requests (each model queues what is beyond its own limit). */
function rowConcurrency(config: PipelineConfig): number {
  const specs = [...config.generators, ...(config.judge ? [config.judge] : [])];
  return Math.max(1, ...specs.map((spec) => spec.maxConcurrentRequests));
}

/**
 * Runs `work` on each item with at most `limit` at once, starting none once `shouldStop` says so.
 * A failure stops new rows too; the rows in flight finish (and are kept) before it is rethrown.
 */
async function forEachConcurrently<T>(items: readonly T[], limit: number, shouldStop: () => boolean, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown = null;
  const worker = async () => {
    while (next < items.length && failure === null && !shouldStop()) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== null) throw failure;
}

async function synthesizeRow(config: PipelineConfig, models: PipelineModels, instruction: Instruction): Promise<SynthRow> {
  try {
    const answers = await Promise.all(config.generators.flatMap((spec, g) => generationRequests(config, spec, models.generators[g]!, instruction)));
    const row: SynthRow = { instruction: instruction.text, generations: answers.map((a) => a.text), model_names: answers.map((a) => a.model) };
    if (config.judge === null || models.judge === null) return row;
    const judge = config.judge;
    const verdicts = await Promise.all(judge.aspects.map((aspect) => judgeAspect(config, judge, models.judge!, instruction, row.generations, aspect)));
    const primary = verdicts[judge.aspects.indexOf(judge.aspect)]!;
    Object.assign(row, { ratings: primary.ratings, rationales: primary.rationales, model_name: judge.name, raw_judge_output: primary.reply });
    // Several aspects: each also in its own columns, as distilabel's UltraFeedback steps renamed per aspect.
    if (judge.aspects.length > 1) verdicts.forEach((verdict, a) => Object.assign(row, aspectColumns(judge.aspects[a]!, verdict)));
    return config.pairs === null ? row : withPair(row, config, instruction);
  } catch (error) {
    if (!(error instanceof HerdError)) throw error;
    throw new HerdError(`${instruction.sourceFile}: row ${instruction.sourceRow}: ${error.message}`, { kind: error.kind, file: error.file ?? instruction.sourceFile, hint: error.hint });
  }
}

interface AspectVerdict extends JudgeVerdict {
  reply: string;
}

async function judgeAspect(config: PipelineConfig, judge: JudgeSpec, model: ChatModel, instruction: Instruction, generations: string[], aspect: Aspect): Promise<AspectVerdict> {
  // One aspect keeps the role (and so the seed) a single-aspect run has always used.
  const role = judge.aspects.length === 1 ? `judge:${judge.name}` : `judge:${judge.name}:${aspect}`;
  const reply = await model.complete({
    system: judgeSystemPrompt(generations.length),
    user: judgeUserPrompt(aspect, instruction.text, generations),
    sampling: judge.sampling,
    seed: requestSeed(config.seed, instruction.key, role),
  });
  return { ...parseJudgeReply(aspect, reply, generations.length), reply };
}

/** `ratings_helpfulness`, `rationales_helpfulness`, `raw_judge_output_helpfulness` (hyphens as underscores). */
export function aspectColumnNames(aspect: Aspect): { ratings: string; rationales: string; raw: string } {
  const suffix = aspect.replaceAll('-', '_');
  return { ratings: `ratings_${suffix}`, rationales: `rationales_${suffix}`, raw: `raw_judge_output_${suffix}` };
}

function aspectColumns(aspect: Aspect, verdict: AspectVerdict): Record<string, unknown> {
  const names = aspectColumnNames(aspect);
  return { [names.ratings]: verdict.ratings, [names.rationales]: verdict.rationales, [names.raw]: verdict.reply };
}

function generationRequests(config: PipelineConfig, spec: GeneratorSpec, model: ChatModel, instruction: Instruction): Array<Promise<{ text: string; model: string }>> {
  return Array.from({ length: spec.numGenerations }, async (_, index) => ({
    text: await model.complete({ system: spec.system, user: instruction.text, sampling: spec.sampling, seed: requestSeed(config.seed, instruction.key, `${spec.name}:${index}`) }),
    model: spec.name,
  }));
}

function withPair(row: SynthRow, config: PipelineConfig, instruction: Instruction): SynthRow {
  const outcome = selectPair(row.ratings!, config.pairs!, seededRandom(requestSeed(config.seed, instruction.key, 'pairs')));
  if ('dropped' in outcome) {
    return { ...row, chosen: null, rejected: null, chosen_rating: null, rejected_rating: null, chosen_model: null, rejected_model: null, pair_dropped: outcome.dropped };
  }
  const { chosen, rejected } = outcome.pair;
  const conversation = (answer: number): ChatTurn[] => [{ role: 'user', content: row.instruction }, { role: 'assistant', content: row.generations[answer]! }];
  return {
    ...row,
    chosen: conversation(chosen),
    rejected: conversation(rejected),
    chosen_rating: row.ratings![chosen]!,
    rejected_rating: row.ratings![rejected]!,
    chosen_model: row.model_names[chosen]!,
    rejected_model: row.model_names[rejected]!,
    pair_dropped: null,
  };
}

/** A 31-bit seed for one request, from the run's seed, the row and the request's role in it. */
export function requestSeed(seed: number, rowKey: string, role: string): number {
  return createHash('sha256').update(`${seed}\u0000${rowKey}\u0000${role}`).digest().readUInt32BE(0) >>> 1;
}

/** Ratings and missing ones are counted over every judged aspect. */
function countRows(rows: readonly SynthRow[], aspects: readonly Aspect[], rowsRead: number, duplicatesDropped: number, resumed: number): SynthCounts {
  const ratingsOf = (row: SynthRow): Array<number | null> =>
    aspects.length > 1 ? aspects.flatMap((aspect) => (row as unknown as Record<string, Array<number | null>>)[aspectColumnNames(aspect).ratings] ?? []) : row.ratings ?? [];
  const ratings = rows.flatMap(ratingsOf);
  const dropped: Record<DropReason, number> = { 'too-few-ratings': 0, tie: 0, margin: 0 };
  for (const row of rows) if (row.pair_dropped) dropped[row.pair_dropped]++;
  return {
    rows_read: rowsRead,
    duplicates_dropped: duplicatesDropped,
    rows: rows.length,
    rows_resumed: resumed,
    generations: rows.reduce((sum, row) => sum + row.generations.length, 0),
    ratings: ratings.filter((rating) => rating !== null).length,
    missing_ratings: ratings.filter((rating) => rating === null).length,
    pairs: rows.filter((row) => row.chosen).length,
    dropped,
  };
}
