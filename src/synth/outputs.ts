/**
 * What a finished run writes into its output folder, each file whole and atomically:
 * - synth.jsonl: one row per instruction with distilabel's columns (instruction, generations,
 *   model_names, ratings, rationales, chosen, rejected, …);
 * - preferences.jsonl: the pairs in TRL's explicit-prompt conversational preference format
 *   (`prompt`, `chosen`, `rejected` as message lists), what `herd finetune --method dpo` reads;
 * - run-card.json: the models, sampling, prompt templates, counts and timings;
 * and, when output.format asks for parquet, synth.parquet and preferences.parquet (parquet-output.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomically } from '../formats/files.js';
import type { PipelineConfig, ModelSpec } from './pipeline-config.js';
import type { SynthCounts, SynthRow } from './pipeline.js';
import { columnsOf, writeParquet } from './parquet-output.js';
import { judgeSystemPrompt, judgeUserPrompt } from './ultrafeedback.js';

export interface OutputFiles {
  /** synth.jsonl; null when only parquet is written. */
  rows: string | null;
  /** preferences.jsonl; null when the pipeline has no preference_pairs step or only parquet is written. */
  preferences: string | null;
  /** synth.parquet; null when only jsonl is written. */
  rows_parquet: string | null;
  /** preferences.parquet; null without pairs or parquet. */
  preferences_parquet: string | null;
  card: string;
}

/** TRL's explicit-prompt preference columns. */
const PREFERENCE_COLUMNS = ['prompt', 'chosen', 'rejected'];

export interface RunFacts {
  counts: SynthCounts;
  startedAt: Date;
  seconds: number;
  /** Rows this run produced (the rest were resumed). */
  generatedRows: number;
}

export function writeOutputs(config: PipelineConfig, rows: readonly SynthRow[], facts: RunFacts): OutputFiles {
  const jsonl = config.outputFormat !== 'parquet';
  const parquet = config.outputFormat !== 'jsonl';
  const file = (wanted: boolean, name: string) => (wanted ? path.join(config.outputDir, name) : null);
  const files: OutputFiles = {
    rows: file(jsonl, 'synth.jsonl'),
    preferences: file(jsonl && config.pairs !== null, 'preferences.jsonl'),
    rows_parquet: file(parquet, 'synth.parquet'),
    preferences_parquet: file(parquet && config.pairs !== null, 'preferences.parquet'),
    card: path.join(config.outputDir, 'run-card.json'),
  };
  const preferences = rows.flatMap(preferenceRecord);
  fs.mkdirSync(config.outputDir, { recursive: true });
  if (files.rows !== null) writeJsonLines(files.rows, rows);
  if (files.preferences !== null) writeJsonLines(files.preferences, preferences);
  if (files.rows_parquet !== null) writeParquet(files.rows_parquet, columnsOf(rows), rows);
  if (files.preferences_parquet !== null) writeParquet(files.preferences_parquet, PREFERENCE_COLUMNS, preferences);
  writeFileAtomically(files.card, [Buffer.from(`${JSON.stringify(runCard(config, facts), null, 2)}\n`)]);
  return files;
}

/** TRL's explicit-prompt form: the user turn as `prompt`, each answer as a one-message list. */
function preferenceRecord(row: SynthRow): object[] {
  if (!row.chosen || !row.rejected) return [];
  return [{ prompt: [row.chosen[0]!], chosen: row.chosen.slice(1), rejected: row.rejected.slice(1) }];
}

function writeJsonLines(file: string, records: readonly object[]): void {
  writeFileAtomically(file, [Buffer.from(records.map((record) => `${JSON.stringify(record)}\n`).join(''))]);
}

function runCard(config: PipelineConfig, facts: RunFacts): object {
  const describe = (spec: ModelSpec) => ({
    name: spec.name,
    ...(spec.location.kind === 'local' ? { model: spec.location.path } : { endpoint: spec.location.url, model: spec.location.model }),
    sampling: { temperature: spec.sampling.temperature, top_p: spec.sampling.topP, top_k: spec.sampling.topK, min_p: spec.sampling.minP, repetition_penalty: spec.sampling.repetitionPenalty, max_new_tokens: spec.sampling.maxNewTokens },
  });
  const textsPerRow = config.generators.reduce((sum, g) => sum + g.numGenerations, 0);
  const placeholders = Array.from({ length: textsPerRow }, (_, i) => `{text_${i + 1}}`);
  return {
    pipeline: config.file,
    source: config.source,
    seed: config.seed,
    date_string: config.date,
    generators: config.generators.map((g) => ({ ...describe(g), system_prompt: g.system, num_generations: g.numGenerations })),
    judge: config.judge && {
      ...describe(config.judge),
      aspect: config.judge.aspect,
      aspects: config.judge.aspects,
      system_prompt: judgeSystemPrompt(textsPerRow),
      user_prompt_template: judgeUserPrompt(config.judge.aspect, '{instruction}', placeholders),
      user_prompt_templates: Object.fromEntries(config.judge.aspects.map((aspect) => [aspect, judgeUserPrompt(aspect, '{instruction}', placeholders)])),
    },
    pairs: config.pairs && { aspect: config.judge?.aspect, rejected: config.pairs.rejected, min_margin: config.pairs.minMargin },
    counts: facts.counts,
    timings: {
      started: facts.startedAt.toISOString(),
      seconds: facts.seconds,
      rows_this_run: facts.generatedRows,
      rows_per_second: facts.seconds > 0 ? facts.generatedRows / facts.seconds : null,
    },
  };
}
