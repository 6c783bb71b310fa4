import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HerdInterrupted } from '../src/errors.js';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { EvalProgress } from '../src/eval/progress.js';
import { runTask, type RunOptions } from '../src/eval/runner.js';
import { resolveTask } from '../src/eval/task-config.js';
import { DATA, STORIES } from './fixtures.js';
import { BIN, herd } from './herd-cli.js';

// Ctrl-C in herd eval --output DIR: the documents that finished are kept, and the same run resumes
// after them with what an uninterrupted run computes (few-shot draws included).
describe('an interrupted eval resumes where it stopped', () => {
  let stories: LoadedModel;
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-eval-resume-'));
  beforeAll(async () => {
    stories = await loadModel(STORIES);
  });
  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  // arc_challenge with few-shot examples drawn from the evaluated split by a seeded sampler: the draw for
  // document k depends on every draw before it.
  const config = { ...resolveTask('arc_challenge'), fewshot_split: 'test' };
  const options: RunOptions = { dataDir: DATA, limit: 5, numFewshot: 2, fewshotSeed: 1234, applyChatTemplate: false, fewshotAsMultiturn: false, maxLength: 512 };

  test('documents before the interruption are kept, the rest run once, and the records equal an uninterrupted run', async () => {
    const whole = await runTask(stories, config, options);
    const progress = new EvalProgress(out, { model: 'stories', options });
    let asked = 0;
    await expect(runTask(stories, config, { ...options, progress, shouldStop: () => ++asked === 2 })).rejects.toThrow(
      new HerdInterrupted(`interrupted after 2 of 5 documents of arc_challenge: they are kept in ${path.join(out, '.herd-eval-progress')} and the same command resumes from them`),
    );
    expect(progress.kept(config)).toHaveLength(2);

    let run = 0;
    const resumed = await runTask(stories, config, { ...options, progress, onDocument: () => run++ });
    expect(run).toBe(5);
    expect(progress.kept(config)).toHaveLength(5);
    expect(resumed.samples.map((sample) => sample.arguments)).toEqual(whole.samples.map((sample) => sample.arguments));
    resumed.samples.forEach((sample, i) => {
      expect(sample.doc_id).toBe(i);
      const expected = whole.samples[i]!.output as { loglikelihoods: number[] };
      (sample.output as { loglikelihoods: number[] }).loglikelihoods.forEach((value, k) => expect(value).toBeCloseTo(expected.loglikelihoods[k]!, 4));
    });
  });

  test('records kept under other settings are not taken', async () => {
    const other = new EvalProgress(out, { model: 'stories', options: { ...options, fewshotSeed: 7 } });
    expect(other.kept(config)).toEqual([]);
  });
});

describe('Ctrl-C in herd eval --output', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-eval-sigint-'));
  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));
  const args = ['eval', 'arc_challenge', '--data', DATA, '--limit', '40', '--num-fewshot', '0', '--output', out, '--json'];
  const keptLines = () => {
    const dir = path.join(out, '.herd-eval-progress');
    if (!fs.existsSync(dir)) return 0;
    return fs.readdirSync(dir).reduce((n, name) => n + fs.readFileSync(path.join(dir, name), 'utf8').split('\n').filter(Boolean).length, 0);
  };

  test('exits 130 with an interrupted error, keeps the finished documents, and the same command completes', async () => {
    const { NODE_ENV: _test, ...env } = process.env;
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    // Ctrl-C once the first document's record is on disk.
    const poll = setInterval(() => keptLines() > 0 && child.kill('SIGINT') && clearInterval(poll), 50);
    const status = await closed;
    clearInterval(poll);
    expect(status).toBe(130);
    expect(stderr).toMatch(/^herd: interrupted after \d+ of 40 documents of arc_challenge: they are kept in .*\.herd-eval-progress and the same command resumes from them\n$/);
    expect(JSON.parse(stdout)).toMatchObject({ schema: 'herd.error/1', error: { type: 'interrupted' } });
    const kept = keptLines();
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(40);

    const again = herd(args);
    expect(again.status).toBe(0);
    expect(JSON.parse(again.stdout)['n-samples'].arc_challenge.effective).toBe(40);
    expect(fs.existsSync(path.join(out, 'results.json'))).toBe(true);
    expect(fs.existsSync(path.join(out, '.herd-eval-progress'))).toBe(false);
  });
});
