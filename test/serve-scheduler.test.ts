import fs from 'node:fs';
import path from 'node:path';
import { HerdError } from '../src/errors.js';
import { generate } from '../src/engine/generate.js';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { GREEDY } from '../src/engine/sampling.js';
import { LoglikelihoodScorer } from '../src/eval/loglikelihood.js';
import { PrefixCache } from '../src/serve/prefix-cache.js';
import { QueueFullError, Scheduler, type SequenceRequest } from '../src/serve/scheduler.js';
import { DATA, GGUF_LLAMACPP, TINY_LLAMA } from './fixtures.js';

/**
 * The serving engine: batching several sequences into one pass changes nothing about any of
 * them, the prefix cache gives the logits of a cold run, and the scheduler's queue, cancellation
 * and prompt logprobs do what the HTTP layer relies on.
 */

type Model = LoadedModel['model'];

const BACKENDS = [
  // tfjs (float32 reference) on the safetensors fixture; herd's kernels on llama.cpp's Q8_0 GGUF, two threads so the workers keep KV too.
  { name: 'tfjs', dir: TINY_LLAMA, options: { backend: 'wasm' } },
  { name: 'kernels', dir: path.join(GGUF_LLAMACPP, 'model-Q8_0.gguf'), options: { backend: 'kernels', threads: 2 } },
] as const;

const loadedModels = new Map<string, LoadedModel>();
let text: string;

beforeAll(async () => {
  text = fs.readFileSync(path.join(DATA, 'text/wikitext-2-raw-test.txt'), 'utf8').slice(0, 4000);
  for (const { name, dir, options } of BACKENDS) loadedModels.set(name, await loadModel(dir, options));
});

/** `count` prompts of different lengths (4, 9, 14, … tokens) cut from the same text at different places. */
function prompts(loaded: LoadedModel, count: number): number[][] {
  const ids = loaded.tokenizer.encode(text, true);
  return Array.from({ length: count }, (_, i) => [ids[0]!, ...ids.slice(1 + 37 * i, 1 + 37 * i + 3 + 5 * i)]);
}

function greedyRequest(promptIds: number[], maxNewTokens: number, extra: Partial<SequenceRequest> = {}): SequenceRequest {
  return { promptIds, maxNewTokens, sampling: GREEDY, stopTokenIds: [], topLogprobs: 0, ...extra };
}

function maxAbsDifference(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Last-position logits of `ids` run from an empty cache. */
function coldLogits(model: Model, ids: readonly number[]): Float32Array {
  const cache = model.createCache(ids.length);
  try {
    return model.forward(Int32Array.from(ids), cache);
  } finally {
    cache.dispose();
  }
}

describe.each(BACKENDS.map(({ name }) => name))('batching changes nothing (%s)', (name) => {
  let loaded: LoadedModel;
  beforeAll(() => void (loaded = loadedModels.get(name)!));

  test('forwardBatch gives each sequence the logits its own forward gives', () => {
    const model = loaded.model;
    const [a, b, c] = prompts(loaded, 3);
    // b is a decoder (its prompt already cached, one new token), a and c prefill; c wants every position.
    const caches = [a!, b!, c!].map((ids) => model.createCache(ids.length + 1));
    model.forward(Int32Array.from(b!.slice(0, -1)), caches[1]!);
    const batched = model.forwardBatch([
      { ids: Int32Array.from(a!), cache: caches[0]! },
      { ids: Int32Array.of(b!.at(-1)!), cache: caches[1]! },
      { ids: Int32Array.from(c!), cache: caches[2]!, allPositions: true },
    ]);
    expect(caches.map((cache) => cache.length)).toEqual([a!.length, b!.length, c!.length]);
    caches.forEach((cache) => cache.dispose());
    // Float32 with the same per-row arithmetic: the batch agrees with one sequence at a time to rounding.
    expect(maxAbsDifference(batched[0]!, coldLogits(model, a!))).toBeLessThan(1e-4);
    expect(maxAbsDifference(batched[1]!, coldLogits(model, b!))).toBeLessThan(1e-4);
    const cache = model.createCache(c!.length);
    const allPositions = model.forward(Int32Array.from(c!), cache, { allPositions: true });
    cache.dispose();
    expect(maxAbsDifference(batched[2]!, allPositions)).toBeLessThan(1e-4);
  });

  test('8 concurrent greedy requests of different lengths give exactly the tokens each gives alone', async () => {
    const requests = prompts(loaded, 8).map((promptIds, i) => greedyRequest(promptIds, 6 + i));
    const alone = requests.map(({ promptIds, maxNewTokens }) => generate(loaded.model, loaded.tokenizer, {
      promptIds, maxNewTokens, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs: 0,
    }).generatedIds);
    // Four slots for eight requests: sequences join as others leave; 12 tokens a step prefill the longer prompts in chunks beside the decoders.
    const scheduler = new Scheduler(loaded.model, { parallel: 4, maxQueue: 4, contextLength: 256, prefixCacheBytes: 0, stepTokens: 12 });
    const results = await Promise.all(requests.map((request) => scheduler.submit(request)));
    const stats = scheduler.stats();
    await scheduler.close();
    expect(results.map((result) => result.generatedIds)).toEqual(alone);
    expect(results.map((result) => result.finishReason)).toEqual(requests.map(() => 'length'));
    expect(results.map((result) => result.promptTokens)).toEqual(requests.map(({ promptIds }) => promptIds.length));
    // Several sequences really shared passes.
    expect(stats.sequencesStepped / stats.steps).toBeGreaterThan(2);
  });

  test('a prefix-cache hit gives the logits of a cold run', () => {
    const model = loaded.model;
    const all = prompts(loaded, 8);
    const shared = all[7]!;
    const prefixCache = new PrefixCache(model, 1e8);
    const first = model.createCache(shared.length + 4);
    model.forward(Int32Array.from(shared), first);
    prefixCache.keep(shared, first);
    const longer = [...shared, ...all[0]!.slice(1)];
    const borrower = model.createCache(longer.length);
    const reused = prefixCache.borrowInto(longer, borrower);
    expect(reused).toBe(shared.length);
    const warm = model.forward(Int32Array.from(longer.slice(reused)), borrower);
    borrower.dispose();
    expect(maxAbsDifference(warm, coldLogits(model, longer))).toBeLessThan(1e-4);
    // The same prompt again reuses all but its last token, whose logits are needed.
    const again = model.createCache(shared.length);
    expect(prefixCache.borrowInto(shared, again)).toBe(shared.length - 1);
    expect(maxAbsDifference(model.forward(Int32Array.of(shared.at(-1)!), again), coldLogits(model, shared))).toBeLessThan(1e-4);
    again.dispose();
    expect(prefixCache.stats()).toMatchObject({ prefixCacheHits: 2, prefixCacheTokens: 2 * shared.length - 1, prefixCacheEntries: 1 });
    prefixCache.clear();
    expect(prefixCache.stats()).toMatchObject({ prefixCacheEntries: 0, prefixCacheBytes: 0 });
  });
});

describe('the scheduler (tfjs)', () => {
  let loaded: LoadedModel;
  beforeAll(() => void (loaded = loadedModels.get('tfjs')!));

  test('requests sharing a system prompt reuse its KV, report it as cached, and generate what a cold run does', async () => {
    const [other, system] = [prompts(loaded, 1)[0]!, prompts(loaded, 8)[6]!];
    const scheduler = new Scheduler(loaded.model, { parallel: 2, maxQueue: 2, contextLength: 256, prefixCacheBytes: 1e8 });
    const cold = await scheduler.submit(greedyRequest([...system, other[1]!], 5));
    const warm = await scheduler.submit(greedyRequest([...system, ...other.slice(2)], 5));
    await scheduler.close();
    expect(cold.cachedPromptTokens).toBe(0);
    expect(warm.cachedPromptTokens).toBe(system.length);
    const alone = generate(loaded.model, loaded.tokenizer, { promptIds: [...system, ...other.slice(2)], maxNewTokens: 5, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs: 0 });
    expect(warm.generatedIds).toEqual(alone.generatedIds);
  });

  test('a long generation outgrows its first cache and goes on exactly as generate does', async () => {
    const [a] = prompts(loaded, 1);
    // A new sequence's cache has room for 256 generated tokens (FIRST_DECODE_POSITIONS), then doubles.
    const maxNewTokens = 300;
    const scheduler = new Scheduler(loaded.model, { parallel: 2, maxQueue: 0, contextLength: 512, prefixCacheBytes: 0 });
    const result = await scheduler.submit(greedyRequest(a!, maxNewTokens));
    await scheduler.close();
    const alone = generate(loaded.model, loaded.tokenizer, { promptIds: a!, maxNewTokens, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs: 0 });
    expect(result.generatedIds).toEqual(alone.generatedIds);
  });

  test('a cancelled sequence frees its slot: the waiting one starts and the stats show it', async () => {
    const [a, b] = prompts(loaded, 2);
    const scheduler = new Scheduler(loaded.model, { parallel: 1, maxQueue: 1, contextLength: 256, prefixCacheBytes: 0 });
    const controller = new AbortController();
    const seen: Array<{ running: number; waiting: number }> = [];
    const first = scheduler.submit(greedyRequest(a!, 200, {
      signal: controller.signal,
      onToken: () => {
        const { running, waiting } = scheduler.stats();
        seen.push({ running, waiting });
        if (seen.length === 3) controller.abort();
      },
    }));
    const second = scheduler.submit(greedyRequest(b!, 4));
    const [cancelled, next] = await Promise.all([first, second]);
    expect(cancelled.finishReason).toBe('abort');
    expect(cancelled.generatedIds).toHaveLength(3);
    expect(seen[0]).toEqual({ running: 1, waiting: 1 });
    expect(next.finishReason).toBe('length');
    expect(next.generatedIds).toHaveLength(4);
    expect(scheduler.stats()).toMatchObject({ running: 0, waiting: 0 });
    await scheduler.close();
  });

  test('a request over the queue limit is refused with QueueFullError and a Retry-After; one over the context names both numbers', async () => {
    const [a] = prompts(loaded, 1);
    const scheduler = new Scheduler(loaded.model, { parallel: 1, maxQueue: 1, contextLength: 64, prefixCacheBytes: 0 });
    const accepted = [scheduler.submit(greedyRequest(a!, 3)), scheduler.submit(greedyRequest(a!, 3))];
    const refused = scheduler.submit(greedyRequest(a!, 3));
    await expect(refused).rejects.toBeInstanceOf(QueueFullError);
    const refusal = (await refused.catch((error: unknown) => error)) as QueueFullError;
    expect(refusal.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    const tooLong = scheduler.submit(greedyRequest(a!, 64));
    await expect(tooLong).rejects.toBeInstanceOf(HerdError);
    await expect(tooLong).rejects.toThrow(`${a!.length + 64} in all, but the context is 64 tokens`);
    expect((await Promise.all(accepted)).map((result) => result.finishReason)).toEqual(['length', 'length']);
    await scheduler.close();
    await expect(scheduler.submit(greedyRequest(a!, 3))).rejects.toThrow('closed');
  });

  test('close cancels running and waiting sequences', async () => {
    const [a] = prompts(loaded, 1);
    const scheduler = new Scheduler(loaded.model, { parallel: 1, maxQueue: 2, contextLength: 256, prefixCacheBytes: 1e8 });
    const running = scheduler.submit(greedyRequest(a!, 200, { onToken: () => void scheduler.close() }));
    const waiting = scheduler.submit(greedyRequest(a!, 200));
    expect((await running).finishReason).toBe('abort');
    expect((await waiting).finishReason).toBe('abort');
    expect(scheduler.stats()).toMatchObject({ running: 0, waiting: 0, prefixCacheEntries: 0 });
  });

  test("prompt logprobs equal the engine's loglikelihood of the same tokens", async () => {
    const [context, continuation] = prompts(loaded, 5).slice(3);
    const promptIds = [...context!, ...continuation!.slice(1)];
    const scorer = new LoglikelihoodScorer(loaded.model, 2048);
    const [reference] = scorer.scoreContinuations(context!, [continuation!.slice(1)]);
    // lm-eval's request shape: token ids, max_tokens 1, echo, logprobs 1; a small step budget splits the prompt into chunks.
    const scheduler = new Scheduler(loaded.model, { parallel: 2, maxQueue: 0, contextLength: 256, prefixCacheBytes: 1e8, stepTokens: 5 });
    const result = await scheduler.submit(greedyRequest(promptIds, 1, { promptLogprobs: 1, topLogprobs: 1 }));
    await scheduler.close();
    const promptLogprobs = result.promptLogprobs!;
    expect(promptLogprobs).toHaveLength(promptIds.length);
    expect(promptLogprobs[0]).toBeNull();
    const scored = promptLogprobs.slice(context!.length).map((entry) => entry!.logprob);
    expect(scored).toHaveLength(reference!.tokenLogprobs.length);
    scored.forEach((logprob, i) => expect(Math.abs(logprob - reference!.tokenLogprobs[i]!)).toBeLessThan(1e-4));
    // Each top-1 is the most likely token, so no token beats its top entry.
    promptLogprobs.slice(1).forEach((entry) => expect(entry!.top[0]![1]).toBeGreaterThanOrEqual(entry!.logprob - 1e-9));
    expect(result.tokens[0]!.top).toHaveLength(1);
  });
});
