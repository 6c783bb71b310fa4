import type { LlamaForCausalLM } from '../engine/model.js';
import { GREEDY } from '../engine/sampling.js';
import { Scheduler, type SequenceRequest } from '../serve/scheduler.js';

/**
 * The serving engine's figures for `herd bench`: aggregate decode throughput of several
 * concurrent streams through the continuous-batching scheduler, and time to first token on a
 * long shared prompt with and without the prefix cache.
 */

type AnyModel = LlamaForCausalLM<unknown, unknown>;

/** Prompt tokens of each stream: short, so that every prompt is prefilled in the first step and the window measured is all decoding. */
const STREAM_PROMPT_TOKENS = 16;

export interface StreamFigures {
  streams: number;
  /** Tokens per second all streams together generated while every one of them was decoding. */
  decode_tokens_per_second: number;
  /** That rate over the single stream's (1 for the first count measured when it is not 1). */
  speedup: number;
}

export interface PrefixCacheFigures {
  prompt_tokens: number;
  cold_ttft_ms: number;
  warm_ttft_ms: number;
  /** warm ÷ cold. */
  ratio: number;
}

/** Distinct ids spread over the vocabulary for stream `stream`; which ids they are does not change the work. */
function streamPrompt(model: AnyModel, stream: number, length: number): number[] {
  return Array.from({ length }, (_, i) => (i * 7919 + stream * 104729 + 17) % model.config.vocabSize);
}

function request(promptIds: number[], maxNewTokens: number, onToken?: () => void): SequenceRequest {
  return { promptIds, maxNewTokens, sampling: GREEDY, stopTokenIds: [], topLogprobs: 0, onToken };
}

/**
 * For each count, that many streams of `genTokens` greedy tokens submitted at once to a scheduler
 * with as many slots. The rate counts the tokens after the last stream's first token, up to the
 * last token: the window in which every stream decodes in every step.
 */
export async function measureStreams(model: AnyModel, counts: readonly number[], genTokens: number): Promise<StreamFigures[]> {
  const figures: StreamFigures[] = [];
  for (const streams of counts) {
    const scheduler = new Scheduler(model, { parallel: streams, maxQueue: 0, contextLength: STREAM_PROMPT_TOKENS + genTokens, prefixCacheBytes: 0 });
    const times: number[][] = Array.from({ length: streams }, () => []);
    await Promise.all(times.map((stamps, stream) => scheduler.submit(request(streamPrompt(model, stream, STREAM_PROMPT_TOKENS), genTokens, () => void stamps.push(performance.now())))));
    await scheduler.close();
    const allDecoding = Math.max(...times.map((stamps) => stamps[0]!));
    const last = Math.max(...times.map((stamps) => stamps.at(-1)!));
    const tokens = times.reduce((total, stamps) => total + stamps.filter((time) => time > allDecoding).length, 0);
    const rate = (tokens / (last - allDecoding)) * 1000;
    figures.push({ streams, decode_tokens_per_second: rate, speedup: rate / (figures[0]?.decode_tokens_per_second ?? rate) });
  }
  return figures;
}

/**
 * Time to first token of a prompt of `promptTokens` (a long system prompt and one more token),
 * first with nothing cached, then for another request with the same system prompt, which the
 * prefix cache serves.
 */
export async function measurePrefixCache(model: AnyModel, promptTokens: number): Promise<PrefixCacheFigures> {
  const system = streamPrompt(model, 0, promptTokens - 1);
  const [first, second] = streamPrompt(model, 1, 2) as [number, number];
  const scheduler = new Scheduler(model, { parallel: 1, maxQueue: 0, contextLength: promptTokens + 1, prefixCacheBytes: Number.MAX_SAFE_INTEGER });
  try {
    const cold = await scheduler.submit(request([...system, first], 1));
    const warm = await scheduler.submit(request([...system, second], 1));
    return { prompt_tokens: promptTokens, cold_ttft_ms: cold.timeToFirstTokenMs, warm_ttft_ms: warm.timeToFirstTokenMs, ratio: warm.timeToFirstTokenMs / cold.timeToFirstTokenMs };
  } finally {
    await scheduler.close();
  }
}

/** A list of positive integers such as "1,2,4,8" (--streams, --prompt-tokens); null if any part is not one. */
export function parsePositiveIntegers(text: string): number[] | null {
  const counts = text.split(',').map((part) => Number(part.trim()));
  return counts.length > 0 && counts.every((count) => Number.isInteger(count) && count >= 1) ? counts : null;
}

/** Lines for the terminal (figures unrounded in JSON are rounded here). */
export function describeStreams(streams: readonly StreamFigures[] | undefined, prefixCache: PrefixCacheFigures | undefined): string[] {
  const lines = (streams ?? []).map(({ streams: count, decode_tokens_per_second: rate, speedup }) => `streams    ${count}: ${rate.toFixed(2)} tok/s decoding in all (${speedup.toFixed(2)}× the first)`);
  if (prefixCache) {
    const { prompt_tokens: tokens, cold_ttft_ms: cold, warm_ttft_ms: warm, ratio } = prefixCache;
    lines.push(`prefix     first token after a ${tokens}-token prompt: ${cold.toFixed(0)} ms cold, ${warm.toFixed(0)} ms from the prefix cache (${(ratio * 100).toFixed(1)}%)`);
  }
  return lines;
}
