import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { logSoftmax } from '../src/engine/sampling.js';
import { LoglikelihoodScorer } from '../src/eval/loglikelihood.js';
import { STORIES } from './fixtures.js';

describe('loglikelihood requests share one kept KV cache (stories260K)', () => {
  let stories: LoadedModel;
  beforeAll(async () => {
    stories = await loadModel(STORIES);
  });
  const encode = (text: string, bos = false) => stories.tokenizer.encode(text, bos);

  /** The continuation's log-likelihood from one pass over context + continuation on a fresh cache. */
  const fromScratch = (context: number[], continuation: number[]): number => {
    const cache = stories.model.createCache(context.length + continuation.length);
    const logits = stories.model.forward(Int32Array.from([...context, ...continuation]), cache, { allPositions: true });
    cache.dispose();
    const vocab = stories.config.vocabSize;
    return continuation.reduce((sum, token, k) => {
      const position = context.length - 1 + k;
      return sum + logSoftmax(logits.subarray(position * vocab, (position + 1) * vocab))[token]!;
    }, 0);
  };
  const sharedLength = (a: number[], b: number[]) => {
    let n = 0;
    while (n < Math.min(a.length, b.length) && a[n] === b[n]) n++;
    return n;
  };

  test('a context is run once for all its choices, and a few-shot prefix once for consecutive documents', () => {
    const fewshot = 'Tom had a red ball. He liked to play with it. Answer: ball.\n\n';
    const firstContext = encode(`${fewshot}Lily saw a big dog in the park. She was`, true);
    const secondContext = encode(`${fewshot}Ben found a shiny stone by the river. He was`, true);
    const choices = [' happy', ' sad and tired', ' scared'].map((text) => encode(text));
    // This tokenizer starts each choice with the same "▁" token; their second tokens differ. So after
    // the first choice, each runs only its tokens past that shared one.
    expect(new Set(choices.map((choice) => choice[0])).size).toBe(1);
    expect(new Set(choices.map((choice) => choice[1])).size).toBe(3);
    const choiceTokens = choices.reduce((sum, choice) => sum + choice.length, 0) - (choices.length - 1);
    const scorer = new LoglikelihoodScorer(stories.model, 512);
    try {
      const first = scorer.scoreContinuations(firstContext, choices);
      // Input = context + continuation minus its last token: the context once (less the token the
      // first choice's pass starts from), then every choice token once.
      expect(scorer.tokensRun).toBe(firstContext.length - 1 + choiceTokens);
      const second = scorer.scoreContinuations(secondContext, choices);
      // The second document reruns from the position whose logits predict its first new token.
      const shared = sharedLength(firstContext, secondContext);
      expect(shared).toBeGreaterThan(10);
      expect(scorer.tokensRun - (firstContext.length - 1 + choiceTokens)).toBe(secondContext.length - shared + choiceTokens);
      choices.forEach((choice, i) => {
        expect(first[i]!.logprob).toBeCloseTo(fromScratch(firstContext, choice), 4);
        expect(second[i]!.logprob).toBeCloseTo(fromScratch(secondContext, choice), 4);
      });
    } finally {
      scorer.dispose();
    }
  });

  test('continuations that start alike share those tokens; a repeated request runs nothing', () => {
    const context = encode('Once upon a time, there was a little', true);
    const [girl, girlWho] = [encode(' girl'), encode(' girl who')];
    expect(girlWho.slice(0, girl.length)).toEqual(girl);
    const scorer = new LoglikelihoodScorer(stories.model, 512);
    try {
      // Requests are taken in token order: " girl" runs the context and its own tokens but the last
      // (context − 1 + girl tokens), then " girl who" only its tokens past " girl".
      const [short, long] = scorer.scoreContinuations(context, [girlWho, girl]).reverse();
      expect(scorer.tokensRun).toBe(context.length - 1 + girl.length + (girlWho.length - girl.length));
      expect(short!.logprob).toBeCloseTo(fromScratch(context, girl), 4);
      expect(long!.logprob).toBeCloseTo(fromScratch(context, girlWho), 4);
      // The long continuation's tokens include the short one's: their log-probabilities agree.
      expect(long!.tokenLogprobs.slice(0, girl.length)).toEqual(short!.tokenLogprobs);
      const before = scorer.tokensRun;
      const [again] = scorer.scoreContinuations(context, [girlWho]);
      expect(scorer.tokensRun - before).toBe(0);
      expect(again!.logprob).toBeCloseTo(long!.logprob, 5);
    } finally {
      scorer.dispose();
    }
  });
});
