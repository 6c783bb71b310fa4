import { jest } from '@jest/globals';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Memory from '../src/commands/memory.js';
import { measurePeakMemory } from '../src/memory/measure.js';

interface Run {
  stdout: string;
  /** herd's own lines on stderr (Node's experimental-feature warnings are left out). */
  errors: string[];
  exitCode: number;
}

/** Runs `herd memory` in this process, capturing its output and exit code. */
async function herdMemory(...argv: string[]): Promise<Run> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  // oclif's log() goes through console.log, which jest reformats; capture it where the command calls it.
  const log = jest.spyOn(Memory.prototype, 'log').mockImplementation((message?: string) => {
    stdout.push(`${message ?? ''}\n`);
  });
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => stdout.push(String(chunk)) > 0);
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => stderr.push(String(chunk)) > 0);
  process.exitCode = 0;
  try {
    await Memory.run(argv, { root: process.cwd() });
  } finally {
    log.mockRestore();
    out.mockRestore();
    err.mockRestore();
  }
  const exitCode = Number(process.exitCode ?? 0);
  process.exitCode = 0;
  const errors = stderr.join('').split('\n').filter((line) => line.startsWith('herd:'));
  return { stdout: stdout.join(''), errors, exitCode };
}

const directory = mkdtempSync(join(tmpdir(), 'herd-memory-cli-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe('bad input: one clear line and a non-zero exit', () => {
  const config = join(directory, 'broken');
  mkdirSync(config);
  writeFileSync(join(config, 'config.json'), JSON.stringify({ hidden_size: 4096, num_hidden_layers: 32 }));

  test.each([
    [['-m', 'llama-9'], /^herd: unknown preset or missing path "llama-9"; presets: llama-3.1-8b, /],
    [['-m', config], /^herd: .*config.json: num_attention_heads must be a positive number, got undefined$/],
    [['-m', 'llama-3.1-8b', '--context', 'abc'], /^herd: --context "abc" is not a token count/],
    [['-m', 'llama-3.1-8b', '--context=-5'], /^herd: --context "-5" is not a token count/],
    [['-m', 'llama-3.1-8b', '--context', '-5'], /^herd: --context "-5" is not a token count/],
    [['-m', 'llama-3.1-8b', '--gpu', 'h1000'], /^herd: unknown GPU "h1000"/],
    [['-m', 'llama-3.1-8b', '--memory', '24'], /^herd: --memory "24" is not a memory size/],
    [[], /^herd: give a model with --model/],
    [['--measure', '-m', 'llama-3.1-8b'], /^herd: --measure needs --model DIR, a Hugging Face folder with weights$/],
  ])('herd memory %j', async (argv, message) => {
    const run = await herdMemory(...argv);
    expect(run.exitCode).not.toBe(0);
    expect(run.errors).toHaveLength(1);
    expect(run.errors[0]).toMatch(message);
    expect(run.stdout).toBe('');
  });
});

describe('output', () => {
  test('--json prints one object with exact counts and bytes', async () => {
    const run = await herdMemory('-m', 'llama-3.1-8b', '--json', '-p', 'bf16', '-c', '1k', '--train', 'lora', '--gpu', 'l4');
    expect(run.exitCode).toBe(0);
    const json = JSON.parse(run.stdout);
    expect(json.units).toBe('bytes');
    expect(json.plan.model.parameters.total).toBe(8_030_261_248);
    expect(json.plan.inference[0]).toMatchObject({ precision: 'bf16', context: 1024, weightsBytes: 2 * 8_030_261_248, kvCacheBytes: 1024 * 131072 });
    expect(json.plan.training[0].trainableParameters).toBe(41_943_040);
    expect(json.plan.inference[0].fit.fits).toBe(true); // 15.0 GiB + 0.125 GiB on a 24 GiB L4
  });

  test('the text table names its units and carries no colour when not on a terminal', async () => {
    const run = await herdMemory('-m', 'llama-3.2-1b', '--units', 'GB');
    expect(run.stdout).toContain('Inference memory (GB)');
    expect(run.stdout).toContain('1,235,814,400');
    expect(run.stdout).not.toMatch(/\u001b\[/);
  });

  test('--compare-post --json gives all 27 cells, with only the 405B KV row not matching', async () => {
    const json = JSON.parse((await herdMemory('--compare-post', '--json')).stdout);
    expect(json.comparePost).toHaveLength(27);
    const mismatched = json.comparePost.filter((cell: { matches: boolean }) => !cell.matches);
    expect(mismatched.map((cell: { model: string; table: string }) => `${cell.model} ${cell.table}`)).toEqual(Array(3).fill('llama-3.1-405b kv-cache'));
  });

  test('--markdown writes a complete report through a temporary file', async () => {
    const path = join(directory, 'report.md');
    const run = await herdMemory('-m', 'llama-3.1-70b', '--compare-post', '--markdown', path);
    expect(run.exitCode).toBe(0);
    const markdown = readFileSync(path, 'utf8');
    expect(markdown).toMatch(/^# herd memory: llama-3.1-70b/);
    expect(markdown).toContain('| 70,553,706,496 |');
    expect(markdown).toContain('## Llama 3.1 post vs herd: KV cache, fp16, batch 1 (GiB)');
    expect(readdirSync(directory).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });
});

describe('--measure', () => {
  test("loads the embedded model with the engine and reports this process's peak RSS", async () => {
    const model = join(process.cwd(), 'models', 'stories260K');
    expect(existsSync(model)).toBe(true);
    const run = await measurePeakMemory(model);
    expect(run.peakRssBytes).toBeGreaterThanOrEqual(process.memoryUsage().rss * 0.5);
    expect(run.peakRssBytes).toBeGreaterThanOrEqual(run.rssBeforeLoadBytes);
    expect(run.backend.length).toBeGreaterThan(0);
  });
});
