import fs from 'node:fs';
import path from 'node:path';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { runTask, type RunOptions } from '../src/eval/runner.js';
import { resolveTask } from '../src/eval/task-config.js';
import { renderChatTemplate, type ChatMessage } from '../src/templates/chat-template.js';
import { readJson, DATA, TINY_LLAMA } from './fixtures.js';

const boolq = (i: number): Record<string, any> => JSON.parse(fs.readFileSync(path.join(DATA, 'evals/boolq/validation.jsonl'), 'utf8').split('\n')[i]!);
/** lm-eval's boolq doc_to_text and its yes/no target. */
const question = (doc: Record<string, any>) => `${doc.passage}\nQuestion: ${doc.question}?\nAnswer:`;
const answer = (doc: Record<string, any>) => ['no', 'yes'][doc.label]!;

describe('--apply-chat-template on tiny-llama-3.1 (Llama 3.1 chat template)', () => {
  let tiny: LoadedModel;
  let render: (messages: ChatMessage[]) => string;
  beforeAll(async () => {
    tiny = await loadModel(TINY_LLAMA);
    // The template and special tokens straight from the fixture's tokenizer_config.json.
    const settings = readJson<{ chat_template: string; bos_token: string; eos_token: string }>(path.join(TINY_LLAMA, 'tokenizer_config.json'));
    render = (messages) => renderChatTemplate(settings.chat_template, { messages, addGenerationPrompt: true, bosToken: settings.bos_token, eosToken: settings.eos_token });
  });

  // Seed 1234 draws validation rows 3187 and 1805 as boolq's two examples for document 0 (see eval.test.ts).
  const [first, second, asked] = [boolq(3187), boolq(1805), boolq(0)];
  const options = (fewshotAsMultiturn: boolean): RunOptions => ({
    dataDir: DATA,
    limit: 1,
    fewshotSeed: 1234,
    numFewshot: 2,
    applyChatTemplate: true,
    fewshotAsMultiturn,
    systemInstruction: 'Answer yes or no.',
    maxLength: 4096,
  });

  test('--fewshot-as-multiturn: each example a user turn and an assistant answer, the question last, choices without the delimiter', async () => {
    const run = await runTask(tiny, resolveTask('boolq'), options(true));
    const expected = render([
      { role: 'system', content: 'Answer yes or no.' },
      { role: 'user', content: question(first) },
      { role: 'assistant', content: answer(first) },
      { role: 'user', content: question(second) },
      { role: 'assistant', content: answer(second) },
      { role: 'user', content: question(asked) },
    ]);
    expect(expected.startsWith('<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n')).toBe(true);
    expect(expected.endsWith(`${question(asked)}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`)).toBe(true);
    expect(run.samples[0]!.arguments).toEqual([
      [expected, 'no'],
      [expected, 'yes'],
    ]);
  });

  test('without it: the examples and the question in one user turn', async () => {
    const run = await runTask(tiny, resolveTask('boolq'), options(false));
    const examples = `${question(first)} ${answer(first)}\n\n${question(second)} ${answer(second)}\n\n`;
    const expected = render([
      { role: 'system', content: 'Answer yes or no.' },
      { role: 'user', content: examples + question(asked) },
    ]);
    expect(run.samples[0]!.arguments[0]).toEqual([expected, 'no']);
  });
});
