import { HerdError } from '../errors.js';
import type { LlamaForCausalLM } from './model.js';
import type { KvCache } from './ops.js';
import { Sampler, logSoftmax, topEntries, type SamplingOptions } from './sampling.js';
import { TextStream, type HerdTokenizer } from './tokenizer.js';

export interface GenerateRequest {
  promptIds: readonly number[];
  maxNewTokens: number;
  sampling: SamplingOptions;
  /** Generation ends when one of these ids is produced (generation_config's eos list). */
  stopTokenIds: readonly number[];
  /** Generation ends when the text contains one of these; the text is cut before it. */
  stopStrings: readonly string[];
  /** For each generated token, report the top-N of the model's distribution (0: none). */
  topLogprobs: number;
  /** Receives text as soon as it is final, for streaming. */
  onText?: (delta: string) => void;
  /** Receives each token as it is chosen, before the text it completes goes to onText. */
  onToken?: (token: GeneratedToken) => void;
  /** Receives the raw logits of each step before its token is chosen (classifiers read a few ids' scores). */
  onLogits?: (logits: Float32Array) => void;
  /** Checked before each token; true ends generation early (finish reason "abort"). */
  shouldStop?: () => boolean;
  /**
   * A KV cache kept across calls (multi-turn chat): the positions it holds that the prompt starts
   * with are not computed again, and the cache is kept for the next call instead of freed.
   */
  reuseCache?: ReusableCache;
}

/** A KV cache kept between generate calls with the ids whose keys and values it holds. */
export class ReusableCache {
  cache: KvCache | null = null;
  ids: number[] = [];

  dispose(): void {
    this.cache?.dispose();
    this.cache = null;
    this.ids = [];
  }
}

export interface GeneratedToken {
  id: number;
  /** log-softmax of the raw logits (before any sampling filter). */
  logprob: number;
  top: Array<[number, number]>;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface GenerateResult {
  generatedIds: number[];
  text: string;
  finishReason: FinishReason;
  /** The eos id or stop string that ended generation. */
  stoppedBy: number | string | null;
  tokens: GeneratedToken[];
  prefillMs: number;
  decodeMs: number;
  /** Prompt tokens whose keys and values came from the reused cache (0 without `reuseCache`). */
  reusedPromptTokens: number;
}

/** Generates to the end without pausing (scripts, tests, benchmarks). */
export function generate(model: LlamaForCausalLM<unknown, unknown>, tokenizer: HerdTokenizer, request: GenerateRequest): GenerateResult {
  const steps = generateSteps(model, tokenizer, request);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * Generates while letting the event loop run between tokens, so a terminal UI can redraw and a
 * key press can set `shouldStop`.
 */
export async function generateAsync(model: LlamaForCausalLM<unknown, unknown>, tokenizer: HerdTokenizer, request: GenerateRequest): Promise<GenerateResult> {
  const steps = generateSteps(model, tokenizer, request);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Prefill the prompt, then decode one token at a time from the KV cache, pausing after each. */
function* generateSteps(model: LlamaForCausalLM<unknown, unknown>, tokenizer: HerdTokenizer, request: GenerateRequest): Generator<void, GenerateResult> {
  const context = model.config.maxPositionEmbeddings;
  const promptLength = request.promptIds.length;
  if (promptLength === 0) throw new HerdError('the prompt is empty');
  if (promptLength >= context) {
    throw new HerdError(`the prompt has ${promptLength} tokens but the model's context (max_position_embeddings) is ${context}`);
  }
  const maxNewTokens = Math.min(request.maxNewTokens, context - promptLength);
  const { cache, reused } = request.reuseCache
    ? prepareReusedCache(model, request.reuseCache, request.promptIds, promptLength + maxNewTokens)
    : { cache: model.createCache(promptLength + maxNewTokens), reused: 0 };
  const sampler = new Sampler(request.sampling);
  const stream = new TextStream(tokenizer);
  const stops = new StopStringWatcher(request.stopStrings);
  const history = [...request.promptIds];
  const result: GenerateResult = {
    generatedIds: [], text: '', finishReason: 'length', stoppedBy: null, tokens: [], prefillMs: 0, decodeMs: 0, reusedPromptTokens: reused,
  };

  try {
    // Each step's logits are read within the step, so one array serves them all (ForwardOptions.into).
    const logits = new Float32Array(model.config.vocabSize);
    let started = performance.now();
    model.forward(Int32Array.from(request.promptIds.slice(reused)), cache, { into: logits });
    result.prefillMs = performance.now() - started;
    started = performance.now();
    while (result.generatedIds.length < maxNewTokens) {
      if (request.shouldStop?.()) {
        result.finishReason = 'abort';
        break;
      }
      request.onLogits?.(logits);
      const id = sampler.next(logits, history, result.generatedIds);
      history.push(id);
      result.generatedIds.push(id);
      const token = describeToken(id, logits, request.topLogprobs);
      result.tokens.push(token);
      request.onToken?.(token);
      if (request.stopTokenIds.includes(id)) {
        Object.assign(result, { finishReason: 'stop', stoppedBy: id });
        break;
      }
      const stop = stops.feed(stream.push(id));
      if (stop.text) request.onText?.(stop.text);
      if (stop.matched !== null) {
        Object.assign(result, { finishReason: 'stop', stoppedBy: stop.matched });
        break;
      }
      if (result.generatedIds.length < maxNewTokens) model.forward(Int32Array.of(id), cache, { into: logits });
      yield;
    }
    result.decodeMs = performance.now() - started;
  } finally {
    // forward() raises cache.length only after a pass completes, so it counts valid positions.
    if (request.reuseCache) request.reuseCache.ids = history.slice(0, cache.length);
    else cache.dispose();
  }
  if (typeof result.stoppedBy !== 'string') {
    // Bytes of a character the output never completed, then text held back as a possible stop
    // string's start that was not one after all.
    const tail = stops.feed(stream.flush());
    if (tail.text) request.onText?.(tail.text);
    if (tail.matched !== null) Object.assign(result, { finishReason: 'stop', stoppedBy: tail.matched });
    else {
      const rest = stops.flush();
      if (rest) request.onText?.(rest);
    }
  }
  result.text = stops.text;
  return result;
}

/** Positions a reused cache holds at first (createCache caps it at the model's context). */
const REUSED_CACHE_MIN_POSITIONS = 4096;

/**
 * Makes the reused cache ready for this prompt: rewound to the prefix it shares with the prompt
 * (at least one prompt token is always fed, for its logits), or replaced by a larger one.
 */
function prepareReusedCache(
  model: LlamaForCausalLM<unknown, unknown>,
  reuse: ReusableCache,
  promptIds: readonly number[],
  needed: number,
): { cache: KvCache; reused: number } {
  if (reuse.cache === null || reuse.cache.shape.capacity < needed) {
    // A new cache starts empty (the prompt is recomputed), so it is made roomy: at least
    // REUSED_CACHE_MIN_POSITIONS, and doubling keeps reallocations logarithmic in the chat's length.
    const capacity = Math.max(needed, 2 * (reuse.cache?.shape.capacity ?? 0), REUSED_CACHE_MIN_POSITIONS);
    reuse.dispose();
    reuse.cache = model.createCache(capacity);
  }
  let shared = 0;
  const limit = Math.min(reuse.ids.length, promptIds.length - 1);
  while (shared < limit && reuse.ids[shared] === promptIds[shared]) shared++;
  reuse.cache.length = shared;
  reuse.ids = reuse.ids.slice(0, shared);
  return { cache: reuse.cache, reused: shared };
}

/** The chosen id with its log-probability and the top-N of the raw logits (NaN and none when topN is 0). */
export function describeToken(id: number, logits: Float32Array, topN: number): GeneratedToken {
  if (topN <= 0) return { id, logprob: Number.NaN, top: [] };
  const logprobs = logSoftmax(logits);
  return { id, logprob: logprobs[id]!, top: topEntries(logprobs, topN) };
}

/**
 * Watches streamed text for stop strings. Text that could still turn out to be the start of a
 * stop string is held back, so nothing after a stop string is ever printed.
 */
export class StopStringWatcher {
  private pending = '';
  private released = '';

  constructor(private readonly stopStrings: readonly string[]) {}

  /** Adds a text delta; returns what may be printed now, and the stop string if one appeared. */
  feed(delta: string): { text: string; matched: string | null } {
    this.pending += delta;
    const hit = this.earliestMatch();
    if (hit) {
      const text = this.pending.slice(0, hit.index);
      this.release(text);
      return { text, matched: hit.stop };
    }
    const keep = this.longestPossibleStart();
    const text = this.pending.slice(0, this.pending.length - keep);
    this.release(text);
    return { text, matched: null };
  }

  /** Releases what was held back (generation ended without a stop string). */
  flush(): string {
    const text = this.pending;
    this.release(text);
    return text;
  }

  /** All text released so far. */
  get text(): string {
    return this.released;
  }

  private release(text: string): void {
    this.released += text;
    this.pending = this.pending.slice(text.length);
  }

  private earliestMatch(): { index: number; stop: string } | null {
    let best: { index: number; stop: string } | null = null;
    for (const stop of this.stopStrings) {
      const index = this.pending.indexOf(stop);
      if (index >= 0 && (best === null || index < best.index)) best = { index, stop };
    }
    return best;
  }

  /** Length of the longest suffix of pending text that is a proper prefix of a stop string. */
  private longestPossibleStart(): number {
    let longest = 0;
    for (const stop of this.stopStrings) {
      for (let length = Math.min(stop.length - 1, this.pending.length); length > longest; length--) {
        if (this.pending.endsWith(stop.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }
}
