import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DATA } from './fixtures.js';
import { HANG_GUARD_MS } from './hang-guard.js';

// The built CLI (npm test builds first), as a person or a script runs it.
const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/run.js');

function herd(args: string[]) {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: HANG_GUARD_MS });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

let tmp: string;
let data: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-ftcli-'));
  const stories = fs.readFileSync(path.join(DATA, 'text/tinystories-valid-head.txt'), 'utf8').split('\n\n').slice(0, 8);
  data = path.join(tmp, 'stories.jsonl');
  fs.writeFileSync(data, [JSON.stringify({ prompt: 'Once upon a time', completion: ' there was a cat.' }), ...stories.map((text) => JSON.stringify({ text: text.trim() }))].join('\n') + '\n');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('finetune check prints the counts and the example with the masked prompt in brackets', () => {
  const result = herd(['finetune', 'check', '--data', data]);
  expect(result.status).toBe(0);
  expect(result.stdout).toMatch(/^9 rows · \d+ tokens · \d+ trained/);
  expect(result.stdout).toContain('[<s> Once upon a time] there was a cat.</s>');
  expect(result.stdout).not.toContain('\u001b[');
});

test('a bad row is one line on stderr naming the file and row', () => {
  const bad = path.join(tmp, 'bad.jsonl');
  fs.writeFileSync(bad, '{"text": "fine"}\n{"prompt": "only a prompt"}\n');
  const result = herd(['finetune', 'check', '--data', bad]);
  expect(result.status).toBe(1);
  expect(result.stdout).toBe('');
  expect(result.stderr.trim()).toMatch(/^herd: .*bad\.jsonl: row 2: "prompt" and "completion" must both be strings/);
});

test('train with --json, then generate with --adapter equals generate on the merged model', () => {
  const out = path.join(tmp, 'out');
  const trained = herd(['finetune', '--data', data, '--output-dir', out, '--max-steps', '4', '--logging-steps', '2', '--learning-rate', '1e-2', '--backend', 'wasm', '--json']);
  expect(trained.status).toBe(0);
  const events = trained.stdout.trim().split('\n').map((line) => JSON.parse(line) as { event: string; step: number; loss?: number });
  expect(events.map((e) => e.event)).toEqual(['start', 'step', 'step', 'done']);
  expect(events[1]).toMatchObject({ step: 2 });
  expect(fs.readdirSync(out).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);

  const merged = path.join(tmp, 'merged');
  expect(herd(['finetune', 'merge', '--adapter', out, '--output-dir', merged]).status).toBe(0);
  const prompt = ['-n', '24', '--temperature', '0', 'Once upon a time'];
  const withAdapter = herd(['generate', '--adapter', out, ...prompt]);
  const fromMerged = herd(['generate', '--model', merged, ...prompt]);
  const base = herd(['generate', ...prompt]);
  expect(withAdapter.status).toBe(0);
  expect(withAdapter.stdout).toBe(fromMerged.stdout);
  expect(withAdapter.stdout).not.toBe(base.stdout);
});

test('--load-in-4bit and --gradient-checkpointing reach training: the 4-bit base gives another first loss', () => {
  const firstLoss = (extra: string[]) => {
    const result = herd(['finetune', '--data', data, '--output-dir', path.join(tmp, `run${extra.length}`), '--max-steps', '1', '--backend', 'wasm', '--json', ...extra]);
    expect(result.status).toBe(0);
    const events = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as { event: string; loss?: number });
    return events.find((e) => e.event === 'step')!.loss!;
  };
  const float = firstLoss([]);
  const checkpointed = firstLoss(['--gradient-checkpointing']);
  const quantized = firstLoss(['--gradient-checkpointing', '--load-in-4bit']);
  expect(checkpointed).toBeCloseTo(float, 4);
  expect(Math.abs(quantized - float)).toBeGreaterThan(1e-3);
});
