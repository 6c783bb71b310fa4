import { generate } from '../src/engine/generate.js';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { GREEDY } from '../src/engine/sampling.js';
import { STORIES, TINY_LLAMA, readJson } from './fixtures.js';

interface TinyCase {
  name: string;
  text: string;
  prompt_ids: number[];
  generated_ids: number[];
  steps: Array<{ id: number; logprob: number; top: Array<[number, number]> }>;
  last_prompt_logits_head: number[];
}

function greedy(loaded: LoadedModel, promptIds: number[], steps: number, topLogprobs = 5) {
  return generate(loaded.model, loaded.tokenizer, { promptIds, maxNewTokens: steps, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs });
}

describe('tiny-llama-3.1 (BF16, two shards, llama3 RoPE) against the independent float64 oracle', () => {
  const reference = readJson<{ cases: TinyCase[] }>(`${TINY_LLAMA}/reference.json`);
  let loaded: LoadedModel;
  beforeAll(async () => {
    loaded = await loadModel(TINY_LLAMA, { backend: 'wasm' });
  });

  test.each(reference.cases.map((c) => [c.name, c] as const))('%s: prompt ids, 16 greedy ids, top-5 logprobs within 1e-3', (_name, c) => {
    const promptIds = loaded.tokenizer.encode(c.text, true);
    expect(promptIds).toEqual(c.prompt_ids);
    const result = greedy(loaded, promptIds, 16);
    expect(result.generatedIds).toEqual(c.generated_ids);
    result.tokens.forEach((token, step) => {
      const expected = c.steps[step]!;
      expect(token.logprob).toBeCloseTo(expected.logprob, 3);
      expect(token.top.map(([id]) => id)).toEqual(expected.top.map(([id]) => id));
      token.top.forEach(([, logprob], rank) => expect(Math.abs(logprob - expected.top[rank]![1])).toBeLessThan(1e-3));
    });
  });

  test('raw logits of the last prompt position match the oracle', () => {
    const c = reference.cases[0]!;
    const cache = loaded.model.createCache(64);
    const logits = loaded.model.forward(Int32Array.from(c.prompt_ids), cache);
    cache.dispose();
    c.last_prompt_logits_head.forEach((expected, id) => expect(Math.abs(logits[id]! - expected)).toBeLessThan(1e-4));
  });
});

describe('stories260K (F32, tied head, GQA) against llama2.c greedy output', () => {
  const reference = readJson<{
    prompt_ids: number[];
    generated_ids: number[];
    generated_text: string;
    steps: Array<{ top5: Array<{ id: number; logprob: number }> }>;
  }>(`${STORIES}/reference.json`);

  test('greedy decoding from BOS reproduces the 40 tokens, their text and top-5 logprobs', async () => {
    const loaded = await loadModel(STORIES, { backend: 'wasm' });
    const result = greedy(loaded, reference.prompt_ids, 40);
    expect(result.generatedIds).toEqual(reference.generated_ids);
    expect(result.text).toBe(reference.generated_text);
    result.tokens.forEach((token, step) => {
      reference.steps[step]!.top5.forEach(({ id, logprob }, rank) => {
        expect(token.top[rank]![0]).toBe(id);
        expect(Math.abs(token.top[rank]![1] - logprob)).toBeLessThan(1e-4);
      });
    });
  });

  test('the cpu backend computes the same greedy tokens', async () => {
    const loaded = await loadModel(STORIES, { backend: 'cpu' });
    expect(greedy(loaded, reference.prompt_ids, 40, 0).generatedIds).toEqual(reference.generated_ids);
  });
});
