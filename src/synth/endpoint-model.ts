/**
 * A generator or judge behind an OpenAI-compatible server (vLLM, TGI, herd serve): one
 * /v1/chat/completions request per answer through remote/'s client, which keeps at most
 * `maxConcurrentRequests` in flight and retries 429 and 503 with doubling waits (or the
 * server's Retry-After).
 */
import { HerdError } from '../errors.js';
import { openAiSampling } from '../remote/sources.js';
import { EndpointClient } from '../remote/client.js';
import type { ChatModel, ChatRequest } from './chat-model.js';
import type { ModelSpec } from './pipeline-config.js';

export interface RetryPolicy {
  retries: number;
  backoffMs: number;
  timeoutMs: number;
}

export class EndpointChatModel implements ChatModel {
  readonly name: string;
  private readonly client: EndpointClient;
  private readonly servedModel: string;

  constructor(spec: ModelSpec, retry: RetryPolicy, apiKey: string | undefined) {
    if (spec.location.kind !== 'endpoint') throw new Error(`${spec.name} is not an endpoint model`);
    this.name = spec.name;
    this.servedModel = spec.location.model;
    this.client = new EndpointClient({
      url: spec.location.url,
      apiKey,
      model: spec.location.model,
      timeoutMs: retry.timeoutMs,
      retries: retry.retries,
      retryBaseMs: retry.backoffMs,
      concurrency: spec.maxConcurrentRequests,
    });
  }

  async complete(request: ChatRequest): Promise<string> {
    const { sampling } = request;
    const messages = [...(request.system === null ? [] : [{ role: 'system', content: request.system }]), { role: 'user', content: request.user }];
    const body = {
      model: this.servedModel,
      messages,
      max_tokens: sampling.maxNewTokens,
      ...openAiSampling({ temperature: sampling.temperature, topP: sampling.topP, topK: sampling.topK, minP: sampling.minP, repetitionPenalty: sampling.repetitionPenalty, seed: request.seed }),
    };
    let reply: unknown;
    try {
      reply = await this.client.postJson('/v1/chat/completions', body);
    } catch (error) {
      if (error instanceof HerdError) throw new HerdError(`${this.name}: ${error.message}`, { kind: error.kind });
      throw error;
    }
    const content = (reply as { choices?: Array<{ message?: { content?: unknown } }> }).choices?.[0]?.message?.content;
    if (typeof content !== 'string') throw new HerdError(`${this.name}: ${this.client.url('/v1/chat/completions')}: the answer has no choices[0].message.content`, { kind: 'network' });
    return content;
  }
}
