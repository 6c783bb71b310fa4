import fs from 'node:fs';
import path from 'node:path';
import { FewshotSampler, fewshotContext, TaskPrompts } from '../src/eval/prompts.js';
import { loadTaskDocs } from '../src/eval/runner.js';
import { resolveTask } from '../src/eval/task-config.js';
import { REPO_FIXTURES, requireShared } from './fixtures.js';

/**
 * Opt-in tier (`npm run test:shared`): reads the team's ../shared folder (or HERD_SHARED) and
 * fails without it. It checks that the repository's fixture copies are what test/fixtures/README.md
 * says they are, and runs what needs a full data set the repository keeps only the head of.
 */
const SHARED = requireShared();

/** Data files kept as their first rows (test/fixtures/data/README.md), with the row count. */
const TRIMMED: Record<string, number> = {
  'evals/hellaswag/validation.jsonl': 500,
  'evals/mmlu/test.jsonl': 100,
  'evals/gsm8k/test.jsonl': 50,
  'evals/commonsense_qa/validation-4choice.jsonl': 100,
  'evals/winogrande/validation.jsonl': 100,
  'evals/triviaqa/validation.jsonl': 100,
  'evals/lambada_openai/test.jsonl': 100,
  'text/wikitext-2-raw-test.txt': 40,
  'sft/gsm8k-chat-train.jsonl': 2349,
};

/** Files written for the copy (provenance, licenses), with no counterpart in ../shared. */
const WRITTEN_HERE = new Set(['README.md', 'data/README.md', 'llama-3.1-tokenizer/LICENSE', 'llama-3.1-tokenizer/NOTICE',
  ...['llama-3.1-tokenizer', 'tiny-llama-3.1', 'llama-3.1-chat', 'prompt-guard-tiny', 'gguf-llamacpp'].map((name) => `${name}/README.md`)]);

/** Folders made in this repository rather than copied (their README says how): llama.cpp's own quantizer outputs. */
const MADE_HERE = ['gguf-lowbit/'];

function files(dir: string, prefix = ''): string[] {
  return fs.readdirSync(dir).flatMap((name) => {
    const relative = prefix ? `${prefix}/${name}` : name;
    return fs.statSync(path.join(dir, name)).isDirectory() ? files(path.join(dir, name), relative) : [relative];
  });
}

/** Where a file of the copy came from in ../shared. */
function original(relative: string): string {
  if (relative === 'data/UPSTREAM-README.md') return path.join(SHARED, 'data/README.md');
  return relative.startsWith('data/') ? path.join(SHARED, relative) : path.join(SHARED, 'fixtures', relative);
}

test('every fixture file equals its ../shared original, or is its first rows where README says so', () => {
  const copied = files(REPO_FIXTURES).filter((file) => !WRITTEN_HERE.has(file) && !MADE_HERE.some((folder) => file.startsWith(folder)));
  expect(copied.length).toBeGreaterThan(50);
  const problems: string[] = [];
  for (const file of copied) {
    const source = original(file);
    if (!fs.existsSync(source)) {
      problems.push(`${file}: no ${source}`);
      continue;
    }
    const copy = fs.readFileSync(path.join(REPO_FIXTURES, file));
    const full = fs.readFileSync(source);
    const rows = TRIMMED[file.slice('data/'.length)];
    if (rows === undefined) {
      if (!copy.equals(full)) problems.push(`${file}: differs from ${source}`);
    } else {
      const expected = full.subarray(0, full.indexOf('\n', nthLineStart(full, rows - 1)) + 1);
      if (!copy.equals(expected)) problems.push(`${file}: is not the first ${rows} rows of ${source}`);
    }
  }
  expect(problems).toEqual([]);
});

function nthLineStart(buffer: Buffer, n: number): number {
  let at = 0;
  for (let i = 0; i < n; i++) at = buffer.indexOf('\n', at) + 1;
  return at;
}

test('hellaswag few-shot draws on the whole validation split are the rows lm-eval draws (CPython: 7220, 1914)', async () => {
  const data = path.join(SHARED, 'data');
  const config = resolveTask('hellaswag');
  const docs = await loadTaskDocs(config, data, 2);
  expect(docs.evalDocs).toHaveLength(10042);
  const prompts = new TaskPrompts(config, docs.evalDocs[0]!.doc);
  const sampler = new FewshotSampler(prompts, docs.fewshotPool, docs.sameSplit, 1234);
  const context = fewshotContext(prompts, sampler, docs.evalDocs[0]!, { numFewshot: 2, applyChatTemplate: false, fewshotAsMultiturn: false });
  const row = (i: number): Record<string, any> => JSON.parse(fs.readFileSync(path.join(data, 'evals/hellaswag/validation.jsonl'), 'utf8').split('\n')[i]!);
  const clean = (s: string) => s.trim().replaceAll(' [title]', '. ').replace(/\[.*?\]/g, '').replaceAll('  ', ' ');
  const query = (d: Record<string, any>) => clean(`${d.activity_label}: ${d.ctx_a} `);
  const shot = (d: Record<string, any>) => `${query(d)} ${clean(d.endings[Number(d.label)])}\n\n`;
  expect(context.kind === 'text' ? context.text : '').toBe(shot(row(7220)) + shot(row(1914)) + query(row(0)));
});
