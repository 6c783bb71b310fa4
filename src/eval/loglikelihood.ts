/**
 * Log-likelihoods of continuations under the model, as lm-eval's HFLM computes them, over herd's
 * one forward pass.
 *
 * The engine runs one sequence at a time against one KV cache (attention is causal over the
 * positions the cache holds; there is no batch dimension or per-sequence mask), so requests cannot
 * be stacked into one pass without letting one attend to another. What lm-eval gains from batching
 * herd gets from never computing a token twice instead: the scorer keeps one KV cache across all
 * requests of a task, and each request rewinds it to the longest prefix it shares with what the
 * cache holds and runs only the rest. A multiple-choice context is thus encoded once for all its
 * choices, few-shot prefixes shared by consecutive documents (mmlu's per-subject examples,
 * gsm8k's fixed ones) once for all those documents, and choices that start alike share those
 * tokens. Requests are taken in token order so that shared prefixes come one after another.
 */
import { HerdError } from '../errors.js';
import type { LlamaForCausalLM } from '../engine/model.js';
import type { KvCache } from '../engine/ops.js';
import { argmax, logSoftmax } from '../engine/sampling.js';

export interface ContinuationScore {
  /** Sum of the continuation tokens' natural-log probabilities. */
  logprob: number;
  /** Whether every continuation token was the model's argmax (lm-eval's is_greedy). */
  isGreedy: boolean;
  tokenLogprobs: number[];
}

/** One loglikelihood request, already tokenized (the context must not be empty). */
export interface TokenRequest {
  context: readonly number[];
  continuation: readonly number[];
}

type Model = LlamaForCausalLM<unknown, unknown>;

/** What a position's logits said about the token that follows it. */
interface NextTokenScore {
  logprob: number;
  greedy: boolean;
}

/** Fewest positions a new cache gets, so that a growing task does not reallocate at every request. */
const MIN_CACHE_POSITIONS = 512;

export class LoglikelihoodScorer {
  private cache: KvCache | null = null;
  /** The last request's context + continuation; the cache holds the keys and values of all but its last token. */
  private known: number[] = [];
  /** next[p]: the score position p's logits gave known[p + 1], where that row was computed (the scored spans). */
  private next: Array<NextTokenScore | undefined> = [];
  /** Tokens run through the model so far; with reuse this is far below the tokens requested. */
  tokensRun = 0;

  constructor(
    private readonly model: Model,
    /** Longest input the model is given (lm-eval's max_length); longer contexts lose their start. */
    readonly maxLength: number,
  ) {}

  /** Scores each continuation after the same context tokens. */
  scoreContinuations(context: readonly number[], continuations: readonly (readonly number[])[]): ContinuationScore[] {
    return this.score(continuations.map((continuation) => ({ context, continuation })));
  }

  /** Scores requests in the order that shares the most cached tokens; results come back in the requests' order. */
  score(requests: readonly TokenRequest[]): ContinuationScore[] {
    const sequences = requests.map((request) => this.truncated(request));
    const order = sequences.map((_, i) => i).sort((a, b) => compareTokens(sequences[a]!.tokens, sequences[b]!.tokens));
    const results = new Array<ContinuationScore>(requests.length);
    for (const i of order) results[i] = this.scoreSequence(sequences[i]!.tokens, sequences[i]!.firstScored);
    return results;
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

  /** Frees the KV cache kept between requests. */
  dispose(): void {
    this.cache?.dispose();
    this.cache = null;
    this.known = [];
    this.next = [];
  }

  private truncated(request: TokenRequest): ScoredSequence {
    return scoredSequence(request, this.maxLength);
  }

  /**
   * Scores tokens[firstScored..] given what precedes them. Position p's logits predict token p + 1;
   * the model is run on tokens[..length - 1] from the first position the cache cannot supply.
   */
  private scoreSequence(tokens: readonly number[], firstScored: number): ContinuationScore {
    if (firstScored === tokens.length) return { logprob: 0, isGreedy: true, tokenLogprobs: [] };
    const inputLength = tokens.length - 1;
    const firstRow = firstScored - 1;
    const cache = this.cacheFor(inputLength);
    const start = this.reusablePrefix(cache, tokens, firstRow);
    const rows = this.run(cache, tokens.slice(0, inputLength), start, firstRow);
    const tokenLogprobs: number[] = [];
    let isGreedy = true;
    for (let p = firstRow; p < inputLength; p++) {
      const scored = p < start ? this.next[p]! : rows(p, tokens[p + 1]!);
      tokenLogprobs.push(scored.logprob);
      if (!scored.greedy) isGreedy = false;
    }
    this.known = [...tokens];
    return { logprob: tokenLogprobs.reduce((sum, value) => sum + value, 0), isGreedy, tokenLogprobs };
  }

  /**
   * The first position to run: the cache is reused up to the prefix the last request shares with
   * `tokens`, less one position (its logits predict the first token that differs), and earlier if
   * a row to score was never kept. A request equal to the last one runs nothing.
   */
  private reusablePrefix(cache: KvCache, tokens: readonly number[], firstRow: number): number {
    let shared = 0;
    const limit = Math.min(this.known.length, tokens.length);
    while (shared < limit && this.known[shared] === tokens[shared]) shared++;
    let start = Math.min(Math.max(0, shared - 1), cache.length, tokens.length - 1);
    for (let p = firstRow; p < start; p++) {
      if (this.next[p] === undefined) {
        start = p;
        break;
      }
    }
    return start;
  }

  /**
   * Runs tokens[start..] after the cache rewound to `start`: the part before the first scored row
   * for its keys and values only, the rest with logits for every position. Returns a reader of
   * those rows, which also keeps each row's score for later requests that share the position.
   */
  private run(cache: KvCache, input: readonly number[], start: number, firstRow: number): (position: number, token: number) => NextTokenScore {
    cache.length = start;
    this.next.length = Math.min(this.next.length, start);
    const from = Math.max(start, firstRow);
    if (from > start) this.forward(input.slice(start, from), cache, false);
    if (from >= input.length) return () => failMissingRow();
    const logits = this.forward(input.slice(from), cache, true);
    const vocab = logits.length / (input.length - from);
    return (position, token) => {
      const row = logits.subarray((position - from) * vocab, (position - from + 1) * vocab);
      const scored = { logprob: logSoftmax(row)[token]!, greedy: argmax(row) === token };
      this.next[position] = scored;
      return scored;
    };
  }

  private forward(ids: readonly number[], cache: KvCache, allPositions: boolean): Float32Array {
    this.tokensRun += ids.length;
    return this.model.forward(Int32Array.from(ids), cache, { allPositions });
  }

  /** The kept cache, replaced by a larger one (which starts empty) when the input does not fit. */
  private cacheFor(positions: number): KvCache {
    if (this.cache === null || this.cache.shape.capacity < positions) {
      const capacity = Math.min(this.maxLength, Math.max(positions, 2 * (this.cache?.shape.capacity ?? 0), MIN_CACHE_POSITIONS));
      this.dispose();
      this.cache = this.model.createCache(capacity);
    }
    return this.cache;
  }
}

function failMissingRow(): never {
  throw new HerdError('internal: a scored row was neither cached nor computed');
}

/** A request as the tokens the model reads and the first of them that is scored. */
export interface ScoredSequence {
  tokens: number[];
  firstScored: number;
}

/** Context + continuation as one token sequence; lm-eval keeps the last max_length + 1 tokens. */
export function scoredSequence({ context, continuation }: TokenRequest, maxLength: number): ScoredSequence {
  if (context.length === 0) throw new HerdError('a continuation needs at least one context token (BOS)');
  if (continuation.length > maxLength) throw new HerdError(`a continuation of ${continuation.length} tokens exceeds the ${maxLength}-token window`);
  const kept = context.slice(-Math.max(1, maxLength + 1 - continuation.length));
  return { tokens: [...kept, ...continuation], firstScored: kept.length };
}

/** Lexicographic order of token sequences, so that sequences sharing a prefix are adjacent. */
function compareTokens(a: readonly number[], b: readonly number[]): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
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
