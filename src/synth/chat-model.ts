/**
 * The one interface the pipeline sees for a generator or a judge: a system prompt and a user
 * message in, the assistant's reply out. Behind it is a local model (herd's engine) or an
 * OpenAI-compatible endpoint (endpoint-model.ts); tests put a scripted judge behind it.
 */
import { generateAsync } from '../engine/generate.js';
import type { LoadedModel } from '../engine/load.js';
import { promptIds } from '../engine/prompt.js';
import type { SamplingOptions } from '../engine/sampling.js';
import { HerdError } from '../errors.js';
import type { Sampling } from './pipeline-config.js';

export interface ChatRequest {
  system: string | null;
  user: string;
  sampling: Sampling;
  /** Derived from the pipeline's seed and the row, so a resumed or reordered run draws the same. */
  seed: number;
}

export interface ChatModel {
  readonly name: string;
  complete(request: ChatRequest): Promise<string>;
}

/** At most `max` tasks at once; the rest wait their turn in order. */
export class RequestLimiter {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly max: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    try {
      return await task();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

/**
 * A model in this process. Requests run one at a time through `queue`, which every step using the
 * same weights shares (one set of threads); each request gets its own seeded sampler, so its
 * reply depends only on its prompt and seed.
 */
export class LocalChatModel implements ChatModel {
  constructor(readonly name: string, private readonly loaded: LoadedModel, private readonly date: Date, private readonly queue = new RequestLimiter(1)) {}

  complete(request: ChatRequest): Promise<string> {
    return this.queue.run(async () => {
      const result = await generateAsync(this.loaded.model, this.loaded.tokenizer, {
        promptIds: localPromptIds(this.name, this.loaded, this.date, request),
        maxNewTokens: request.sampling.maxNewTokens,
        sampling: samplingOptions(request),
        stopTokenIds: this.loaded.generation.eosTokenIds,
        stopStrings: [],
        topLogprobs: 0,
      });
      return result.text;
    });
  }
}

/** The request as the model's chat template renders it (or the raw instruction, for a model without one). */
export function localPromptIds(name: string, loaded: LoadedModel, date: Date, request: ChatRequest): number[] {
  if (request.system !== null && loaded.tokenizer.settings.chatTemplate === null) {
    throw new HerdError(`${name}: the model has no chat template, so it cannot take a system prompt`, { kind: 'model', file: loaded.dir });
  }
  return promptIds(loaded.tokenizer, { text: request.user, raw: false, system: request.system ?? undefined, date });
}

export function samplingOptions({ sampling, seed }: ChatRequest): SamplingOptions {
  return { temperature: sampling.temperature, topP: sampling.topP, topK: sampling.topK, minP: sampling.minP, repetitionPenalty: sampling.repetitionPenalty, seed };
}
