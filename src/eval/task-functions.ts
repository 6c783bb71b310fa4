/**
 * The Python functions lm-eval's built-in task files name with `!function`, rewritten from their
 * sources. A task file may name any of these; Python code cannot run here, so other names are
 * an error that lists what is available.
 */
import { HerdError } from '../errors.js';
import { dropAnswers, dropProcessResults, type DropAnswer } from './drop.js';
import type { FunctionRef } from './task-config.js';

export type Doc = Record<string, unknown>;

type DocsFunction = (docs: Doc[]) => Doc[];
type DocFunction = (doc: Doc) => unknown;
/** The word and byte counts a perplexity document is scored per (lm-eval's process_results). */
type CountsFunction = (doc: Doc, target: string) => { words: number; bytes: number };
/** A generated answer's metric values (lm-eval's process_results for generate_until tasks). */
type ResultsFunction = (doc: Doc, response: string) => Record<string, number>;

/** hellaswag/utils.py `preprocess`: WikiHow bracket markup out, double spaces squeezed. */
function hellaswagPreprocess(text: string): string {
  return text.trim().replaceAll(' [title]', '. ').replace(/\[.*?\]/g, '').replaceAll('  ', ' ');
}

/** Python's str.capitalize: first character upper-cased, the rest lower-cased. */
function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1).toLowerCase();
}

const DOCS_FUNCTIONS: Record<string, DocsFunction> = {
  'hellaswag.process_docs': (docs) =>
    docs.map((doc) => {
      const ctx = `${text(doc, 'ctx_a')} ${capitalize(text(doc, 'ctx_b'))}`;
      const label = text(doc, 'label');
      return {
        ...doc,
        query: hellaswagPreprocess(`${text(doc, 'activity_label')}: ${ctx}`),
        choices: list(doc, 'endings').map((ending) => hellaswagPreprocess(String(ending))),
        gold: Number.parseInt(label, 10),
      };
    }),
  /** One document per article: a new one starts at each top-level " = Title = " line. */
  'wikitext.articles': (docs) => {
    const articles: Doc[] = [];
    for (const doc of docs) {
      let current: string[] = [];
      for (const line of text(doc, 'text').split(/(?<=\n)/)) {
        if (/^ = [^=].* = \n?$/.test(line) && current.length > 0) {
          articles.push({ page: current.join('') });
          current = [];
        }
        current.push(line);
      }
      if (current.length > 0) articles.push({ page: current.join('') });
    }
    return articles;
  },
  // drop/utils.py process_docs: the original fields plus id and the parsed gold answers.
  'drop.process_docs': (docs) =>
    docs.map((doc, i) => {
      try {
        return { ...doc, id: doc.query_id, answers: dropAnswers(doc) };
      } catch (error) {
        return fail(`document ${i + 1}: ${(error as Error).message}`);
      }
    }),
};

const DOC_FUNCTIONS: Record<string, DocFunction> = {
  // winogrande/preprocess_winogrande.py
  'winogrande.doc_to_text': (doc) => ({ '1': 0, '2': 1 })[text(doc, 'answer')] ?? fail(`answer must be "1" or "2"`),
  'winogrande.doc_to_target': (doc) => text(doc, 'sentence').slice(blankIndex(doc) + 1).trim(),
  'winogrande.doc_to_choice': (doc) => [text(doc, 'option1'), text(doc, 'option2')].map((option) => text(doc, 'sentence').slice(0, blankIndex(doc)) + option),
  // wikitext/preprocess_wikitext.py wikitext_detokenizer
  'wikitext.detokenize': (doc) => wikitextDetokenize(text(doc, 'page')),
};

const COUNTS_FUNCTIONS: Record<string, CountsFunction> = {
  // wikitext counts words and bytes in the page before detokenization.
  'wikitext.process_results': (doc) => countUnits(text(doc, 'page')),
};

const RESULTS_FUNCTIONS: Record<string, ResultsFunction> = {
  'drop.process_results': (doc, response) => dropProcessResults(response, list(doc, 'answers') as DropAnswer[]),
};

function wikitextDetokenize(page: string): string {
  let s = page.replaceAll("s '", "s'");
  s = s.replace(/\/' [0-9]\//g, "/'[0-9]/");
  for (const [from, to] of [[' @-@ ', '-'], [' @,@ ', ','], [' @.@ ', '.'], [' : ', ': '], [' ; ', '; '], [' . ', '. '], [' ! ', '! '], [' ? ', '? '], [' , ', ', ']]) {
    s = s.replaceAll(from!, to!);
  }
  s = s.replace(/\(\s*([^)]*?)\s*\)/g, '($1)');
  s = s.replace(/\[\s*([^\]]*?)\s*\]/g, '[$1]');
  s = s.replace(/{\s*([^}]*?)\s*}/g, '{$1}');
  s = s.replace(/"\s*([^"]*?)\s*"/g, '"$1"');
  s = s.replace(/'\s*([^']*?)\s*'/g, "'$1'");
  for (const [from, to] of [['= = = =', '===='], ['= = =', '==='], ['= =', '=='], [' \u00b0 ', '\u00b0'], [' \n', '\n'], ['\n ', '\n'], [' N ', ' 1 '], [" 's", "'s"]]) {
    s = s.replaceAll(from!, to!);
  }
  return s;
}

/** lm-eval's count_words (`re.split(r"\s+", doc)`) and count_bytes (UTF-8). */
export function countUnits(target: string): { words: number; bytes: number } {
  return { words: target.split(/\s+/).length, bytes: Buffer.byteLength(target, 'utf8') };
}

function blankIndex(doc: Doc): number {
  const index = text(doc, 'sentence').indexOf('_');
  if (index < 0) fail('sentence has no "_" blank');
  return index;
}

function text(doc: Doc, field: string): string {
  const value = doc[field];
  if (typeof value !== 'string') fail(`field "${field}" is missing or not a string`);
  return value as string;
}

function list(doc: Doc, field: string): unknown[] {
  const value = doc[field];
  if (!Array.isArray(value)) fail(`field "${field}" is missing or not a list`);
  return value as unknown[];
}

/** Thrown inside a task function; the caller adds the file and row. */
export class TaskFunctionError extends Error {}

function fail(message: string): never {
  throw new TaskFunctionError(message);
}

function lookup<F>(table: Record<string, F>, ref: FunctionRef, role: string): F {
  const fn = table[ref.function];
  if (!fn) throw new HerdError(`!function ${ref.function} is not one herd provides for ${role} (available: ${Object.keys(table).join(', ')})`);
  return fn;
}

export const docsFunction = (ref: FunctionRef): DocsFunction => lookup(DOCS_FUNCTIONS, ref, 'process_docs');
export const docFunction = (ref: FunctionRef): DocFunction => lookup(DOC_FUNCTIONS, ref, 'doc_to_text/doc_to_target/doc_to_choice');
export const countsFunction = (ref: FunctionRef): CountsFunction => lookup(COUNTS_FUNCTIONS, ref, 'process_results of a loglikelihood_rolling task');
export const resultsFunction = (ref: FunctionRef): ResultsFunction => lookup(RESULTS_FUNCTIONS, ref, 'process_results of a generate_until task');
