/**
 * What a server offers, found by asking it once: its models, whether it has /v1/completions,
 * whether a 1-token echo request returns the prompt's logprobs (vLLM and herd serve do;
 * llama.cpp's server, Ollama and TGI's OpenAI route do not), /v1/chat/completions, and
 * vLLM's /tokenize. Each probe is the smallest request that shows the capability.
 */
import { EndpointClient, EndpointHttpError } from './client.js';

export interface EndpointCapabilities {
  endpoint: string;
  models: string[];
  /** The model herd will ask for. */
  model: string;
  /** Its context length, when /v1/models says (vLLM's max_model_len). */
  contextLength: number | null;
  completions: boolean;
  /** echo + logprobs return the prompt tokens' logprobs: loglikelihood and perplexity tasks work. */
  promptLogprobs: boolean;
  chat: boolean;
  tokenize: boolean;
}

/** Chat modes: herd renders the template and parses tool calls, or the server does both. */
export type ChatMode = 'raw' | 'chat';

export async function probeEndpoint(client: EndpointClient): Promise<EndpointCapabilities> {
  const served = await client.listModels();
  const { id: model, contextLength } = await client.resolveModel(served);
  const echo = await routeAnswer(() => client.postJson('/v1/completions', { model, prompt: 'Hello', max_tokens: 1, temperature: 0, echo: true, logprobs: 1 }));
  // A server may refuse echo (400) yet complete: ask once more without it.
  const completions = echo.found || (echo.status === 400 && (await routeAnswer(() => client.postJson('/v1/completions', { model, prompt: 'Hello', max_tokens: 1, temperature: 0 }))).found);
  const chat = await routeAnswer(() => client.postJson('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 1, temperature: 0 }));
  const tokenize = await routeAnswer(() => client.postJson('/tokenize', { model, prompt: 'Hello' }));
  return {
    endpoint: client.base,
    models: served.map((entry) => entry.id),
    model,
    contextLength,
    completions,
    promptLogprobs: echo.found && hasPromptLogprobs(echo.body),
    chat: chat.found,
    tokenize: tokenize.found && Array.isArray((tokenize.body as { tokens?: unknown }).tokens),
  };
}

/** An echo answer carries logprobs for the prompt's tokens as well as the one generated. */
export function hasPromptLogprobs(body: unknown): boolean {
  const logprobs = (body as { choices?: Array<{ logprobs?: { token_logprobs?: unknown[] } | null }> }).choices?.[0]?.logprobs;
  return Array.isArray(logprobs?.token_logprobs) && logprobs.token_logprobs.length > 1;
}

/**
 * Raw mode when herd has the template (--template-from) and the server completes raw text: exact
 * Llama 3.1 prompts and the built-in tools. Otherwise the server's chat route, with its template.
 */
export function chooseChatMode(capabilities: EndpointCapabilities, haveTemplate: boolean): ChatMode | null {
  if (capabilities.completions && haveTemplate) return 'raw';
  return capabilities.chat ? 'chat' : null;
}

/** Why a mode was or was not chosen, for `herd env --endpoint`. */
export function describeChatMode(capabilities: EndpointCapabilities, haveTemplate: boolean): string {
  const mode = chooseChatMode(capabilities, haveTemplate);
  if (mode === 'raw') return 'raw: herd renders the Llama 3.1 template (--template-from) and parses tool calls itself';
  if (mode === 'chat') {
    const why = capabilities.completions ? 'pass --template-from a Llama 3.1 tokenizer folder for raw mode' : 'the server has no /v1/completions';
    return `chat: the server's /v1/chat/completions renders the template and parses tool calls (${why})`;
  }
  return 'none: the server has neither /v1/completions with a local template nor /v1/chat/completions';
}

/** 404/405/501 mean "no such route"; 400/422 mean the route exists but disliked the request. Anything else is a real failure. */
async function routeAnswer(request: () => Promise<unknown>): Promise<{ found: boolean; status: number; body: unknown }> {
  try {
    return { found: true, status: 200, body: await request() };
  } catch (error) {
    if (error instanceof EndpointHttpError && [400, 404, 405, 422, 501].includes(error.status)) return { found: false, status: error.status, body: null };
    throw error;
  }
}
