import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { HerdTokenizer } from '../src/engine/tokenizer.js';
import { writeParquet } from '../src/synth/parquet-output.js';
import type { TrainingExample } from '../src/train/data.js';
import { loadPreferencePairs, tokenizePreferenceRow } from '../src/train/preference-data.js';
import { STORIES, TINY_LLAMA } from './fixtures.js';

// Preference rows in TRL's layouts, tokenized with the Llama 3.1 tokenizer and chat template
// (tiny-llama-3.1) and with stories260K's plain tokenizer.
const llama = HerdTokenizer.fromDir(TINY_LLAMA);
const stories = HerdTokenizer.fromDir(STORIES);
const OPTIONS = { maxSeqLength: 1024 };

/** The Llama 3.1 template's header with its default system message (no tools), then the turns. */
const SYSTEM = '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>';
const turn = (role: string, content: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n${content}<|eot_id|>`;
const ASSISTANT_HEADER = '<|start_header_id|>assistant<|end_header_id|>\n\n';

function trainedText(example: TrainingExample, tokenizer: HerdTokenizer): string {
  return tokenizer.decode([...example.ids].filter((_, i) => example.trained[i] === 1));
}

const user = (content: string) => ({ role: 'user', content });
const assistant = (content: string) => ({ role: 'assistant', content });

test('explicit conversational prompt: each side is the prompt then its answer through the chat template, trained on the answer only', () => {
  const pair = tokenizePreferenceRow({ prompt: [user('What color is the sky?')], chosen: [assistant('It is blue.')], rejected: [assistant('It is green.')] }, 1, llama, OPTIONS);
  const prompt = SYSTEM + turn('user', 'What color is the sky?');
  expect(llama.decode([...pair.chosen.ids])).toBe(prompt + turn('assistant', 'It is blue.'));
  expect([...pair.chosen.ids]).toEqual(llama.encode(prompt + turn('assistant', 'It is blue.'), false));
  expect([...pair.rejected.ids]).toEqual(llama.encode(prompt + turn('assistant', 'It is green.'), false));
  expect(trainedText(pair.chosen, llama)).toBe('It is blue.<|eot_id|>');
  expect(trainedText(pair.rejected, llama)).toBe('It is green.<|eot_id|>');
  // Every token up to the assistant header carries no loss.
  const promptLength = llama.encode(prompt + ASSISTANT_HEADER, false).length;
  expect([...pair.chosen.trained.subarray(0, promptLength)].every((flag) => flag === 0)).toBe(true);
  expect(pair.row).toBe(1);
});

test('implicit conversational prompt: the shared messages are the prompt, so earlier assistant turns carry no loss', () => {
  const history = [{ role: 'system', content: 'Be brief.' }, user('Hi'), assistant('Hello!'), user('Sky color?')];
  const implicit = tokenizePreferenceRow({ chosen: [...history, assistant('Blue.')], rejected: [...history, assistant('Green.')] }, 3, llama, OPTIONS);
  const explicit = tokenizePreferenceRow({ prompt: history, chosen: [assistant('Blue.')], rejected: [assistant('Green.')] }, 3, llama, OPTIONS);
  expect(implicit).toEqual(explicit);
  expect(trainedText(implicit.chosen, llama)).toBe('Blue.<|eot_id|>');
  expect(trainedText(implicit.rejected, llama)).toBe('Green.<|eot_id|>');
});

test("implicit text prompt: TRL's extract_prompt split (shared characters, the space before the split going to the completions)", () => {
  const pair = tokenizePreferenceRow({ chosen: 'The cat sat on the mat.', rejected: 'The cat sat on the dog.' }, 1, stories, OPTIONS);
  // Shared: "The cat sat on the " → prompt "The cat sat on the", completions " mat." and " dog.".
  // Text rows render as SFT's prompt/completion rows: BOS + prompt + completion + EOS, trained on completion and EOS.
  expect([...pair.chosen.ids]).toEqual([...stories.encode('The cat sat on the', true), ...stories.encode(' mat.', false), 2]);
  expect([...pair.rejected.ids]).toEqual([...stories.encode('The cat sat on the', true), ...stories.encode(' dog.', false), 2]);
  expect(trainedText(pair.chosen, stories)).toBe(' mat.</s>');
  const explicit = tokenizePreferenceRow({ prompt: 'The cat sat on the', chosen: ' mat.', rejected: ' dog.' }, 1, stories, OPTIONS);
  expect(pair).toEqual(explicit);
});

let tmp: string;
beforeAll(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-prefdata-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function jsonl(name: string, rows: unknown[]): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, rows.map((row) => JSON.stringify(row)).join('\n') + '\n');
  return file;
}

test('a bad preference row stops loading with the file, the row number and what is wrong', async () => {
  const good = { prompt: 'Once upon a time', chosen: ' there was a cat.', rejected: ' the end.' };
  const failure = (name: string, bad: unknown, tokenizer = stories, maxSeqLength = 1024) => loadPreferencePairs(jsonl(name, [good, bad]), tokenizer, { maxSeqLength });
  await expect(failure('no-rejected.jsonl', { prompt: 'x', chosen: ' y' })).rejects.toThrow(/no-rejected\.jsonl: row 2: has no "rejected" \(keys: prompt, chosen\)/);
  await expect(failure('no-chosen.jsonl', { prompt: 'x', completion: ' y' })).rejects.toThrow(/no-chosen\.jsonl: row 2: has no "chosen"/);
  await expect(failure('empty.jsonl', { prompt: 'x', chosen: '', rejected: ' y' })).rejects.toThrow(/empty\.jsonl: row 2: "chosen" is empty/);
  await expect(failure('same.jsonl', { prompt: 'x', chosen: ' y', rejected: ' y' })).rejects.toThrow(/same\.jsonl: row 2: "chosen" and "rejected" are identical/);
  await expect(failure('mixed.jsonl', { prompt: [user('x')], chosen: ' y', rejected: ' z' })).rejects.toThrow(/row 2: "prompt", "chosen" and "rejected" must all be strings, or all lists of messages/);
  await expect(failure('apart.jsonl', { chosen: [user('a'), assistant('b')], rejected: [user('c'), assistant('d')] }, llama)).rejects.toThrow(
    /apart\.jsonl: row 2: "chosen" and "rejected" differ at message 0 \("user" vs "user"\), before an assistant turn: they answer different prompts/,
  );
  await expect(failure('prefix.jsonl', { chosen: 'Once upon a time', rejected: 'Once upon a time there was a cat.' })).rejects.toThrow(
    /row 2: "chosen" is empty once the prompt it shares with "rejected" is taken off \(it is the beginning of "rejected"\)/,
  );
  await expect(failure('noshared.jsonl', { chosen: 'abc', rejected: 'xyz' })).rejects.toThrow(/row 2: "chosen" and "rejected" share no beginning/);
  await expect(failure('noassistant.jsonl', { prompt: [user('a')], chosen: [user('b')], rejected: [assistant('c')] }, llama)).rejects.toThrow(/row 2: chosen: has no assistant message to train on/);
  await expect(failure('long.jsonl', { prompt: 'Once upon a time there was a big dog', chosen: ' yes', rejected: ' no' }, stories, 8)).rejects.toThrow(
    /row 2: "chosen" has no completion token within --max-seq-length 8/,
  );
  await expect(failure('array.jsonl', ['chosen', 'rejected'])).rejects.toThrow(/row 2: is not a JSON object/);
});

/** The examples a file yields, keyed by nothing but what training sees: row, ids and masks. */
async function examplesOf(file: string, tokenizer: HerdTokenizer) {
  return (await loadPreferencePairs(file, tokenizer, OPTIONS)).map(({ row, chosen, rejected }) => ({ row, chosen: [[...chosen.ids], [...chosen.trained]], rejected: [[...rejected.ids], [...rejected.trained]] }));
}

test("parquet with message lists as list<struct<role, content>> (herd synth's preferences.parquet) yields the jsonl rows' exact examples", async () => {
  const explicit = [
    { prompt: [user('What color is the sky?')], chosen: [assistant('It is blue.')], rejected: [assistant('It is green.')] },
    { prompt: [{ role: 'system', content: 'Be brief.' }, user('Hi')], chosen: [assistant('Hello!')], rejected: [assistant('Good day to you, friend.')] },
  ];
  const explicitParquet = path.join(tmp, 'explicit.parquet');
  writeParquet(explicitParquet, ['prompt', 'chosen', 'rejected'], explicit);
  const fromJsonl = await examplesOf(jsonl('explicit.jsonl', explicit), llama);
  expect(fromJsonl).toHaveLength(2);
  expect(await examplesOf(explicitParquet, llama)).toEqual(fromJsonl);

  // Implicit prompts in a parquet file: chosen/rejected columns only.
  const implicit = explicit.map(({ prompt, chosen, rejected }) => ({ chosen: [...prompt, ...chosen], rejected: [...prompt, ...rejected] }));
  const implicitParquet = path.join(tmp, 'implicit.parquet');
  writeParquet(implicitParquet, ['chosen', 'rejected'], implicit);
  expect(await examplesOf(implicitParquet, llama)).toEqual(fromJsonl);
});

test('parquet with string columns (and an int64 column training ignores) yields the jsonl rows\' exact examples; a null prompt is an implicit-prompt row', async () => {
  const rows = [
    { prompt: 'Once upon a time', chosen: ' there was a cat.', rejected: ' the end.', score: 7n },
    { prompt: null, chosen: 'The cat sat on the mat.', rejected: 'The cat sat on the dog.', score: 9n },
  ];
  const file = path.join(tmp, 'strings.parquet');
  const columnData = [
    ...(['prompt', 'chosen', 'rejected'] as const).map((name) => ({ name, type: 'STRING' as const, data: rows.map((row) => row[name]) })),
    { name: 'score', type: 'INT64' as const, data: rows.map((row) => row.score) },
  ];
  fs.writeFileSync(file, new Uint8Array(parquetWriteBuffer({ columnData })));
  // The same rows as jsonl, where an implicit-prompt row simply has no "prompt".
  const asJsonl = [
    { prompt: 'Once upon a time', chosen: ' there was a cat.', rejected: ' the end.' },
    { chosen: 'The cat sat on the mat.', rejected: 'The cat sat on the dog.' },
  ];
  const fromJsonl = await examplesOf(jsonl('strings.jsonl', asJsonl), stories);
  expect(fromJsonl).toHaveLength(2);
  expect(await examplesOf(file, stories)).toEqual(fromJsonl);
});

test('a parquet preference file with a row lacking "rejected", or with no rows, is one error naming the file (and row)', async () => {
  const file = path.join(tmp, 'no-rejected.parquet');
  writeParquet(file, ['prompt', 'chosen', 'rejected'], [
    { prompt: [user('Hi')], chosen: [assistant('Hello!')], rejected: [assistant('Hey.')] },
    { prompt: [user('Hi')], chosen: [assistant('Hello!')], rejected: null },
  ]);
  await expect(loadPreferencePairs(file, llama, OPTIONS)).rejects.toThrow(`${file}: row 2: has no "rejected" (keys: prompt, chosen); a preference row needs "chosen" and "rejected"`);
  // herd synth writes an empty preferences.parquet (schema only) when no pair was kept.
  const empty = path.join(tmp, 'empty.parquet');
  writeParquet(empty, ['prompt', 'chosen', 'rejected'], []);
  await expect(loadPreferencePairs(empty, llama, OPTIONS)).rejects.toThrow(`${empty}: has no rows`);
});
