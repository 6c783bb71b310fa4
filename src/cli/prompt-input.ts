/**
 * The one rule for prompt text given to herd (docs/generate.md#prompt): the text is used exactly,
 * except one final "\n" on stdin, which is what `echo` and most editors add. Nothing else is
 * trimmed: a prompt that ends in "\n\n" (a chat template rendered up to the assistant header)
 * keeps both newlines.
 */
import fs from 'node:fs';
import { HerdError, HerdUsageError } from '../errors.js';

export interface PromptSources {
  /** The prompt argument, used exactly. */
  argument?: string;
  /** --prompt-file: the file's bytes, exactly (UTF-8). */
  promptFile?: string;
}

/** The prompt text from the argument, --prompt-file, or stdin (in that order of preference; two at once is a usage error). */
export async function readPromptText(sources: PromptSources): Promise<string> {
  if (sources.argument !== undefined && sources.promptFile !== undefined) {
    throw new HerdUsageError('give the prompt as an argument or with --prompt-file, not both');
  }
  if (sources.argument !== undefined) return sources.argument;
  if (sources.promptFile !== undefined) return readTextFile(sources.promptFile);
  if (process.stdin.isTTY) throw new HerdUsageError('give a prompt as an argument, with --prompt-file, or on stdin');
  return withoutEchoNewline(await readAllStdin());
}

/** Drops the one "\n" that `echo` adds; a CRLF's "\r" and any other whitespace stay. */
export function withoutEchoNewline(text: string): string {
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

/**
 * Refuses an empty prompt unless it is raw: through a chat template an empty user message is
 * almost always a scripting mistake, while a raw empty prompt means "start from BOS".
 */
export function checkPromptText(text: string, raw: boolean): void {
  if (text === '' && !raw) throw new HerdError('the prompt is empty (pass --raw to generate from the BOS token alone)');
}

/** stdin to its end, as UTF-8. */
export async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** A text file's whole content; "-" is stdin (whole, nothing dropped). */
export async function readTextFile(file: string): Promise<string> {
  if (file === '-') return readAllStdin();
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new HerdError(`${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/**
 * --prompt-ids: a JSON array of integer token ids, fed exactly as given (no tokenizer, no BOS).
 * The vocabulary check waits for the model (checkPromptIds); this only checks the shape.
 */
export async function readPromptIds(file: string): Promise<number[]> {
  const text = await readTextFile(file);
  const where = file === '-' ? '--prompt-ids (stdin)' : `--prompt-ids ${file}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new HerdError(`${where}: not valid JSON (${(error as Error).message.split('\n')[0]})`);
  }
  if (!Array.isArray(parsed)) throw new HerdError(`${where}: expected a JSON array of token ids, like [128000, 791]`);
  const bad = parsed.findIndex((id) => !Number.isSafeInteger(id));
  if (bad >= 0) throw new HerdError(`${where}: item ${bad} is ${JSON.stringify(parsed[bad])}, not an integer token id`);
  return parsed as number[];
}

/** Every id must name a row of the model's embedding (0 ≤ id < vocab_size), and there must be one. */
export function checkPromptIds(ids: readonly number[], vocabSize: number): void {
  if (ids.length === 0) throw new HerdError('--prompt-ids: the array is empty: there is nothing to feed the model');
  const bad = ids.findIndex((id) => id < 0 || id >= vocabSize);
  if (bad >= 0) throw new HerdError(`--prompt-ids: item ${bad} is ${ids[bad]}, outside the model's vocabulary (ids 0 to ${vocabSize - 1})`);
}
