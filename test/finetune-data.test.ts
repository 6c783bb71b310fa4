import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HerdTokenizer } from '../src/engine/tokenizer.js';
import { loadExamples, tokenizeRow, type TrainingExample } from '../src/train/data.js';
import { validateLoraSettings } from '../src/formats/peft.js';
import { learningRateAt, warmupStepsFor } from '../src/train/optimizer.js';
import { DataOrder } from '../src/train/trainer.js';
import { DATA, STORIES, TINY_LLAMA } from './fixtures.js';

const llama = HerdTokenizer.fromDir(TINY_LLAMA);
const stories = HerdTokenizer.fromDir(STORIES);
const OPTIONS = { maxSeqLength: 1024, trainOnPrompt: false };
const GSM8K = path.join(DATA, 'sft/gsm8k-chat-train.jsonl');

function parts(example: TrainingExample, tokenizer: HerdTokenizer): { trained: string; masked: string } {
  const pick = (flag: number) => tokenizer.decode([...example.ids].filter((_, i) => example.trained[i] === flag));
  return { trained: pick(1), masked: pick(0) };
}

let tmp: string;
beforeAll(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-ftdata-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function jsonl(name: string, lines: string[]): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

test('a gsm8k chat row renders through the Llama 3.1 template with only the assistant turn trained', async () => {
  const lines = fs.readFileSync(GSM8K, 'utf8').split('\n').slice(0, 20);
  const [first] = await loadExamples(jsonl('gsm8k-head.jsonl', lines), llama, OPTIONS);
  const row = JSON.parse(lines[0]!) as { messages: Array<{ content: string }> };
  const [question, answer] = row.messages.map((m) => m.content);
  // The Llama 3.1 template's output for [user, assistant] (its default date, no tools).
  const expected =
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>' +
    `<|start_header_id|>user<|end_header_id|>\n\n${question}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n${answer}<|eot_id|>`;
  expect(llama.decode([...first!.ids])).toBe(expected);
  // Tokenizing piece by piece gives the ids of the whole text.
  expect([...first!.ids]).toEqual(llama.encode(expected, false));
  const { trained, masked } = parts(first!, llama);
  expect(trained).toBe(`${answer}<|eot_id|>`);
  expect(masked.endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n')).toBe(true);
  expect(first!.ids[0]).toBe(128000);
});

test('prompt/completion rows train on the completion and EOS; text rows on everything after the first token', () => {
  const completion = tokenizeRow({ prompt: 'Once upon a time', completion: ' there was a cat.' }, 1, stories, OPTIONS);
  const bos = stories.encode('', true);
  expect([...completion.ids]).toEqual([...stories.encode('Once upon a time', true), ...stories.encode(' there was a cat.', false), 2]);
  expect(bos).toEqual([1]);
  expect(parts(completion, stories).trained).toBe(' there was a cat.</s>');

  const text = tokenizeRow({ text: 'Tom had a red ball.' }, 1, stories, OPTIONS);
  expect(text.trained[0]).toBe(0);
  expect([...text.trained.subarray(1)].every((flag) => flag === 1)).toBe(true);
  expect(text.ids[text.ids.length - 1]).toBe(2);

  const everything = tokenizeRow({ prompt: 'Once upon a time', completion: ' there' }, 1, stories, { ...OPTIONS, trainOnPrompt: true });
  expect([...everything.trained]).toEqual([0, ...new Array(everything.ids.length - 1).fill(1)]);

  const cut = tokenizeRow({ text: 'Tom had a red ball. He liked it very much.' }, 1, stories, { ...OPTIONS, maxSeqLength: 5 });
  expect(cut.ids).toHaveLength(5);
  expect(cut.truncated).toBe(true);
});

test('conversational prompt/completion rows mask the prompt messages', () => {
  const row = { prompt: [{ role: 'user', content: 'Hi' }], completion: [{ role: 'assistant', content: 'Hello!' }] };
  expect(parts(tokenizeRow(row, 1, llama, OPTIONS), llama).trained).toBe('Hello!<|eot_id|>');
});

test('a bad row stops loading with the file, the row number and what is wrong', async () => {
  const good = JSON.stringify({ text: 'Tom had a ball.' });
  await expect(loadExamples(jsonl('json.jsonl', [good, '{"text": '], ), stories, OPTIONS)).rejects.toThrow(/json\.jsonl: row 2 is not valid JSON/);
  await expect(loadExamples(jsonl('role.jsonl', [good, good, JSON.stringify({ messages: [{ role: 'robot', content: 'x' }] })]), llama, OPTIONS)).rejects.toThrow(
    /role\.jsonl: row 3: messages\[0\] has role "robot"/,
  );
  await expect(loadExamples(jsonl('keys.jsonl', [JSON.stringify({ question: 'x' })]), stories, OPTIONS)).rejects.toThrow(/row 1: has none of .* \(keys: question\)/);
  await expect(loadExamples(jsonl('noassistant.jsonl', [JSON.stringify({ messages: [{ role: 'user', content: 'x' }] })]), llama, OPTIONS)).rejects.toThrow(/row 1: has no assistant message/);
  await expect(loadExamples(jsonl('nochat.jsonl', [JSON.stringify({ messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: 'y' }] })]), stories, OPTIONS)).rejects.toThrow(/no chat_template/);
});

test('rank 0 and unknown target modules are refused with one clear line', () => {
  const base = { r: 8, alpha: 16, dropout: 0, targetModules: ['q_proj'] };
  expect(() => validateLoraSettings({ ...base, r: 0 })).toThrow(/--lora-r\) must be a whole number of at least 1, got 0/);
  expect(() => validateLoraSettings({ ...base, targetModules: ['q_proj', 'qkv_proj'] })).toThrow(/target module qkv_proj does not exist in a Llama model/);
  expect(validateLoraSettings({ ...base, targetModules: ['v_proj', 'q_proj', 'v_proj'] }).targetModules).toEqual(['v_proj', 'q_proj']);
});

test("schedules follow transformers' get_*_schedule_with_warmup", () => {
  // lr_lambda by hand: warmup 2 of 10 updates, peak 1.
  expect([0, 1, 2].map((s) => learningRateAt('cosine', 1, s, 2, 10))).toEqual([0, 0.5, 1]);
  expect(learningRateAt('cosine', 1, 6, 2, 10)).toBeCloseTo(0.5, 12);
  expect(learningRateAt('cosine', 1, 10, 2, 10)).toBeCloseTo(0, 12);
  expect(learningRateAt('linear', 1, 6, 2, 10)).toBeCloseTo(0.5, 12);
  expect(learningRateAt('constant_with_warmup', 1, 1, 2, 10)).toBe(0.5);
  expect(learningRateAt('constant', 1, 0, 2, 10)).toBe(1);
  expect(warmupStepsFor(100, 0, 0.03)).toBe(3);
  expect(warmupStepsFor(100, 5, 0.03)).toBe(5);
});

test('the data order is a fresh seeded shuffle per epoch and depends only on the position', () => {
  const order = new DataOrder(5, 3);
  const epoch0 = [0, 1, 2, 3, 4].map((i) => order.at(i));
  const epoch1 = [5, 6, 7, 8, 9].map((i) => order.at(i));
  expect([...epoch0].sort()).toEqual([0, 1, 2, 3, 4]);
  expect([...epoch1].sort()).toEqual([0, 1, 2, 3, 4]);
  expect(epoch1).not.toEqual(epoch0);
  expect(new DataOrder(5, 3).at(7)).toBe(epoch1[2]);
});
