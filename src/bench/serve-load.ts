/**
 * `herd bench --serve URL`: a bounded load run against an OpenAI-compatible server on this
 * machine (herd serve, llama-server, vLLM): `requests` streamed completions, `concurrency` at a
 * time, measuring requests/s, generated tokens/s, time to first token and inter-token latency
 * (p50, p99), and errors by kind. Loopback only: it is a benchmark, not a load generator for
 * other people's servers.
 */
import http from 'node:http';
import { HerdError } from '../errors.js';

export interface LoadOptions {
  url: string;
  concurrency: number;
  requests: number;
  maxTokens: number;
  prompt: string;
  apiKey?: string;
}

interface Outcome {
  /** null when it completed; else the kind of error (http_429, http_500, connection, stream_error). */
  error: string | null;
  generatedTokens: number;
  timeToFirstTokenMs: number | null;
  interTokenMs: number[];
}

export interface LoadReport {
  url: string;
  concurrency: number;
  requests: number;
  completed: number;
  errors: Record<string, number>;
  duration_s: number;
  requests_per_second: number;
  tokens_per_second: number;
  ttft_ms: { p50: number | null; p99: number | null };
  itl_ms: { p50: number | null; p99: number | null };
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

export function checkLoopbackUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new HerdError(`--serve: "${url}" is not a URL (expected http://127.0.0.1:PORT)`);
  }
  if (parsed.protocol !== 'http:' || !LOOPBACK.has(parsed.hostname)) {
    throw new HerdError(`--serve: ${url} is not a server on this machine; the load run only targets this machine (127.0.0.1, localhost or the IPv6 loopback)`);
  }
  return parsed;
}

export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const base = checkLoopbackUrl(options.url);
  const outcomes: Outcome[] = [];
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < options.requests) {
      next++;
      outcomes.push(await streamOne(base, options));
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, options.requests) }, worker));
  const seconds = (performance.now() - started) / 1000;
  return summarize(options, outcomes, seconds);
}

function summarize(options: LoadOptions, outcomes: readonly Outcome[], seconds: number): LoadReport {
  const completed = outcomes.filter((outcome) => outcome.error === null);
  const errors: Record<string, number> = {};
  for (const { error } of outcomes) if (error !== null) errors[error] = (errors[error] ?? 0) + 1;
  const tokens = completed.reduce((sum, outcome) => sum + outcome.generatedTokens, 0);
  const ttft = completed.flatMap((outcome) => (outcome.timeToFirstTokenMs === null ? [] : [outcome.timeToFirstTokenMs]));
  const itl = completed.flatMap((outcome) => outcome.interTokenMs);
  return {
    url: options.url,
    concurrency: options.concurrency,
    requests: options.requests,
    completed: completed.length,
    errors,
    duration_s: round(seconds),
    requests_per_second: round(completed.length / seconds),
    tokens_per_second: round(tokens / seconds),
    ttft_ms: { p50: percentile(ttft, 0.5), p99: percentile(ttft, 0.99) },
    itl_ms: { p50: percentile(itl, 0.5), p99: percentile(itl, 0.99) },
  };
}

/** Nearest-rank percentile, rounded to 0.01 ms; null with no samples. */
export function percentile(values: readonly number[], fraction: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return round(sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))]!);
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

/** One streamed completion: when each text chunk arrived, and the usage the server reported. */
function streamOne(base: URL, options: LoadOptions): Promise<Outcome> {
  const body = JSON.stringify({ prompt: options.prompt, max_tokens: options.maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } });
  const headers: Record<string, string> = { 'Content-Type': 'application/json', ...(options.apiKey ? { Authorization: `Bearer ${options.apiKey}` } : {}) };
  const started = performance.now();
  return new Promise((resolve) => {
    const request = http.request(new URL('/v1/completions', base), { method: 'POST', headers }, (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        resolve({ error: `http_${response.statusCode}`, generatedTokens: 0, timeToFirstTokenMs: null, interTokenMs: [] });
        return;
      }
      const reader = new ChunkTimes(started);
      response.setEncoding('utf8');
      response.on('data', (text: string) => reader.feed(text));
      response.on('end', () => resolve(reader.outcome()));
      response.on('error', () => resolve({ ...reader.outcome(), error: 'connection' }));
    });
    request.on('error', () => resolve({ error: 'connection', generatedTokens: 0, timeToFirstTokenMs: null, interTokenMs: [] }));
    request.end(body);
  });
}

/** Reads server-sent events as they arrive, timing the chunks that carry text. */
class ChunkTimes {
  private buffer = '';
  private last: number | null = null;
  private firstAt: number | null = null;
  private readonly gaps: number[] = [];
  private tokens = 0;
  private textChunks = 0;
  private error: string | null = null;

  constructor(private readonly started: number) {}

  feed(text: string): void {
    this.buffer += text;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const event = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      if (event.startsWith('data: ') && event !== 'data: [DONE]') this.onData(JSON.parse(event.slice('data: '.length)) as StreamChunk);
    }
  }

  outcome(): Outcome {
    // A server that reports no usage: each text chunk is taken for one token.
    return { error: this.error, generatedTokens: this.tokens || this.textChunks, timeToFirstTokenMs: this.firstAt === null ? null : this.firstAt - this.started, interTokenMs: this.gaps };
  }

  private onData(chunk: StreamChunk): void {
    if (chunk.error) this.error = 'stream_error';
    if (chunk.usage?.completion_tokens !== undefined) this.tokens = chunk.usage.completion_tokens;
    if (!chunk.choices?.some((choice) => (choice.text ?? '') !== '')) return;
    const now = performance.now();
    this.textChunks++;
    if (this.last === null) this.firstAt = now;
    else this.gaps.push(now - this.last);
    this.last = now;
  }
}

interface StreamChunk {
  error?: unknown;
  usage?: { completion_tokens?: number } | null;
  choices?: Array<{ text?: string }>;
}

export function describeLoad(report: LoadReport): string {
  const errors = Object.entries(report.errors).map(([kind, count]) => `${kind} ${count}`).join(', ') || 'none';
  const ms = (value: number | null) => (value === null ? '–' : `${value} ms`);
  return [
    `server     ${report.url}: ${report.requests} requests, ${report.concurrency} at a time, in ${report.duration_s} s`,
    `completed  ${report.completed} (${report.requests_per_second} requests/s); errors: ${errors}`,
    `tokens     ${report.tokens_per_second} generated tokens/s in all`,
    `first tok  p50 ${ms(report.ttft_ms.p50)}, p99 ${ms(report.ttft_ms.p99)}`,
    `between    p50 ${ms(report.itl_ms.p50)}, p99 ${ms(report.itl_ms.p99)}`,
  ].join('\n');
}
