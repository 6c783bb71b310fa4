/**
 * herd serve's HTTP layer over a scripted generator that emits the ids a Llama 3.1 model would
 * (official tokenizer): the openai package's view of replies and tool calls, the error objects
 * and statuses, the queue limit, disconnects, and a bounded load run.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { runInNewContext } from 'node:vm';
import v8 from 'node:v8';
import OpenAI from 'openai';
import { EOM, EOT, PYTHON_TAG_ID, llamaTokenizer, textIds } from './chat-scripted-source.js';
import { LLAMA_CHAT, readJson } from './fixtures.js';
import { percentile, runLoad } from '../src/bench/serve-load.js';
import { HerdServer } from '../src/serve/server.js';
import { SERVED_ID, ScriptedGenerator, startScriptedServer } from './serve-scripted-generator.js';

const weatherTool = readJson<{ weather_tool: OpenAI.Chat.Completions.ChatCompletionTool }>(path.join(LLAMA_CHAT, 'cases.json')).weather_tool;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The fixture's rendering (Python jinja2, dated 26 Jul 2024) with today's date, as the server renders it. */
function expectedPrompt(name: string): string {
  const today = new Date();
  const date = `${String(today.getDate()).padStart(2, '0')} ${MONTHS[today.getMonth()]} ${today.getFullYear()}`;
  return fs.readFileSync(path.join(LLAMA_CHAT, 'expected', `${name}.txt`), 'utf8').replace('26 Jul 2024', date);
}

const CALL_JSON = '{"name": "get_current_conditions", "parameters": {"location": "San Francisco, CA", "unit": "Fahrenheit"}}';
const PROSE = 'Paris is the capital of France.';
/** The openings Llama 3.1's JSON call format starts with: any function ("required"), and get_current_conditions by name. */
const REQUIRED_OPENING = '{"name": "';
const NAMED_OPENING = '{"name": "get_current_conditions", "parameters": ';
const ONE = textIds(' one')[0]!;

/** A reply that goes on until the request is cancelled. */
function* forever(): Generator<number> {
  for (;;) yield ONE;
}

/** Replies chosen by what the last user message asks. */
function scriptFor(promptIds: readonly number[]): Iterable<number> {
  const prompt = llamaTokenizer.decode(promptIds);
  if (prompt.includes('weather in San Francisco')) return [...textIds(CALL_JSON), EOM];
  if (prompt.includes('latest price of 1oz gold')) return [PYTHON_TAG_ID, ...textIds('brave_search.call(query="gold price today")'), EOM];
  if (prompt.includes('Count forever')) return forever();
  // tool_choice "required" / named: the server wrote the opening of a call; the model continues it.
  if (prompt.endsWith(NAMED_OPENING)) return [...textIds(CALL_JSON.slice(NAMED_OPENING.length)), EOM];
  if (prompt.endsWith(REQUIRED_OPENING)) return [...textIds(CALL_JSON.slice(REQUIRED_OPENING.length)), EOM];
  const numbered = /Request (\d+)\./.exec(prompt);
  if (numbered) return [...textIds(`Answer ${numbered[1]}.`), EOT];
  return [...textIds(PROSE), EOT];
}

const SYSTEM = { role: 'system', content: 'You are a helpful assistant.' } as const;

describe('the openai package against herd serve (scripted Llama 3.1 ids)', () => {
  const generator = new ScriptedGenerator(scriptFor);
  let started: Awaited<ReturnType<typeof startScriptedServer>>;
  let client: OpenAI;
  beforeAll(async () => {
    started = await startScriptedServer(generator);
    client = new OpenAI({ baseURL: `${started.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(() => started.server.shutdown(0));

  test('a chat completion: the prompt is the template as herd prompt renders it; text, finish_reason and usage', async () => {
    const reply = await client.chat.completions.create({ model: SERVED_ID, messages: [SYSTEM, { role: 'user', content: 'What is the capital of France?' }], temperature: 0 });
    const promptIds = llamaTokenizer.encode(expectedPrompt('a_simple_system_user'), false);
    expect(generator.prompts.at(-1)).toEqual(promptIds);
    expect(reply.choices[0]!.message.content).toBe(PROSE);
    expect(reply.choices[0]!.finish_reason).toBe('stop');
    // The reply's tokens and the <|eot_id|> that ended it.
    expect(reply.usage).toMatchObject({ prompt_tokens: promptIds.length, completion_tokens: textIds(PROSE).length + 1, total_tokens: promptIds.length + textIds(PROSE).length + 1 });
  });

  test('a custom tool call arrives as tool_calls with arguments a JSON string, streamed and not', async () => {
    const request = { model: SERVED_ID, messages: [SYSTEM, { role: 'user' as const, content: 'What is the weather in San Francisco, CA in Fahrenheit?' }], tools: [weatherTool] };
    const reply = await client.chat.completions.create(request);
    expect(generator.prompts.at(-1)).toEqual(llamaTokenizer.encode(expectedPrompt('c_custom_tools_in_user_message'), false));
    const choice = reply.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    const call = choice.message.tool_calls![0]! as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
    expect(call.type).toBe('function');
    expect(call.id).toMatch(/^call_/);
    expect(call.function.name).toBe('get_current_conditions');
    expect(typeof call.function.arguments).toBe('string');
    expect(JSON.parse(call.function.arguments)).toEqual({ location: 'San Francisco, CA', unit: 'Fahrenheit' });

    const chunks = await collect(await client.chat.completions.create({ ...request, stream: true }));
    const deltas = chunks.flatMap((chunk) => chunk.choices.flatMap((c) => c.delta.tool_calls ?? []));
    // vLLM's shape: first the call's id, type and name, then its arguments.
    expect(deltas[0]).toEqual({ index: 0, id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'get_current_conditions', arguments: '' } });
    expect(deltas.slice(1).every((delta) => delta.id === undefined && delta.function?.name === undefined)).toBe(true);
    expect(JSON.parse(deltas.map((delta) => delta.function?.arguments ?? '').join(''))).toEqual({ location: 'San Francisco, CA', unit: 'Fahrenheit' });
    expect(chunks.flatMap((chunk) => chunk.choices.map((c) => c.delta.content ?? '')).join('')).toBe('');
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('tool_calls');
  });

  test('a built-in <|python_tag|> call (brave_search) surfaces as a tool call; the tool is switched on in the system prompt', async () => {
    const request = {
      model: SERVED_ID,
      messages: [SYSTEM, { role: 'user' as const, content: 'Search the web for the latest price of 1oz gold?' }],
      tools: ['brave_search', 'wolfram_alpha'].map((name) => ({ type: 'function' as const, function: { name } })),
    };
    const reply = await client.chat.completions.create(request);
    expect(generator.prompts.at(-1)).toEqual(llamaTokenizer.encode(expectedPrompt('b_builtin_tools'), false));
    const call = reply.choices[0]!.message.tool_calls![0]! as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
    expect(call.function).toEqual({ name: 'brave_search', arguments: JSON.stringify({ query: 'gold price today' }) });
    expect(reply.choices[0]!.finish_reason).toBe('tool_calls');
    const chunks = await collect(await client.chat.completions.create({ ...request, stream: true }));
    const deltas = chunks.flatMap((chunk) => chunk.choices.flatMap((c) => c.delta.tool_calls ?? []));
    expect(deltas[0]!.function!.name).toBe('brave_search');
    expect(JSON.parse(deltas.map((delta) => delta.function?.arguments ?? '').join(''))).toEqual({ query: 'gold price today' });
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('tool_calls');
  });

  test('tool_choice "none" leaves the tools out of the prompt and the reply unparsed', async () => {
    await client.chat.completions.create({ model: SERVED_ID, messages: [SYSTEM, { role: 'user', content: 'What is the capital of France?' }], tools: [weatherTool], tool_choice: 'none' });
    expect(generator.prompts.at(-1)).toEqual(llamaTokenizer.encode(expectedPrompt('a_simple_system_user'), false));
  });

  test.each([
    ['"required"', 'required' as const, REQUIRED_OPENING],
    ['a named function', { type: 'function' as const, function: { name: 'get_current_conditions' } }, NAMED_OPENING],
  ])('tool_choice %s writes the opening of a call into the prompt; the reply is a tool call, streamed and not', async (_name, toolChoice, opening) => {
    // A question that alone would get prose: only the forced opening makes the script call the tool.
    const request = { model: SERVED_ID, messages: [SYSTEM, { role: 'user' as const, content: 'What is the capital of France?' }], tools: [weatherTool], tool_choice: toolChoice };
    const reply = await client.chat.completions.create(request);
    expect(llamaTokenizer.decode(generator.prompts.at(-1)!).endsWith(`<|start_header_id|>assistant<|end_header_id|>\n\n${opening}`)).toBe(true);
    const choice = reply.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    const call = choice.message.tool_calls![0]! as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe('get_current_conditions');
    expect(JSON.parse(call.function.arguments)).toEqual({ location: 'San Francisco, CA', unit: 'Fahrenheit' });

    const chunks = await collect(await client.chat.completions.create({ ...request, stream: true }));
    expect(llamaTokenizer.decode(generator.prompts.at(-1)!).endsWith(opening)).toBe(true);
    const deltas = chunks.flatMap((chunk) => chunk.choices.flatMap((c) => c.delta.tool_calls ?? []));
    expect(deltas[0]!.function!.name).toBe('get_current_conditions');
    expect(JSON.parse(deltas.map((delta) => delta.function?.arguments ?? '').join(''))).toEqual({ location: 'San Francisco, CA', unit: 'Fahrenheit' });
    expect(chunks.flatMap((chunk) => chunk.choices.map((c) => c.delta.content ?? '')).join('')).toBe('');
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('tool_calls');
  });

  test('tool_choice naming a function that is not in "tools": 400 naming the param', async () => {
    const response = await fetch(`${started.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: SERVED_ID, messages: [{ role: 'user', content: 'Hi' }], tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'get_stock_price' } } }),
    });
    expect(response.status).toBe(400);
    const { error } = (await response.json()) as { error: { message: string; type: string; param: string; code: unknown } };
    expect(error).toMatchObject({ type: 'invalid_request_error', param: 'tool_choice' });
    expect(error.message).toContain('get_stock_price');
  });

  test('stop strings end the reply before them, held back in the stream; include_usage adds a final chunk with no choices', async () => {
    const request = { model: SERVED_ID, messages: [{ role: 'user' as const, content: 'Hi' }], stop: [' capital'] };
    const reply = await client.chat.completions.create(request);
    expect(reply.choices[0]!.message.content).toBe('Paris is the');
    expect(reply.choices[0]!.finish_reason).toBe('stop');
    const chunks = await collect(await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } }));
    expect(chunks.flatMap((chunk) => chunk.choices.map((c) => c.delta.content ?? '')).join('')).toBe('Paris is the');
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    // Up to the token that completed " capital", none after it.
    expect(last.usage!.completion_tokens).toBe(textIds('Paris is the capital').length);
    expect(reply.usage!.completion_tokens).toBe(textIds('Paris is the capital').length);
  });

  test('unknown fields are ignored; n choices come back indexed', async () => {
    const reply = await client.chat.completions.create({ model: SERVED_ID, messages: [{ role: 'user', content: 'Hi' }], n: 2, user: 'someone', metadata: { a: '1' }, parallel_tool_calls: false } as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming);
    expect(reply.choices.map((choice) => [choice.index, choice.message.content])).toEqual([[0, PROSE], [1, PROSE]]);
  });

  test('GET /v1/models lists the served id', async () => {
    const models = await client.models.list();
    expect(models.data.map((model) => model.id)).toEqual([SERVED_ID]);
  });
});

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const chunks: T[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

async function postJson(url: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: response.status, headers: response.headers, json: (await response.json()) as { error?: { message: string; type: string; param: string | null; code: string | null } } & Record<string, unknown> };
}

const hello = (content = 'Hi') => ({ model: SERVED_ID, messages: [{ role: 'user', content }], max_tokens: 16 });

describe('faults: each gets its status and OpenAI error object, and the server keeps serving', () => {
  const generator = new ScriptedGenerator(scriptFor, { parallel: 2, maxQueue: 2, contextLength: 64 });
  let url: string;
  let started: Awaited<ReturnType<typeof startScriptedServer>>;
  beforeAll(async () => {
    started = await startScriptedServer(generator, { apiKey: 'sesame', maxBodyBytes: 4096 });
    url = started.url;
  });
  afterAll(() => started.server.shutdown(0));
  const auth = { Authorization: 'Bearer sesame' };

  test.each([
    ['malformed JSON', '{"model": ', auth, 400, 'invalid_request_error'],
    ['a field of the wrong type', { ...hello(), temperature: 'hot' }, auth, 400, 'invalid_request_error'],
    ['an unknown model', { ...hello(), model: 'gpt-4o' }, auth, 400, 'invalid_request_error'],
    ['a missing key', hello(), {}, 401, 'invalid_request_error'],
    ['a wrong key', hello(), { Authorization: 'Bearer open' }, 401, 'invalid_request_error'],
    ['a body over the limit', hello('x'.repeat(5000)), auth, 413, 'invalid_request_error'],
  ])('%s', async (_name, body, headers, status, type) => {
    const response = await postJson(`${url}/v1/chat/completions`, body, headers);
    expect(response.status).toBe(status);
    expect(Object.keys(response.json.error!).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(response.json.error!.type).toBe(type);
    expect(response.json.error!.message.length).toBeGreaterThan(10);
    const next = await postJson(`${url}/v1/chat/completions`, hello(), auth);
    expect(next.status).toBe(200);
  });

  test('the wrong type names the field; the unknown model names both', async () => {
    expect((await postJson(`${url}/v1/chat/completions`, { ...hello(), temperature: 'hot' }, auth)).json.error!.param).toBe('temperature');
    expect((await postJson(`${url}/v1/chat/completions`, { ...hello(), model: 'gpt-4o' }, auth)).json.error!.message).toMatch(/gpt-4o.*llama-3\.1-test/);
  });

  test('a prompt longer than the context: 400 naming both numbers, nothing truncated', async () => {
    const long = 'word '.repeat(80);
    const promptTokens = llamaTokenizer.encode(long, true).length;
    const response = await postJson(`${url}/v1/completions`, { model: SERVED_ID, prompt: long }, auth);
    expect(response.status).toBe(400);
    expect(response.json.error!.message).toContain(`${promptTokens} tokens`);
    expect(response.json.error!.message).toContain('64 tokens');
    const asked = await postJson(`${url}/v1/completions`, { model: SERVED_ID, prompt: 'Hi', max_tokens: 100 }, auth);
    expect(asked.status).toBe(400);
    expect(asked.json.error!.message).toMatch(/100.*64/);
  });

  test('/health and /metrics need no key; unknown paths are 404 error objects', async () => {
    expect((await fetch(`${url}/health`)).status).toBe(200);
    expect((await fetch(`${url}/metrics`)).status).toBe(200);
    const missing = await fetch(`${url}/v2/everything`, { headers: auth });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });
});

test('/health is 503 until the model is handed over, then 200; other endpoints are 503 meanwhile', async () => {
  const server = new HerdServer({ maxBodyBytes: 1024, timeoutSeconds: null });
  const url = await server.listen(0, '127.0.0.1');
  try {
    expect((await fetch(`${url}/health`)).status).toBe(503);
    const early = await postJson(`${url}/v1/chat/completions`, hello());
    expect(early.status).toBe(503);
    expect(early.json.error!.code).toBe('model_loading');
  } finally {
    await server.shutdown(0);
  }
});

describe('slots and the queue', () => {
  test('past --parallel + --max-queue: 429 with Retry-After; a disconnect mid-stream frees its slot at once', async () => {
    const generator = new ScriptedGenerator(scriptFor, { parallel: 1, maxQueue: 1, contextLength: 200_000, tokenDelayMs: 2 });
    const { server, url } = await startScriptedServer(generator);
    try {
      const endless = { model: SERVED_ID, messages: [{ role: 'user', content: 'Count forever' }], stream: true };
      const first = openStream(`${url}/v1/chat/completions`, endless);
      await first.firstChunk;
      const second = openStream(`${url}/v1/chat/completions`, endless);
      await until(() => generator.stats().waiting === 1);

      // Streamed or not, a request past the queue gets the status itself, not an error event.
      const refusedStream = await postJson(`${url}/v1/chat/completions`, endless);
      expect(refusedStream.status).toBe(429);
      const refused = await postJson(`${url}/v1/chat/completions`, hello());
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(refused.json.error!.code).toBe('queue_full');

      second.disconnect();
      await until(() => generator.stats().waiting === 0);
      first.disconnect();
      await until(() => generator.stats().running === 0);
      // The slot is free: the next request runs without waiting behind anything.
      const next = await postJson(`${url}/v1/chat/completions`, hello());
      expect(next.status).toBe(200);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toContain('herd_requests_running 0');
      expect(metrics).toContain('herd_requests_waiting 0');
      expect(metrics).toMatch(/herd_requests_total\{endpoint="\/v1\/chat\/completions",status="499"\} 2/);
      expect(metrics).toMatch(/herd_requests_total\{endpoint="\/v1\/chat\/completions",status="429"\} 2/);
    } finally {
      await server.shutdown(0);
    }
  });

  test('--timeout cancels a request that runs past it: 504 with the timeout error object, and the slot is freed', async () => {
    const generator = new ScriptedGenerator(scriptFor, { parallel: 1, maxQueue: 0, contextLength: 200_000, tokenDelayMs: 2 });
    const { server, url } = await startScriptedServer(generator, { timeoutSeconds: 0.2 });
    try {
      const endless = await postJson(`${url}/v1/chat/completions`, { model: SERVED_ID, messages: [{ role: 'user', content: 'Count forever' }] });
      expect(endless.status).toBe(504);
      expect(endless.json.error!.code).toBe('timeout');
      await until(() => generator.stats().running === 0);
      expect((await postJson(`${url}/v1/chat/completions`, hello())).status).toBe(200);
    } finally {
      await server.shutdown(0);
    }
  });

  test('200 requests, 16 at a time, against --parallel 4: each gets its own answer or a clean 429; none hangs; memory comes back', async () => {
    const generator = new ScriptedGenerator(scriptFor, { parallel: 4, maxQueue: 4, contextLength: 4096 });
    const { server, url } = await startScriptedServer(generator);
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    try {
      const run = async (index: number) => {
        const response = await postJson(`${url}/v1/chat/completions`, hello(`Request ${index}.`));
        if (response.status === 429) return 'refused';
        const content = (response.json.choices as Array<{ message: { content: string } }>)[0]!.message.content;
        return content === `Answer ${index}.` ? 'answered' : `wrong: ${content}`;
      };
      await loadRun(16, 16, run);
      gc();
      const before = process.memoryUsage().heapUsed;
      const outcomes = await loadRun(200, 16, run);
      expect(outcomes.filter((outcome) => outcome !== 'answered' && outcome !== 'refused')).toEqual([]);
      expect(outcomes.filter((outcome) => outcome === 'answered').length).toBeGreaterThanOrEqual(8);
      expect(generator.stats()).toMatchObject({ running: 0, waiting: 0 });
      gc();
      // Nothing kept per request: the heap is back within a few MB of where it was.
      expect(process.memoryUsage().heapUsed - before).toBeLessThan(8 * 2 ** 20);
    } finally {
      await server.shutdown(0);
    }
  });
});

describe('herd bench --serve: a bounded load run', () => {
  test('every request completes with timings; a full queue shows up as http_429 errors; only loopback URLs', async () => {
    const generator = new ScriptedGenerator(scriptFor, { parallel: 1, maxQueue: 0, contextLength: 4096 });
    const { server, url } = await startScriptedServer(generator);
    try {
      const serial = await runLoad({ url, concurrency: 1, requests: 6, maxTokens: 8, prompt: 'Hi' });
      expect(serial).toMatchObject({ completed: 6, errors: {} });
      // Each completion is the scripted prose, cut at max_tokens (8) by the usage count.
      expect(serial.tokens_per_second).toBeGreaterThan(0);
      expect(serial.ttft_ms.p50).not.toBeNull();
      expect(serial.itl_ms.p99).not.toBeNull();
      const crowded = await runLoad({ url, concurrency: 4, requests: 12, maxTokens: 8, prompt: 'Hi' });
      expect(crowded.errors.http_429).toBeGreaterThan(0);
      expect(crowded.completed + crowded.errors.http_429!).toBe(12);
    } finally {
      await server.shutdown(0);
    }
    await expect(runLoad({ url: 'http://example.com:8080', concurrency: 1, requests: 1, maxTokens: 1, prompt: 'Hi' })).rejects.toThrow(/only targets this machine/);
  });

  test('percentiles are nearest-rank', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(values, 0.5)).toBe(50);
    expect(percentile(values, 0.99)).toBe(99);
    expect(percentile([], 0.5)).toBeNull();
  });
});

/** `count` calls, at most `concurrency` at once. */
async function loadRun<T>(count: number, concurrency: number, call: (index: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      results[index] = await call(index);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return results;
}

/**
 * Sends a streamed request over node:http; returns a function that disconnects it, and a promise
 * of its first chunk (a queued request sends nothing before it runs).
 */
function openStream(url: string, body: unknown): { disconnect: () => void; firstChunk: Promise<void> } {
  let disconnect = () => {};
  const firstChunk = new Promise<void>((resolve, reject) => {
    const request = http.request(url, { method: 'POST', headers: { 'Content-Type': 'application/json' } }, (response) => {
      response.once('data', () => resolve());
      response.on('error', () => undefined);
    });
    request.on('error', (error) => (error.message === 'socket hang up' ? undefined : reject(error)));
    request.end(JSON.stringify(body));
    disconnect = () => request.destroy();
  });
  return { disconnect, firstChunk };
}

/** Waits (event-loop turns, no wall-clock limit of its own) until the condition holds. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}
