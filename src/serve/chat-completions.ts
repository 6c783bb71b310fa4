/**
 * POST /v1/chat/completions: messages rendered through the model's chat template exactly as
 * `herd prompt` renders them, the reply parsed for tool calls with herd's Llama 3.1 rules, and
 * streamed in OpenAI's chunk shape with tool-call deltas shaped as vLLM sends them.
 */
import { renderConversation } from '../chat/render.js';
import type { GeneratedToken } from '../engine/generate.js';
import type { ChatMessage, ToolCall } from '../templates/chat-template.js';
import { toApiError } from './api-error.js';
import { AssistantOutput } from './assistant-output.js';
import { readMessages, readToolSetup, type ToolSetup } from './chat-request.js';
import { indices, responseId, unixSeconds } from './completion-ids.js';
import type { Exchange, ServeContext } from './context.js';
import { chatLogprobs } from './logprobs.js';
import { MAX_TOP_LOGPROBS, choiceSampling, completionBudget, readGenerationParams, type GenerationParams } from './params.js';
import { checkModelName } from './served-model.js';
import { EventStream } from './sse.js';
import { runTextSequence } from './text-sequence.js';

type ChatFinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter';

interface ChatRequest {
  messages: ChatMessage[];
  toolSetup: ToolSetup;
  params: GenerationParams;
  /** Top alternatives per token; null: no logprobs asked for. */
  topLogprobs: number | null;
  stream: boolean;
  includeUsage: boolean;
}

interface ChoiceOutcome {
  message: { role: 'assistant'; content: string | null; tool_calls?: ToolCall[] };
  finishReason: ChatFinishReason;
  tokens: GeneratedToken[];
  cachedPromptTokens: number;
}

/** Receives a choice's reply as it is generated (streaming). */
interface ChoiceListener {
  onProse(text: string, tokens: GeneratedToken[]): void;
}

export async function chatCompletions(context: ServeContext, exchange: Exchange): Promise<object | undefined> {
  const request = readChatRequest(context, exchange);
  const head = { id: responseId('chatcmpl'), created: unixSeconds(), model: context.model.id };
  const { text, ids } = renderConversation(context.model.tokenizer, request.messages, { tools: request.toolSetup.tools, builtinTools: request.toolSetup.builtinTools });
  const forced = request.toolSetup.forcedStart;
  const promptIds = forced === '' ? ids : context.model.tokenizer.encode(text + forced, false);
  const maxNewTokens = completionBudget(promptIds.length, request.params.maxTokens, context.generator.contextLength);
  context.metrics.promptTokens += promptIds.length;
  const allowed = context.shield === undefined || (await context.shield.allows(request.messages));
  const run = (index: number, listener?: ChoiceListener) => allowed
    ? runChoice(context, exchange, request, { promptIds, maxNewTokens, index }, listener)
    : Promise.resolve(filteredChoice());
  if (request.stream) {
    await streamChoices(context, exchange, request, head, promptIds.length, run);
    return undefined;
  }
  const outcomes = await Promise.all(indices(request.params.n).map((index) => run(index)));
  return {
    ...head,
    object: 'chat.completion',
    choices: outcomes.map((outcome, index) => ({
      index,
      message: outcome.message,
      logprobs: request.topLogprobs === null ? null : { content: chatLogprobs(context.model.tokenizer, outcome.tokens) },
      finish_reason: outcome.finishReason,
    })),
    usage: usage(promptIds.length, outcomes),
  };
}

function readChatRequest(context: ServeContext, { fields }: Exchange): ChatRequest {
  checkModelName(context, fields);
  const wantsLogprobs = fields.boolean('logprobs') ?? false;
  const topLogprobs = fields.number('top_logprobs', { min: 0, max: MAX_TOP_LOGPROBS, integer: true });
  if (topLogprobs !== undefined && !wantsLogprobs) throw fields.wrong('top_logprobs', 'needs "logprobs": true');
  return {
    messages: readMessages(fields),
    toolSetup: readToolSetup(fields),
    params: readGenerationParams(fields, context.model.generation, context.model.vocabSize),
    topLogprobs: wantsLogprobs ? (topLogprobs ?? 0) : null,
    stream: fields.boolean('stream') ?? false,
    includeUsage: fields.object('stream_options')?.boolean('include_usage') ?? false,
  };
}

async function runChoice(
  context: ServeContext,
  exchange: Exchange,
  request: ChatRequest,
  sequence: { promptIds: number[]; maxNewTokens: number; index: number },
  listener?: ChoiceListener,
): Promise<ChoiceOutcome> {
  const output = new AssistantOutput(request.toolSetup.on, request.toolSetup.forcedStart);
  let pendingTokens: GeneratedToken[] = [];
  let prose = '';
  const sendProse = (text: string) => {
    prose += text;
    if (text === '' || listener === undefined) return;
    listener.onProse(text, pendingTokens);
    pendingTokens = [];
  };
  const result = await runTextSequence(context, {
    promptIds: sequence.promptIds,
    maxNewTokens: sequence.maxNewTokens,
    sampling: choiceSampling(request.params, sequence.index),
    stopTokenIds: request.params.stopTokenIds,
    stopStrings: request.params.stopStrings,
    topLogprobs: request.topLogprobs ?? 0,
    signal: exchange.signal,
    onToken: context.metrics.tokenClock(exchange.startedMs),
    onText: (delta, tokens) => {
      pendingTokens.push(...tokens);
      sendProse(output.push(delta));
    },
  });
  const message = output.finish();
  if (message.toolCalls.length === 0) sendProse(message.content);
  let outcome: ChoiceOutcome = {
    message: message.toolCalls.length > 0
      ? { role: 'assistant', content: message.content === '' ? null : message.content, tool_calls: message.toolCalls }
      : { role: 'assistant', content: prose },
    finishReason: message.toolCalls.length > 0 ? 'tool_calls' : result.finishReason,
    tokens: result.tokens,
    cachedPromptTokens: result.result.cachedPromptTokens,
  };
  if (context.shield !== undefined && listener === undefined && !(await context.shield.allows([...request.messages, { ...outcome.message, content: outcome.message.content ?? '' }]))) {
    outcome = { ...filteredChoice(), tokens: outcome.tokens };
  }
  return outcome;
}

/** A reply the shield refused: no text, finish_reason "content_filter". */
function filteredChoice(): ChoiceOutcome {
  return { message: { role: 'assistant', content: '' }, finishReason: 'content_filter', tokens: [], cachedPromptTokens: 0 };
}

function usage(promptTokens: number, outcomes: readonly ChoiceOutcome[]) {
  const completionTokens = outcomes.reduce((sum, outcome) => sum + outcome.tokens.length, 0);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: outcomes[0]?.cachedPromptTokens ?? 0 },
  };
}

/**
 * The streamed reply: a role chunk per choice, content deltas as text becomes final, then each
 * tool call as vLLM streams it (`{index, id, type, function: {name, arguments: ""}}`, then
 * `{index, function: {arguments}}`), the finish chunk, and the usage chunk (`choices: []`) when
 * stream_options.include_usage asks for it. An error once the stream is open goes as
 * `data: {"error": …}` then `data: [DONE]`. With a shield, each reply is generated whole and
 * checked first, then sent as one content delta (or withheld with finish_reason "content_filter").
 */
async function streamChoices(
  context: ServeContext,
  exchange: Exchange,
  request: ChatRequest,
  head: { id: string; created: number; model: string },
  promptTokens: number,
  run: (index: number, listener?: ChoiceListener) => Promise<ChoiceOutcome>,
): Promise<void> {
  const events = new EventStream(exchange.response);
  const usageField = request.includeUsage ? { usage: null } : {};
  // With a shield that judges replies, nothing of a reply reaches the client before it passed.
  const checksReplies = context.shield?.checksReplies ?? false;
  const opened = new Set<number>();
  const send = (index: number, delta: object, extra: { logprobs?: object | null; finish_reason?: string | null } = {}) => {
    // Each choice opens with its role chunk, sent with its first content (see EventStream).
    if (!opened.has(index)) {
      opened.add(index);
      send(index, { role: 'assistant', content: '' });
    }
    events.send({ ...head, object: 'chat.completion.chunk', choices: [{ index, delta, logprobs: extra.logprobs ?? null, finish_reason: extra.finish_reason ?? null }], ...usageField });
  };
  const logprobsOf = (tokens: GeneratedToken[]) => (request.topLogprobs === null ? null : { content: chatLogprobs(context.model.tokenizer, tokens) });
  try {
    const outcomes = await Promise.all(indices(request.params.n).map(async (index) => {
      const outcome = await run(index, checksReplies ? undefined : { onProse: (text, tokens) => send(index, { content: text }, { logprobs: logprobsOf(tokens) }) });
      // A checked reply is shown once it has passed, whole (a withheld one has no content to send).
      if (checksReplies && outcome.message.tool_calls === undefined && outcome.message.content) {
        send(index, { content: outcome.message.content }, { logprobs: logprobsOf(outcome.tokens) });
      }
      (outcome.message.tool_calls ?? []).forEach((call, callIndex) => {
        send(index, { tool_calls: [{ index: callIndex, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] });
        send(index, { tool_calls: [{ index: callIndex, function: { arguments: call.function.arguments } }] });
      });
      send(index, {}, { finish_reason: outcome.finishReason });
      return outcome;
    }));
    if (request.includeUsage) events.send({ ...head, object: 'chat.completion.chunk', choices: [], usage: usage(promptTokens, outcomes) });
    events.end();
  } catch (error) {
    events.fail(toApiError(error));
  }
}
