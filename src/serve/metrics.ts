/**
 * The server's counters in Prometheus' text exposition format (version 0.0.4): requests by
 * endpoint and status, prompt and generated tokens, running and waiting sequences, time to first
 * token and inter-token latency histograms, and the prefix cache's hits.
 */
import type { GeneratorStats } from './scheduler.js';

/** Seconds; Prometheus' default buckets reach from 5 ms to 10 s, which spans a CPU server's latencies. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

class Histogram {
  private readonly counts = new Array<number>(LATENCY_BUCKETS.length).fill(0);
  private sum = 0;
  private count = 0;

  observe(seconds: number): void {
    this.sum += seconds;
    this.count++;
    const bucket = LATENCY_BUCKETS.findIndex((bound) => seconds <= bound);
    if (bucket >= 0) this.counts[bucket]!++;
  }

  lines(name: string): string[] {
    let cumulative = 0;
    const buckets = LATENCY_BUCKETS.map((bound, index) => {
      cumulative += this.counts[index]!;
      return `${name}_bucket{le="${bound}"} ${cumulative}`;
    });
    return [...buckets, `${name}_bucket{le="+Inf"} ${this.count}`, `${name}_sum ${this.sum}`, `${name}_count ${this.count}`];
  }
}

export class ServeMetrics {
  private readonly requests = new Map<string, number>();
  promptTokens = 0;
  generatedTokens = 0;
  readonly timeToFirstToken = new Histogram();
  readonly interTokenLatency = new Histogram();

  countRequest(endpoint: string, status: number): void {
    const key = `endpoint="${endpoint}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  render(stats: GeneratorStats | null): string {
    const lines = [
      '# HELP herd_requests_total HTTP requests answered, by endpoint and status.',
      '# TYPE herd_requests_total counter',
      ...[...this.requests].map(([labels, count]) => `herd_requests_total{${labels}} ${count}`),
      ...metric('herd_prompt_tokens_total', 'counter', 'Prompt tokens of finished requests.', this.promptTokens),
      ...metric('herd_generation_tokens_total', 'counter', 'Tokens generated.', this.generatedTokens),
      ...metric('herd_requests_running', 'gauge', 'Sequences in the running batch.', stats?.running ?? 0),
      ...metric('herd_requests_waiting', 'gauge', 'Sequences waiting for a slot.', stats?.waiting ?? 0),
      ...metric('herd_prefix_cache_hits_total', 'counter', 'Prompts that reused a cached prefix.', stats?.prefixCacheHits ?? 0),
      ...metric('herd_prefix_cache_hit_tokens_total', 'counter', 'Prompt tokens taken from the prefix cache.', stats?.prefixCacheTokens ?? 0),
      '# HELP herd_time_to_first_token_seconds From the request arriving to its first generated token.',
      '# TYPE herd_time_to_first_token_seconds histogram',
      ...this.timeToFirstToken.lines('herd_time_to_first_token_seconds'),
      '# HELP herd_inter_token_latency_seconds Between consecutive tokens of one sequence.',
      '# TYPE herd_inter_token_latency_seconds histogram',
      ...this.interTokenLatency.lines('herd_inter_token_latency_seconds'),
    ];
    return `${lines.join('\n')}\n`;
  }

  /** A per-sequence clock that feeds the two latency histograms as tokens arrive. */
  tokenClock(startedMs: number): () => void {
    let last: number | null = null;
    return () => {
      const now = performance.now();
      if (last === null) this.timeToFirstToken.observe((now - startedMs) / 1000);
      else this.interTokenLatency.observe((now - last) / 1000);
      last = now;
      this.generatedTokens++;
    };
  }
}

function metric(name: string, type: 'counter' | 'gauge', help: string, value: number): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`];
}
