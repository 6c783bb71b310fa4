/**
 * A Generator for the HTTP layer's tests: it answers each prompt with ids a function chooses
 * (real Llama 3.1 ids from the official tokenizer), one token per event-loop turn, and keeps the
 * scheduler's contract — `parallel` running, `maxQueue` waiting, QueueFullError beyond, a
 * HerdError for a request past the context, cancellation through the signal.
 */
import type { GeneratedToken } from '../src/engine/generate.js';
import { HerdError } from '../src/errors.js';
import { HerdServer, type ServerOptions } from '../src/serve/server.js';
import { QueueFullError, type Generator, type GeneratorStats, type SequenceRequest, type SequenceResult } from '../src/serve/scheduler.js';
import { LLAMA_STOP_IDS, llamaTokenizer } from './chat-scripted-source.js';

export interface ScriptedOptions {
  parallel: number;
  maxQueue: number;
  contextLength: number;
  /** Pause before each token (0: one event-loop turn). */
  tokenDelayMs?: number;
}

export class ScriptedGenerator implements Generator {
  readonly contextLength: number;
  /** Every prompt submitted, in order. */
  readonly prompts: number[][] = [];
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private closed = false;

  constructor(private readonly reply: (promptIds: readonly number[]) => Iterable<number>, private readonly options: ScriptedOptions = { parallel: 4, maxQueue: 16, contextLength: 4096 }) {
    this.contextLength = options.contextLength;
  }

  async submit(request: SequenceRequest): Promise<SequenceResult> {
    if (this.closed) throw new HerdError('the generator is closed');
    if (request.promptIds.length + request.maxNewTokens > this.contextLength) {
      throw new HerdError(`the prompt has ${request.promptIds.length} tokens and ${request.maxNewTokens} more were requested, but the context is ${this.contextLength} tokens`);
    }
    const limit = this.options.parallel + this.options.maxQueue;
    if (this.running + this.waiting.length >= limit) throw new QueueFullError(3, limit);
    this.prompts.push([...request.promptIds]);
    if (!(await this.takeSlot(request.signal))) return this.result(request, [], 'abort', null);
    try {
      return await this.generate(request);
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }

  stats(): GeneratorStats {
    return { running: this.running, waiting: this.waiting.length, prefixCacheHits: 0, prefixCacheTokens: 0, prefixCacheEntries: 0, prefixCacheBytes: 0, steps: 0, sequencesStepped: 0 };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.waiting.splice(0).forEach((wake) => wake());
  }

  /** Waits for a free slot; false when the request was cancelled or the generator closed meanwhile. */
  private async takeSlot(signal: AbortSignal | undefined): Promise<boolean> {
    while (this.running >= this.options.parallel) {
      if (signal?.aborted || this.closed) return false;
      await new Promise<void>((resolve) => {
        this.waiting.push(resolve);
        signal?.addEventListener('abort', () => {
          const index = this.waiting.indexOf(resolve);
          if (index >= 0) this.waiting.splice(index, 1);
          resolve();
        }, { once: true });
      });
    }
    if (signal?.aborted || this.closed) return false;
    this.running++;
    return true;
  }

  private async generate(request: SequenceRequest): Promise<SequenceResult> {
    const script = this.reply(request.promptIds);
    const tokens: GeneratedToken[] = [];
    for (const id of script) {
      if (tokens.length >= request.maxNewTokens) return this.result(request, tokens, 'length', null);
      const delay = this.options.tokenDelayMs ?? 0;
      await new Promise((resolve) => (delay > 0 ? setTimeout(resolve, delay) : setImmediate(resolve)));
      if (request.signal?.aborted || this.closed) return this.result(request, tokens, 'abort', null);
      // A made-up distribution: the chosen token at -0.5, an alternative below it.
      const token: GeneratedToken = { id, logprob: -0.5, top: request.topLogprobs > 0 ? [[id, -0.5], [(id + 1) % 128256, -1.5]].slice(0, request.topLogprobs) as Array<[number, number]> : [] };
      tokens.push(token);
      request.onToken?.(token);
      if (request.stopTokenIds.includes(id)) return this.result(request, tokens, 'stop', id);
    }
    return this.result(request, tokens, 'length', null);
  }

  private result(request: SequenceRequest, tokens: GeneratedToken[], finishReason: SequenceResult['finishReason'], stoppedBy: number | null): SequenceResult {
    return { generatedIds: tokens.map((token) => token.id), tokens, finishReason, stoppedBy, promptTokens: request.promptIds.length, cachedPromptTokens: 0, timeToFirstTokenMs: 0, decodeMs: 0 };
  }
}

export const SERVED_ID = 'llama-3.1-test';

/** A server on 127.0.0.1 (any free port) over `generator` with the official Llama 3.1 tokenizer. */
export async function startScriptedServer(generator: Generator, options: Partial<ServerOptions> = {}): Promise<{ server: HerdServer; url: string }> {
  const server = new HerdServer({ maxBodyBytes: 1 << 20, timeoutSeconds: null, ...options });
  const url = await server.listen(0, '127.0.0.1');
  server.ready({
    generator,
    model: {
      id: SERVED_ID,
      tokenizer: llamaTokenizer,
      generation: { eosTokenIds: LLAMA_STOP_IDS, doSample: false, temperature: null, topP: null, topK: null, repetitionPenalty: null },
      vocabSize: 128256,
      created: 1,
    },
  });
  return { server, url };
}
