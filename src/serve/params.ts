/**
 * Sampling and length parameters of an OpenAI request. Fields the request leaves out take the
 * model's generation_config.json values, as vLLM does (temperature, top_p, top_k,
 * repetition_penalty), else OpenAI's defaults (temperature 1, no top-k).
 */
import type { GenerationDefaults } from '../engine/load.js';
import { badRequest } from './api-error.js';
import type { RequestFields } from './fields.js';
import type { SequenceRequest } from './scheduler.js';

/** Most choices one request may ask for; each is a sequence in the scheduler. */
export const MAX_CHOICES = 16;
/** Most top alternatives per token (OpenAI's top_logprobs limit). */
export const MAX_TOP_LOGPROBS = 20;

export interface GenerationParams {
  sampling: SequenceRequest['sampling'];
  /** max_completion_tokens or max_tokens; undefined: as many as the context leaves. */
  maxTokens: number | undefined;
  stopStrings: string[];
  stopTokenIds: number[];
  /** Choices to generate (`n`), each from seed + its index. */
  n: number;
}

export function readGenerationParams(fields: RequestFields, defaults: GenerationDefaults, vocabSize: number, options: { defaultMaxTokens?: number; minMaxTokens?: number } = {}): GenerationParams {
  const minMaxTokens = options.minMaxTokens ?? 1;
  const maxTokens = fields.number('max_completion_tokens', { min: minMaxTokens, integer: true })
    ?? fields.number('max_tokens', { min: minMaxTokens, integer: true })
    ?? options.defaultMaxTokens;
  const topK = fields.number('top_k', { min: -1, integer: true });
  return {
    sampling: {
      temperature: fields.number('temperature', { min: 0 }) ?? defaults.temperature ?? 1,
      topP: fields.number('top_p', { min: 0, max: 1, exclusiveMin: true }) ?? defaults.topP ?? 1,
      // vLLM's -1 and OpenAI's absence both mean no top-k.
      topK: topK === undefined ? (defaults.topK ?? 0) : Math.max(0, topK),
      minP: fields.number('min_p', { min: 0, max: 1 }) ?? 0,
      repetitionPenalty: fields.number('repetition_penalty', { min: 0, exclusiveMin: true }) ?? defaults.repetitionPenalty ?? 1,
      presencePenalty: fields.number('presence_penalty', { min: -2, max: 2 }) ?? 0,
      frequencyPenalty: fields.number('frequency_penalty', { min: -2, max: 2 }) ?? 0,
      seed: fields.number('seed', { integer: true }) ?? Math.floor(Math.random() * 2 ** 31),
    },
    maxTokens,
    stopStrings: fields.strings('stop'),
    // vLLM's extra `stop_token_ids` add to the model's own stop ids.
    stopTokenIds: [...new Set([...defaults.eosTokenIds, ...fields.integers('stop_token_ids', 0, vocabSize - 1)])],
    n: fields.number('n', { min: 1, max: MAX_CHOICES, integer: true }) ?? 1,
  };
}

/**
 * Tokens the reply may have: what was asked, or what the context leaves. A prompt that leaves
 * no room, or a request for more than fits, is a 400 naming both numbers (nothing is truncated).
 */
export function completionBudget(promptTokens: number, maxTokens: number | undefined, contextLength: number): number {
  if (promptTokens >= contextLength) {
    throw badRequest(`the prompt has ${promptTokens} tokens but the server's context is ${contextLength} tokens`, 'messages', 'context_length_exceeded');
  }
  if (maxTokens !== undefined && promptTokens + maxTokens > contextLength) {
    throw badRequest(`the prompt has ${promptTokens} tokens and max_tokens asks for ${maxTokens} more, past the server's context of ${contextLength} tokens`, 'max_tokens', 'context_length_exceeded');
  }
  return maxTokens ?? contextLength - promptTokens;
}

/** The sampling of choice `index`: its own seed, so n sampled choices differ. */
export function choiceSampling(params: GenerationParams, index: number): SequenceRequest['sampling'] {
  return { ...params.sampling, seed: params.sampling.seed + index };
}
