/**
 * Log-likelihoods of continuations under the model, as lm-eval's HFLM computes them, over herd's
 * one forward pass. A context is run once; for each continuation the KV cache is rewound to the
 * end of the context and only the continuation's tokens are run, so an n-choice question costs one
 * context pass plus n short passes instead of n full ones.
 */
import { HerdError } from '../errors.js';
import type { LlamaForCausalLM } from '../engine/model.js';
import { argmax, logSoftmax } from '../engine/sampling.js';

export interface ContinuationScore {
  /** Sum of the continuation tokens' natural-log probabilities. */
  logprob: number;
  /** Whether every continuation token was the model's argmax (lm-eval's is_greedy). */
  isGreedy: boolean;
  tokenLogprobs: number[];
}

type Model = LlamaForCausalLM<unknown, unknown>;

export class LoglikelihoodScorer {
  constructor(
    private readonly model: Model,
    /** Longest input the model is given (lm-eval's max_length); longer contexts lose their start. */
    readonly maxLength: number,
  ) {}

  /** Scores each continuation after the same context tokens (the context must not be empty). */
  scoreContinuations(context: readonly number[], continuations: readonly (readonly number[])[]): ContinuationScore[] {
    if (context.length === 0) throw new HerdError('a continuation needs at least one context token (BOS)');
    const longest = Math.max(...continuations.map((tokens) => tokens.length));
    if (longest > this.maxLength) throw new HerdError(`a continuation of ${longest} tokens exceeds the ${this.maxLength}-token window`);
    // lm-eval keeps the last max_length + 1 tokens of context + continuation.
    const kept = context.slice(-Math.max(1, this.maxLength + 1 - longest));
    const prefix = kept.slice(0, -1);
    const cache = this.model.createCache(kept.length + longest);
    try {
      if (prefix.length > 0) this.model.forward(Int32Array.from(prefix), cache);
      return continuations.map((continuation) => {
        if (continuation.length === 0) return { logprob: 0, isGreedy: true, tokenLogprobs: [] };
        cache.length = prefix.length;
        const input = Int32Array.from([kept[kept.length - 1]!, ...continuation.slice(0, -1)]);
        return scoreRows(this.model.forward(input, cache, { allPositions: true }), continuation);
      });
    } finally {
      cache.dispose();
    }
  }

  /**
   * lm-eval's loglikelihood_rolling: the text's tokens (no BOS) are scored in windows of
   * max_length, the first after the prefix token, each later one conditioned on the tokens
   * before it (get_rolling_token_windows with context_len 1, then make_disjoint_window).
   */
  rollingLoglikelihood(tokens: readonly number[], prefixToken: number): number {
    let total = 0;
    for (const [context, continuation] of rollingWindows(tokens, prefixToken, this.maxLength)) {
      total += this.scoreContinuations(context, [continuation])[0]!.logprob;
    }
    return total;
  }
}

/** Per-token logprobs from logits rows [continuation.length × vocab]: row i predicts token i. */
function scoreRows(logits: Float32Array, continuation: readonly number[]): ContinuationScore {
  const vocab = logits.length / continuation.length;
  const tokenLogprobs: number[] = [];
  let isGreedy = true;
  continuation.forEach((token, i) => {
    const row = logits.subarray(i * vocab, (i + 1) * vocab);
    tokenLogprobs.push(logSoftmax(row)[token]!);
    if (argmax(row) !== token) isGreedy = false;
  });
  return { logprob: tokenLogprobs.reduce((sum, value) => sum + value, 0), isGreedy, tokenLogprobs };
}

/** (context, continuation) windows that together predict every token exactly once. */
export function rollingWindows(tokens: readonly number[], prefixToken: number, maxLength: number): Array<[number[], number[]]> {
  const windows: Array<[number[], number[]]> = [];
  if (tokens.length === 0) return windows;
  const first = Math.min(maxLength, tokens.length);
  windows.push([[prefixToken], tokens.slice(0, first)]);
  let predicted = first;
  while (predicted < tokens.length) {
    const length = Math.min(tokens.length - predicted, maxLength);
    const end = predicted + length;
    const context = tokens.slice(Math.max(0, end - maxLength - 1), end - 1);
    // make_disjoint_window: the context stops where the predicted tokens begin.
    windows.push([context.slice(0, context.length - (length - 1)), tokens.slice(end - length, end)]);
    predicted += length;
  }
  return windows;
}
