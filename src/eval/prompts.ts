/**
 * lm-eval's ConfigurableTask prompt logic: doc_to_text / doc_to_target / doc_to_choice with its
 * rules (field name, Jinja template, literal, function; digit strings become choice indices),
 * few-shot sampling with a seeded CPython `random.Random`, and the context string or chat
 * messages it builds (`fewshot_context`, `ContextSampler.get_context` / `get_chat_context`).
 */
import { HerdError } from '../errors.js';
import type { LocatedDoc } from './data.js';
import { renderTemplate, templateValue, UndefinedFieldError } from './jinja.js';
import { PythonRandom } from './python-random.js';
import { isFunctionRef, type DocField, type TaskConfig } from './task-config.js';
import { docFunction, TaskFunctionError, type Doc } from './task-functions.js';

export type DocText = string | number;
export type DocTarget = string | number | unknown[];

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** The prompt of one document: a string, or (with a chat template) the messages to render. */
export type Context = { kind: 'text'; text: string } | { kind: 'chat'; messages: ChatMessage[] };

export interface PromptOptions {
  numFewshot: number;
  systemInstruction?: string;
  applyChatTemplate: boolean;
  fewshotAsMultiturn: boolean;
}

export class TaskPrompts {
  private readonly features: Set<string>;

  constructor(
    readonly config: TaskConfig,
    firstDoc: Doc,
  ) {
    this.features = new Set(Object.keys(firstDoc));
  }

  docToText(located: LocatedDoc, field: DocField | null = this.config.doc_to_text): DocText {
    if (typeof field === 'number') return field;
    if (typeof field === 'string') {
      if (this.features.has(field)) return located.doc[field] as DocText;
      const text = this.render(field, located, 'doc_to_text');
      return isDigits(text) && this.config.doc_to_choice !== null ? Number(text) : text;
    }
    if (isFunctionRef(field)) return this.call(field, located, 'doc_to_text') as DocText;
    throw this.error(located, 'doc_to_text must be a field, a template or a !function');
  }

  docToTarget(located: LocatedDoc, field: DocField | null = this.config.doc_to_target): DocTarget {
    if (typeof field === 'number' || Array.isArray(field)) return field;
    if (typeof field === 'string') {
      if (this.features.has(field)) return located.doc[field] as DocTarget;
      const value = this.value(field, located, 'doc_to_target');
      if (Array.isArray(value)) return value;
      const text = typeof value === 'string' ? value : this.render(field, located, 'doc_to_target');
      return isDigits(text) && this.config.doc_to_choice !== null ? Number(text) : text;
    }
    if (isFunctionRef(field)) return this.call(field, located, 'doc_to_target') as DocTarget;
    throw this.error(located, 'doc_to_target must be a field, a template, a list or a !function');
  }

  docToChoice(located: LocatedDoc): string[] {
    const field = this.config.doc_to_choice;
    let choices: unknown;
    if (typeof field === 'string') choices = this.features.has(field) ? located.doc[field] : this.value(field, located, 'doc_to_choice');
    else if (Array.isArray(field)) choices = field;
    else if (isFunctionRef(field)) choices = this.call(field, located, 'doc_to_choice');
    else if (field !== null && typeof field === 'object') choices = Object.values(field);
    if (!Array.isArray(choices) || choices.length === 0) throw this.error(located, 'doc_to_choice did not give a non-empty list');
    return choices.map(String);
  }

  /** The gold choice index (lm-eval's check_gold_index_error: a label string is looked up among the choices). */
  goldIndex(located: LocatedDoc, choices: string[]): number | number[] {
    const gold = this.isMultipleInput(located) ? this.docToText(located) : this.docToTarget(located);
    const index = (value: unknown): number => {
      const position = typeof value === 'number' ? value : choices.indexOf(String(value));
      if (!Number.isInteger(position) || position < 0 || position >= choices.length) {
        throw this.error(located, `gold answer ${JSON.stringify(value)} is not one of the ${choices.length} choices`);
      }
      return position;
    };
    return Array.isArray(gold) ? gold.map(index) : index(gold);
  }

  /** Winogrande-style tasks: doc_to_text gives the gold index and each choice is its own context. */
  isMultipleInput(located: LocatedDoc): boolean {
    return this.config.doc_to_choice !== null && typeof this.docToText(located) === 'number';
  }

  private value(template: string, located: LocatedDoc, role: string): unknown {
    const single = this.guard(() => templateValue(template, located.doc), located, role);
    return single === undefined ? this.render(template, located, role) : single.value;
  }

  render(template: string, located: LocatedDoc, role: string): string {
    return this.guard(() => renderTemplate(template, located.doc), located, role);
  }

  private call(ref: { function: string }, located: LocatedDoc, role: string): unknown {
    const fn = docFunction(ref);
    return this.guard(() => fn(located.doc), located, role);
  }

  private guard<T>(run: () => T, located: LocatedDoc, role: string): T {
    try {
      return run();
    } catch (error) {
      if (error instanceof HerdError) throw error;
      const reason = error instanceof UndefinedFieldError || error instanceof TaskFunctionError ? error.message : `cannot render: ${(error as Error).message}`;
      throw this.error(located, `${role}: ${reason}`);
    }
  }

  error(located: LocatedDoc, message: string): HerdError {
    return new HerdError(`${located.file}: row ${located.row + 1}: task ${this.config.task}: ${message}`);
  }
}

function isDigits(text: string): boolean {
  return /^\d+$/.test(text);
}

/**
 * Few-shot documents as lm-eval's samplers pick them. The random generator is shared by all
 * documents of a task and advanced in document order, so document i gets the same examples as in
 * lm-eval only when documents 0..i-1 were processed first (as they are, --limit included).
 */
export class FewshotSampler {
  private readonly random: PythonRandom;

  constructor(
    private readonly prompts: TaskPrompts,
    private readonly pool: LocatedDoc[],
    /** The few-shot docs are the evaluated split itself: draw one more and drop the document being asked. */
    private readonly sameSplit: boolean,
    seed: number,
  ) {
    this.random = new PythonRandom(seed);
  }

  select(located: LocatedDoc, count: number): LocatedDoc[] {
    const wanted = this.sameSplit ? count + 1 : count;
    const candidates = this.candidates(located);
    if (wanted > candidates.length) {
      throw this.prompts.error(located, `needs ${count} few-shot examples but only ${candidates.length} are available`);
    }
    const drawn = this.prompts.config.fewshot_config.sampler === 'first_n' ? candidates.slice(0, wanted) : this.random.sample(candidates, wanted);
    const asked = JSON.stringify(located.doc);
    return drawn.filter((example) => JSON.stringify(example.doc) !== asked).slice(0, count);
  }

  private candidates(located: LocatedDoc): LocatedDoc[] {
    const field = this.prompts.config.fewshot_config.match_field;
    if (field === undefined) return this.pool;
    return this.pool.filter((example) => example.doc[field] === located.doc[field]);
  }
}

/** Builds the prompt of one document, as lm-eval's `fewshot_context`. */
export function fewshotContext(prompts: TaskPrompts, sampler: FewshotSampler | null, located: LocatedDoc, options: PromptOptions): Context {
  const config = prompts.config;
  const description = config.description ? prompts.render(config.description, located, 'description') : '';
  const system = [options.systemInstruction, description].filter((part): part is string => !!part).join(config.fewshot_delimiter);
  const examples = options.numFewshot > 0 && sampler ? sampler.select(located, options.numFewshot) : [];
  const example = prompts.docToText(located);
  if (!options.applyChatTemplate) {
    const shots = examples.map((shot) => labeledExample(prompts, shot)).join('');
    const question = typeof example === 'string' ? example : prompts.isMultipleInput(located) ? '' : prompts.docToChoice(located)[example]!;
    return { kind: 'text', text: system + shots + question };
  }
  if (prompts.isMultipleInput(located)) throw prompts.error(located, '--apply-chat-template is not supported for tasks whose choices are contexts (winogrande)');
  const messages: ChatMessage[] = system ? [{ role: 'system', content: system }] : [];
  if (options.fewshotAsMultiturn) {
    for (const shot of examples) {
      messages.push({ role: 'user', content: shotText(prompts, shot) });
      messages.push({ role: 'assistant', content: shotTarget(prompts, shot) });
    }
  } else if (examples.length > 0) {
    messages.push({ role: 'user', content: examples.map((shot) => labeledExample(prompts, shot)).join('') });
  }
  const question = typeof example === 'string' ? example : prompts.docToChoice(located)[example]!;
  const last = messages[messages.length - 1];
  // append_target_question: the question joins a preceding user turn unless turns are separate.
  if (!options.fewshotAsMultiturn && last?.role === 'user') last.content += question;
  else messages.push({ role: 'user', content: question });
  return { kind: 'chat', messages };
}

/** One few-shot example: text, target delimiter, target, few-shot delimiter (ContextSampler.get_context). */
function labeledExample(prompts: TaskPrompts, shot: LocatedDoc): string {
  const target = prompts.docToTarget(shot, prompts.config.fewshot_config.doc_to_target ?? prompts.config.doc_to_target);
  const text = shotText(prompts, shot);
  if (target === '') return text;
  return text + prompts.config.target_delimiter + shotTarget(prompts, shot) + prompts.config.fewshot_delimiter;
}

function shotText(prompts: TaskPrompts, shot: LocatedDoc): string {
  const content = prompts.docToText(shot, prompts.config.fewshot_config.doc_to_text ?? prompts.config.doc_to_text);
  return typeof content === 'string' ? content : prompts.docToChoice(shot)[content]!;
}

function shotTarget(prompts: TaskPrompts, shot: LocatedDoc): string {
  const target = prompts.docToTarget(shot, prompts.config.fewshot_config.doc_to_target ?? prompts.config.doc_to_target);
  if (Array.isArray(target)) return String(target[0]);
  if (typeof target === 'string' || prompts.config.doc_to_choice === null) return String(target);
  return prompts.docToChoice(shot)[target]!;
}
