import { HerdError } from '../errors.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import { mapRows, tokenizeRow, type DataOptions, type TrainingExample } from './data.js';
import { labelCount } from './loss.js';

/**
 * Preference data in TRL's layouts, one pair per row:
 * - explicit prompt: `{"prompt", "chosen", "rejected"}`, all strings, or all message lists
 *   (conversational: the prompt's messages, then the assistant turn(s) of each answer);
 * - implicit prompt: `{"chosen", "rejected"}` only, two full conversations (or texts) whose
 *   shared beginning is the prompt, as TRL's extract_prompt finds it.
 * Each side is rendered and tokenized exactly as an SFT prompt/completion row (data.ts), so the
 * loss (the sequence log-probability) covers the completion tokens only.
 */

/** One row: the chosen and the rejected completion, each with the shared prompt in front. */
export interface PreferencePair {
  /** 1-based row number in the source file, for messages. */
  row: number;
  chosen: TrainingExample;
  rejected: TrainingExample;
}

type Message = { role?: unknown; content?: unknown };
type Side = string | Message[];

/** A row split into prompt, chosen and rejected, all strings or all message lists. */
interface SplitRow {
  prompt: Side;
  chosen: Side;
  rejected: Side;
}

/** Reads and tokenizes a preference file; any malformed row stops it with the file and row number. */
export function loadPreferencePairs(file: string, tokenizer: HerdTokenizer, options: Pick<DataOptions, 'maxSeqLength'>): Promise<PreferencePair[]> {
  return mapRows(file, (row, rowNumber) => tokenizePreferenceRow(row, rowNumber, tokenizer, options));
}

export function tokenizePreferenceRow(row: unknown, rowNumber: number, tokenizer: HerdTokenizer, options: Pick<DataOptions, 'maxSeqLength'>): PreferencePair {
  const { prompt, chosen, rejected } = splitRow(row);
  const side = (name: 'chosen' | 'rejected', completion: Side) => {
    let example: TrainingExample;
    try {
      example = tokenizeRow({ prompt, completion }, rowNumber, tokenizer, { maxSeqLength: options.maxSeqLength, trainOnPrompt: false });
    } catch (error) {
      if (error instanceof HerdError) throw new HerdError(`${name}: ${error.message.replaceAll('"completion"', `"${name}"`)}`);
      throw error;
    }
    if (labelCount(example) === 0) throw new HerdError(`"${name}" has no completion token within --max-seq-length ${options.maxSeqLength} (the prompt fills it)`);
    return example;
  };
  return { row: rowNumber, chosen: side('chosen', chosen), rejected: side('rejected', rejected) };
}

function splitRow(row: unknown): SplitRow {
  if (typeof row !== 'object' || row === null || Array.isArray(row)) throw new HerdError('is not a JSON object');
  // A null field is an absent one: a parquet file has every column in every row, null where a
  // jsonl row would leave the key out (an implicit-prompt row in a file with a prompt column).
  const record = Object.fromEntries(Object.entries(row).filter(([, value]) => value !== null && value !== undefined));
  for (const field of ['chosen', 'rejected']) {
    if (!(field in record)) throw new HerdError(`has no "${field}" (keys: ${Object.keys(record).join(', ') || 'none'}); a preference row needs "chosen" and "rejected"`);
  }
  const split = 'prompt' in record ? explicitPrompt(record.prompt, record.chosen, record.rejected) : implicitPrompt(record.chosen, record.rejected);
  if (sameSide(split.chosen, split.rejected)) throw new HerdError('"chosen" and "rejected" are identical, so the pair prefers nothing');
  for (const field of ['prompt', 'chosen', 'rejected'] as const) {
    if (split[field].length > 0) continue;
    const other = field === 'chosen' ? 'rejected' : 'chosen';
    // Implicit prompts: one side is all beginning of the other, so it has no answer of its own.
    throw new HerdError('prompt' in record || field === 'prompt' ? `"${field}" is empty` : `"${field}" is empty once the prompt it shares with "${other}" is taken off (it is the beginning of "${other}")`);
  }
  return split;
}

function explicitPrompt(prompt: unknown, chosen: unknown, rejected: unknown): SplitRow {
  const allText = [prompt, chosen, rejected].every((value) => typeof value === 'string');
  const allMessages = [prompt, chosen, rejected].every((value) => Array.isArray(value));
  if (!allText && !allMessages) throw new HerdError('"prompt", "chosen" and "rejected" must all be strings, or all lists of messages');
  return { prompt: prompt as Side, chosen: chosen as Side, rejected: rejected as Side };
}

/**
 * TRL's extract_prompt: the prompt is the longest shared beginning of chosen and rejected (whole
 * messages for conversations, characters for text, leaving a space before the split to the
 * completions). A conversation must part at an assistant turn: anything earlier means the two
 * answer different prompts.
 */
function implicitPrompt(chosen: unknown, rejected: unknown): SplitRow {
  if (typeof chosen === 'string' && typeof rejected === 'string') {
    let split = sharedLength(chosen, rejected, (a, b) => a === b);
    if (split > 0 && split < chosen.length && chosen[split - 1] === ' ') split--;
    if (split === 0) throw new HerdError('"chosen" and "rejected" share no beginning, so there is no implicit prompt; give "prompt" explicitly');
    return { prompt: chosen.slice(0, split), chosen: chosen.slice(split), rejected: rejected.slice(split) };
  }
  if (!Array.isArray(chosen) || !Array.isArray(rejected)) throw new HerdError('"chosen" and "rejected" must both be strings, or both lists of messages');
  const chosenMessages = chosen as Message[];
  const rejectedMessages = rejected as Message[];
  const split = sharedLength(chosenMessages, rejectedMessages, sameMessage);
  if (split < Math.min(chosenMessages.length, rejectedMessages.length)) {
    const roles = [chosenMessages[split]?.role, rejectedMessages[split]?.role];
    if (roles.some((role) => role !== 'assistant')) {
      throw new HerdError(`"chosen" and "rejected" differ at message ${split} (${roles.map((role) => JSON.stringify(role)).join(' vs ')}), before an assistant turn: they answer different prompts`);
    }
  }
  return { prompt: chosenMessages.slice(0, split), chosen: chosenMessages.slice(split), rejected: rejectedMessages.slice(split) };
}

function sharedLength<T>(a: ArrayLike<T>, b: ArrayLike<T>, same: (x: T, y: T) => boolean): number {
  let length = 0;
  while (length < a.length && length < b.length && same(a[length]!, b[length]!)) length++;
  return length;
}

function sameMessage(a: Message, b: Message): boolean {
  return a?.role === b?.role && a?.content === b?.content;
}

function sameSide(a: Side, b: Side): boolean {
  if (typeof a === 'string' || typeof b === 'string') return a === b;
  return a.length === b.length && a.every((message, i) => sameMessage(message, b[i]!));
}
