/**
 * Task definitions in lm-eval's YAML vocabulary: reading a file (with `include` and
 * `!function`), applying lm-eval's defaults, and checking every field's type so a bad task file
 * fails with one line naming the file and the field.
 */
import fs from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { HerdError } from '../errors.js';
import { BUILTIN_TASKS } from './tasks/builtin.js';

export type OutputType = 'multiple_choice' | 'generate_until' | 'loglikelihood_rolling' | 'loglikelihood';
const OUTPUT_TYPES: readonly OutputType[] = ['multiple_choice', 'generate_until', 'loglikelihood_rolling', 'loglikelihood'];

/** `!function module.name` in a task file: one of the functions herd implements (task-functions.ts). */
export interface FunctionRef {
  function: string;
}

/** doc_to_text / doc_to_target / doc_to_choice: a field name, a Jinja template, a literal, or a function. */
export type DocField = string | number | unknown[] | Record<string, unknown> | FunctionRef;

export interface MetricConfig {
  metric: string;
  aggregation?: string;
  higher_is_better?: boolean;
  ignore_case?: boolean;
  ignore_punctuation?: boolean;
  regexes_to_ignore?: string[];
}

export interface FilterStep {
  function: string;
  regex_pattern?: string;
  group_select?: number;
  fallback?: string;
}

export interface FilterConfig {
  name: string;
  filter: FilterStep[];
}

export interface FewshotConfig {
  sampler: 'default' | 'first_n';
  /** Fixed few-shot documents written in the task file (gsm8k's chain-of-thought examples). */
  samples?: Record<string, unknown>[];
  /** herd extension: draw few-shot documents only among those with the same value of this field (mmlu's subject). */
  match_field?: string;
  doc_to_text?: DocField;
  doc_to_target?: DocField;
}

export interface DatasetKwargs {
  /** split → file, relative to --data (or absolute). */
  data_files?: Record<string, string>;
  /** For `dataset_path: text`: one document per line, per blank-line-separated paragraph, or the whole file (HF's text loader). */
  sample_by?: 'line' | 'paragraph' | 'document';
}

export interface TaskConfig {
  task: string;
  /** Where the definition came from: a file path or "built-in". */
  source: string;
  dataset_path: string | null;
  dataset_name: string | null;
  dataset_kwargs: DatasetKwargs;
  training_split: string | null;
  validation_split: string | null;
  test_split: string | null;
  fewshot_split: string | null;
  process_docs: FunctionRef | null;
  /** For loglikelihood_rolling: counts words and bytes on another field than the target (wikitext). */
  process_results: FunctionRef | null;
  doc_to_text: DocField | null;
  doc_to_target: DocField | null;
  doc_to_choice: DocField | null;
  target_delimiter: string;
  fewshot_delimiter: string;
  description: string;
  num_fewshot: number;
  fewshot_config: FewshotConfig;
  output_type: OutputType;
  generation_kwargs: { until: string[]; max_gen_toks: number };
  metric_list: MetricConfig[];
  filter_list: FilterConfig[];
  version: string | number | null;
}

const FUNCTION_TAG = new yaml.Type('!function', { kind: 'scalar', construct: (data) => ({ function: String(data) }) });
const TASK_SCHEMA = new yaml.Schema({ include: [yaml.DEFAULT_SAFE_SCHEMA], explicit: [FUNCTION_TAG] });

export function builtinTaskNames(): string[] {
  return Object.keys(BUILTIN_TASKS).filter((name) => !name.startsWith('_'));
}

/** A built-in task name or a path to a task YAML file. */
export function resolveTask(nameOrFile: string): TaskConfig {
  if (nameOrFile.endsWith('.yaml') || nameOrFile.endsWith('.yml') || fs.existsSync(nameOrFile)) {
    if (!fs.existsSync(nameOrFile)) throw new HerdError(`task file ${nameOrFile} does not exist`);
    return parseTaskConfig(readRawTask(path.resolve(nameOrFile)), nameOrFile);
  }
  if (!(nameOrFile in BUILTIN_TASKS) || nameOrFile.startsWith('_')) {
    throw new HerdError(`unknown task "${nameOrFile}" (built-in: ${builtinTaskNames().join(', ')}; or give a path to a task .yaml file)`);
  }
  return parseTaskConfig(readBuiltin(nameOrFile), 'built-in');
}

function loadYaml(text: string, source: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = yaml.safeLoad(text, { schema: TASK_SCHEMA, filename: source });
  } catch (error) {
    throw new HerdError(`${source}: not valid task YAML: ${oneLine((error as Error).message)}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new HerdError(`${source}: a task file must be a YAML mapping`);
  return raw as Record<string, unknown>;
}

function readBuiltin(name: string): Record<string, unknown> {
  const raw = loadYaml(BUILTIN_TASKS[name]!, `built-in task ${name}`);
  return withInclude(raw, (include) => {
    if (!(include in BUILTIN_TASKS)) throw new HerdError(`built-in task ${name} includes unknown ${include}`);
    return readBuiltin(include);
  });
}

function readRawTask(file: string): Record<string, unknown> {
  const raw = loadYaml(fs.readFileSync(file, 'utf8'), file);
  return withInclude(raw, (include) => {
    const sibling = path.resolve(path.dirname(file), include);
    if (fs.existsSync(sibling)) return readRawTask(sibling);
    if (include in BUILTIN_TASKS) return readBuiltin(include);
    throw new HerdError(`${file}: include "${include}" is neither a file beside it nor a built-in task`);
  });
}

/** lm-eval's `include`: the included file's keys, overridden by the including file's. */
function withInclude(raw: Record<string, unknown>, read: (include: string) => Record<string, unknown>): Record<string, unknown> {
  const { include, ...rest } = raw;
  if (include === undefined) return raw;
  if (typeof include !== 'string') throw new HerdError('include must be a file name');
  return { ...read(include), ...rest };
}

/** Applies lm-eval's TaskConfig defaults and checks each field's type. */
export function parseTaskConfig(raw: Record<string, unknown>, source: string): TaskConfig {
  const field = new FieldReader(raw, source);
  const task = field.string('task');
  if (task === null) throw new HerdError(`${source}: the task has no "task" name`);
  const outputType = (field.string('output_type') ?? 'generate_until') as OutputType;
  if (!OUTPUT_TYPES.includes(outputType)) throw new HerdError(`${source}: output_type "${outputType}" is not one of ${OUTPUT_TYPES.join(', ')}`);
  const generation = field.object('generation_kwargs') ?? {};
  const fewshot = field.object('fewshot_config') ?? {};
  const sampler = fewshot.sampler ?? 'default';
  if (sampler !== 'default' && sampler !== 'first_n') throw new HerdError(`${source}: fewshot_config.sampler "${String(sampler)}" is not default or first_n`);
  const config: TaskConfig = {
    task,
    source,
    dataset_path: field.string('dataset_path'),
    dataset_name: field.string('dataset_name'),
    dataset_kwargs: (field.object('dataset_kwargs') ?? {}) as DatasetKwargs,
    training_split: field.string('training_split'),
    validation_split: field.string('validation_split'),
    test_split: field.string('test_split'),
    fewshot_split: field.string('fewshot_split'),
    process_docs: field.functionRef('process_docs'),
    process_results: field.functionRef('process_results'),
    doc_to_text: field.docField('doc_to_text'),
    doc_to_target: field.docField('doc_to_target'),
    doc_to_choice: field.docField('doc_to_choice'),
    target_delimiter: field.string('target_delimiter') ?? ' ',
    fewshot_delimiter: field.string('fewshot_delimiter') ?? '\n\n',
    description: field.string('description') ?? '',
    num_fewshot: field.integer('num_fewshot') ?? 0,
    fewshot_config: { ...(fewshot as Partial<FewshotConfig>), sampler },
    output_type: outputType,
    generation_kwargs: {
      until: stringList(generation.until ?? [], `${source}: generation_kwargs.until`),
      max_gen_toks: typeof generation.max_gen_toks === 'number' ? generation.max_gen_toks : 256,
    },
    metric_list: field.list('metric_list').map((metric, i) => metricConfig(metric, `${source}: metric_list[${i}]`)),
    filter_list: field.list('filter_list').map((filter, i) => filterConfig(filter, `${source}: filter_list[${i}]`)),
    version: versionOf(raw.metadata),
  };
  if (config.test_split === null && config.validation_split === null) throw new HerdError(`${source}: task ${task} names neither a test_split nor a validation_split`);
  if (outputType === 'multiple_choice' && config.doc_to_choice === null) throw new HerdError(`${source}: multiple_choice task ${task} has no doc_to_choice`);
  if (config.metric_list.length === 0) throw new HerdError(`${source}: task ${task} has an empty metric_list`);
  return config;
}

class FieldReader {
  constructor(private readonly raw: Record<string, unknown>, private readonly source: string) {}

  string(key: string): string | null {
    const value = this.raw[key];
    if (value === undefined || value === null) return null;
    if (typeof value === 'number') return String(value);
    if (typeof value !== 'string') throw new HerdError(`${this.source}: ${key} must be a string`);
    return value;
  }

  integer(key: string): number | null {
    const value = this.raw[key];
    if (value === undefined || value === null) return null;
    if (!Number.isInteger(value) || (value as number) < 0) throw new HerdError(`${this.source}: ${key} must be a whole number ≥ 0`);
    return value as number;
  }

  object(key: string): Record<string, unknown> | null {
    const value = this.raw[key];
    if (value === undefined || value === null) return null;
    if (typeof value !== 'object' || Array.isArray(value)) throw new HerdError(`${this.source}: ${key} must be a mapping`);
    return value as Record<string, unknown>;
  }

  list(key: string): unknown[] {
    const value = this.raw[key];
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) throw new HerdError(`${this.source}: ${key} must be a list`);
    return value;
  }

  functionRef(key: string): FunctionRef | null {
    const value = this.raw[key];
    if (value === undefined || value === null) return null;
    if (!isFunctionRef(value)) throw new HerdError(`${this.source}: ${key} must be a !function reference`);
    return value;
  }

  docField(key: string): DocField | null {
    const value = this.raw[key];
    if (value === undefined || value === null) return null;
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'object') return value as DocField;
    throw new HerdError(`${this.source}: ${key} must be a field name, a template, a list or a !function`);
  }
}

export function isFunctionRef(value: unknown): value is FunctionRef {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && typeof (value as FunctionRef).function === 'string' && Object.keys(value).length === 1;
}

function metricConfig(value: unknown, where: string): MetricConfig {
  if (typeof value !== 'object' || value === null || typeof (value as MetricConfig).metric !== 'string') throw new HerdError(`${where} needs a "metric" name`);
  const metric = value as MetricConfig;
  if (metric.regexes_to_ignore !== undefined) stringList(metric.regexes_to_ignore, `${where}.regexes_to_ignore`);
  return metric;
}

function filterConfig(value: unknown, where: string): FilterConfig {
  const filter = value as FilterConfig;
  if (typeof value !== 'object' || value === null || typeof filter.name !== 'string' || !Array.isArray(filter.filter)) {
    throw new HerdError(`${where} needs a "name" and a "filter" list`);
  }
  filter.filter.forEach((step, i) => {
    if (typeof step?.function !== 'string') throw new HerdError(`${where}.filter[${i}] needs a "function"`);
  });
  return filter;
}

function stringList(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) throw new HerdError(`${where} must be a list of strings`);
  return value as string[];
}

/** lm-eval writes metadata either as a mapping or (older files) as a list of one mapping. */
function versionOf(metadata: unknown): string | number | null {
  const entry = Array.isArray(metadata) ? metadata[0] : metadata;
  const version = (entry as { version?: unknown } | undefined)?.version;
  return typeof version === 'number' || typeof version === 'string' ? version : null;
}

function oneLine(text: string): string {
  return text.split('\n')[0]!.trim();
}
