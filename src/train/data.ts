import fs from 'node:fs';
import path from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { HerdError } from '../errors.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import { renderChatTemplate, selectChatTemplate, type ChatMessage } from '../templates/chat-template.js';

/**
 * Training data in the layouts TRL's SFTTrainer and mlx-lm accept, one row per example:
 * `{"messages": [...]}` (rendered through the model's chat template), `{"prompt", "completion"}`
 * (strings, or message lists for the conversational form) and `{"text"}`.
 */

/** One tokenized example: the ids and, per id, whether the loss is taken on it. */
export interface TrainingExample {
  /** 1-based row number in the source file, for messages. */
  row: number;
  ids: Int32Array;
  /** trained[t] = 1 when token t is a label (predicted from tokens 0..t-1). */
  trained: Uint8Array;
  /** The row was longer than the maximum sequence length and was cut. */
  truncated: boolean;
}

export interface DataOptions {
  /** Longest sequence in tokens; longer rows are truncated (as TRL's max_length). */
  maxSeqLength: number;
  /** Take the loss on prompt / user / system tokens too, not only on assistant and completion tokens. */
  trainOnPrompt: boolean;
}

const ROLES: readonly string[] = ['system', 'user', 'assistant', 'ipython', 'tool'];

/** Reads every row of a .jsonl (or .json lines) or .parquet file as plain objects. */
export async function readRows(file: string): Promise<unknown[]> {
  if (!fs.existsSync(file)) throw new HerdError(`data file ${file} does not exist`);
  const rows = path.extname(file).toLowerCase() === '.parquet' ? await readParquetRows(file) : readJsonLines(file);
  // A parquet file keeps its schema with no rows (herd synth writes one when it keeps no pair).
  if (rows.length === 0) throw new HerdError(`${file}: has no rows`);
  return rows;
}

async function readParquetRows(file: string): Promise<unknown[]> {
  try {
    return await parquetReadObjects({ file: await asyncBufferFromFile(file) });
  } catch (error) {
    throw new HerdError(`${file}: cannot be read as parquet (${(error as Error).message.split('\n')[0]})`);
  }
}

function readJsonLines(file: string): unknown[] {
  const rows: unknown[] = [];
  fs.readFileSync(file, 'utf8').split('\n').forEach((line, index) => {
    if (line.trim() === '') return;
    try {
      rows.push(JSON.parse(line));
    } catch {
      throw new HerdError(`${file}: row ${index + 1} is not valid JSON`);
    }
  });
  return rows;
}

/** Reads and tokenizes a data file; any malformed row stops it with the file and row number. */
export function loadExamples(file: string, tokenizer: HerdTokenizer, options: DataOptions): Promise<TrainingExample[]> {
  return mapRows(file, (row, rowNumber) => tokenizeRow(row, rowNumber, tokenizer, options));
}

/** Reads every row of a data file through `map`; a HerdError it throws gets the file and 1-based row in front. */
export async function mapRows<T>(file: string, map: (row: unknown, rowNumber: number) => T): Promise<T[]> {
  const rows = await readRows(file);
  return rows.map((row, index) => {
    try {
      return map(row, index + 1);
    } catch (error) {
      if (error instanceof HerdError) throw new HerdError(`${file}: row ${index + 1}: ${error.message}`);
      throw error;
    }
  });
}

/** A piece of a rendered example: its text and whether the loss is taken on it. */
interface Segment {
  text: string;
  trained: boolean;
  /** Let the tokenizer add its special tokens (BOS) in front of this piece. */
  addSpecialTokens: boolean;
}

export function tokenizeRow(row: unknown, rowNumber: number, tokenizer: HerdTokenizer, options: DataOptions): TrainingExample {
  if (typeof row !== 'object' || row === null || Array.isArray(row)) throw new HerdError('is not a JSON object');
  const segments = segmentsOf(row as Record<string, unknown>, tokenizer);
  const ids: number[] = [];
  const trained: number[] = [];
  for (const segment of segments) {
    const pieceIds = segment.text === '' ? [] : tokenizer.encode(segment.text, segment.addSpecialTokens);
    ids.push(...pieceIds);
    trained.push(...pieceIds.map(() => (segment.trained || options.trainOnPrompt ? 1 : 0)));
  }
  if (ids.length < 2) throw new HerdError(`has ${ids.length} token(s); an example needs at least 2`);
  // The first token is never predicted, so it is never a label.
  trained[0] = 0;
  const truncated = ids.length > options.maxSeqLength;
  const length = Math.min(ids.length, options.maxSeqLength);
  return { row: rowNumber, ids: Int32Array.from(ids.slice(0, length)), trained: Uint8Array.from(trained.slice(0, length)), truncated };
}

function segmentsOf(row: Record<string, unknown>, tokenizer: HerdTokenizer): Segment[] {
  if ('messages' in row) return chatSegments(parseMessages(row.messages, 'messages'), 0, tokenizer);
  if ('prompt' in row || 'completion' in row) return promptCompletionSegments(row.prompt, row.completion, tokenizer);
  if ('text' in row) {
    if (typeof row.text !== 'string' || row.text === '') throw new HerdError('"text" must be a non-empty string');
    return [{ text: row.text, trained: true, addSpecialTokens: true }, eosSegment(tokenizer, row.text, true)];
  }
  const keys = Object.keys(row).join(', ') || 'none';
  throw new HerdError(`has none of "messages", "prompt"/"completion" or "text" (keys: ${keys})`);
}

function promptCompletionSegments(prompt: unknown, completion: unknown, tokenizer: HerdTokenizer): Segment[] {
  if (Array.isArray(prompt) && Array.isArray(completion)) {
    // TRL's conversational prompt-completion form: the completion messages are what is trained.
    const promptMessages = parseMessages(prompt, 'prompt');
    return chatSegments([...promptMessages, ...parseMessages(completion, 'completion')], promptMessages.length, tokenizer);
  }
  if (typeof prompt !== 'string' || typeof completion !== 'string') {
    throw new HerdError('"prompt" and "completion" must both be strings, or both lists of messages');
  }
  if (completion === '') throw new HerdError('"completion" is empty');
  return [
    { text: prompt, trained: false, addSpecialTokens: true },
    { text: completion, trained: true, addSpecialTokens: false },
    eosSegment(tokenizer, completion, true),
  ];
}

/** The EOS that ends an example so the model learns to stop, unless the text already ends with it. */
function eosSegment(tokenizer: HerdTokenizer, text: string, trained: boolean): Segment {
  const eos = tokenizer.settings.eosToken;
  const needed = eos !== null && !text.endsWith(eos);
  return { text: needed ? eos : '', trained, addSpecialTokens: false };
}

function parseMessages(value: unknown, field: string): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) throw new HerdError(`"${field}" must be a non-empty list of messages`);
  return value.map((message, index) => {
    const { role, content } = (message ?? {}) as { role?: unknown; content?: unknown };
    if (typeof role !== 'string' || !ROLES.includes(role)) {
      throw new HerdError(`${field}[${index}] has role ${JSON.stringify(role)}; expected one of ${ROLES.join(', ')}`);
    }
    if (typeof content !== 'string') throw new HerdError(`${field}[${index}] needs a string "content"`);
    return { role: role as ChatMessage['role'], content };
  });
}

/**
 * Renders a conversation and splits it where each trained message begins and ends, by rendering
 * growing prefixes (a prompt ends with the generation prompt, a turn with the template's end of
 * turn). Each piece is then tokenized on its own; for Llama 3.1 every cut falls at a special token,
 * so the ids equal those of the whole text.
 */
function chatSegments(messages: ChatMessage[], firstTrained: number, tokenizer: HerdTokenizer): Segment[] {
  const { chatTemplate, bosToken, eosToken } = tokenizer.settings;
  if (chatTemplate === null) throw new HerdError('is a chat row, but the model has no chat_template in tokenizer_config.json');
  const template = selectChatTemplate(chatTemplate, { source: 'tokenizer_config.json', hasTools: false });
  const render = (count: number, addGenerationPrompt: boolean) =>
    renderChatTemplate(template, { messages: messages.slice(0, count), addGenerationPrompt, bosToken: bosToken ?? '', eosToken: eosToken ?? '' });
  const isTrained = (index: number) => index >= firstTrained && messages[index]!.role === 'assistant';
  if (!messages.some((_, index) => isTrained(index))) throw new HerdError('has no assistant message to train on');

  const segments: Segment[] = [];
  let done = '';
  const cutAt = (text: string, trained: boolean) => {
    if (!text.startsWith(done)) throw new HerdError('the chat template does not render this conversation prefix by prefix, so prompt tokens cannot be masked');
    segments.push({ text: text.slice(done.length), trained, addSpecialTokens: false });
    done = text;
  };
  messages.forEach((_, index) => {
    if (!isTrained(index)) return;
    cutAt(render(index, true), false);
    cutAt(render(index + 1, false), true);
  });
  cutAt(render(messages.length, false), false);
  return segments;
}

/** Counts for `finetune check` and the start of training. */
export interface DataSummary {
  rows: number;
  tokens: number;
  trainedTokens: number;
  truncatedRows: number;
  longest: number;
}

export function summarize(examples: readonly TrainingExample[]): DataSummary {
  let tokens = 0;
  let trainedTokens = 0;
  let longest = 0;
  for (const example of examples) {
    tokens += example.ids.length;
    trainedTokens += example.trained.reduce((sum, flag) => sum + flag, 0);
    longest = Math.max(longest, example.ids.length);
  }
  return { rows: examples.length, tokens, trainedTokens, truncatedRows: examples.filter((e) => e.truncated).length, longest };
}
