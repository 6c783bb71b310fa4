/**
 * The serving interface agreed between the `batching` and `serve` branches (issue 16). This copy
 * holds the types only, so the HTTP layer builds before `batching`'s Scheduler lands; the
 * `batching` branch owns this file and its version replaces this one at merge.
 */
import type { GeneratedToken } from '../engine/generate.js';
import type { SamplingOptions } from '../engine/sampling.js';
import { HerdError } from '../errors.js';

export interface SequenceRequest {
  promptIds: readonly number[];
  maxNewTokens: number;
  sampling: SamplingOptions & { presencePenalty?: number; frequencyPenalty?: number };
  stopTokenIds: readonly number[];
  topLogprobs: number;
  promptLogprobs?: number;
  signal?: AbortSignal;
  onToken?: (token: GeneratedToken) => void;
}

export interface SequenceResult {
  generatedIds: number[];
  tokens: GeneratedToken[];
  finishReason: 'stop' | 'length' | 'abort';
  stoppedBy: number | null;
  promptTokens: number;
  cachedPromptTokens: number;
  promptLogprobs?: Array<{ logprob: number; top: Array<[number, number]> } | null>;
  timeToFirstTokenMs: number;
  decodeMs: number;
}

export class QueueFullError extends HerdError {
  constructor(message: string, readonly retryAfterSeconds: number) {
    super(message);
    this.name = 'QueueFullError';
  }
}

export interface GeneratorStats {
  running: number;
  waiting: number;
  prefixCacheHits: number;
  prefixCacheTokens: number;
}

export interface Generator {
  readonly contextLength: number;
  submit(request: SequenceRequest): Promise<SequenceResult>;
  stats(): GeneratorStats;
  close(): Promise<void>;
}
