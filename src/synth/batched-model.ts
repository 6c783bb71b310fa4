import type { LoadedModel } from '../engine/load.js';
import { TextStream } from '../engine/tokenizer.js';
import { Scheduler, type SequenceResult } from '../serve/scheduler.js';
import { DEFAULT_CONTEXT } from '../serve/start.js';
import { localPromptIds, samplingOptions, type ChatModel, type ChatRequest } from './chat-model.js';

/**
 * A local model that answers several requests at once: `herd serve`'s scheduler runs up to
 * `parallel` sequences through one batched forward pass per step. Each sequence keeps its own
 * seeded sampler, so the answers are those of the one-at-a-time model, only sooner.
 */
export class BatchedLocalChatModel implements ChatModel {
  constructor(readonly name: string, private readonly loaded: LoadedModel, private readonly date: Date, private readonly scheduler: Scheduler) {}

  async complete(request: ChatRequest): Promise<string> {
    const result = await this.scheduler.submit({
      promptIds: localPromptIds(this.name, this.loaded, this.date, request),
      maxNewTokens: request.sampling.maxNewTokens,
      sampling: samplingOptions(request),
      stopTokenIds: this.loaded.generation.eosTokenIds,
      topLogprobs: 0,
    });
    return replyText(this.loaded, result);
  }
}

/** The scheduler a batched local model shares with every step on the same weights. */
export function batchScheduler(loaded: LoadedModel, parallel: number): Scheduler {
  // The pipeline never submits more than its rows in flight ask for, so nothing is ever refused as "queue full".
  return new Scheduler(loaded.model, { parallel, maxQueue: Number.MAX_SAFE_INTEGER, contextLength: DEFAULT_CONTEXT, prefixCacheBytes: 0 });
}

/** The text as generate() gives it: every token up to the stop id, incomplete bytes last. */
function replyText(loaded: LoadedModel, result: SequenceResult): string {
  const stream = new TextStream(loaded.tokenizer);
  const ids = result.stoppedBy === null ? result.generatedIds : result.generatedIds.slice(0, -1);
  return ids.map((id) => stream.push(id)).join('') + stream.flush();
}
