/**
 * herd serve on the tiny Llama 3.1 fixture (real Scheduler, real forward pass): greedy replies
 * equal the fixture's float64 reference, streamed equals non-streamed, and /v1/completions'
 * echoed prompt logprobs equal herd eval's loglikelihood of the same tokens (lm-eval's request).
 */
import path from 'node:path';
import OpenAI from 'openai';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { LoglikelihoodScorer } from '../src/eval/loglikelihood.js';
import { HerdServer } from '../src/serve/server.js';
import { attachModel } from '../src/serve/start.js';
import { TINY_LLAMA, readJson } from './fixtures.js';

interface ReferenceCase {
  name: string;
  text: string;
  prompt_ids: number[];
  generated_ids: number[];
  steps: Array<{ id: number; logprob: number }>;
}
const reference = readJson<{ cases: ReferenceCase[] }>(path.join(TINY_LLAMA, 'reference.json'));
const capital = reference.cases.find((c) => c.name === 'capital')!;
const digits = reference.cases.find((c) => c.name === 'hello_digits')!;

let loaded: LoadedModel;
let server: HerdServer;
let url: string;
let client: OpenAI;

beforeAll(async () => {
  loaded = await loadModel(TINY_LLAMA);
  server = new HerdServer({ maxBodyBytes: 1 << 20, timeoutSeconds: null });
  url = await server.listen(0, '127.0.0.1');
  attachModel(server, loaded, { host: '127.0.0.1', port: 0, maxBodyBytes: 1 << 20, timeoutSeconds: null, modelName: 'tiny', scheduler: { parallel: 4, maxQueue: 8, contextLength: 512, prefixCacheBytes: 8 * 2 ** 20 } });
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await server.shutdown(0);
  loaded.model.dispose();
});

async function post(route: string, body: unknown): Promise<Record<string, any>> {
  const response = await fetch(`${url}${route}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  expect(response.status).toBe(200);
  return (await response.json()) as Record<string, any>;
}

describe('herd serve on tiny-llama-3.1', () => {
  test('a greedy completion is the reference continuation, with its logprobs', async () => {
    const reply = await client.completions.create({ model: 'tiny', prompt: capital.text, max_tokens: 8, temperature: 0, logprobs: 2 });
    const expectedIds = capital.generated_ids.slice(0, 8);
    expect(reply.choices[0]!.text).toBe(loaded.tokenizer.decode(expectedIds));
    expect(reply.choices[0]!.finish_reason).toBe('length');
    expect(reply.usage).toMatchObject({ prompt_tokens: capital.prompt_ids.length, completion_tokens: 8 });
    const logprobs = reply.choices[0]!.logprobs!.token_logprobs!;
    logprobs.forEach((logprob, i) => expect(Math.abs(logprob - capital.steps[i]!.logprob)).toBeLessThan(1e-4));
  });

  test('a streamed greedy chat reassembles to the non-streamed reply; usage counts the tokens', async () => {
    const request = { model: 'tiny', messages: [{ role: 'user' as const, content: 'Name a colour.' }], max_tokens: 12, temperature: 0 };
    const whole = await client.chat.completions.create(request);
    const chunks = [];
    for await (const chunk of await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } })) chunks.push(chunk);
    const streamed = chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.delta.content ?? '')).join('');
    expect(streamed).toBe(whole.choices[0]!.message.content);
    const finish = chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.finish_reason)).filter((reason) => reason !== null);
    expect(finish).toEqual([whole.choices[0]!.finish_reason]);
    const rendered = await post('/tokenize', { messages: request.messages });
    expect(whole.usage!.prompt_tokens).toBe(rendered.count);
    expect(chunks.at(-1)!.usage).toMatchObject({ prompt_tokens: rendered.count, completion_tokens: whole.usage!.completion_tokens });
    // The second request found the first one's prompt in the prefix cache (all but the last token, which is always run).
    // (The first shares at most the BOS with the completion before it.)
    expect(whole.usage!.prompt_tokens_details!.cached_tokens).toBeLessThanOrEqual(1);
    expect(chunks.at(-1)!.usage!.prompt_tokens_details!.cached_tokens).toBe(rendered.count - 1);
    // Random weights: no end-of-turn id comes before the limit, so every one of the 12 tokens counts.
    expect(whole.usage!.completion_tokens).toBe(12);
  });

  test("echo + logprobs in lm-eval's exact request: the prompt logprobs equal herd eval's loglikelihood", async () => {
    const ids = digits.prompt_ids;
    const reply = await post('/v1/completions', { model: 'tiny', prompt: [ids], temperature: 0, max_tokens: 1, logprobs: 1, seed: 1234, echo: true });
    const logprobs = reply.choices[0].logprobs;
    expect(logprobs.tokens.length).toBe(ids.length + 1);
    expect(logprobs.token_logprobs[0]).toBeNull();
    expect(logprobs.top_logprobs[0]).toBeNull();
    expect(logprobs.text_offset.length).toBe(ids.length + 1);
    // lm-eval: context = the first 3 tokens; the continuation's logprob is the sum of token_logprobs[ctxlen:-1].
    const contextLength = 3;
    const scorer = new LoglikelihoodScorer(loaded.model, 512);
    try {
      const expected = scorer.scoreContinuations(ids.slice(0, contextLength), [ids.slice(contextLength)])[0]!;
      const served = (logprobs.token_logprobs as number[]).slice(contextLength, -1);
      expect(served.length).toBe(expected.tokenLogprobs.length);
      served.forEach((logprob, i) => expect(Math.abs(logprob - expected.tokenLogprobs[i]!)).toBeLessThan(1e-4));
      expect(Math.abs(served.reduce((a, b) => a + b, 0) - expected.logprob)).toBeLessThan(1e-4);
      // is_greedy as lm-eval reads it: each token's logprob against the largest in its top_logprobs.
      const greedy = (logprobs.top_logprobs as Array<Record<string, number>>).slice(contextLength, -1).every((top, i) => served[i] === Math.max(...Object.values(top)));
      expect(greedy).toBe(expected.isGreedy);
    } finally {
      scorer.dispose();
    }
  });

  test('/tokenize and /detokenize in vLLM\'s shapes; TGI /generate with details', async () => {
    const tokenized = await post('/tokenize', { prompt: capital.text });
    expect(tokenized).toMatchObject({ count: capital.prompt_ids.length, tokens: capital.prompt_ids, max_model_len: 512 });
    expect((await post('/detokenize', { tokens: capital.prompt_ids.slice(1) })).prompt).toBe(capital.text);
    const tgi = await post('/generate', { inputs: capital.text, parameters: { max_new_tokens: 4, details: true } });
    expect(tgi.details.tokens.map((token: { id: number }) => token.id)).toEqual(capital.generated_ids.slice(0, 4));
    expect(tgi.generated_text).toBe(loaded.tokenizer.decode(capital.generated_ids.slice(0, 4)));
    expect(tgi.details.finish_reason).toBe('length');
  });
});
