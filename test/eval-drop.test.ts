import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { linearSumAssignment } from '../src/eval/assignment.js';
import { dropAnswers, dropMetrics, dropProcessResults, normalizeDropAnswer, pythonFloatString } from '../src/eval/drop.js';
import { runTask } from '../src/eval/runner.js';
import { scoreOutput } from '../src/eval/scoring.js';
import { resolveTask } from '../src/eval/task-config.js';
import { DROP_DOCS, writeDropData } from './eval-data.js';
import { STORIES } from './fixtures.js';

describe('DROP answer normalization (drop/utils.py _normalize)', () => {
  test('numbers become Python floats, with or without thousands commas', () => {
    // "1,000" is not a float, so its comma goes as punctuation; "1000" then becomes str(float) = "1000.0".
    expect(normalizeDropAnswer('1,000')).toBe('1000.0');
    expect(normalizeDropAnswer('1000')).toBe('1000.0');
    expect(normalizeDropAnswer('3.50')).toBe('3.5');
    expect(normalizeDropAnswer('$5')).toBe('5.0');
    // Tokens split on hyphens too, so a minus sign is lost.
    expect(normalizeDropAnswer('-7')).toBe('7.0');
  });

  test('lower case, articles and punctuation out, hyphens split words', () => {
    expect(normalizeDropAnswer('The Eiffel-Tower!')).toBe('eiffel tower');
    expect(normalizeDropAnswer('an apple a day')).toBe('apple day');
    expect(normalizeDropAnswer('theatre')).toBe('theatre');
  });

  test("str(float(x)) as CPython prints it", () => {
    expect(pythonFloatString('1000')).toBe('1000.0');
    expect(pythonFloatString('1e16')).toBe('1e+16');
    expect(pythonFloatString('0.00001')).toBe('1e-05');
    expect(pythonFloatString('0.0001')).toBe('0.0001');
    expect(pythonFloatString('1_000.5')).toBe('1000.5');
    expect(pythonFloatString('5.')).toBe('5.0');
    expect(pythonFloatString('123456789012345678')).toBe('1.2345678901234568e+17');
  });
});

describe('DROP exact match and F1 (hand-worked)', () => {
  test('single spans: numbers, articles, the number gate', () => {
    expect(dropMetrics(['1,000'], ['1000'])).toEqual({ em: 1, f1: 1 });
    expect(dropMetrics(['the Bears'], ['Bears'])).toEqual({ em: 1, f1: 1 });
    // Bags {13.0, long, yards} and {13.0, yards}: p = 2/3, r = 1, F1 = 0.8.
    expect(dropMetrics(['13 long yards'], ['13 yards'])).toEqual({ em: 0, f1: 0.8 });
    // The gold number 13 is not predicted: no credit for "yards".
    expect(dropMetrics(['12 yards'], ['13 yards'])).toEqual({ em: 0, f1: 0 });
  });

  test('multi-span answers: one score per aligned span, averaged over the longer list, rounded to 2 places', () => {
    // One predicted bag {chaz, schilens, and, jamarcus, russell} against two gold bags of 2 words:
    // each pair has p = 2/5, r = 1, F1 = 4/7; only one pair aligns, the other slot scores 0 → (4/7)/2 = 0.2857 → 0.29.
    expect(dropMetrics(['Chaz Schilens and JaMarcus Russell'], ['Chaz Schilens', 'JaMarcus Russell'])).toEqual({ em: 0, f1: 0.29 });
    expect(dropMetrics(['Chaz Schilens', 'JaMarcus Russell'], ['Chaz Schilens', 'JaMarcus Russell'])).toEqual({ em: 1, f1: 1 });
    // A third, wrong predicted span: slots score 1, 1, 0 → 2/3 → 0.67, and the sets differ.
    expect(dropMetrics(['Chaz Schilens', 'JaMarcus Russell', 'Bears'], ['Chaz Schilens', 'JaMarcus Russell'])).toEqual({ em: 0, f1: 0.67 });
  });

  test('process_results: the best over gold answers, skipping a gold answer whose first span is blank', () => {
    // Against ["1000"]: bags {1000.0, yards} and {1000.0}: p = 1/2, r = 1, F1 = 2/3 → 0.67. Against
    // ["one thousand"]: no shared word. The best is 0.67, and neither is an exact match.
    expect(dropProcessResults('1,000 yards', [['1000'], ['one thousand']])).toEqual({ em: 0, f1: 0.67 });
    expect(dropProcessResults(' x', [[''], ['x']])).toEqual({ em: 1, f1: 1 });
    // Scored directly, an empty answer matches an empty gold; process_results skips that gold.
    expect(dropMetrics([''], [''])).toEqual({ em: 1, f1: 1 });
    expect(dropProcessResults('', [['']])).toEqual({ em: 0, f1: 0 });
  });

  test('gold answers from both dataset layouts, deduplicated in order', () => {
    const noDate = { day: '', month: '', year: '' };
    const eleuther = {
      answer: { number: '', date: noDate, spans: ['Bears'] },
      validated_answers: { number: ['', '3', ''], date: [noDate, noDate, { day: '4', month: 'July', year: '1776' }], spans: [['Bears'], [], []] },
    };
    expect(dropAnswers(eleuther)).toEqual([['Bears'], ['3'], ['4 July 1776']]);
    expect(dropAnswers(DROP_DOCS[1]!)).toEqual([['Chaz Schilens', 'JaMarcus Russell']]);
    expect(() => dropAnswers({ passage: 'p' })).toThrow(/answers_spans/);
  });
});

describe('linear_sum_assignment (scipy rectangular_lsap)', () => {
  const total = (cost: number[][], rows: number[], columns: number[]) => rows.reduce((sum, row, k) => sum + cost[row]![columns[k]!]!, 0);
  /** The least total over every injective row → column map, by enumeration. */
  const bruteForce = (matrix: number[][]): number => {
    // Every row of the narrower side is assigned: enumerate over the transpose of a tall matrix.
    const cost = matrix.length <= matrix[0]!.length ? matrix : matrix[0]!.map((_, j) => matrix.map((row) => row[j]!));
    const best = (row: number, used: Set<number>): number => {
      if (row === cost.length) return 0;
      let least = Infinity;
      for (let j = 0; j < cost[0]!.length; j++) if (!used.has(j)) least = Math.min(least, cost[row]![j]! + best(row + 1, new Set([...used, j])));
      return least;
    };
    return best(0, new Set());
  };

  test("scipy's documented example, a constant matrix (identity), and tall matrices", () => {
    expect(linearSumAssignment([[4, 1, 3], [2, 0, 5], [3, 2, 2]])).toEqual({ rows: [0, 1, 2], columns: [1, 0, 2] });
    expect(linearSumAssignment([[1, 1], [1, 1]])).toEqual({ rows: [0, 1], columns: [0, 1] });
    expect(linearSumAssignment([[1], [0], [2]])).toEqual({ rows: [1], columns: [0] });
    expect(linearSumAssignment([[5, 1], [0, 9], [3, 3]])).toEqual({ rows: [0, 1], columns: [1, 0] });
  });

  test('the total cost is the least possible', () => {
    const matrices = [
      [[0.2, 0.9, 0.4, 0.1], [0.5, 0.3, 0.8, 0.6], [0.7, 0.1, 0.2, 0.9]],
      [[-1, -0.5], [-0.25, -1], [-0.75, -0.8], [0, -0.1]],
      [[3, 7, 5, 1, 2], [6, 2, 8, 4, 9], [1, 5, 3, 7, 2], [4, 4, 4, 4, 4], [9, 1, 6, 2, 3]],
    ];
    for (const cost of matrices) {
      const { rows, columns } = linearSumAssignment(cost);
      expect(rows).toHaveLength(Math.min(cost.length, cost[0]!.length));
      expect(new Set(columns).size).toBe(columns.length);
      expect(total(cost, rows, columns)).toBeCloseTo(bruteForce(cost), 12);
    }
  });
});

describe('the drop task (lm-eval drop/default.yaml, 3 shots)', () => {
  let stories: LoadedModel;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-eval-drop-'));
  beforeAll(async () => {
    stories = await loadModel(STORIES);
    writeDropData(tmp);
  });

  test('prompts are "passage question" + target with no delimiter; em and f1 come from process_results', async () => {
    const config = resolveTask('drop');
    expect(config.num_fewshot).toBe(3);
    const run = await runTask(stories, config, { dataDir: tmp, fewshotSeed: 1234, numFewshot: 1, applyChatTemplate: false, fewshotAsMultiturn: false, maxLength: 512, maxGenToks: 4 });
    // The only other document of the split is each one's example.
    const [first, second] = DROP_DOCS;
    expect(run.samples[0]!.arguments[0]).toBe(`${second!.passage} ${second!.question}Chaz Schilens,JaMarcus Russell\n\n${first!.passage} ${first!.question}`);
    expect(run.samples[1]!.arguments[0]).toBe(`${first!.passage} ${first!.question}1000\n\n${second!.passage} ${second!.question}`);
    for (const sample of run.samples) {
      const output = sample.output as { kind: 'generate_until'; response: string };
      const expected = dropProcessResults(output.response, dropAnswers(DROP_DOCS[sample.doc_id]!));
      expect(sample.metrics).toEqual({ 'em,none': expected.em, 'f1,none': expected.f1 });
      // --rescore reads the same document back from the samples file.
      expect(scoreOutput(config, sample.output, JSON.parse(JSON.stringify(sample.doc))).scores).toEqual(sample.metrics);
    }
  });

  test('a row without answers names the file', async () => {
    const bad = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-eval-drop-bad-'));
    fs.mkdirSync(path.join(bad, 'drop'));
    fs.writeFileSync(path.join(bad, 'drop/validation.jsonl'), `${JSON.stringify(DROP_DOCS[0])}\n${JSON.stringify({ passage: 'p', question: 'q' })}\n`);
    await expect(runTask(stories, resolveTask('drop'), { dataDir: bad, fewshotSeed: 1234, numFewshot: 0, applyChatTemplate: false, fewshotAsMultiturn: false, maxLength: 512 })).rejects.toThrow(
      /drop\/validation\.jsonl: task drop: process_docs: document 2: needs "answer"/,
    );
  });
});
