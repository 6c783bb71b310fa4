/**
 * Where generated text comes from on a server: herd generate --endpoint continues prompt ids
 * (generateRemotely), and herd chat runs in the two modes `herd env --endpoint` reports:
 * - raw: herd renders the Llama 3.1 template (its own tokenizer from --template-from) and sends the
 *   token ids to /v1/completions; the reply keeps its special tokens (<|python_tag|>) so herd's own
 *   tool-call parsing sees what the local engine would: built-in tools, <|eom_id|> and ipython work.
 * - chat: the server's /v1/chat/completions renders its template and parses tool calls; its
 *   `tool_calls` become herd's, so the same loop runs them.
 */
import { randomUUID } from 'node:crypto';
import type { FinishReason } from '../engine/generate.js';
import type { SamplingOptions } from '../engine/sampling.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import { HerdError } from '../errors.js';
import { DecodeProgress, type MessageReply, type MessageRequest, type MessageSource } from '../chat/message-source.js';
import type { TokenReply, TokenRequest, TokenSource } from '../chat/token-source.js';
import type { ChatMessage, ToolCall } from '../templates/chat-template.js';
import type { EndpointClient } from './client.js';
import { streamCompletion, type CompletionUsage } from './completions.js';

/** Sampling as the OpenAI API (and vLLM's extra fields top_k, min_p, repetition_penalty) names it. */
export function openAiSampling(sampling: SamplingOptions): Record<string, number | undefined> {
  if (sampling.temperature === 0) return { temperature: 0 };
  return {
    temperature: sampling.temperature,
    top_p: sampling.topP,
    ...(sampling.topK > 0 && { top_k: sampling.topK }),
    ...(sampling.minP > 0 && { min_p: sampling.minP }),
    ...(sampling.repetitionPenalty !== 1 && { repetition_penalty: sampling.repetitionPenalty }),
    seed: sampling.seed,
  };
}

/** Times the first streamed piece (the prompt's pass) apart from the rest (decoding). */
class StreamClock {
  private readonly started = performance.now();
  private firstAt: number | null = null;

  mark(): void {
    this.firstAt ??= performance.now();
  }

  figures(): { prefillMs: number; decodeMs: number } {
    const end = performance.now();
    const first = this.firstAt ?? end;
    return { prefillMs: first - this.started, decodeMs: end - first };
  }
}

/** A TokenSource's request, with stop strings (herd generate's --stop); onToken comes once per streamed piece. */
export interface RemoteGenerationRequest extends TokenRequest {
  stopStrings: readonly string[];
}

export interface RemoteGeneration {
  /** The text encoded again by the local tokenizer (the server sends text), with the stop id that ended it. */
  generatedIds: number[];
  text: string;
  finishReason: FinishReason;
  /** The stop id or stop string that ended the text, when the server says or the text shows it. */
  stoppedBy: number | string | null;
  promptTokens: number;
  completionTokens: number;
  prefillMs: number;
  decodeMs: number;
}

/**
 * A server continuing prompt ids herd made, streamed: the raw path beneath chat's raw mode and
 * herd generate --endpoint. Special tokens stay in the text (vLLM's skip_special_tokens false) so
 * that <|python_tag|> reaches herd's parser.
 */
export async function generateRemotely(client: EndpointClient, model: string, tokenizer: HerdTokenizer, sampling: SamplingOptions, request: RemoteGenerationRequest): Promise<RemoteGeneration> {
  const clock = new StreamClock();
  const result = await streamCompletion(client, {
    model,
    prompt: request.promptIds,
    maxTokens: request.maxNewTokens,
    stop: request.stopStrings,
    sampling: openAiSampling(sampling),
    extra: { skip_special_tokens: false, stop_token_ids: request.stopTokenIds },
  }, (delta) => {
    clock.mark();
    request.onToken();
    request.onText(delta);
  }, request.shouldStop);
  const stopped = !result.aborted && result.finishReason === 'stop';
  const ending = endingToken(tokenizer, result.text, result.stopReason, request.stopTokenIds);
  const stoppedBy = !stopped ? null : typeof result.stopReason === 'string' ? result.stopReason : ending.id;
  const generatedIds = [...tokenizer.encode(ending.text, false), ...(typeof stoppedBy === 'number' ? [stoppedBy] : [])];
  return {
    generatedIds,
    text: ending.text,
    finishReason: result.aborted ? 'abort' : stopped ? 'stop' : 'length',
    stoppedBy,
    promptTokens: result.usage?.prompt_tokens ?? request.promptIds.length,
    completionTokens: result.usage?.completion_tokens ?? generatedIds.length,
    ...clock.figures(),
  };
}

/** vLLM names the stop id in stop_reason; a server that writes the end token as text has it cut off here. */
function endingToken(tokenizer: HerdTokenizer, text: string, stopReason: number | string | null, stopIds: readonly number[]): { text: string; id: number | null } {
  for (const id of stopIds) {
    const token = tokenizer.decode([id]);
    if (token !== '' && text.endsWith(token)) return { text: text.slice(0, -token.length), id };
  }
  return { text, id: typeof stopReason === 'number' ? stopReason : (stopIds[stopIds.length - 1] ?? null) };
}

/** Raw mode: a server's /v1/completions continuing the prompt ids herd rendered. */
export class RemoteCompletionsTokenSource implements TokenSource {
  constructor(
    private readonly client: EndpointClient,
    private readonly model: string,
    private readonly tokenizer: HerdTokenizer,
    private readonly sampling: SamplingOptions,
    readonly contextLength: number,
  ) {}

  async next(request: TokenRequest): Promise<TokenReply> {
    const reply = await generateRemotely(this.client, this.model, this.tokenizer, this.sampling, { ...request, stopStrings: [] });
    return {
      generatedIds: reply.generatedIds,
      text: reply.text,
      finishReason: reply.finishReason,
      stoppedBy: typeof reply.stoppedBy === 'number' ? reply.stoppedBy : null,
      computedPromptTokens: reply.promptTokens,
      prefillMs: reply.prefillMs,
      decodeMs: reply.decodeMs,
    };
  }

  dispose(): void {}
}

interface ChatDelta {
  content?: string | null;
  tool_calls?: Array<{ index?: number; id?: string; function?: { name?: string; arguments?: string } }>;
}

interface ChatChunk {
  choices?: Array<{ delta?: ChatDelta; finish_reason?: string | null }>;
  usage?: CompletionUsage | null;
}

/** Chat mode: the server's /v1/chat/completions with tools; its tool_calls go back into herd's loop. */
export class ServerChatMessageSource implements MessageSource {
  constructor(
    private readonly client: EndpointClient,
    private readonly model: string,
    private readonly sampling: SamplingOptions,
    readonly contextLength: number,
  ) {}

  async next(request: MessageRequest): Promise<MessageReply> {
    if ((request.settings.builtinTools ?? []).length > 0) {
      throw new HerdError('built-in tools need raw mode (herd renders the Llama 3.1 template): pass --template-from a Llama 3.1 tokenizer folder, with a server that has /v1/completions');
    }
    const tools = request.settings.tools ?? [];
    const clock = new StreamClock();
    const progress = new DecodeProgress(0);
    const calls: Array<{ id: string; name: string; arguments: string }> = [];
    let text = '';
    let finish: string | null = null;
    let usage: CompletionUsage | null = null;
    let aborted = false;
    let pieces = 0;
    const events = this.client.postStream('/v1/chat/completions', {
      model: this.model,
      messages: request.messages.map(openAiMessage),
      ...(tools.length > 0 && { tools }),
      max_tokens: request.maxNewTokens,
      ...openAiSampling(this.sampling),
      stream_options: { include_usage: true },
    });
    for await (const event of events) {
      const chunk = event as ChatChunk;
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices?.[0];
      const delta = choice?.delta;
      if (delta?.content) {
        text += delta.content;
        request.onText(delta.content);
      }
      for (const part of delta?.tool_calls ?? []) addCallDelta(calls, part);
      if (delta?.content || delta?.tool_calls) {
        clock.mark();
        pieces++;
        request.onProgress(progress.next());
      }
      if (choice?.finish_reason) finish = choice.finish_reason;
      if (request.shouldStop()) {
        aborted = true;
        await events.return(undefined);
        break;
      }
    }
    const toolCalls: ToolCall[] = calls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments === '' ? '{}' : call.arguments } }));
    return {
      text,
      content: toolCalls.length > 0 ? '' : text,
      toolCalls,
      finishReason: aborted ? 'abort' : finish === 'length' ? 'length' : 'stop',
      promptTokens: usage?.prompt_tokens ?? 0,
      computedPromptTokens: usage?.prompt_tokens ?? 0,
      generatedTokens: usage?.completion_tokens ?? pieces,
      ...clock.figures(),
    };
  }

  dispose(): void {}
}

/** A streamed tool-call piece: the first for an index brings its id and name, the rest append arguments. */
function addCallDelta(calls: Array<{ id: string; name: string; arguments: string }>, part: NonNullable<ChatDelta['tool_calls']>[number]): void {
  const index = part.index ?? calls.length;
  calls[index] ??= { id: part.id ?? `call_${randomUUID()}`, name: '', arguments: '' };
  const call = calls[index]!;
  if (part.id) call.id = part.id;
  if (part.function?.name) call.name += part.function.name;
  if (part.function?.arguments) call.arguments += part.function.arguments;
}

/** herd's messages in the OpenAI shape: a tool result (ipython, Llama's role) is a "tool" message. */
function openAiMessage(message: ChatMessage): Record<string, unknown> {
  if (message.role === 'ipython' || message.role === 'tool') return { role: 'tool', content: message.content, ...(message.tool_call_id !== undefined && { tool_call_id: message.tool_call_id }) };
  if (message.tool_calls !== undefined && message.tool_calls.length > 0) return { role: 'assistant', content: message.content === '' ? null : message.content, tool_calls: message.tool_calls };
  return { role: message.role, content: message.content };
}
