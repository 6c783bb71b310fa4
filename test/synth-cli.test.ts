import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { STORIES, TINY_LLAMA } from './fixtures.js';
import { herd } from './herd-cli.js';

// herd synth as a person runs it: the flags' common case end to end, and bad input as one line
// on stderr that names the file and the row or key at fault.
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-synth-cli-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  fs.writeFileSync(path.join(work, name), text);
  return path.join(work, name);
};
const instructions = file('instructions.jsonl', ['Say hi.', 'Name a colour.', 'Say hi.'].map((instruction, id) => JSON.stringify({ id, instruction })).join('\n') + '\n');

/** A local port that was free a moment ago and has no listener now: connections to it are refused. */
function closedPort(): Promise<number> {
  const server = net.createServer();
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as net.AddressInfo;
    server.close(() => resolve(port));
  }));
}

function expectOneLineFailure(result: ReturnType<typeof herd>, status: number, line: string): void {
  expect({ status: result.status, stderr: result.stderr }).toEqual({ status, stderr: `herd: ${line}\n` });
}

describe('herd synth', () => {
  test('flags: two generators and a judge, plain progress lines when piped, the three files', () => {
    const output = path.join(work, 'flags');
    const result = herd(['synth', '--instructions', instructions, '--generator', STORIES, '--generator', TINY_LLAMA, '--judge', TINY_LLAMA, '-n', '2', '--judge-max-new-tokens', '2', '--output', output, '--backend', 'wasm']);
    expect(result.status).toBe(0);
    expect(result.stderr).toMatch(/^synth: 2\/2 rows, \d+\.\d\d rows\/s, ETA \S+/m);
    expect(result.stdout).toContain('2 rows (1 duplicate instructions dropped, 0 resumed), 4 generations');
    const rows = fs.readFileSync(path.join(output, 'synth.jsonl'), 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(rows.map((row) => [row.instruction, row.model_names])).toEqual([['Say hi.', ['stories260K', 'tiny-llama-3.1']], ['Name a colour.', ['stories260K', 'tiny-llama-3.1']]]);
    // Two tokens of a random-weight judge are no rating: recorded as missing, never guessed.
    expect(rows.map((row) => row.ratings)).toEqual([[null, null], [null, null]]);
    expect(fs.readFileSync(path.join(output, 'preferences.jsonl'), 'utf8')).toBe('');
    expect(fs.existsSync(path.join(output, 'run-card.json'))).toBe(true);
  });

  test('a YAML pipeline runs, with --output in place of its output.dir, and --limit', () => {
    const pipeline = file('run.yaml', `source: {file: instructions.jsonl}\nseed: 5\nsteps:\n  - {type: text_generation, name: a, model: ${STORIES}, sampling: {max_new_tokens: 2}}\n  - {type: combine_columns}\n`);
    const output = path.join(work, 'yaml-run');
    const result = herd(['synth', pipeline, '--output', output, '--limit', '1', '--json']);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ schema: 'herd.synth/1', output_dir: output, counts: { rows: 1, generations: 1 }, files: { preferences: null } });
    const [row] = fs.readFileSync(path.join(output, 'synth.jsonl'), 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(Object.keys(row)).toEqual(['instruction', 'generations', 'model_names']);
    expect(row.instruction).toBe('Say hi.');
    const without = herd(['synth', pipeline]);
    expectOneLineFailure(without, 1, `${pipeline}: output: missing`);
  });

  test('a pipeline YAML with an unknown step names the file and the step', () => {
    const pipeline = file('unknown-step.yaml', `source: {file: ${instructions}}\nsteps:\n  - {type: text_generation, model: ${STORIES}}\n  - {type: translate}\noutput: {dir: out}\n`);
    expectOneLineFailure(herd(['synth', pipeline]), 1, `${pipeline}: steps[1].type: unknown step "translate" (steps: text_generation, combine_columns, ultrafeedback, preference_pairs)`);
  });

  test('a misspelt key names the file and the key', () => {
    const pipeline = file('typo.yaml', `source: {file: ${instructions}}\nsteps:\n  - type: text_generation\n    model: ${STORIES}\n    sampling: {temprature: 0.5}\noutput: {dir: out}\n`);
    expectOneLineFailure(herd(['synth', pipeline]), 1, `${pipeline}: steps[0].sampling.temprature: unknown key (expected temperature, top_p, top_k, min_p, repetition_penalty, max_new_tokens)`);
  });

  test('a column missing from the instructions file names the file and the row', () => {
    const pipeline = file('column.yaml', `source: {file: ${instructions}, column: prompt}\nsteps:\n  - {type: text_generation, model: ${STORIES}}\noutput: {dir: out}\n`);
    expectOneLineFailure(herd(['synth', pipeline]), 1, `${instructions}: row 1: no column "prompt" (columns: id, instruction)`);
  });

  test('an unreachable judge: one line naming the file, the row and the endpoint; a network error for scripts', async () => {
    const port = await closedPort();
    const args = ['synth', '--instructions', instructions, '--generator', STORIES, '--judge', `judge-model@http://127.0.0.1:${port}/v1`, '-n', '1', '--output', path.join(work, 'unreachable')];
    expectOneLineFailure(herd(args), 1, `${instructions}: row 1: judge-model: cannot reach the endpoint http://127.0.0.1:${port} (ECONNREFUSED): is the server running?`);
    const json = herd([...args, '--json']);
    expect(JSON.parse(json.stdout).error).toMatchObject({ type: 'network', file: instructions });
  });

  test('a YAML file and pipeline flags together are a usage error', () => {
    const pipeline = file('both.yaml', `source: {file: ${instructions}}\nsteps:\n  - {type: text_generation, model: ${STORIES}}\noutput: {dir: out}\n`);
    expectOneLineFailure(herd(['synth', pipeline, '--generator', STORIES]), 2, `${pipeline} describes the pipeline: drop --generator (only --output, --seed, --limit, --api-key and the backend flags go with a file)`);
  });
});
