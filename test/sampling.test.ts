import { StopStringWatcher, generate, generateAsync } from '../src/engine/generate.js';
import { loadModel } from '../src/backends/load.js';
import {
  GREEDY, Sampler, applyPresenceFrequencyPenalties, applyRepetitionPenalty, filteredProbabilities, logSoftmax, topEntries, type SamplingOptions,
} from '../src/engine/sampling.js';
import { STORIES } from './fixtures.js';

// A hand-built distribution: logits are the logs of these probabilities.
const probabilities = [0.5, 0.2, 0.15, 0.1, 0.05];
const logits = Float32Array.from(probabilities, Math.log);
const sampling = (options: Partial<SamplingOptions>): SamplingOptions => ({ ...GREEDY, temperature: 1, ...options });

function expectDistribution(actual: Array<[number, number]>, expected: Record<number, number>): void {
  expect(actual.map(([id]) => id).sort()).toEqual(Object.keys(expected).map(Number).sort());
  for (const [id, p] of actual) expect(p).toBeCloseTo(expected[id]!, 6);
}

describe('sampling filters on a hand-built distribution', () => {
  test('temperature 1 and no filters give the distribution back', () => {
    expectDistribution(filteredProbabilities(logits, sampling({})), { 0: 0.5, 1: 0.2, 2: 0.15, 3: 0.1, 4: 0.05 });
  });

  test('temperature 2 flattens to p^(1/2), renormalised', () => {
    const roots = probabilities.map(Math.sqrt);
    const total = roots.reduce((a, b) => a + b);
    expectDistribution(filteredProbabilities(logits, sampling({ temperature: 2 })), Object.fromEntries(roots.map((r, i) => [i, r / total])));
  });

  test('top-k keeps the k most likely', () => {
    expectDistribution(filteredProbabilities(logits, sampling({ topK: 2 })), { 0: 0.5 / 0.7, 1: 0.2 / 0.7 });
  });

  test('top-p keeps the smallest set reaching p', () => {
    expectDistribution(filteredProbabilities(logits, sampling({ topP: 0.75 })), { 0: 0.5 / 0.85, 1: 0.2 / 0.85, 2: 0.15 / 0.85 });
    expectDistribution(filteredProbabilities(logits, sampling({ topP: 0.3 })), { 0: 1 });
  });

  test('min-p drops tokens below min-p × the top probability', () => {
    expectDistribution(filteredProbabilities(logits, sampling({ minP: 0.35 })), { 0: 0.5 / 0.7, 1: 0.2 / 0.7 });
  });

  test('repetition penalty divides positive and multiplies negative logits of seen tokens', () => {
    const penalized = applyRepetitionPenalty(Float32Array.of(2, -1, 0.5), [0, 1, 1], 2);
    expect([...penalized]).toEqual([1, -2, 0.5]);
  });

  test("presence and frequency penalties follow OpenAI's definition over generated tokens only", () => {
    // Token 1 generated twice, token 3 once: logit − count × 0.5 − 0.25 for each; 0, 2 untouched.
    const penalized = applyPresenceFrequencyPenalties(Float32Array.of(2, 1, 0.5, -1), [1, 3, 1], 0.25, 0.5);
    expect([...penalized]).toEqual([2, 1 - 2 * 0.5 - 0.25, 0.5, -1 - 0.5 - 0.25]);
    // The prompt (previous) does not count; the generated tokens do: greedy moves off token 0.
    const sampler = new Sampler({ ...GREEDY, presencePenalty: 1, frequencyPenalty: 0.5 });
    expect(sampler.next(Float32Array.of(2, 1.5, 0), [0, 0, 0])).toBe(0);
    expect(sampler.next(Float32Array.of(2, 1.5, 0), [0], [0])).toBe(1);
  });

  test('draws follow the filtered distribution', () => {
    const sampler = new Sampler(sampling({ topK: 2, seed: 7 }));
    const counts = [0, 0, 0, 0, 0];
    for (let i = 0; i < 20000; i++) counts[sampler.next(logits, [])]!++;
    expect(counts.slice(2)).toEqual([0, 0, 0]);
    // Standard error of the frequency is about 0.003 at 20,000 draws.
    expect(Math.abs(counts[0]! / 20000 - 0.5 / 0.7)).toBeLessThan(0.015);
  });

  test('the same seed gives the same draws; another seed differs', () => {
    const draws = (seed: number) => {
      const sampler = new Sampler(sampling({ seed }));
      return Array.from({ length: 64 }, () => sampler.next(logits, []));
    };
    expect(draws(42)).toEqual(draws(42));
    expect(draws(42)).not.toEqual(draws(43));
  });

  test('greedy takes the argmax whatever the filters', () => {
    expect(new Sampler({ ...GREEDY, topK: 3 }).next(Float32Array.of(0.1, 3, 2), [])).toBe(1);
  });

  test('log-softmax and top entries', () => {
    const logprobs = logSoftmax(logits);
    probabilities.forEach((p, i) => expect(logprobs[i]).toBeCloseTo(Math.log(p), 6));
    expect(topEntries(Float64Array.of(0.1, 0.7, 0.3, 0.7), 3)).toEqual([[1, 0.7], [3, 0.7], [2, 0.3]]);
    // Past the few-entries path (a whole vocabulary): the same order, highest first, ties by id.
    const many = Float64Array.from({ length: 1000 }, (_, id) => (id * 7919) % 101);
    const expected = [...many.keys()].sort((a, b) => many[b]! - many[a]! || a - b).slice(0, 500).map((id) => [id, many[id]]);
    expect(topEntries(many, 500)).toEqual(expected);
    expect(topEntries(many, 50)).toEqual(expected.slice(0, 50));
    expect(topEntries(many, 5000)).toHaveLength(1000);
  });
});

describe('seeded generation on stories260K', () => {
  test('the same seed reproduces the text; a different seed changes it', async () => {
    const loaded = await loadModel(STORIES, { backend: 'wasm' });
    const run = (seed: number) =>
      generate(loaded.model, loaded.tokenizer, {
        promptIds: [1], maxNewTokens: 48, sampling: sampling({ temperature: 1, topP: 0.95, seed }), stopTokenIds: [2], stopStrings: [], topLogprobs: 0,
      }).generatedIds;
    expect(run(1)).toEqual(run(1));
    expect(run(1)).not.toEqual(run(2));
  });
});

describe('stop strings', () => {
  test('text that might start a stop string is held back, and nothing after the stop is released', () => {
    const watcher = new StopStringWatcher(['THE END']);
    expect(watcher.feed('and they lived. TH')).toEqual({ text: 'and they lived. ', matched: null });
    expect(watcher.feed('E E')).toEqual({ text: '', matched: null });
    expect(watcher.feed('ND!')).toEqual({ text: '', matched: 'THE END' });
    expect(watcher.text).toBe('and they lived. ');
  });

  test('a false start is released once it cannot be a stop string', () => {
    const watcher = new StopStringWatcher(['\n\n']);
    expect(watcher.feed('a\n')).toEqual({ text: 'a', matched: null });
    expect(watcher.feed('b')).toEqual({ text: '\nb', matched: null });
    expect(watcher.flush()).toBe('');
  });
});

describe('interruptible generation', () => {
  test('generateAsync stops when shouldStop turns true and reports "abort"', async () => {
    const loaded = await loadModel(STORIES, { backend: 'wasm' });
    let tokens = 0;
    const result = await generateAsync(loaded.model, loaded.tokenizer, {
      promptIds: [1], maxNewTokens: 40, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs: 0,
      onText: () => tokens++,
      shouldStop: () => tokens >= 5,
    });
    expect(result.finishReason).toBe('abort');
    expect(result.generatedIds.length).toBeLessThan(40);
    expect(result.text).toBe(loaded.tokenizer.decode(result.generatedIds));
  });
});
