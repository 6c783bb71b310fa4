import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { STORIES, TINY_LLAMA } from './fixtures.js';
import { BIN, herd } from './herd-cli.js';
import { HANG_GUARD_MS } from './hang-guard.js';

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
  test('flags: two generators and a judge, plain progress lines when piped, the three files', async () => {
    const output = path.join(work, 'flags');
    // The judge is a server that echoes its prompt back: never a rating (a local judge would spend seconds on UltraFeedback's long prompt).
    const judge = await echoServer();
    try {
      const result = await spawnHerd(['synth', '--instructions', instructions, '--generator', STORIES, '--generator', TINY_LLAMA, '--judge', `echo@${judge.url}/v1`, '-n', '2', '--output', output, '--backend', 'wasm']).done;
      expect(result.status).toBe(0);
      expect(result.stderr).toMatch(/^synth: 2\/2 rows, \d+\.\d\d rows\/s, ETA \S+/m);
      expect(result.stdout).toContain('2 rows (1 duplicate instructions dropped, 0 resumed), 4 generations');
      expect(judge.asked.map((prompt) => /## Annotation\n\n### Input\nInstruction: (.*)\n/.exec(prompt)?.[1])).toEqual(['Say hi.', 'Name a colour.']);
    } finally {
      judge.close();
    }
    const rows = fs.readFileSync(path.join(output, 'synth.jsonl'), 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(rows.map((row) => [row.instruction, row.model_names, row.model_name])).toEqual([['Say hi.', ['stories260K', 'tiny-llama-3.1'], 'echo'], ['Name a colour.', ['stories260K', 'tiny-llama-3.1'], 'echo']]);
    // An answer that is no rating is recorded as missing, never guessed, and the reply is kept.
    expect(rows.map((row) => row.ratings)).toEqual([[null, null], [null, null]]);
    expect(rows[0].raw_judge_output).toMatch(/^Echo: # General Text Quality Assessment\n/);
    expect(fs.readFileSync(path.join(output, 'preferences.jsonl'), 'utf8')).toBe('');
    expect(fs.existsSync(path.join(output, 'run-card.json'))).toBe(true);
  });

  test('a YAML pipeline runs, with --output in place of its output.dir, --format and --limit', () => {
    const pipeline = file('run.yaml', `source: {file: instructions.jsonl}\nseed: 5\nsteps:\n  - {type: text_generation, name: a, model: ${STORIES}, sampling: {max_new_tokens: 2}}\n  - {type: combine_columns}\n`);
    const output = path.join(work, 'yaml-run');
    const result = herd(['synth', pipeline, '--output', output, '--limit', '1', '--format', 'both', '--json']);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ schema: 'herd.synth/1', output_dir: output, counts: { rows: 1, generations: 1 }, files: { preferences: null, rows_parquet: path.join(output, 'synth.parquet'), preferences_parquet: null } });
    expect(fs.existsSync(path.join(output, 'synth.parquet'))).toBe(true);
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
    expectOneLineFailure(herd(['synth', pipeline, '--generator', STORIES]), 2, `${pipeline} describes the pipeline: drop --generator (only --output, --format, --seed, --limit, --api-key and the backend flags go with a file)`);
  });

  test('Ctrl-C: the row in flight finishes and is kept, exit 130; the same command resumes; the file equals an uninterrupted run', async () => {
    const many = file('many.jsonl', Array.from({ length: 8 }, (_, i) => JSON.stringify({ instruction: `Question ${i + 1}?` })).join('\n') + '\n');
    const server = await echoServer();
    try {
      const args = (output: string) => ['synth', '--instructions', many, '--generator', `echo@${server.url}/v1`, '--max-concurrent-requests', '1', '--output', output];
      // The server holds the third request until the interrupt has been sent, so the run stops
      // after row 3 finishes (or row 4, when the answer reaches the child before the signal does).
      server.holdFrom(3);
      const interrupted = spawnHerd(args(path.join(work, 'interrupted')));
      await server.held;
      interrupted.child.kill('SIGINT');
      server.release();
      const stopped = await interrupted.done;
      expect(stopped.status).toBe(130);
      const lastLine = stopped.stderr.trimEnd().split('\n').at(-1)!;
      const kept = Number(/^herd: stopped after (\d+) of 8 rows/.exec(lastLine)?.[1]);
      expect(kept).toBeGreaterThanOrEqual(3);
      expect(kept).toBeLessThan(8);
      expect(lastLine).toBe(`herd: stopped after ${kept} of 8 rows; they are kept in ${path.join(work, 'interrupted', '.herd-synth-progress')} and the same command resumes from them`);

      // spawnSync would block this process's event loop, and with it the echo server: run the CLI as a child.
      const resumed = await spawnHerd(args(path.join(work, 'interrupted'))).done;
      expect(resumed.status).toBe(0);
      expect(resumed.stdout).toContain(`8 rows (0 duplicate instructions dropped, ${kept} resumed)`);
      // Every instruction reached the server once over the two runs.
      expect([...server.asked].sort()).toEqual(Array.from({ length: 8 }, (_, i) => `Question ${i + 1}?`).sort());

      expect((await spawnHerd(args(path.join(work, 'whole'))).done).status).toBe(0);
      expect(fs.readFileSync(path.join(work, 'interrupted', 'synth.jsonl'), 'utf8')).toBe(fs.readFileSync(path.join(work, 'whole', 'synth.jsonl'), 'utf8'));
    } finally {
      server.close();
    }
  });
});

/** The built CLI as a child process the test can signal. */
function spawnHerd(args: string[]) {
  const { NODE_ENV: _test, ...env } = process.env;
  const child = spawn(process.execPath, [BIN, ...args], { env, timeout: HANG_GUARD_MS });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const done = new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
  return { child, done };
}

/** An OpenAI-compatible server that answers "Echo: <user message>", and can hold a request until released. */
async function echoServer() {
  const asked: string[] = [];
  let holdAt = Infinity;
  let heldNow: () => void = () => {};
  let releaseHeld: () => void = () => {};
  const held = new Promise<void>((resolve) => (heldNow = resolve));
  const released = new Promise<void>((resolve) => (releaseHeld = resolve));
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', async () => {
      const user = (JSON.parse(body) as { messages: Array<{ role: string; content: string }> }).messages.find((m) => m.role === 'user')!.content;
      asked.push(user);
      if (asked.length === holdAt) {
        heldNow();
        await released;
      }
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content: `Echo: ${user}` }, finish_reason: 'stop' }] }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    asked,
    held,
    holdFrom: (n: number) => (holdAt = n),
    release: () => releaseHeld(),
    close: () => server.close(),
  };
}
