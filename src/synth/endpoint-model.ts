/**
 * A generator or judge behind an OpenAI-compatible server (vLLM, TGI, herd serve): one POST to
 * /v1/chat/completions per request, at most `maxConcurrentRequests` in flight, and retries with
 * doubling waits when the server is unreachable, overloaded (429) or failing (5xx).
 */
import { HerdError } from '../errors.js';
import { RequestLimiter, type ChatModel, type ChatRequest } from './chat-model.js';
import type { ModelSpec } from './pipeline-config.js';

export interface RetryPolicy {
  retries: number;
  backoffMs: number;
  timeoutMs: number;
}

/** Raised for an answer worth asking again (network failure, 429, 5xx, timeout). */
class TransientFailure extends Error {}

export class EndpointChatModel implements ChatModel {
  readonly name: string;
  private readonly url: string;
  private readonly servedModel: string;
  private readonly limiter: RequestLimiter;

  constructor(spec: ModelSpec, private readonly retry: RetryPolicy) {
    if (spec.location.kind !== 'endpoint') throw new Error(`${spec.name} is not an endpoint model`);
    this.name = spec.name;
    this.url = chatCompletionsUrl(spec.location.url);
    this.servedModel = spec.location.model;
    this.limiter = new RequestLimiter(spec.maxConcurrentRequests);
  }

  complete(request: ChatRequest): Promise<string> {
    return this.limiter.run(() => this.withRetries(request));
  }

  private async withRetries(request: ChatRequest): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.post(request);
      } catch (error) {
        if (!(error instanceof TransientFailure)) throw error;
        if (attempt >= this.retry.retries) {
          const tries = attempt + 1;
          throw new HerdError(`${this.name}: ${this.url} failed ${tries} time${tries === 1 ? '' : 's'}: ${error.message}`, { kind: 'network' });
        }
        await new Promise((resolve) => setTimeout(resolve, this.retry.backoffMs * 2 ** attempt));
      }
    }
  }

  private async post(request: ChatRequest): Promise<string> {
    let response: Response;
    try {
      response = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(this.body(request)),
        signal: AbortSignal.timeout(this.retry.timeoutMs),
      });
    } catch (error) {
      throw new TransientFailure(networkReason(error));
    }
    const text = await response.text();
    if (response.status === 429 || response.status >= 500) throw new TransientFailure(`HTTP ${response.status} ${snippet(text)}`);
    if (!response.ok) throw new HerdError(`${this.name}: ${this.url} refused the request: HTTP ${response.status} ${snippet(text)}`, { kind: 'network' });
    return replyText(text, `${this.name}: ${this.url}`);
  }

  /** The OpenAI fields, plus vLLM's top_k / min_p / repetition_penalty only when they filter. */
  private body(request: ChatRequest): Record<string, unknown> {
    const { sampling } = request;
    const messages = [...(request.system === null ? [] : [{ role: 'system', content: request.system }]), { role: 'user', content: request.user }];
    return {
      model: this.servedModel,
      messages,
      max_tokens: sampling.maxNewTokens,
      temperature: sampling.temperature,
      top_p: sampling.topP,
      seed: request.seed,
      ...(sampling.topK > 0 && { top_k: sampling.topK }),
      ...(sampling.minP > 0 && { min_p: sampling.minP }),
      ...(sampling.repetitionPenalty !== 1 && { repetition_penalty: sampling.repetitionPenalty }),
    };
  }
}

/** The base URL as servers are usually given (…/v1), or the full …/chat/completions path. */
export function chatCompletionsUrl(base: string): string {
  const trimmed = base.replace(/\/+$/, '');
  if (trimmed.endsWith('/chat/completions')) return trimmed;
  return trimmed.endsWith('/v1') ? `${trimmed}/chat/completions` : `${trimmed}/v1/chat/completions`;
}

function replyText(body: string, where: string): string {
  let parsed: { choices?: Array<{ message?: { content?: unknown } }> };
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    throw new HerdError(`${where}: the reply is not JSON: ${snippet(body)}`, { kind: 'network' });
  }
  const content = parsed.choices?.[0]?.message?.content;
  if (typeof content !== 'string') throw new HerdError(`${where}: the reply has no choices[0].message.content`, { kind: 'network' });
  return content;
}

/** fetch reports "fetch failed" and keeps the reason (ECONNREFUSED, ENOTFOUND…) on its cause. */
function networkReason(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === 'string') return cause.code;
  if ((error as Error).name === 'TimeoutError') return 'no answer before the request timeout';
  return typeof cause?.message === 'string' ? cause.message : (error as Error).message;
}

function snippet(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
