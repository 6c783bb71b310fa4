import type { GenerateResult } from '../engine/generate.js';
import type { LoadedModel } from '../engine/load.js';

/** The speed and memory figures generate --json and bench report, in snake_case for scripts. */
export interface Timings {
  load_ms: number;
  prompt_tokens: number;
  generated_tokens: number;
  prefill_ms: number;
  decode_ms: number;
  prefill_tokens_per_second: number;
  decode_tokens_per_second: number;
  peak_rss_bytes: number;
}

export function measureTimings(loaded: Pick<LoadedModel, 'loadMs'>, promptTokens: number, result: Pick<GenerateResult, 'generatedIds' | 'prefillMs' | 'decodeMs'>): Timings {
  // The first generated token comes from the prefill pass; each later one costs one decode pass.
  const decodePasses = Math.max(result.generatedIds.length - 1, 0);
  return {
    load_ms: round(loaded.loadMs),
    prompt_tokens: promptTokens,
    generated_tokens: result.generatedIds.length,
    prefill_ms: round(result.prefillMs),
    decode_ms: round(result.decodeMs),
    prefill_tokens_per_second: round((promptTokens / result.prefillMs) * 1000),
    decode_tokens_per_second: decodePasses > 0 ? round((decodePasses / result.decodeMs) * 1000) : 0,
    peak_rss_bytes: peakRssBytes(),
  };
}

export function describeTimings(t: Timings, backend: string): string {
  const mib = (t.peak_rss_bytes / 2 ** 20).toFixed(1);
  return `backend ${backend} · load ${t.load_ms} ms · prefill ${t.prompt_tokens} tokens at ${t.prefill_tokens_per_second} tok/s · decode ${t.generated_tokens} tokens at ${t.decode_tokens_per_second} tok/s · peak RSS ${mib} MiB`;
}

/** Peak resident memory of this process so far. */
function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** Two decimals, for figures people read. */
export function round(value: number): number {
  return Math.round(value * 100) / 100;
}
