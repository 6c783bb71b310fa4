import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { errorBody, modelList, sendEvents, sendJson, startFakeServer, type FakeServer } from './fake-openai-server.js';
import { DATA, STORIES, TINY_LLAMA } from './fixtures.js';
import { BIN } from './herd-cli.js';

/** The built CLI, run without blocking this process (the fake servers answer from it). */
function herdAsync(args: string[], env: Record<string, string> = {}, input = ''): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const { NODE_ENV: _test, HERD_ENDPOINT: _endpoint, HERD_API_KEY: _key, ...inherited } = process.env;
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...inherited, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end(input);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
}

/** Exit 1 and exactly one line on stderr, matching `pattern`. */
function expectOneLineFailure(result: { status: number | null; stderr: string }, pattern: RegExp): void {
  expect(result.stderr).toMatch(/^herd: [^\n]*\n$/);
  expect(result.stderr).toMatch(pattern);
  expect(result.status).toBe(1);
}

/** A llama.cpp-like server: completions without prompt logprobs, a chat route, a key, 429s before generations when asked. */
let server: FakeServer;
let busy = 0;
beforeAll(async () => {
  server = await startFakeServer((request, response) => {
    if (request.headers.authorization !== 'Bearer secret') return sendJson(response, 401, errorBody('invalid api key'));
    if (request.path === '/v1/models') return sendJson(response, 200, modelList('stories'));
    // vLLM's /tokenize: the server's own ids, here a fixed answer the test can recognise.
    if (request.path === '/tokenize') return sendJson(response, 200, { count: 3, max_model_len: 2048, tokens: [7, 8, 9] });
    if (request.path === '/v1/chat/completions' && request.body!.stream === true) {
      return sendEvents(response, [{ choices: [{ index: 0, delta: { role: 'assistant', content: 'Hi!' }, finish_reason: 'stop' }] }, { choices: [], usage: { prompt_tokens: 12, completion_tokens: 3 } }]);
    }
    if (request.path === '/v1/chat/completions') return sendJson(response, 200, { choices: [{ message: { role: 'assistant', content: 'Hi' }, finish_reason: 'length' }] });
    if (request.path !== '/v1/completions') return sendJson(response, 404, errorBody('not found'));
    if (request.body!.stream === true && busy-- > 0) return sendJson(response, 429, errorBody('busy'), { 'retry-after': '0' });
    if (request.body!.stream === true) {
      return sendEvents(response, [{ choices: [{ index: 0, text: ' there was', finish_reason: null }] }, { choices: [{ index: 0, text: ' a dog', finish_reason: 'length' }] }, { choices: [], usage: { prompt_tokens: 5, completion_tokens: 4 } }]);
    }
    sendJson(response, 200, { choices: [{ text: ' Paris', logprobs: request.body!.echo ? { token_logprobs: [-0.1], tokens: [' P'] } : null, finish_reason: 'stop' }] });
  });
});
afterAll(() => server.close());

const connection = () => ['--endpoint', server.url, '--template-from', STORIES];

describe('commands over --endpoint', () => {
  test('env --endpoint reports what the server offers and the chat mode', async () => {
    const result = await herdAsync(['env', ...connection(), '--json'], { HERD_API_KEY: 'secret' });
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout).endpoint).toEqual({
      url: server.url, models: ['stories'], model: 'stories', context_length: null, completions: true, chat_completions: true, prompt_logprobs: false, tokenize: true, token_id_prompts: true,
      chat_mode: 'raw', chat_mode_reason: expect.stringMatching(/^raw: herd renders/),
    });
  });

  test('generate retries a 429 and prints the same --json as locally, with the endpoint', async () => {
    busy = 2;
    const result = await herdAsync(['generate', ...connection(), '--api-key', 'secret', '--raw', '--max-new-tokens', '4', '--json', 'Once upon a time']);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toEqual(expect.objectContaining({ schema: 'herd.generate/1', text: ' there was a dog', finish_reason: 'length', backend: 'endpoint', endpoint: { url: server.url, model: 'stories' } }));
    expect(busy).toBe(-1);
  });

  test('chat --json without a template runs in chat mode; turn_end carries the server\'s usage and the endpoint', async () => {
    const result = await herdAsync(['chat', '--endpoint', server.url, '--json'], { HERD_API_KEY: 'secret' }, 'Hello\n');
    expect(result.status).toBe(0);
    const events = result.stdout.trim().split('\n').map((line) => JSON.parse(line));
    expect(events[0]).toEqual({ schema: 'herd.chat/1', type: 'token', text: 'Hi!' });
    expect(events[1]).toEqual(expect.objectContaining({ type: 'turn_end', finish_reason: 'stop', prompt_tokens: 12, generated_tokens: 3, endpoint: { url: server.url, model: 'stories' } }));
  });

  test('prompt --endpoint renders locally and counts with the server\'s /tokenize', async () => {
    const messages = path.join(os.tmpdir(), `herd-remote-cli-${process.pid}.json`);
    fs.writeFileSync(messages, JSON.stringify([{ role: 'user', content: 'Hi' }]));
    try {
      const result = await herdAsync(['prompt', '--model', TINY_LLAMA, '--messages', messages, '--date', '2024-07-26', '--endpoint', server.url, '--json'], { HERD_API_KEY: 'secret' });
      expect(result.status).toBe(0);
      const report = JSON.parse(result.stdout);
      expect(report).toEqual(expect.objectContaining({ ids: [7, 8, 9], token_count: 3, endpoint: { url: server.url, model: 'stories' } }));
      expect(report.prompt).toContain('<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>');
      expect(server.to('/tokenize').at(-1)!.body).toEqual({ model: 'stories', prompt: report.prompt, add_special_tokens: false });
    } finally {
      fs.rmSync(messages, { force: true });
    }
  });

  test('eval: a loglikelihood task fails naming the missing capability; a dead endpoint and a wrong key each one line (an unknown model: remote-client.test.ts)', async () => {
    const evalArgs = ['eval', 'arc_challenge', '--data', DATA, '--limit', '1', '--num-fewshot', '0'];
    expectOneLineFailure(await herdAsync([...evalArgs, ...connection()], { HERD_API_KEY: 'secret' }), /does not return prompt logprobs \(echo \+ logprobs on \/v1\/completions\), which multiple_choice tasks need/);
    expectOneLineFailure(await herdAsync([...evalArgs, ...connection(), '--api-key', 'wrong']), /HTTP 401: the API key was refused/);
    const dead = await startFakeServer(() => undefined);
    await dead.close();
    expectOneLineFailure(await herdAsync([...evalArgs, '--endpoint', dead.url, '--template-from', STORIES]), /cannot reach the endpoint .*: is the server running\?/);
  });

  test('eval of a generate_until task runs on a server without prompt logprobs, recording the endpoint', async () => {
    const result = await herdAsync(['eval', 'triviaqa', '--data', DATA, '--limit', '2', '--num-fewshot', '0', '--max-gen-toks', '4', '--json', ...connection()], { HERD_API_KEY: 'secret' });
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report['n-samples'].triviaqa).toEqual({ original: expect.any(Number), effective: 2 });
    expect(report.config).toEqual(expect.objectContaining({ backend: 'endpoint', endpoint: { url: server.url, model: 'stories' } }));
  });
});
