/**
 * The /v1/completions requests herd makes, in the legacy OpenAI shape vLLM and herd serve answer:
 * prompts as token ids (so the server reads exactly the tokens herd would run), prompt logprobs by
 * echo + logprobs, and streamed text.
 */
import { HerdError } from '../errors.js';
import type { EndpointClient } from './client.js';

interface LegacyLogprobs {
  tokens?: string[];
  token_logprobs?: Array<number | null>;
  top_logprobs?: Array<Record<string, number> | null>;
}

interface CompletionChoice {
  text?: string;
  finish_reason?: string | null;
  /** vLLM: the stop token id or stop string that ended the text; null for EOS or length. */
  stop_reason?: number | string | null;
  logprobs?: LegacyLogprobs | null;
}

export interface CompletionUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
}

interface CompletionBody {
  choices?: CompletionChoice[];
  usage?: CompletionUsage | null;
}

/** Each prompt token's logprob (null for the first, which nothing predicts) and whether it was the argmax. */
export interface PromptLogprobs {
  logprobs: Array<number | null>;
  greedy: boolean[];
}

/**
 * The logprobs the model gives each token of the prompt: one echo request that generates one token
 * (lm-eval's local-completions asks the same; some servers refuse max_tokens 0).
 */
export async function promptLogprobs(client: EndpointClient, model: string, ids: readonly number[]): Promise<PromptLogprobs> {
  const body = (await client.postJson('/v1/completions', { model, prompt: ids, max_tokens: 1, temperature: 0, echo: true, logprobs: 1 })) as CompletionBody;
  const logprobs = body.choices?.[0]?.logprobs;
  const values = logprobs?.token_logprobs;
  if (!Array.isArray(values) || values.length < ids.length) {
    throw new HerdError(`${client.base}/v1/completions returned no logprobs for the ${ids.length} prompt tokens (echo + logprobs)`, { kind: 'network' });
  }
  const top = logprobs?.top_logprobs ?? [];
  const prompt = values.slice(0, ids.length);
  return {
    logprobs: prompt,
    // lm-eval: greedy when the token's logprob is the best of the top logprobs at its position.
    greedy: prompt.map((value, i) => value !== null && value >= Math.max(...Object.values(top[i] ?? { self: value }))),
  };
}

export interface CompletionRequest {
  model: string;
  prompt: readonly number[];
  maxTokens: number;
  stop?: readonly string[];
  /** Sampling fields as the OpenAI API names them (temperature, top_p, seed, …). */
  sampling: Record<string, number | undefined>;
  /** vLLM's extra fields: keep <|python_tag|> in the text, stop on these ids. */
  extra?: Record<string, unknown>;
}

export interface CompletionResult {
  text: string;
  finishReason: string | null;
  stopReason: number | string | null;
  usage: CompletionUsage | null;
}

function requestBody(request: CompletionRequest): Record<string, unknown> {
  return {
    model: request.model,
    prompt: request.prompt,
    max_tokens: request.maxTokens,
    ...(request.stop !== undefined && request.stop.length > 0 && { stop: request.stop }),
    ...request.sampling,
    ...request.extra,
  };
}

export async function complete(client: EndpointClient, request: CompletionRequest): Promise<CompletionResult> {
  const body = (await client.postJson('/v1/completions', requestBody(request))) as CompletionBody;
  const choice = body.choices?.[0];
  if (choice === undefined || typeof choice.text !== 'string') throw new HerdError(`${client.base}/v1/completions: the answer has no choices[0].text`, { kind: 'network' });
  return { text: choice.text, finishReason: choice.finish_reason ?? null, stopReason: choice.stop_reason ?? null, usage: body.usage ?? null };
}

/** Streams a completion, giving each text delta as it arrives. */
export async function streamCompletion(client: EndpointClient, request: CompletionRequest, onText: (delta: string) => void, shouldStop: () => boolean): Promise<CompletionResult & { aborted: boolean }> {
  const result = { text: '', finishReason: null as string | null, stopReason: null as number | string | null, usage: null as CompletionUsage | null, aborted: false };
  const events = client.postStream('/v1/completions', { ...requestBody(request), stream_options: { include_usage: true } });
  for await (const event of events) {
    const body = event as CompletionBody;
    if (body.usage) result.usage = body.usage;
    const choice = body.choices?.[0];
    if (choice?.text) {
      result.text += choice.text;
      onText(choice.text);
    }
    if (choice?.finish_reason) result.finishReason = choice.finish_reason;
    if (choice?.stop_reason !== undefined && choice.stop_reason !== null) result.stopReason = choice.stop_reason;
    if (shouldStop()) {
      result.aborted = true;
      await events.return(undefined);
      break;
    }
  }
  return result;
}

/** vLLM's /tokenize (herd serve has it too): the server's own token ids for a text. */
export async function tokenizeRemotely(client: EndpointClient, model: string, text: string, addSpecialTokens: boolean): Promise<number[]> {
  const body = (await client.postJson('/tokenize', { model, prompt: text, add_special_tokens: addSpecialTokens })) as { tokens?: unknown };
  if (!Array.isArray(body.tokens) || !body.tokens.every((id) => Number.isInteger(id))) throw new HerdError(`${client.base}/tokenize: the answer has no "tokens" array of ids`, { kind: 'network' });
  return body.tokens as number[];
}
