import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import { DATA, GGUF_LLAMACPP, PROMPT_GUARD_TINY, TINY_LLAMA } from './fixtures.js';
import { herd, storiesCopy } from './herd-cli.js';

// The scripting contract (docs/scripting.md): every --json success validates against its schema
// in docs/schemas, and every --json failure is one herd.error/1 object. Outputs are real runs of
// the built CLI on the small fixtures.
const SCHEMA_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../docs/schemas');
const ajv = new Ajv2020.default({ allErrors: true, strict: true, allowUnionTypes: true });

function validator(name: string) {
  const validate = ajv.compile(JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, `herd.${name}.schema.json`), 'utf8')));
  return (value: unknown): string => (validate(value) ? 'valid' : ajv.errorsText(validate.errors));
}

/** Each stdout line is one JSON object of schema herd.NAME/1 that validates against its file. */
function expectValidLines(name: string, result: ReturnType<typeof herd>): Record<string, unknown>[] {
  expect(result.stderr).not.toMatch(/^herd: /m);
  expect(result.status).toBe(0);
  const validate = validator(name);
  const objects = result.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  for (const object of objects) {
    expect(object.schema).toBe(`herd.${name}/1`);
    expect(validate(object)).toBe('valid');
  }
  return objects;
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-json-contract-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  fs.writeFileSync(path.join(work, name), text);
  return path.join(work, name);
};

describe('--json failures are one herd.error/1 object on stdout and one line on stderr', () => {
  const validateError = validator('error');
  const truncated = storiesCopy((dir) => fs.truncateSync(path.join(dir, 'model.safetensors'), 500000));
  const cases: Array<{ args: string[]; type: string; exit: number; file?: string; tensor?: RegExp }> = [
    { args: ['generate', '--model', path.join(work, 'missing'), 'hi'], type: 'model', exit: 1, file: path.join(work, 'missing') },
    { args: ['generate', '--model', truncated, 'hi'], type: 'model', exit: 1, file: path.join(truncated, 'model.safetensors'), tensor: /^model\.layers\.\d+\./ },
    { args: ['chat', '--max-new-tokens', 'zero'], type: 'usage', exit: 2 },
    { args: ['prompt', '--messages', path.join(work, 'no-messages.json')], type: 'usage', exit: 2 },
    { args: ['memory', '--model', 'llama-9'], type: 'input', exit: 1 },
    { args: ['quantize', '--format', 'gguf-q2', '--out', path.join(work, 'never')], type: 'input', exit: 1 },
    { args: ['eval', 'tinystories', '--data', DATA, '--model', path.join(work, 'missing')], type: 'model', exit: 1 },
    { args: ['finetune', '--data', 'x.jsonl', '--output-dir', path.join(work, 'never'), '--learning-rate', 'fast'], type: 'usage', exit: 2 },
    { args: ['finetune', 'check', '--data', path.join(work, 'missing.jsonl')], type: 'input', exit: 1 },
    { args: ['finetune', 'merge', '--adapter', path.join(work, 'missing'), '--output-dir', path.join(work, 'never')], type: 'input', exit: 1 },
    // A folder cannot be made inside a file: the file system refuses (ENOTDIR).
    { args: ['quantize', '--out', path.join(file('plain.txt', 'x'), 'sub')], type: 'io', exit: 1, file: path.join(work, 'plain.txt', 'sub') },
    { args: ['bench', '--synthetic', 'llama-9'], type: 'input', exit: 1 },
    { args: ['env', '--no-such-flag'], type: 'usage', exit: 2 },
    // herd guard keeps exit 1 for an unsafe verdict, so its failures are 2.
    { args: ['guard', '--model', path.join(work, 'missing'), 'hi'], type: 'model', exit: 2, file: path.join(work, 'missing') },
    // The cache is read, never written, when the model is not in it (herd.models/1 and herd.rm/1 successes: test/hub-commands.test.ts).
    { args: ['rm', 'org/never-cached-by-anyone'], type: 'input', exit: 1 },
    { args: ['rm', 'org/x@main', '--revision', 'v1'], type: 'usage', exit: 2 },
    // Refused before any request (herd.pull/1 successes and network failures: test/hub-cli.test.ts).
    { args: ['pull', 'org/x@main', '--revision', 'v1'], type: 'usage', exit: 2 },
  ];

  test.each(cases)('herd $args.0 … → $type, exit $exit', ({ args, type, exit, file: faultyFile, tensor }) => {
    const result = herd([...args, '--json'], '');
    expect(result.status).toBe(exit);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/^herd: /);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    const report = JSON.parse(lines[0]!);
    expect(validateError(report)).toBe('valid');
    expect(report.schema).toBe('herd.error/1');
    expect(report.error.type).toBe(type);
    expect(`herd: ${report.error.message}\n`).toBe(result.stderr);
    if (faultyFile !== undefined) expect(report.error.file).toBe(faultyFile);
    if (tensor !== undefined) expect(report.error.tensor).toMatch(tensor);
  });

  test('without --json a failure prints nothing on stdout', () => {
    const result = herd(['generate', '--model', path.join(work, 'missing'), 'hi']);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
  });

  test('the error schema rejects a report without a type, or with a type outside the documented set', () => {
    const report = { schema: 'herd.error/1', error: { message: 'model folder x does not exist', type: 'model' } };
    expect(validateError(report)).toBe('valid');
    expect(validateError({ ...report, error: { message: report.error.message } })).toMatch(/must have required property 'type'/);
    expect(validateError({ ...report, error: { ...report.error, type: 'disk' } })).toMatch(/must be equal to one of the allowed values/);
  });
});

describe('--json successes validate against docs/schemas', () => {
  test('generate, and a copy without a required field is rejected', () => {
    const [report] = expectValidLines('generate', herd(['generate', '--json', '-n', '2', '--logprobs', '2', 'Once upon a time']));
    const { finish_reason: _dropped, ...incomplete } = report!;
    expect(validator('generate')(incomplete)).toMatch(/must have required property 'finish_reason'/);
    expect(validator('generate')({ ...report, finish_reason: 'tired' })).toMatch(/must be equal to one of the allowed values/);
  });

  test('generate --stream-json: every token line and the end line', () => {
    const lines = expectValidLines('generate-stream', herd(['generate', '--stream-json', '-n', '3', '--logprobs', '1', 'Once upon a time']));
    expect(lines.map((line) => line.type)).toEqual(['token', 'token', 'token', 'end']);
    expect(validator('generate-stream')({ ...lines[0], type: 'end' })).not.toBe('valid');
  });

  test('chat piped: every NDJSON line', () => {
    const events = expectValidLines('chat', herd(['chat', '--json', '--model', TINY_LLAMA, '-n', '2', '--temperature', '0'], 'Hi\n'));
    expect(events.at(-1)!.type).toBe('turn_end');
    const { generated_tokens: _dropped, ...incomplete } = events.at(-1)!;
    expect(validator('chat')(incomplete)).not.toBe('valid');
    const shielded = expectValidLines('chat', herd(['chat', '--json', '--model', TINY_LLAMA, '--prompt-guard', PROMPT_GUARD_TINY, '--prompt-guard-threshold', '0'], 'Hi\n'));
    expect(shielded.map((event) => event.type)).toEqual(['shield', 'token', 'turn_end']);
  });

  test('guard: Prompt Guard scores and a Llama Guard verdict (both safe, exit 0)', () => {
    const [scored] = expectValidLines('guard', herd(['guard', '--json', '--prompt-guard', PROMPT_GUARD_TINY, 'Hello, world!']));
    expect(validator('guard')({ ...scored, verdict: 'maybe' })).not.toBe('valid');
    const [verdict] = expectValidLines('guard', herd(['guard', '--json', '--model', TINY_LLAMA, '--threshold', '1', 'Hi']));
    const { p_unsafe: _dropped, ...unscored } = verdict!;
    expect(validator('guard')(unscored)).not.toBe('valid');
  });

  test('prompt', () => {
    const messages = file('messages.json', JSON.stringify([{ role: 'user', content: 'Hi' }]));
    expectValidLines('prompt', herd(['prompt', '--json', '--model', TINY_LLAMA, '--messages', messages, '--date', '2024-07-26']));
  });

  test('memory: a plan with training and fit, the post comparison, and a measurement', () => {
    const [plan] = expectValidLines('memory', herd(['memory', '--json', '--model', 'llama-3.1-8b', '-c', '1k', '--train', 'full,lora,qlora', '--gpu', 'l4']));
    expect((plan!.plan as { training: unknown[] }).training).toHaveLength(3);
    expectValidLines('memory', herd(['memory', '--json', '--compare-post']));
    expectValidLines('memory', herd(['memory', '--json', '--launch', 'vllm', '--model', 'llama-3.1-405b', '--gpu', 'h100', '--gpus', '8']));
    const [measured] = expectValidLines('memory', herd(['memory', '--json', '--measure', '--model', 'models/stories260K']));
    expect(measured!.measurement).not.toBeNull();
    expect(validator('memory')({ ...plan, units: 'GiB' })).not.toBe('valid');
    const [classifier] = expectValidLines('memory', herd(['memory', '--json', '--model', 'llama-prompt-guard-2-22m']));
    expect((classifier!.classifier as { parameters: { total: number } }).parameters.total).toBe(70_830_722);
  });

  test('synth', () => {
    const instructions = file('synth.jsonl', '{"instruction":"Say hi."}\n');
    const [report] = expectValidLines('synth', herd(['synth', '--json', '--instructions', instructions, '--generator', 'models/stories260K', '-n', '2', '--output', path.join(work, 'synth')]));
    const { files: _dropped, ...incomplete } = report!;
    expect(validator('synth')(incomplete)).toMatch(/must have required property 'files'/);
  });

  test('env and bench', () => {
    expectValidLines('env', herd(['env', '--json']));
    const [bench] = expectValidLines('bench', herd(['bench', '--json', '--prompt-tokens', '4', '--gen-tokens', '2', '--streams', '1,2', '--prefix-cache-tokens', '6', '--bandwidth']));
    expect((bench!.streams as Array<{ streams: number }>).map(({ streams }) => streams)).toEqual([1, 2]);
    expect(bench!.prefix_cache).toMatchObject({ prompt_tokens: 6 });
    const { decode_tokens_per_second: _dropped, ...incomplete } = bench!;
    expect(validator('bench')(incomplete)).not.toBe('valid');
    const { bandwidth_probe: _probe, ...unnamedProbe } = bench!;
    expect(validator('bench')(unnamedProbe)).toMatch(/bandwidth_probe/);
    // herd's two engines only (llama.cpp is optional); one switched off, so a row says why.
    const q8 = path.join(GGUF_LLAMACPP, 'model-Q8_0.gguf');
    const compare = herd(['bench', '--json', '--model', q8, '--compare', 'llama.cpp', '--engines', 'herd-wasm,herd-native', '--prompt-tokens', '4,6', '--gen-tokens', '2', '--competing-load', '1', '--bandwidth'], undefined, { HERD_NATIVE: '0' });
    const [comparison] = expectValidLines('bench-compare', compare);
    expect((comparison!.rows as Array<{ available: boolean }>).map((row) => row.available)).toEqual([true, false, true, false]);
    expect(comparison!.bandwidth_probe).toBe('wasm');
    const { rows: _rows, ...noRows } = comparison!;
    expect(validator('bench-compare')(noRows)).toMatch(/must have required property 'rows'/);
  });

  test('quantize with a scorecard, then quantize score', () => {
    const out = path.join(work, 'quantized');
    const text = file('score.txt', fs.readFileSync(path.join(DATA, 'text/tinystories-valid-head.txt'), 'utf8').slice(0, 3000));
    const [job] = expectValidLines('quantize', herd(['quantize', '--json', '--format', 'gguf-q8_0', '--out', out, '--samples', '1', '--seq-len', '8', '--score', text, '--score-tokens', '16']));
    const gguf = (job!.formats as Array<{ path: string; score?: object }>)[0]!;
    expect(gguf.score).toBeDefined();
    expectValidLines('quantize-score', herd(['quantize', 'score', '--json', '--base', 'models/stories260K', '--quant', gguf.path, '--score', text, '--score-tokens', '16']));
  });

  test('eval, and eval --compare', () => {
    const args = ['eval', 'tinystories', '--json', '--data', DATA, '--limit', '2', '--bootstrap-iters', '10'];
    expectValidLines('eval', herd(args));
    const [comparison] = expectValidLines('eval-compare', herd([...args, '--compare', 'models/stories260K']));
    expect(comparison!.distribution).toBeNull();
  });

  test('finetune (every event kind), finetune check and finetune merge', () => {
    const stories = fs.readFileSync(path.join(DATA, 'text/tinystories-valid-head.txt'), 'utf8').split('\n\n').slice(0, 3);
    const data = file('train.jsonl', [{ prompt: 'Once upon a time', completion: ' there was a cat.' }, ...stories.map((text) => ({ text: text.trim() }))].map((row) => JSON.stringify(row)).join('\n') + '\n');
    const adapter = path.join(work, 'adapter');
    const events = expectValidLines('finetune', herd(['finetune', '--json', '--data', data, '--output-dir', adapter, '--max-steps', '2', '--logging-steps', '1', '--eval-data', data, '--eval-steps', '1', '--save-steps', '1', '--backend', 'wasm']));
    expect(new Set(events.map((event) => event.event))).toEqual(new Set(['start', 'step', 'eval', 'checkpoint', 'done']));
    expectValidLines('finetune-check', herd(['finetune', 'check', '--json', '--data', data]));
    expectValidLines('finetune-merge', herd(['finetune', 'merge', '--json', '--adapter', adapter, '--output-dir', path.join(work, 'merged')]));
  });
});
