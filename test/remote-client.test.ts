import { HerdTokenizer } from '../src/engine/tokenizer.js';
import { runTask } from '../src/eval/runner.js';
import { resolveTask } from '../src/eval/task-config.js';
import { probeEndpoint, type EndpointCapabilities } from '../src/remote/capabilities.js';
import { EndpointClient, retryDelayMs, serverSentData } from '../src/remote/client.js';
import { RemoteEvalModel } from '../src/remote/eval-model.js';
import { errorBody, modelList, sendJson, startFakeServer, type FakeServer } from './fake-openai-server.js';
import { DATA, STORIES } from './fixtures.js';

const stories = HerdTokenizer.fromDir(STORIES);

/** A server whose /v1/models lists `llama` and whose other routes the test answers. */
async function serverWith(routes: (path: string, body: Record<string, unknown> | null, response: Parameters<typeof sendJson>[0]) => boolean): Promise<FakeServer> {
  return startFakeServer((request, response) => {
    if (request.path === '/v1/models') return sendJson(response, 200, modelList('llama'));
    if (!routes(request.path, request.body, response)) sendJson(response, 404, errorBody(`no route ${request.path}`));
  });
}

describe('retries, backoff and one-line failures', () => {
  test('the wait honours Retry-After (seconds or an HTTP date), else doubles from the base, capped', () => {
    expect(retryDelayMs('3', 0, 500, 60_000)).toBe(3000);
    expect(retryDelayMs('Wed, 21 Oct 2026 07:28:10 GMT', 4, 500, 60_000, Date.parse('Wed, 21 Oct 2026 07:28:00 GMT'))).toBe(10_000);
    expect(retryDelayMs(null, 0, 500, 60_000)).toBe(500);
    expect(retryDelayMs(null, 3, 500, 60_000)).toBe(4000);
    expect(retryDelayMs('120', 0, 500, 60_000)).toBe(60_000);
    expect(retryDelayMs(null, 20, 500, 60_000)).toBe(60_000);
  });

  test('a server that answers 429 twice then 200 is retried; one that keeps answering 503 fails naming the status', async () => {
    let busy = 2;
    const server = await startFakeServer((request, response) => {
      if (request.path === '/v1/models' && busy-- > 0) return sendJson(response, 429, errorBody('too many requests'), { 'retry-after': '0' });
      if (request.path === '/v1/models') return sendJson(response, 200, modelList('llama'));
      sendJson(response, 503, errorBody('overloaded'));
    });
    try {
      const client = new EndpointClient({ url: server.url, retryBaseMs: 1 });
      expect(await client.listModels()).toEqual([{ id: 'llama', contextLength: null }]);
      expect(server.to('/v1/models')).toHaveLength(3);
      const impatient = new EndpointClient({ url: server.url, retryBaseMs: 1, retries: 2 });
      await expect(impatient.postJson('/v1/completions', {})).rejects.toThrow(/\/v1\/completions: HTTP 503 after 2 retries: overloaded$/);
      expect(server.to('/v1/completions')).toHaveLength(3);
    } finally {
      await server.close();
    }
  });

  test('a wrong key and a model the server does not list each fail with one line', async () => {
    const server = await startFakeServer((request, response) => {
      if (request.headers.authorization !== 'Bearer right-key') return sendJson(response, 401, errorBody('invalid API key'));
      sendJson(response, 200, modelList('llama-3.1-70b', 'llama-3.1-8b'));
    });
    const { url } = server;
    try {
      await expect(new EndpointClient({ url, apiKey: 'wrong' }).listModels()).rejects.toThrow(/HTTP 401: the API key was refused: pass --api-key or set HERD_API_KEY \(invalid API key\)$/);
      await expect(new EndpointClient({ url }).listModels()).rejects.toThrow(/the server wants an API key/);
      await expect(new EndpointClient({ url, apiKey: 'right-key', model: 'llama-3.1-405b' }).resolveModel()).rejects.toThrow(
        `${url} does not serve "llama-3.1-405b" (--endpoint-model); it lists: llama-3.1-70b, llama-3.1-8b`,
      );
      expect((await new EndpointClient({ url: `${url}/v1/`, apiKey: 'right-key', model: 'llama-3.1-8b' }).resolveModel()).id).toBe('llama-3.1-8b');
    } finally {
      await server.close();
    }
  });

  test('a connection the server drops before answering is tried again, twice at most', async () => {
    let drops = 2;
    const server = await startFakeServer((_request, response) => {
      if (drops-- > 0) return response.socket?.destroy();
      sendJson(response, 200, modelList('llama'));
    });
    try {
      expect(await new EndpointClient({ url: server.url }).listModels()).toEqual([{ id: 'llama', contextLength: null }]);
      expect(server.requests).toHaveLength(3);
      drops = 3;
      await expect(new EndpointClient({ url: server.url }).listModels()).rejects.toThrow(/^cannot reach the endpoint .* \((ECONNRESET|UND_ERR_SOCKET)\): is the server running\?$/);
    } finally {
      await server.close();
    }
  });

  test('a server that never answers fails after --endpoint-timeout with one line', async () => {
    const silent = await startFakeServer(() => undefined);
    try {
      await expect(new EndpointClient({ url: silent.url, timeoutMs: 200 }).listModels()).rejects.toThrow(`${silent.url} did not answer within 0.2 s`); // timeout under test: the server never answers
    } finally {
      await silent.close();
    }
  });

  test('a dead endpoint fails with one line', async () => {
    // A port that was just listened on and closed: nothing answers there.
    const gone = await startFakeServer(() => undefined);
    await gone.close();
    await expect(new EndpointClient({ url: gone.url }).listModels()).rejects.toThrow(new RegExp(`^cannot reach the endpoint ${gone.url} \\(ECONNREFUSED\\): is the server running\\?$`));
  });

  test('server-sent events split anywhere across chunks come out whole', async () => {
    const text = 'data: {"a":1}\n\ndata: {"b":\r\n\r\ndata: [DONE]\n\n';
    const bytes = new TextEncoder().encode(text);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 5) controller.enqueue(bytes.slice(i, i + 5));
        controller.close();
      },
    });
    const events: string[] = [];
    for await (const data of serverSentData(stream)) events.push(data);
    expect(events).toEqual(['{"a":1}', '{"b":', '[DONE]']);
  });
});

/** Prompt logprobs the fake server gives each token: a rule of its id, so sums can be checked by hand. */
const logprobOf = (id: number) => -((id % 7) + 1) / 10;

describe('eval against a server', () => {
  test('loglikelihoods are the continuation tokens\' prompt logprobs, requested concurrently up to --concurrency', async () => {
    let inFlight = 0;
    let mostInFlight = 0;
    const server = await serverWith((path, body, response) => {
      if (path !== '/v1/completions') return false;
      const prompt = typeof body!.prompt === 'string' ? [1, 2] : (body!.prompt as number[]);
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      // Each position's top logprob is the token's own except at odd ids, where another token was likelier.
      const logprobs = { token_logprobs: [null, ...prompt.slice(1).map(logprobOf), -0.5], top_logprobs: [null, ...prompt.slice(1).map((id) => ({ x: id % 2 === 1 ? 0 : logprobOf(id) })), { y: -0.5 }] };
      setTimeout(() => {
        inFlight--;
        sendJson(response, 200, { choices: [{ text: 'x', logprobs, finish_reason: 'length' }] });
      }, 20);
      return true;
    });
    try {
      const client = new EndpointClient({ url: server.url, concurrency: 3 });
      const capabilities = await probeEndpoint(client);
      expect(capabilities).toEqual(expect.objectContaining({ completions: true, promptLogprobs: true, chat: false, tokenize: false, model: 'llama' }));
      const model = new RemoteEvalModel(client, capabilities, stories, 3);
      const run = await runTask(model, resolveTask('arc_challenge'), { dataDir: DATA, limit: 3, numFewshot: 0, fewshotSeed: 1234, applyChatTemplate: false, fewshotAsMultiturn: false, maxLength: 2048 });

      expect(mostInFlight).toBeGreaterThan(1);
      expect(mostInFlight).toBeLessThanOrEqual(3);
      for (const sample of run.samples) {
        const output = sample.output as { loglikelihoods: number[]; is_greedy: boolean[] };
        (sample.arguments as Array<[string, string]>).forEach(([context, continuation], choice) => {
          const contextIds = stories.encode(context.trimEnd(), true);
          const continuationIds = stories.encode(context.trimEnd() + context.slice(context.trimEnd().length) + continuation, true).slice(contextIds.length);
          const expected = continuationIds.reduce((sum, id) => sum + logprobOf(id), 0);
          expect(output.loglikelihoods[choice]).toBeCloseTo(expected, 10);
          expect(output.is_greedy[choice]).toBe(continuationIds.every((id) => id % 2 === 0));
        });
      }
      // Each request (after the two probes) carried the prompt as token ids with echo, as lm-eval's local-completions asks.
      const scored = server.to('/v1/completions').slice(2);
      expect(scored[0]!.body).toEqual(expect.objectContaining({ echo: true, logprobs: 1, max_tokens: 1, temperature: 0 }));
    } finally {
      await server.close();
    }
  });

  test('a server without prompt logprobs refuses loglikelihood tasks by name, and still runs generate_until on text prompts', async () => {
    const server = await serverWith((path, body, response) => {
      if (path !== '/v1/completions') return false;
      // As TGI's OpenAI route: text prompts only, echo ignored, only the generated token has a logprob.
      if (typeof body!.prompt !== 'string') return sendJson(response, 422, errorBody('prompt must be a string')), true;
      const generated = body!.echo ? { token_logprobs: [-0.2], tokens: ['x'] } : null;
      sendJson(response, 200, { choices: [{ text: ' Paris', logprobs: generated, finish_reason: 'stop' }] });
      return true;
    });
    try {
      const client = new EndpointClient({ url: server.url });
      const capabilities: EndpointCapabilities = await probeEndpoint(client);
      expect(capabilities).toEqual(expect.objectContaining({ completions: true, promptLogprobs: false, tokenIdPrompts: false }));
      const model = new RemoteEvalModel(client, capabilities, stories, 2);
      const options = { dataDir: DATA, limit: 2, numFewshot: 0, fewshotSeed: 1234, applyChatTemplate: false, fewshotAsMultiturn: false, maxLength: 2048 };
      await expect(runTask(model, resolveTask('arc_challenge'), options)).rejects.toThrow(
        `${server.url} does not return prompt logprobs (echo + logprobs on /v1/completions), which multiple_choice tasks need; generate_until tasks run on it`,
      );
      const run = await runTask(model, resolveTask('triviaqa'), { ...options, maxGenToks: 5 });
      expect(run.samples.map((sample) => sample.output)).toEqual([expect.objectContaining({ response: ' Paris' }), expect.objectContaining({ response: ' Paris' })]);
      const generated = server.to('/v1/completions').filter((request) => request.body!.echo === undefined);
      expect(generated.at(-1)!.body).toEqual(expect.objectContaining({ max_tokens: 5, temperature: 0, stop: ['\n', '.', ','] }));
      expect(generated.at(-1)!.body!.prompt).toBe(run.samples[1]!.arguments[0]);
    } finally {
      await server.close();
    }
  });
});
