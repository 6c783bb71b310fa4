import { HerdError } from '../errors.js';
import { describeToken, type GeneratedToken } from '../engine/generate.js';
import { PREFILL_CHUNK_TOKENS, type LlamaForCausalLM } from '../engine/model.js';
import type { KvCache } from '../engine/ops.js';
import { Sampler, logSoftmax, topEntries, type SamplingOptions } from '../engine/sampling.js';
import { PrefixCache } from './prefix-cache.js';

/**
 * Continuous batching in token ids: the engine side of `herd serve`. Requests wait in a bounded
 * FIFO queue; up to `parallel` of them run at once. Each step runs one batched forward pass over
 * the running sequences — one new token for each decoding sequence, a chunk of the prompt for
 * each one still prefilling — samples every sequence that has caught up with its own Sampler, and
 * retires the finished or cancelled ones, freeing their slot and KV cache. Sequences join and
 * leave between steps, and the event loop runs between steps, so HTTP I/O, disconnects and
 * signals are handled while generating. Text (detokenizing, stop strings, tool calls) is the HTTP
 * layer's business.
 */

export interface SequenceRequest {
  promptIds: readonly number[];
  maxNewTokens: number;
  sampling: SamplingOptions;
  stopTokenIds: readonly number[];
  /** 0 = none; else the top-N of the distribution of every generated token. */
  topLogprobs: number;
  /** When set (echo + logprobs): the logprob of every prompt token after the first, with its top-N (lm-eval's loglikelihood). */
  promptLogprobs?: number;
  /** Client gone or stop string seen: the sequence ends at the next step, its slot and KV are freed. */
  signal?: AbortSignal;
  /** Each generated token as it is chosen (the stop id too). */
  onToken?: (token: GeneratedToken) => void;
}

export type PromptTokenLogprob = { logprob: number; top: Array<[number, number]> } | null;

export interface SequenceResult {
  generatedIds: number[];
  tokens: GeneratedToken[];
  finishReason: 'stop' | 'length' | 'abort';
  stoppedBy: number | null;
  promptTokens: number;
  /** Prompt tokens whose keys and values came from the prefix cache (usage.prompt_tokens_details.cached_tokens). */
  cachedPromptTokens: number;
  /** null for the first prompt token, which nothing predicts. */
  promptLogprobs?: PromptTokenLogprob[];
  timeToFirstTokenMs: number;
  decodeMs: number;
}

/** The queue is full: the HTTP layer answers 429 with `Retry-After: retryAfterSeconds`. */
export class QueueFullError extends HerdError {
  constructor(
    readonly retryAfterSeconds: number,
    limit: number,
  ) {
    super(`the server is busy: ${limit} requests are already running or waiting; retry after ${retryAfterSeconds} s`);
    this.name = 'QueueFullError';
  }
}

export interface GeneratorStats {
  running: number;
  waiting: number;
  /** Sequences that started from the prefix cache, and the prompt tokens it spared them. */
  prefixCacheHits: number;
  prefixCacheTokens: number;
  prefixCacheEntries: number;
  prefixCacheBytes: number;
  /** Batched forward passes run, and the sequences they carried in all (their ratio is the mean batch). */
  steps: number;
  sequencesStepped: number;
}

/** What the HTTP layer talks to; Scheduler implements it, tests may script it. */
export interface Generator {
  readonly contextLength: number;
  /**
   * Resolves when the sequence ends (finish reason 'abort' when its signal fired or the generator
   * closed); rejects with QueueFullError when the queue is full, and with a HerdError when the
   * prompt and maxNewTokens do not fit in the context.
   */
  submit(request: SequenceRequest): Promise<SequenceResult>;
  stats(): GeneratorStats;
  /** Cancels waiting and running sequences (they resolve with 'abort'); later submits are refused. */
  close(): Promise<void>;
}

export interface SchedulerOptions {
  /** Sequences running at once (sharing each forward pass). */
  parallel: number;
  /** Sequences that may wait beyond those running; one more is refused with QueueFullError. */
  maxQueue: number;
  /** Most positions (prompt + generated) of one sequence; at most the model's max_position_embeddings. */
  contextLength: number;
  /** Bytes of KV the prefix cache keeps for reuse; 0 disables it. */
  prefixCacheBytes: number;
  /**
   * Tokens one step runs at most (default PREFILL_CHUNK_TOKENS): every decoding sequence's one,
   * then prompt chunks up to the rest, so a long prompt delays the decoders by one chunk per step.
   */
  stepTokens?: number;
}

type Model = LlamaForCausalLM<unknown, unknown>;

/** A request admitted to the scheduler, from the queue to its result. */
interface Sequence {
  request: SequenceRequest;
  resolve: (result: SequenceResult) => void;
  reject: (error: unknown) => void;
  submittedAt: number;
  firstTokenAt: number | null;
  /** Allocated when the sequence starts running. */
  cache: KvCache | null;
  sampler: Sampler;
  /** Prompt, then generated ids; the cache holds the keys and values of history[0, cache.length). */
  history: number[];
  generated: number[];
  tokens: GeneratedToken[];
  cachedPromptTokens: number;
  promptLogprobs: PromptTokenLogprob[] | undefined;
  /** Out of the queue and the running set, its promise settled. */
  ended: boolean;
}

/** One sequence's part of a step: the ids it feeds, and whether it needs logits for each of them. */
interface StepWork {
  sequence: Sequence;
  ids: Int32Array;
  allPositions: boolean;
}

/** Positions for generated tokens a new sequence's cache has before it first grows. */
const FIRST_DECODE_POSITIONS = 256;

/** Assumed seconds per request before any has finished, for the first Retry-After. */
const INITIAL_REQUEST_SECONDS = 1;

export class Scheduler implements Generator {
  readonly contextLength: number;
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private readonly prefixCache: PrefixCache;
  private readonly stepTokens: number;
  private looping = false;
  private loopDone: Promise<void> = Promise.resolve();
  private closed = false;
  /** Moving average of request durations, for Retry-After. */
  private meanRequestSeconds = INITIAL_REQUEST_SECONDS;
  private steps = 0;
  private sequencesStepped = 0;

  constructor(
    private readonly model: Model,
    private readonly options: SchedulerOptions,
  ) {
    if (!Number.isInteger(options.parallel) || options.parallel < 1) throw new HerdError(`parallel must be a whole number of at least 1, got ${options.parallel}`);
    if (!Number.isInteger(options.maxQueue) || options.maxQueue < 0) throw new HerdError(`the queue limit must be a whole number of at least 0, got ${options.maxQueue}`);
    this.contextLength = Math.min(options.contextLength, model.config.maxPositionEmbeddings);
    this.stepTokens = options.stepTokens ?? PREFILL_CHUNK_TOKENS;
    this.prefixCache = new PrefixCache(model, options.prefixCacheBytes);
  }

  submit(request: SequenceRequest): Promise<SequenceResult> {
    if (this.closed) return Promise.reject(new HerdError('the generator is closed'));
    const problem = this.checkFits(request);
    if (problem) return Promise.reject(problem);
    const limit = this.options.parallel + this.options.maxQueue;
    if (this.running.length + this.waiting.length >= limit) return Promise.reject(new QueueFullError(this.retryAfterSeconds(), limit));
    return new Promise<SequenceResult>((resolve, reject) => {
      this.waiting.push({
        request, resolve, reject, submittedAt: performance.now(), firstTokenAt: null, cache: null, sampler: new Sampler(request.sampling),
        history: [...request.promptIds], generated: [], tokens: [], cachedPromptTokens: 0,
        promptLogprobs: request.promptLogprobs === undefined ? undefined : [null], ended: false,
      });
      this.startLoop();
    });
  }

  stats(): GeneratorStats {
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      ...this.prefixCache.stats(),
      steps: this.steps,
      sequencesStepped: this.sequencesStepped,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const sequence of [...this.waiting, ...this.running]) this.finish(sequence, 'abort', null);
    await this.loopDone;
    this.prefixCache.clear();
  }

  /** The HerdError for a request that cannot run, naming the numbers at fault; null when it can. */
  private checkFits({ promptIds, maxNewTokens }: SequenceRequest): HerdError | null {
    if (promptIds.length === 0) return new HerdError('the prompt is empty');
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) return new HerdError(`the number of tokens to generate must be a whole number of at least 0, got ${maxNewTokens}`);
    const vocab = this.model.config.vocabSize;
    const stray = promptIds.find((id) => !Number.isInteger(id) || id < 0 || id >= vocab);
    if (stray !== undefined) return new HerdError(`prompt token id ${stray} is outside the vocabulary of ${vocab} tokens`);
    if (promptIds.length + maxNewTokens > this.contextLength) {
      return new HerdError(`the prompt has ${promptIds.length} tokens and ${maxNewTokens} more were requested, ${promptIds.length + maxNewTokens} in all, but the context is ${this.contextLength} tokens`);
    }
    return null;
  }

  /** Seconds until a slot is likely free: the queue ahead, served `parallel` at a time, at the mean request duration. */
  private retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(((this.waiting.length + 1) / this.options.parallel) * this.meanRequestSeconds));
  }

  private startLoop(): void {
    if (this.looping) return;
    this.looping = true;
    this.loopDone = this.loop();
  }

  /**
   * Steps while there is work, letting the event loop run before each step: submit returns at
   * once, and requests that arrive together start in the same step.
   */
  private async loop(): Promise<void> {
    while (this.waiting.length + this.running.length > 0) {
      await new Promise((resolve) => setImmediate(resolve));
      try {
        this.step();
      } catch (error) {
        // A fault outside any one sequence's part: no request may wait for a loop that stopped.
        for (const sequence of [...this.waiting, ...this.running]) this.fail(sequence, error);
      }
    }
    this.looping = false;
  }

  /** Retires cancelled sequences, admits waiting ones, runs one forward pass, samples, retires finished ones. */
  private step(): void {
    for (const sequence of [...this.waiting, ...this.running]) if (sequence.request.signal?.aborted) this.finish(sequence, 'abort', null);
    this.admit();
    const work = this.plan();
    if (work.length === 0) return;
    let logits: Float32Array[];
    try {
      logits = this.forward(work);
    } catch (error) {
      // Which sequence a failed pass was due to is unknown: every one in it fails, the rest go on.
      for (const { sequence } of work) this.fail(sequence, error);
      return;
    }
    this.steps++;
    this.sequencesStepped += work.length;
    // A callback (onToken, or a close it calls) may end other sequences of this step meanwhile.
    work.forEach((part, i) => part.sequence.ended || this.advance(part, logits[i]!));
  }

  /** Moves waiting sequences into free slots, each with a cache that starts from the longest cached prefix of its prompt. */
  private admit(): void {
    while (this.running.length < this.options.parallel && this.waiting.length > 0) {
      const sequence = this.waiting.shift()!;
      this.running.push(sequence);
      const { promptIds, maxNewTokens } = sequence.request;
      try {
        sequence.cache = this.model.createCache(promptIds.length + Math.min(maxNewTokens, FIRST_DECODE_POSITIONS));
        // Prompt logprobs need the logits of every prompt position, which a borrowed prefix has not got.
        if (sequence.promptLogprobs === undefined) sequence.cachedPromptTokens = this.prefixCache.borrowInto(promptIds, sequence.cache);
      } catch (error) {
        this.fail(sequence, error);
      }
    }
  }

  /**
   * Makes room in the sequence's cache for `tokens` more positions: a cache starts with room for
   * the prompt and FIRST_DECODE_POSITIONS, and doubles (up to prompt + maxNewTokens) when full,
   * so a request allowed the whole context does not hold a whole context's KV from its start.
   */
  private makeRoom(sequence: Sequence, tokens: number): void {
    const cache = sequence.cache!;
    if (cache.length + tokens <= cache.shape.capacity) return;
    const { promptIds, maxNewTokens } = sequence.request;
    const larger = this.model.createCache(Math.min(Math.max(2 * cache.shape.capacity, cache.length + tokens), promptIds.length + maxNewTokens));
    this.model.copyCache(cache, larger, cache.length);
    cache.dispose();
    sequence.cache = larger;
  }

  /**
   * What each running sequence feeds this step: the decoding ones their last token; the
   * prefilling ones, in order of arrival, chunks of their prompt up to the step's token budget.
   */
  private plan(): StepWork[] {
    const decoding = this.running.filter((sequence) => sequence.cache!.length >= sequence.request.promptIds.length);
    let budget = Math.max(1, this.stepTokens - decoding.length);
    const work: StepWork[] = [];
    for (const sequence of [...this.running]) {
      const cache = sequence.cache!;
      const promptLeft = sequence.request.promptIds.length - cache.length;
      const count = promptLeft <= 0 ? sequence.history.length - cache.length : Math.min(promptLeft, budget);
      if (count === 0) continue;
      if (promptLeft > 0) budget -= count;
      try {
        this.makeRoom(sequence, count);
      } catch (error) {
        this.fail(sequence, error);
        continue;
      }
      // makeRoom may have replaced the cache (and emptied the old one).
      const first = sequence.cache!.length;
      const ids = Int32Array.from(sequence.history.slice(first, first + count));
      work.push({ sequence, ids, allPositions: promptLeft > 0 && sequence.promptLogprobs !== undefined });
    }
    return work;
  }

  /** One batched pass for the step's work: each part's logits (last position, or all positions for prompt logprobs). */
  private forward(work: readonly StepWork[]): Float32Array[] {
    return this.model.forwardBatch(work.map(({ sequence, ids, allPositions }) => ({ ids, cache: sequence.cache!, allPositions })));
  }

  /** Takes a part's logits: prompt logprobs from prompt rows, then, once the sequence has caught up, the next token. */
  private advance({ sequence, ids, allPositions }: StepWork, logits: Float32Array): void {
    const vocab = this.model.config.vocabSize;
    if (allPositions) {
      const firstPosition = sequence.cache!.length - ids.length;
      this.recordPromptLogprobs(sequence, firstPosition, logits);
      logits = logits.subarray((ids.length - 1) * vocab);
    }
    if (sequence.cache!.length < sequence.history.length) return;
    if (sequence.generated.length >= sequence.request.maxNewTokens) {
      this.finish(sequence, 'length', null);
      return;
    }
    this.sample(sequence, logits);
  }

  /** Prompt token p+1's logprob from position p's row, for every row of the part that is not the prompt's last. */
  private recordPromptLogprobs(sequence: Sequence, firstPosition: number, logits: Float32Array): void {
    const { promptIds, promptLogprobs: topN = 0 } = sequence.request;
    const vocab = this.model.config.vocabSize;
    const rows = logits.length / vocab;
    for (let row = 0; row < rows && firstPosition + row + 1 < promptIds.length; row++) {
      const logprobs = logSoftmax(logits.subarray(row * vocab, (row + 1) * vocab));
      const next = promptIds[firstPosition + row + 1]!;
      sequence.promptLogprobs!.push({ logprob: logprobs[next]!, top: topN > 0 ? topEntries(logprobs, topN) : [] });
    }
  }

  private sample(sequence: Sequence, logits: Float32Array): void {
    const { request } = sequence;
    const id = sequence.sampler.next(logits, sequence.history, sequence.generated);
    const token = describeToken(id, logits, request.topLogprobs);
    sequence.history.push(id);
    sequence.generated.push(id);
    sequence.tokens.push(token);
    sequence.firstTokenAt ??= performance.now();
    try {
      request.onToken?.(token);
    } catch (error) {
      this.fail(sequence, error);
      return;
    }
    if (request.stopTokenIds.includes(id)) this.finish(sequence, 'stop', id);
    else if (sequence.generated.length >= request.maxNewTokens) this.finish(sequence, 'length', null);
  }

  /** Ends a sequence: out of the queue or its slot, its cache kept by the prefix cache or freed, its promise resolved. */
  private finish(sequence: Sequence, finishReason: SequenceResult['finishReason'], stoppedBy: number | null): void {
    if (!this.remove(sequence)) return;
    const now = performance.now();
    this.releaseCache(sequence);
    const firstTokenAt = sequence.firstTokenAt ?? now;
    this.meanRequestSeconds = 0.8 * this.meanRequestSeconds + 0.2 * ((now - sequence.submittedAt) / 1000);
    sequence.resolve({
      generatedIds: sequence.generated,
      tokens: sequence.tokens,
      finishReason,
      stoppedBy,
      promptTokens: sequence.request.promptIds.length,
      cachedPromptTokens: sequence.cachedPromptTokens,
      ...(sequence.promptLogprobs ? { promptLogprobs: sequence.promptLogprobs } : {}),
      timeToFirstTokenMs: firstTokenAt - sequence.submittedAt,
      decodeMs: now - firstTokenAt,
    });
  }

  private fail(sequence: Sequence, error: unknown): void {
    if (!this.remove(sequence)) return;
    sequence.cache?.dispose();
    sequence.cache = null;
    sequence.reject(error);
  }

  /** Takes the sequence out of the queue or the running set; false if it had ended already. */
  private remove(sequence: Sequence): boolean {
    if (sequence.ended) return false;
    sequence.ended = true;
    for (const list of [this.waiting, this.running]) {
      const index = list.indexOf(sequence);
      if (index >= 0) {
        list.splice(index, 1);
        return true;
      }
    }
    return false;
  }

  /** A cache that holds a whole prompt goes to the prefix cache (which may free it); any other is freed. */
  private releaseCache(sequence: Sequence): void {
    const cache = sequence.cache;
    sequence.cache = null;
    if (!cache) return;
    if (cache.length >= sequence.request.promptIds.length && !this.closed) this.prefixCache.keep(sequence.history.slice(0, cache.length), cache);
    else cache.dispose();
  }
}
