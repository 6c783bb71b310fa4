import { ReusableCache, generate, type GenerateRequest, type GenerateResult } from '../src/engine/generate.js';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { TINY_LLAMA } from './fixtures.js';

let loaded: LoadedModel;
beforeAll(async () => {
  loaded = await loadModel(TINY_LLAMA, { backend: 'wasm' });
});

function run(promptIds: number[], reuseCache?: ReusableCache): GenerateResult {
  const request: GenerateRequest = {
    promptIds, maxNewTokens: 6, topLogprobs: 3, stopStrings: [], stopTokenIds: [], reuseCache,
    sampling: { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, seed: 1 },
  };
  return generate(loaded.model, loaded.tokenizer, request);
}

function expectSameGeneration(reused: GenerateResult, fresh: GenerateResult): void {
  expect(reused.generatedIds).toEqual(fresh.generatedIds);
  reused.tokens.forEach((token, index) => {
    const expected = fresh.tokens[index]!;
    // Same positions and weights; only the order of float32 sums may differ.
    expect(Math.abs(token.logprob - expected.logprob)).toBeLessThan(1e-4);
    token.top.forEach(([id, logprob], rank) => {
      expect(id).toBe(expected.top[rank]![0]);
      expect(Math.abs(logprob - expected.top[rank]![1])).toBeLessThan(1e-4);
    });
  });
}

test('a KV cache kept across turns gives what a fresh run gives, computing only the new tokens', () => {
  const reuse = new ReusableCache();
  const firstPrompt = loaded.tokenizer.encode('The capital of France is', true);
  const first = run(firstPrompt, reuse);
  expect(first.reusedPromptTokens).toBe(0);
  // The cache holds the prompt and every generated token but the last (it was never fed back).
  expect(reuse.ids).toEqual([...firstPrompt, ...first.generatedIds.slice(0, -1)]);

  // The next turn's prompt extends the conversation: everything the cache holds is reused.
  const secondPrompt = [...firstPrompt, ...first.generatedIds, ...loaded.tokenizer.encode(' And of Spain?', false)];
  const second = run(secondPrompt, reuse);
  expect(second.reusedPromptTokens).toBe(firstPrompt.length + first.generatedIds.length - 1);
  expectSameGeneration(second, run(secondPrompt));

  // An edited conversation (/undo, /regen) shares only its start: the cache is rewound to it.
  const editedPrompt = [...firstPrompt.slice(0, 3), ...loaded.tokenizer.encode(' largest city in Italy is', false)];
  const edited = run(editedPrompt, reuse);
  expect(edited.reusedPromptTokens).toBe(3);
  expectSameGeneration(edited, run(editedPrompt));

  // The same prompt again still computes its last token, whose logits start the reply.
  const again = run(editedPrompt, reuse);
  expect(again.reusedPromptTokens).toBe(editedPrompt.length - 1);
  expectSameGeneration(again, run(editedPrompt));
  reuse.dispose();
  expect(reuse.cache).toBeNull();
});
