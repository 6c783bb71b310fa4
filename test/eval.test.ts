import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { generate } from '../src/engine/generate.js';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { GREEDY, logSoftmax } from '../src/engine/sampling.js';
import { LoglikelihoodScorer, rollingWindows } from '../src/eval/loglikelihood.js';
import { bitsPerByte, bootstrapStderr, exactMatch, meanStderr, multipleChoiceScores, normalizeSquadAnswer, squadF1, weightedPerplexity } from '../src/eval/metrics.js';
import { PythonRandom } from '../src/eval/python-random.js';
import { fewshotContext, FewshotSampler, TaskPrompts } from '../src/eval/prompts.js';
import { loadTaskDocs, runTask, type RunOptions } from '../src/eval/runner.js';
import { applyFilter } from '../src/eval/scoring.js';
import { builtinTaskNames, resolveTask, type TaskConfig } from '../src/eval/task-config.js';
import { writeDropData } from './eval-data.js';
import { DATA, STORIES, TINY_LLAMA } from './fixtures.js';

const row = (file: string, index: number): Record<string, any> => JSON.parse(fs.readFileSync(path.join(DATA, 'evals', file), 'utf8').split('\n')[index]!);

describe('CPython random.Random', () => {
  // Reference values printed by CPython 3 (random.Random(seed).random() / .sample / .choices).
  test('random() and sample() draw what CPython draws', () => {
    expect(new PythonRandom(1234).random()).toBe(0.9664535356921388);
    expect(new PythonRandom(42).sample([...Array(100).keys()], 5)).toEqual([81, 14, 3, 94, 35]);
    expect(new PythonRandom(7).sample([...Array(10).keys()], 4)).toEqual([5, 2, 6, 9]);
    const shared = new PythonRandom(1234);
    expect(shared.sample([...Array(1172).keys()], 3)).toEqual([902, 239, 15]);
    expect(shared.sample([...Array(1172).keys()], 3)).toEqual([185, 71, 171]);
    expect(new PythonRandom(1234).sample([...Array(1119).keys()], 25).slice(0, 6)).toEqual([902, 239, 15, 185, 71, 171]);
    expect(new PythonRandom(0).choices([...Array(10).keys()], 5)).toEqual([8, 7, 4, 2, 5]);
  });
});

describe('metrics (hand-worked)', () => {
  test('acc takes the highest loglikelihood, acc_norm divides by characters, ties go to the first choice', () => {
    // lls -4, -6, -6 over choices of 2, 6 and 3 characters: per char -2, -1, -2.
    const scores = multipleChoiceScores([-4, -6, -6], ['ab', 'abcdef', 'abc'], 1, [false, true, false]);
    expect(scores).toMatchObject({ acc: 0, acc_norm: 1, exact_match: 1, pred: 0, pred_norm: 1 });
    // Exact tie: np.argmax returns the first index.
    expect(multipleChoiceScores([-3, -3], ['x', 'y'], 1, [false, false])).toMatchObject({ acc: 0, pred: 0, acc_norm: 0 });
    // Characters are code points (Python len), not UTF-16 units: '😀😀' is 2 long, -4/2 = -2 beats -2.5.
    expect(multipleChoiceScores([-4, -5], ['😀😀', 'abcd'], 0, [false, false]).pred_norm).toBe(1);
    expect(multipleChoiceScores([-2.4, -5], ['😀😀', 'abcd'], 0, [false, false]).pred_norm).toBe(0);
  });

  test('SQuAD normalization and F1', () => {
    expect(normalizeSquadAnswer('The  Eiffel-Tower!')).toBe('eiffeltower');
    expect(normalizeSquadAnswer('an apple a day')).toBe('apple day');
    // prediction "the big red dog" → [big, red, dog]; gold "a red dog" → [red, dog]: p = 2/3, r = 1, F1 = 0.8.
    expect(squadF1('the big red dog', ['a red dog'])).toBeCloseTo(0.8, 12);
    expect(squadF1('cat', ['a red dog', 'The cat.'])).toBe(1);
    expect(squadF1('blue', ['red'])).toBe(0);
  });

  test('exact_match options and the gsm8k filters', () => {
    const gsm8k = { ignore_case: true, ignore_punctuation: false, regexes_to_ignore: [',', '\\$', '(?s).*#### ', '\\.$'] };
    expect(exactMatch('$1,000.', ['Natalia sold 48/2 = 24 clips.\n#### 1000'], gsm8k)).toBe(1);
    expect(exactMatch('Paris', ['paris.'], { ignore_case: true, ignore_punctuation: true })).toBe(1);
    const strict = resolveTask('gsm8k').filter_list;
    expect(applyFilter(strict[0]!, 'So 5 + 4 = 9. The answer is 9.\n')).toBe('9');
    expect(applyFilter(strict[0]!, 'no number here')).toBe('[invalid]');
    expect(applyFilter(strict[1]!, 'I had 12 then -3, so 1,024 total')).toBe('1,024');
  });

  test('perplexity units and stderr', () => {
    // Two docs: ll -10 over 5 words and -2 over 1 word → exp(12/6) = e².
    expect(weightedPerplexity([[-10, 5], [-2, 1]])).toBeCloseTo(Math.E ** 2, 12);
    // -ln(2) · 8 nats over 4 bytes = 2 bits per byte.
    expect(bitsPerByte([[-8 * Math.LN2, 4]])).toBeCloseTo(2, 12);
    // [1, 0, 1, 1]: mean .75, sample variance .25, stderr .5/2.
    expect(meanStderr([1, 0, 1, 1])).toBeCloseTo(0.25, 12);
    // A constant statistic has no spread; a mean's bootstrap stderr approaches the population stddev/√n.
    expect(bootstrapStderr(() => 1, [1, 2, 3], 2000)).toBe(0);
    const values = [0, 1, 0, 1, 1, 0, 1, 0];
    expect(bootstrapStderr((xs) => xs.reduce((a, b) => a + b, 0) / xs.length, values, 4000)).toBeCloseTo(0.5 / Math.sqrt(8), 2);
  });

  test('rolling windows predict every token once, each window at most max_length long', () => {
    const tokens = [10, 11, 12, 13, 14, 15, 16];
    expect(rollingWindows(tokens, 1, 3)).toEqual([
      [[1], [10, 11, 12]],
      [[12], [13, 14, 15]],
      // The last window predicts one token after the max_length - 1 before it.
      [[13, 14, 15], [16]],
    ]);
  });
});

describe('loglikelihood on stories260K', () => {
  let stories: LoadedModel;
  beforeAll(async () => {
    stories = await loadModel(STORIES);
  });

  test('equals the sum of the logprobs generate reports for the same tokens, and is greedy', () => {
    const prompt = stories.tokenizer.encode('Once upon a time, there was a little', true);
    const generated = generate(stories.model, stories.tokenizer, { promptIds: prompt, maxNewTokens: 12, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs: 1 });
    const [score] = new LoglikelihoodScorer(stories.model, 512).scoreContinuations(prompt, [generated.generatedIds]);
    const expected = generated.tokens.reduce((sum, token) => sum + token.logprob, 0);
    expect(score!.logprob).toBeCloseTo(expected, 4);
    expect(score!.isGreedy).toBe(true);
  });

  test('the shared-context cached path equals recomputing every choice from scratch', () => {
    const context = stories.tokenizer.encode('Lily went to the park. She saw a', true);
    const choices = [' big dog.', ' tree', ' red ball and a cat.'].map((text) => stories.tokenizer.encode(text, false));
    const cached = new LoglikelihoodScorer(stories.model, 512).scoreContinuations(context, choices);
    choices.forEach((choice, i) => {
      const cache = stories.model.createCache(context.length + choice.length);
      const logits = stories.model.forward(Int32Array.from([...context, ...choice]), cache, { allPositions: true });
      cache.dispose();
      const vocab = stories.config.vocabSize;
      const full = choice.reduce((sum, token, k) => {
        const position = context.length - 1 + k;
        return sum + logSoftmax(logits.subarray(position * vocab, (position + 1) * vocab))[token]!;
      }, 0);
      expect(cached[i]!.logprob).toBeCloseTo(full, 4);
    });
  });
});

describe('few-shot prompts equal what lm-eval builds (expected strings written from the task YAMLs)', () => {
  const prompt = async (config: TaskConfig, docIndex: number, numFewshot: number) => {
    const docs = await loadTaskDocs(config, DATA, numFewshot);
    const prompts = new TaskPrompts(config, docs.evalDocs[0]!.doc);
    const sampler = new FewshotSampler(prompts, docs.fewshotPool, docs.sameSplit, 1234);
    const options = { numFewshot, applyChatTemplate: false, fewshotAsMultiturn: false };
    let context;
    for (let i = 0; i <= docIndex; i++) context = fewshotContext(prompts, sampler, docs.evalDocs[i]!, options);
    return context!.kind === 'text' ? context!.text : '';
  };

  test('arc_challenge with fewshot_split: test (random.Random(1234).sample of k + 1, the asked document dropped)', async () => {
    const config2 = { ...resolveTask('arc_challenge'), fewshot_split: 'test' };
    const arc = (i: number) => row('arc_challenge/test.jsonl', i);
    const shot = (d: Record<string, any>) => `Question: ${d.question}\nAnswer: ${d.choices.text[d.choices.label.indexOf(d.answerKey)]}\n\n`;
    // Document 1 is asked second, so its draw is the second sample: rows 185, 71.
    expect(await prompt(config2, 1, 2)).toBe(shot(arc(185)) + shot(arc(71)) + `Question: ${arc(1).question}\nAnswer:`);
  });

  test('mmlu: subject description, the first 5 dev questions of the subject', async () => {
    const dev = [0, 1, 2, 3, 4].map((i) => row('mmlu/dev.jsonl', i));
    const question = (d: Record<string, any>) => `${d.question.trim()}\nA. ${d.choices[0]}\nB. ${d.choices[1]}\nC. ${d.choices[2]}\nD. ${d.choices[3]}\nAnswer:`;
    const expected = 'The following are multiple choice questions (with answers) about abstract algebra.\n\n' + dev.map((d) => `${question(d)} ${'ABCD'[d.answer]}\n\n`).join('') + question(row('mmlu/test.jsonl', 0));
    expect(dev.every((d) => d.subject === 'abstract_algebra')).toBe(true);
    expect(await prompt(resolveTask('mmlu'), 0, 5)).toBe(expected);
  });

  test('boolq: passage, question with "?", yes/no targets', async () => {
    const b = (i: number) => row('boolq/validation.jsonl', i);
    const text = (d: Record<string, any>) => `${d.passage}\nQuestion: ${d.question}?\nAnswer:`;
    expect(await prompt(resolveTask('boolq'), 0, 2)).toBe(`${text(b(3187))} ${['no', 'yes'][b(3187).label]}\n\n${text(b(1805))} ${['no', 'yes'][b(1805).label]}\n\n${text(b(0))}`);
  });

  test('hellaswag: process_docs query and endings', async () => {
    const h = (i: number) => row('hellaswag/validation.jsonl', i);
    const clean = (s: string) => s.trim().replaceAll(' [title]', '. ').replace(/\[.*?\]/g, '').replaceAll('  ', ' ');
    const query = (d: Record<string, any>) => clean(`${d.activity_label}: ${d.ctx_a} `);
    expect(query(h(0))).toBe('Roof shingle removal: A man is sitting on a roof. he');
    const shot = (d: Record<string, any>) => `${query(d)} ${clean(d.endings[Number(d.label)])}\n\n`;
    // The repository keeps the first 500 of the split's 10,042 rows; CPython's
    // random.Random(1234).sample(range(500), 3) is [494, 398, 225] (on the whole split it draws
    // rows 7220 and 1914, which test/data-copies.shared.test.ts checks against ../shared).
    expect(await prompt(resolveTask('hellaswag'), 0, 2)).toBe(shot(h(494)) + shot(h(398)) + query(h(0)));
  });

  test('gsm8k: the fixed chain-of-thought examples in order', async () => {
    const question = row('gsm8k/test.jsonl', 0).question;
    const expected =
      'Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?\nA: There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. The answer is 6.\n\n' +
      'Q: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?\nA: There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.\n\n' +
      `Q: ${question}\nA:`;
    expect(await prompt(resolveTask('gsm8k'), 0, 2)).toBe(expected);
    const target = new TaskPrompts(resolveTask('gsm8k'), row('gsm8k/test.jsonl', 0)).docToTarget({ doc: row('gsm8k/test.jsonl', 0), file: 'x', row: 0 });
    expect(target).toBe(row('gsm8k/test.jsonl', 0).answer.split('####').at(-1).trim());
  });
});

describe('errors name the file and row', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-eval-'));
  const task = (extra: string) => {
    const file = path.join(tmp, `t${Math.random().toString(36).slice(2)}.yaml`);
    fs.writeFileSync(file, `task: mine\noutput_type: multiple_choice\ntest_split: test\ndoc_to_choice: ["a", "b"]\ndoc_to_target: 0\nmetric_list:\n  - metric: acc\n${extra}`);
    return file;
  };

  test('a task file can include a built-in task and override it', () => {
    const file = path.join(tmp, 'arc_dev.yaml');
    fs.writeFileSync(file, 'include: arc_challenge\ntask: arc_dev\nnum_fewshot: 0\n');
    expect(resolveTask(file)).toMatchObject({ task: 'arc_dev', num_fewshot: 0, doc_to_text: 'Question: {{question}}\nAnswer:' });
  });

  test('unknown task', () => {
    expect(() => resolveTask('no_such_task')).toThrow(/unknown task "no_such_task" \(built-in: arc_challenge/);
  });

  test('malformed row', async () => {
    fs.mkdirSync(path.join(tmp, 'mine'), { recursive: true });
    fs.writeFileSync(path.join(tmp, 'mine/test.jsonl'), '{"q": "one"}\n{"q": "two"\n');
    await expect(loadTaskDocs(resolveTask(task('doc_to_text: "{{q}}"\n')), tmp, 0)).rejects.toThrow(/mine\/test\.jsonl: line 2: not valid JSON/);
  });

  test('missing field in a template', async () => {
    fs.mkdirSync(path.join(tmp, 'mine'), { recursive: true });
    fs.writeFileSync(path.join(tmp, 'mine/test.jsonl'), '{"q": "one"}\n');
    const config = resolveTask(task('doc_to_text: "Q: {{question}}"\n'));
    const docs = await loadTaskDocs(config, tmp, 0);
    const prompts = new TaskPrompts(config, docs.evalDocs[0]!.doc);
    expect(() => prompts.docToText(docs.evalDocs[0]!)).toThrow(/mine\/test\.jsonl: row 1: task mine: doc_to_text: 'question' is undefined/);
  });
});

describe('every built-in task runs with --limit on tiny-llama-3.1', () => {
  let tiny: LoadedModel;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-eval-data-'));
  beforeAll(async () => {
    tiny = await loadModel(TINY_LLAMA);
    // No SQuAD copy in the fixture data; one document in its Hub layout, written here.
    fs.mkdirSync(path.join(tmp, 'squad'));
    const doc = { id: 'x', title: 'Paris', context: 'Paris is the capital of France.', question: 'What is the capital of France?', answers: { text: ['Paris'], answer_start: [0] } };
    fs.writeFileSync(path.join(tmp, 'squad/validation.jsonl'), `${JSON.stringify(doc)}\n${JSON.stringify({ ...doc, id: 'y' })}\n`);
    writeDropData(tmp);
  });

  const options = (dataDir: string): RunOptions => ({ dataDir, limit: 1, fewshotSeed: 1234, applyChatTemplate: false, fewshotAsMultiturn: false, maxLength: 4096, maxGenToks: 3 });

  test.each(builtinTaskNames().filter((name) => name !== 'wikitext'))('%s', async (name) => {
    const config = resolveTask(name);
    // Few-shot pools drawn from the evaluated split are cut to what it holds (drop's has two documents).
    const shots = name === 'arc_challenge' || name === 'hellaswag' ? 3 : name === 'drop' ? 1 : undefined;
    const run = await runTask(tiny, config, { ...options(name === 'squad' || name === 'drop' ? tmp : DATA), numFewshot: shots });
    expect(run.samples).toHaveLength(1);
    for (const value of Object.values(run.samples[0]!.metrics)) expect(Array.isArray(value) ? value.every(Number.isFinite) : Number.isFinite(value)).toBe(true);
  });
});

describe('herd eval command', () => {
  const run = promisify(execFile);
  const bin = path.resolve('bin/run.js');

  test('tinystories perplexity with --output --log-samples, then --rescore gives the same numbers', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-eval-out-'));
    const first = await run(bin, ['eval', 'tinystories', '--data', DATA, '--limit', '3', '--bootstrap-iters', '1000', '--output', out, '--log-samples', '--json']);
    const results = JSON.parse(first.stdout);
    expect(results.results.tinystories['word_perplexity,none']).toBeGreaterThan(1);
    expect(results['n-samples'].tinystories.effective).toBe(3);
    expect(fs.readFileSync(path.join(out, 'samples_tinystories.jsonl'), 'utf8').trim().split('\n')).toHaveLength(3);
    const again = JSON.parse((await run(bin, ['eval', '--rescore', out, '--bootstrap-iters', '1000', '--json'])).stdout);
    expect(again.results).toEqual(results.results);
  });
});
