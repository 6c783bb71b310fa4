/**
 * Where the assistant's tokens come from. The chat loop only sees this interface: the real
 * source runs the model; tests drive the loop with scripted ids a Llama 3.1 model would emit.
 */
import { generateAsync, ReusableCache, type FinishReason } from '../engine/generate.js';
import type { LoadedModel } from '../engine/load.js';
import type { SamplingOptions } from '../engine/sampling.js';

export interface TokenRequest {
  promptIds: readonly number[];
  maxNewTokens: number;
  /** Ids that end the message (Llama 3.1: <|end_of_text|>, <|eom_id|>, <|eot_id|>). */
  stopTokenIds: readonly number[];
  /** Text as soon as it is final. */
  onText: (delta: string) => void;
  /** Called once per generated token (the stop token too), for live counts. */
  onToken: () => void;
  /** Checked between tokens; true stops (finish reason "abort"). */
  shouldStop: () => boolean;
}

export interface TokenReply {
  generatedIds: number[];
  /** The message text, without the stop token. */
  text: string;
  finishReason: FinishReason;
  /** The stop id that ended the message, or null. */
  stoppedBy: number | null;
  /** Prompt tokens computed for this reply (the rest came from the cache kept since the last one). */
  computedPromptTokens: number;
  prefillMs: number;
  decodeMs: number;
}

export interface TokenSource {
  /** Most tokens prompt and reply may hold together. */
  readonly contextLength: number;
  next(request: TokenRequest): Promise<TokenReply>;
  /** Frees what the source holds (the kept KV cache). */
  dispose(): void;
}

/** The model itself, keeping its KV cache between replies so a long chat is not recomputed. */
export class EngineTokenSource implements TokenSource {
  private readonly kept = new ReusableCache();

  constructor(private readonly loaded: LoadedModel, private readonly sampling: SamplingOptions) {}

  get contextLength(): number {
    return this.loaded.config.maxPositionEmbeddings;
  }

  async next(request: TokenRequest): Promise<TokenReply> {
    const result = await generateAsync(this.loaded.model, this.loaded.tokenizer, {
      promptIds: request.promptIds,
      maxNewTokens: request.maxNewTokens,
      sampling: this.sampling,
      stopTokenIds: request.stopTokenIds,
      stopStrings: [],
      topLogprobs: 0,
      onText: request.onText,
      onToken: request.onToken,
      shouldStop: request.shouldStop,
      reuseCache: this.kept,
    });
    return {
      generatedIds: result.generatedIds,
      text: result.text,
      finishReason: result.finishReason,
      stoppedBy: typeof result.stoppedBy === 'number' ? result.stoppedBy : null,
      computedPromptTokens: request.promptIds.length - result.reusedPromptTokens,
      prefillMs: result.prefillMs,
      decodeMs: result.decodeMs,
    };
  }

  dispose(): void {
    this.kept.dispose();
  }
}
