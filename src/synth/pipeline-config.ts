/**
 * A `herd synth` pipeline: where the instructions come from, the steps (text generation by one or
 * more generators, combining their columns, UltraFeedback rating by a judge, preference pairs)
 * and where the results go. Read from a small YAML file (docs/synth.md) or built from flags;
 * every key is checked, and a wrong one is reported as one line naming the file and the key.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import { HerdError } from '../errors.js';
import { ASPECTS, isAspect, type Aspect } from './ultrafeedback.js';

/** Where a model runs: a local folder or .gguf, or an OpenAI-compatible server (vLLM, TGI, herd serve). */
export type ModelLocation = { kind: 'local'; path: string } | { kind: 'endpoint'; url: string; model: string };

export interface Sampling {
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  repetitionPenalty: number;
  maxNewTokens: number;
}

export interface ModelSpec {
  name: string;
  location: ModelLocation;
  sampling: Sampling;
  /** Requests one endpoint serves at once (a local model runs one at a time). */
  maxConcurrentRequests: number;
}

export interface GeneratorSpec extends ModelSpec {
  system: string | null;
  numGenerations: number;
}

export interface JudgeSpec extends ModelSpec {
  /** Every aspect the judge rates, one prompt each, in this order. */
  aspects: Aspect[];
  /** The aspect whose ratings fill `ratings` and pick the pairs: one of `aspects`. */
  aspect: Aspect;
}

export type RejectedRule = 'lowest' | 'random-lower';

export interface PairRules {
  rejected: RejectedRule;
  /** Smallest chosen − rejected rating difference kept (1: only ties are dropped). */
  minMargin: number;
}

/** A local file, or one split of a Hub dataset (its data files for the split). */
export type InstructionSource =
  | { file: string; dataset: null; column: string }
  | { file: null; dataset: { id: string; split: string; revision: string }; column: string };

export interface PipelineConfig {
  /** The YAML file, or null when built from flags (for messages). */
  file: string | null;
  source: InstructionSource;
  generators: GeneratorSpec[];
  judge: JudgeSpec | null;
  pairs: PairRules | null;
  outputDir: string;
  /** Which files the rows and the pairs are written as. */
  outputFormat: OutputFormat;
  seed: number;
  /** The chat template's date_string (YYYY-MM-DD): fixed, so the same seed gives the same prompts any day. */
  date: string;
  retries: number;
  /** First wait before a retry; it doubles for each further one. */
  backoffMs: number;
  requestTimeoutMs: number;
}

export const OUTPUT_FORMATS = ['jsonl', 'parquet', 'both'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export const STEP_TYPES = ['text_generation', 'combine_columns', 'ultrafeedback', 'preference_pairs'] as const;

/** The date Llama 3.1's template writes when it is given none (26 Jul 2024), as YYYY-MM-DD. */
export const DEFAULT_DATE = '2024-07-26';

export const GENERATOR_SAMPLING: Sampling = { temperature: 0.7, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, maxNewTokens: 512 };
export const JUDGE_SAMPLING: Sampling = { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, maxNewTokens: 1024 };

const DEFAULTS = { seed: 0, retries: 3, backoffMs: 1000, requestTimeoutMs: 600_000 };

/** An endpoint takes 4 requests at once; a local model runs one at a time unless asked to batch. */
export function defaultConcurrency(location: ModelLocation): number {
  return location.kind === 'endpoint' ? 4 : 1;
}

type Table = Record<string, unknown>;

/** Reads and checks a pipeline YAML; relative paths in it are relative to the file. `outputDir` (--output) replaces its output.dir. */
export function readPipelineFile(file: string, outputDir?: string): PipelineConfig {
  if (!fs.existsSync(file)) throw new HerdError(`pipeline file ${file} does not exist`, { file });
  let document: unknown;
  try {
    document = yaml.safeLoad(fs.readFileSync(file, 'utf8'), { filename: file });
  } catch (error) {
    throw new HerdError(`${file}: not valid YAML (${(error as Error).message.split('\n')[0]})`, { file });
  }
  return parsePipeline(document, file, path.dirname(path.resolve(file)), outputDir);
}

/** Checks a pipeline document (the parsed YAML); `where` names it in messages. */
export function parsePipeline(document: unknown, file: string | null, baseDir: string, outputDir?: string): PipelineConfig {
  const at = new KeyPath(file ?? 'pipeline');
  const root = table(document, at);
  allowKeys(root, ['source', 'steps', 'output', 'seed', 'date', 'retries', 'backoff_ms', 'request_timeout_s'], at);
  const source = table(required(root, 'source', at), at.key('source'));
  allowKeys(source, ['file', 'dataset', 'split', 'revision', 'column'], at.key('source'));
  const steps = list(required(root, 'steps', at), at.key('steps')).map((step, index) => table(step, at.key(`steps[${index}]`)));
  const output = outputDir === undefined ? table(required(root, 'output', at), at.key('output')) : table(root.output ?? {}, at.key('output'));
  allowKeys(output, ['dir', 'format'], at.key('output'));
  const format = optionalText(output, 'format', at.key('output')) ?? 'jsonl';
  if (!(OUTPUT_FORMATS as readonly string[]).includes(format)) fail(at.key('output.format'), `expected ${OUTPUT_FORMATS.join(', ')}, got "${format}"`);
  // "~/models/…" as a shell would read it: pipeline files are written like command lines.
  const resolve = (value: string) => path.resolve(baseDir, value.startsWith('~/') ? path.join(os.homedir(), value.slice(2)) : value);
  return {
    file,
    source: parseSource(source, at.key('source'), resolve),
    ...parseSteps(steps, at, resolve),
    outputDir: outputDir === undefined ? resolve(text(required(output, 'dir', at.key('output')), at.key('output.dir'))) : path.resolve(outputDir),
    outputFormat: format as OutputFormat,
    seed: optionalInteger(root, 'seed', at, 0) ?? DEFAULTS.seed,
    date: checkedDate(optionalText(root, 'date', at) ?? DEFAULT_DATE, at.key('date')),
    retries: optionalInteger(root, 'retries', at, 0) ?? DEFAULTS.retries,
    backoffMs: optionalInteger(root, 'backoff_ms', at, 0) ?? DEFAULTS.backoffMs,
    requestTimeoutMs: (optionalNumber(root, 'request_timeout_s', at, 0) ?? DEFAULTS.requestTimeoutMs / 1000) * 1000,
  };
}

/** `file: PATH`, or `dataset: org/name` with `split` (default train) and `revision` (default main). */
function parseSource(source: Table, at: KeyPath, resolve: (value: string) => string): InstructionSource {
  const column = optionalText(source, 'column', at) ?? 'instruction';
  if ((source.file === undefined) === (source.dataset === undefined)) fail(at, 'give file (a local file) or dataset (a Hub dataset id), one of the two');
  if (source.file !== undefined) {
    const extra = ['split', 'revision'].find((key) => source[key] !== undefined);
    if (extra !== undefined) fail(at.key(extra), 'goes with dataset, not file');
    return { file: resolve(text(source.file, at.key('file'))), dataset: null, column };
  }
  return { file: null, dataset: { id: datasetId(text(source.dataset, at.key('dataset')), at.key('dataset')), split: optionalText(source, 'split', at) ?? 'train', revision: optionalText(source, 'revision', at) ?? 'main' }, column };
}

function datasetId(value: string, at: KeyPath): string {
  if (!/^[\w.-]+\/[\w.-]+$/.test(value)) fail(at, `"${value}" is not a Hub dataset id (org/name)`);
  return value;
}

/** The steps in their one meaningful order: generations, combined, rated, paired. */
function parseSteps(steps: Table[], at: KeyPath, resolve: (value: string) => string): Pick<PipelineConfig, 'generators' | 'judge' | 'pairs'> {
  const generators: GeneratorSpec[] = [];
  let judge: JudgeSpec | null = null;
  let pairs: PairRules | null = null;
  steps.forEach((step, index) => {
    const where = at.key(`steps[${index}]`);
    const type = text(required(step, 'type', where), where.key('type'));
    if (!(STEP_TYPES as readonly string[]).includes(type)) throw new HerdError(`${where.key('type')}: unknown step "${type}" (steps: ${STEP_TYPES.join(', ')})`, { file: at.file });
    const after = (earlier: string, present: boolean) => {
      if (!present) throw new HerdError(`${where}: ${type} needs ${earlier === 'ultrafeedback' ? 'an' : 'a'} ${earlier} step before it`, { file: at.file });
    };
    if (type === 'text_generation') {
      if (judge !== null) throw new HerdError(`${where}: text_generation steps come before the ultrafeedback step`, { file: at.file });
      generators.push(parseGenerator(step, where, resolve));
    } else if (type === 'combine_columns') {
      allowKeys(step, ['type'], where);
      after('text_generation', generators.length > 0);
    } else if (type === 'ultrafeedback') {
      after('text_generation', generators.length > 0);
      if (judge !== null) throw new HerdError(`${where}: the pipeline already has an ultrafeedback step`, { file: at.file });
      judge = parseJudge(step, where, resolve);
    } else {
      after('ultrafeedback', judge !== null);
      const rules = parsePairRules(step, where);
      pairs = rules.pairs;
      if (rules.aspect !== undefined) judge = { ...judge!, aspect: pairAspect(rules.aspect, judge!.aspects, where.key('aspect')) };
    }
  });
  if (generators.length === 0) throw new HerdError(`${at.key('steps')}: the pipeline needs at least one text_generation step`, { file: at.file });
  uniqueNames(generators, at);
  return { generators, judge, pairs };
}

const MODEL_KEYS = ['type', 'name', 'model', 'endpoint', 'sampling', 'max_concurrent_requests'];

function parseGenerator(step: Table, at: KeyPath, resolve: (value: string) => string): GeneratorSpec {
  allowKeys(step, [...MODEL_KEYS, 'system', 'num_generations'], at);
  return {
    ...parseModel(step, at, resolve, GENERATOR_SAMPLING),
    system: optionalText(step, 'system', at) ?? null,
    numGenerations: optionalInteger(step, 'num_generations', at, 1) ?? 1,
  };
}

/** `aspect: NAME` rates one aspect, `aspects: [NAME, …]` several (one judge prompt each). */
function parseJudge(step: Table, at: KeyPath, resolve: (value: string) => string): JudgeSpec {
  allowKeys(step, [...MODEL_KEYS, 'aspect', 'aspects'], at);
  if (step.aspect !== undefined && step.aspects !== undefined) fail(at, 'give aspect (one) or aspects (a list), not both');
  const names = step.aspects === undefined ? [optionalText(step, 'aspect', at) ?? 'overall-rating'] : list(step.aspects, at.key('aspects')).map((name, i) => text(name, at.key(`aspects[${i}]`)));
  if (names.length === 0) fail(at.key('aspects'), 'expected at least one aspect');
  const aspects = names.map((name) => checkedAspect(name, at.key(step.aspects === undefined ? 'aspect' : 'aspects')));
  if (new Set(aspects).size !== aspects.length) fail(at.key('aspects'), 'an aspect is listed twice');
  return { ...parseModel(step, at, resolve, JUDGE_SAMPLING), aspects, aspect: defaultPairAspect(aspects) };
}

function checkedAspect(name: string, at: KeyPath): Aspect {
  if (!isAspect(name)) throw new HerdError(`${at}: unknown aspect "${name}" (aspects: ${ASPECTS.join(', ')})`, { file: at.file });
  return name;
}

/** Pairs follow the holistic rating when it is judged, else the first aspect listed. */
export function defaultPairAspect(aspects: readonly Aspect[]): Aspect {
  return aspects.includes('overall-rating') ? 'overall-rating' : aspects[0]!;
}

function pairAspect(name: string, judged: readonly Aspect[], at: KeyPath): Aspect {
  const aspect = checkedAspect(name, at);
  if (!judged.includes(aspect)) fail(at, `"${aspect}" is not an aspect the judge rates (${judged.join(', ')})`);
  return aspect;
}

function parsePairRules(step: Table, at: KeyPath): { pairs: PairRules; aspect?: string } {
  allowKeys(step, ['type', 'rejected', 'min_margin', 'aspect'], at);
  const rejected = optionalText(step, 'rejected', at) ?? 'lowest';
  if (rejected !== 'lowest' && rejected !== 'random-lower') throw new HerdError(`${at.key('rejected')}: expected lowest or random-lower, got "${rejected}"`, { file: at.file });
  return { pairs: { rejected, minMargin: optionalNumber(step, 'min_margin', at, Number.MIN_VALUE) ?? 1 }, aspect: optionalText(step, 'aspect', at) };
}

/** `model: PATH` runs locally; `endpoint: URL` with `model: NAME` (the served model's name) runs remotely. */
function parseModel(step: Table, at: KeyPath, resolve: (value: string) => string, defaults: Sampling): ModelSpec {
  const model = text(required(step, 'model', at), at.key('model'));
  const endpoint = optionalText(step, 'endpoint', at);
  const location: ModelLocation = endpoint === undefined ? { kind: 'local', path: resolve(model) } : { kind: 'endpoint', url: endpointUrl(endpoint, at.key('endpoint')), model };
  return {
    name: optionalText(step, 'name', at) ?? defaultModelName(location),
    location,
    sampling: parseSampling(step.sampling, at.key('sampling'), defaults),
    maxConcurrentRequests: optionalInteger(step, 'max_concurrent_requests', at, 1) ?? defaultConcurrency(location),
  };
}

export function defaultModelName(location: ModelLocation): string {
  return location.kind === 'local' ? path.basename(location.path).replace(/\.gguf$/, '') : location.model;
}

function endpointUrl(value: string, at: KeyPath): string {
  try {
    const url = new URL(value);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
  } catch {
    throw new HerdError(`${at}: "${value}" is not an http(s) URL`, { file: at.file });
  }
  return value;
}

function parseSampling(value: unknown, at: KeyPath, defaults: Sampling): Sampling {
  if (value === undefined) return defaults;
  const sampling = table(value, at);
  allowKeys(sampling, ['temperature', 'top_p', 'top_k', 'min_p', 'repetition_penalty', 'max_new_tokens'], at);
  return {
    temperature: optionalNumber(sampling, 'temperature', at, 0) ?? defaults.temperature,
    topP: optionalNumber(sampling, 'top_p', at, 0, 1) ?? defaults.topP,
    topK: optionalInteger(sampling, 'top_k', at, 0) ?? defaults.topK,
    minP: optionalNumber(sampling, 'min_p', at, 0, 1) ?? defaults.minP,
    repetitionPenalty: optionalNumber(sampling, 'repetition_penalty', at, 0.01) ?? defaults.repetitionPenalty,
    maxNewTokens: optionalInteger(sampling, 'max_new_tokens', at, 1) ?? defaults.maxNewTokens,
  };
}

/** Generator names label the generations (`model_names`), so two may not share one. */
export function uniqueNames(generators: readonly { name: string }[], at: KeyPath | null): void {
  const seen = new Set<string>();
  for (const { name } of generators) {
    if (seen.has(name)) throw new HerdError(`${at ? `${at.key('steps')}: ` : ''}two generators are named "${name}": give each its own name`, { file: at?.file });
    seen.add(name);
  }
}

/** The common case without a YAML file: what `herd synth`'s flags describe. */
export interface PipelineFlags {
  /** A local file, or a Hub dataset with its split. */
  instructions: string | { dataset: string; split: string };
  column: string;
  /** Each a local folder / .gguf, or MODEL@URL for an endpoint. */
  generators: readonly string[];
  judge?: string;
  /** The aspects the judge rates; pairs follow overall-rating if listed, else the first. */
  aspects: readonly Aspect[];
  system?: string;
  numGenerations: number;
  generatorSampling: Sampling;
  judgeMaxNewTokens: number;
  rejected: RejectedRule;
  outputDir: string;
  outputFormat: OutputFormat;
  seed: number;
  retries: number;
  maxConcurrentRequests?: number;
}

export function pipelineFromFlags(flags: PipelineFlags): PipelineConfig {
  const model = (spec: string, sampling: Sampling): ModelSpec => {
    const location = modelLocation(spec);
    return { name: defaultModelName(location), location, sampling, maxConcurrentRequests: flags.maxConcurrentRequests ?? defaultConcurrency(location) };
  };
  const generators = flags.generators.map((spec) => ({ ...model(spec, flags.generatorSampling), system: flags.system ?? null, numGenerations: flags.numGenerations }));
  uniqueNames(generators, null);
  const judge = flags.judge === undefined ? null : { ...model(flags.judge, { ...JUDGE_SAMPLING, maxNewTokens: flags.judgeMaxNewTokens }), aspects: [...new Set(flags.aspects)], aspect: defaultPairAspect(flags.aspects) };
  return {
    file: null,
    source: typeof flags.instructions === 'string'
      ? { file: path.resolve(flags.instructions), dataset: null, column: flags.column }
      : { file: null, dataset: { id: datasetId(flags.instructions.dataset, new KeyPath('--dataset')), split: flags.instructions.split, revision: 'main' }, column: flags.column },
    generators,
    judge,
    pairs: judge === null ? null : { rejected: flags.rejected, minMargin: 1 },
    outputDir: path.resolve(flags.outputDir),
    outputFormat: flags.outputFormat,
    seed: flags.seed,
    date: DEFAULT_DATE,
    retries: flags.retries,
    backoffMs: DEFAULTS.backoffMs,
    requestTimeoutMs: DEFAULTS.requestTimeoutMs,
  };
}

/** The date as local midnight, which the template's strftime formats. */
export function templateDate(config: PipelineConfig): Date {
  const [year, month, day] = config.date.split('-').map(Number);
  return new Date(year!, month! - 1, day!);
}

function checkedDate(value: string, at: KeyPath): string {
  const [year, month, day] = value.split('-').map(Number);
  const date = new Date(year!, month! - 1, day!);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value) || date.getMonth() !== month! - 1 || date.getDate() !== day) fail(at, `expected a date as YYYY-MM-DD, got "${value}"`);
  return value;
}

/** "PATH" is a local model; "MODEL@http://host:port/v1" is MODEL served at that endpoint. */
export function modelLocation(spec: string): ModelLocation {
  const match = /^(.+)@(https?:\/\/.+)$/.exec(spec);
  if (match) return { kind: 'endpoint', model: match[1]!, url: endpointUrl(match[2]!, new KeyPath(spec)) };
  if (/^https?:\/\//.test(spec)) throw new HerdError(`${spec}: name the served model as MODEL@${spec} (e.g. meta-llama/Llama-3.1-70B-Instruct@${spec})`);
  return { kind: 'local', path: path.resolve(spec) };
}

/** A dotted key path inside the pipeline file, for messages ("pipeline.yaml: steps[2].aspect"). */
export class KeyPath {
  constructor(readonly file: string, private readonly keys: string = '') {}

  key(name: string): KeyPath {
    return new KeyPath(this.file, this.keys === '' ? name : `${this.keys}.${name}`);
  }

  toString(): string {
    return this.keys === '' ? this.file : `${this.file}: ${this.keys}`;
  }
}

function fail(at: KeyPath, message: string): never {
  throw new HerdError(`${at}: ${message}`, { file: at.file });
}

function table(value: unknown, at: KeyPath): Table {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(at, 'expected a mapping of keys');
  return value as Table;
}

function list(value: unknown, at: KeyPath): unknown[] {
  if (!Array.isArray(value)) fail(at, 'expected a list');
  return value;
}

function allowKeys(value: Table, allowed: readonly string[], at: KeyPath): void {
  const unknown = Object.keys(value).find((key) => !allowed.includes(key));
  if (unknown !== undefined) throw new HerdError(`${at.key(unknown)}: unknown key (expected ${allowed.join(', ')})`, { file: at.file });
}

function required(value: Table, key: string, at: KeyPath): unknown {
  if (value[key] === undefined || value[key] === null) throw new HerdError(`${at.key(key)}: missing`, { file: at.file });
  return value[key];
}

function text(value: unknown, at: KeyPath): string {
  if (typeof value !== 'string' || value === '') fail(at, 'expected a non-empty string');
  return value;
}

function optionalText(value: Table, key: string, at: KeyPath): string | undefined {
  return value[key] === undefined ? undefined : text(value[key], at.key(key));
}

function optionalNumber(value: Table, key: string, at: KeyPath, min: number, max = Infinity): number | undefined {
  const item = value[key];
  if (item === undefined) return undefined;
  if (typeof item !== 'number' || !Number.isFinite(item) || item < min || item > max) fail(at.key(key), `expected a number${max < Infinity ? ` from ${min} to ${max}` : ` of at least ${min}`}, got ${JSON.stringify(item)}`);
  return item;
}

function optionalInteger(value: Table, key: string, at: KeyPath, min: number): number | undefined {
  const item = optionalNumber(value, key, at, min);
  if (item !== undefined && !Number.isInteger(item)) fail(at.key(key), `expected a whole number, got ${item}`);
  return item;
}
