import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import { writeParquet } from '../src/synth/parquet-output.js';
import { DATA, TINY_LLAMA } from './fixtures.js';
import { herd } from './herd-cli.js';

// `herd finetune --method dpo` through the built CLI on the embedded stories260K.
const SCHEMAS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../docs/schemas');
const SCHEMA = path.join(SCHEMAS, 'herd.finetune.schema.json');
const CHECK_SCHEMA = path.join(SCHEMAS, 'herd.finetune-check.schema.json');

let tmp: string;
let pairs: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-dpocli-'));
  // Implicit-prompt text rows: a story's opening, continued by its own next words or another story's.
  const stories = fs.readFileSync(path.join(DATA, 'text/tinystories-valid-head.txt'), 'utf8').split('\n\n').slice(30, 36);
  const words = (story: string, to: number) => story.trim().split(/\s+/).slice(0, to).join(' ');
  pairs = path.join(tmp, 'pairs.jsonl');
  fs.writeFileSync(pairs, [0, 1, 2].map((i) => JSON.stringify({ chosen: words(stories[i]!, 8), rejected: `${words(stories[i]!, 4)} ${words(stories[i + 3]!, 4)}` })).join('\n') + '\n');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('--method dpo --json: every line validates, steps carry TRL metrics, the first loss is log 2 and the adapter is written', () => {
  const out = path.join(tmp, 'out');
  const result = herd(['finetune', '--method', 'dpo', '--beta', '0.2', '--data', pairs, '--eval-data', pairs, '--output-dir', out, '--max-steps', '2', '--logging-steps', '1', '--lora-r', '2', '--backend', 'wasm', '--json']);
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  const ajv = new Ajv2020.default({ allErrors: true, strict: true, allowUnionTypes: true });
  const validate = ajv.compile(JSON.parse(fs.readFileSync(SCHEMA, 'utf8')));
  const events = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, number | string>);
  for (const event of events) expect(validate(event) ? 'valid' : ajv.errorsText(validate.errors)).toBe('valid');
  expect(events.map((e) => e.event)).toEqual(['start', 'step', 'step', 'eval', 'done']);
  expect(events[0]).toMatchObject({ examples: 3 });
  // B starts at zero, so the policy is the reference: every margin 0 and the loss −log σ(0) = log 2.
  expect(events[1]!.loss).toBeCloseTo(Math.LN2, 6);
  expect(events[1]).toMatchObject({ 'rewards/chosen': 0, 'rewards/rejected': 0, 'rewards/margins': 0, 'rewards/accuracies': 0 });
  expect(events[1]!['logps/chosen']).toBeLessThan(0);
  expect(Object.keys(events[3]!)).toEqual(expect.arrayContaining(['eval_loss', 'eval_rewards/margins', 'eval_rewards/accuracies', 'eval_logps/rejected']));
  expect(fs.readdirSync(out).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
});

test('finetune check --method dpo shows both sides of a pair with the shared prompt masked; --json validates', () => {
  const pair = { prompt: 'Once upon a time', chosen: ' there was a cat.', rejected: ' the end.' };
  const file = path.join(tmp, 'check.jsonl');
  fs.writeFileSync(file, `${JSON.stringify(pair)}\n`);
  const result = herd(['finetune', 'check', '--method', 'dpo', '--data', file]);
  expect(result.stderr).toBe('');
  expect(result.stdout).toMatch(/^1 rows · \d+ tokens · \d+ trained · longest \d+ · 0 truncated to 1024\nrow 1 chosen \(\d+ tokens; \[masked\] tokens carry no loss\):\n/);
  expect(result.stdout).toContain('\n[<s> Once upon a time] there was a cat.</s>\nrow 1 rejected (');
  expect(result.stdout).toContain('\n[<s> Once upon a time] the end.</s>\n');

  const json = herd(['finetune', 'check', '--method', 'dpo', '--data', file, '--json']);
  const ajv = new Ajv2020.default({ allErrors: true, strict: true, allowUnionTypes: true });
  const validate = ajv.compile(JSON.parse(fs.readFileSync(CHECK_SCHEMA, 'utf8')));
  const report = JSON.parse(json.stdout) as { rows: number; example: { tokens: Array<{ trained: boolean }> }; rejected_example: { tokens: Array<{ trained: boolean }> } };
  expect(validate(report) ? 'valid' : ajv.errorsText(validate.errors)).toBe('valid');
  expect(report.rows).toBe(1);
  expect(report.rejected_example.tokens.filter((token) => token.trained).length).toBeLessThan(report.example.tokens.filter((token) => token.trained).length);
});

test("finetune check --method dpo reads herd synth's preferences.parquet (message lists as list<struct>)", () => {
  const rows = [
    { prompt: [{ role: 'user', content: 'What color is the sky?' }], chosen: [{ role: 'assistant', content: 'It is blue.' }], rejected: [{ role: 'assistant', content: 'It is green.' }] },
    { prompt: [{ role: 'user', content: 'Name a fruit.' }], chosen: [{ role: 'assistant', content: 'An apple.' }], rejected: [{ role: 'assistant', content: 'A tree.' }] },
  ];
  // The writer herd synth --format parquet uses for preferences.parquet (its equality with jsonl is in finetune-preference-data.test.ts).
  const parquet = path.join(tmp, 'preferences.parquet');
  writeParquet(parquet, ['prompt', 'chosen', 'rejected'], rows);
  const result = herd(['finetune', 'check', '--method', 'dpo', '--data', parquet, '--model', TINY_LLAMA, '--row', '2', '--json']);
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  type Example = { row: number; tokens: Array<{ token: string; trained: boolean }> };
  const report = JSON.parse(result.stdout) as { rows: number; data: string; example: Example; rejected_example: Example };
  expect(report).toMatchObject({ rows: 2, data: parquet, example: { row: 2 }, rejected_example: { row: 2 } });
  // Tokens are the vocabulary's byte-level pieces (Ġ is the space); only the answer and its end of turn are trained.
  const trainedText = (example: Example) => example.tokens.filter((token) => token.trained).map((token) => token.token).join('');
  expect([trainedText(report.example), trainedText(report.rejected_example)]).toEqual(['AnĠapple.<|eot_id|>', 'AĠtree.<|eot_id|>']);
});

test('a preference file whose row lacks "rejected" is one line naming the file and row; --beta without --method dpo is a usage error', () => {
  const bad = path.join(tmp, 'bad.jsonl');
  fs.writeFileSync(bad, `${fs.readFileSync(pairs, 'utf8')}{"prompt": "Once", "chosen": " upon"}\n`);
  const result = herd(['finetune', '--method', 'dpo', '--data', bad, '--output-dir', path.join(tmp, 'never'), '--backend', 'wasm']);
  expect(result.status).toBe(1);
  expect(result.stdout).toBe('');
  expect(result.stderr).toBe(`herd: ${bad}: row 4: has no "rejected" (keys: prompt, chosen); a preference row needs "chosen" and "rejected"\n`);
  expect(fs.existsSync(path.join(tmp, 'never'))).toBe(false);

  const usage = herd(['finetune', '--beta', '0.1', '--data', pairs, '--output-dir', path.join(tmp, 'never')]);
  expect(usage.status).toBe(2);
  expect(usage.stderr).toMatch(/^herd: --beta is the DPO loss temperature; it needs --method dpo\n$/);
});
