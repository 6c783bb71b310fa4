/**
 * The assistant's turn: generate a message; if it is tool calls (a message ended by <|eom_id|>,
 * or a parsed call), ask for approval, run each, add the results as ipython messages and
 * generate again in the same turn; a message ended by <|eot_id|> ends the turn.
 */
import type { FinishReason } from '../engine/generate.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import type { ToolCall } from '../templates/chat-template.js';
import type { Conversation } from './conversation.js';
import { TemplateMessageSource, type MessageReply, type MessageSource } from './message-source.js';
import type { PromptSettings } from './render.js';
import type { TokenSource } from './token-source.js';
import type { ToolBox } from './tools.js';

export type ToolState = 'awaiting_approval' | 'running' | 'done' | 'error' | 'refused';

/** Why a turn ended: the model's finish reason, or the cap on tool rounds. */
export type TurnEndReason = FinishReason | 'tool_rounds';

export interface TurnSummary {
  finishReason: TurnEndReason;
  /** Tokens of the last prompt plus its reply: how much of the context the chat now fills. */
  contextTokens: number;
  promptTokens: number;
  computedPromptTokens: number;
  generatedTokens: number;
  toolCalls: number;
  prefillMs: number;
  decodeMs: number;
  decodeTokensPerSecond: number;
}

export type ChatEvent =
  | { type: 'token'; text: string }
  /** After each generated token: the context filled so far and the decode speed of this message. */
  | { type: 'progress'; contextTokens: number; tokensPerSecond: number }
  /** A generated message is complete: its text and the calls parsed from it. */
  | { type: 'message'; text: string; toolCalls: ToolCall[] }
  | { type: 'tool_call'; call: ToolCall }
  | { type: 'tool_state'; id: string; state: ToolState }
  | { type: 'tool_result'; id: string; name: string; ok: boolean; content: string; ms: number }
  | ({ type: 'turn_end' } & TurnSummary);

export interface TurnHooks {
  onEvent(event: ChatEvent): void;
  /** Asked before each tool runs; false refuses it (the model is told). */
  approve(call: ToolCall): Promise<boolean>;
  /** Checked between tokens; true stops the turn (Ctrl+C). */
  shouldStop(): boolean;
}

interface LoopSettings {
  tools: ToolBox;
  /** The date the template writes (today when unset). */
  date?: Date;
  maxNewTokens: number;
  /** Most generate → run tools rounds in one turn, so a model that keeps calling cannot loop forever. */
  maxToolRounds: number;
}

/** herd renders the template for a TokenSource (the engine, a server's raw completions)… */
interface TemplateSourceOptions {
  source: TokenSource;
  tokenizer: HerdTokenizer;
  /** Ids that end a message (generation_config's eos_token_id). */
  stopTokenIds: readonly number[];
}

/** …or a MessageSource takes the messages whole (a server's /v1/chat/completions). */
interface MessageSourceOptions {
  messageSource: MessageSource;
}

export type ChatSourceOptions = TemplateSourceOptions | MessageSourceOptions;
export type ChatOptions = LoopSettings & ChatSourceOptions;

export class ChatAgent {
  private readonly messages: MessageSource;

  constructor(readonly conversation: Conversation, private readonly options: ChatOptions) {
    this.messages = 'messageSource' in options ? options.messageSource : new TemplateMessageSource(options.source, options.tokenizer, options.stopTokenIds);
  }

  get tools(): ToolBox {
    return this.options.tools;
  }

  get contextLength(): number {
    return this.messages.contextLength;
  }

  /** The prompt settings the template receives for this chat. */
  get promptSettings(): PromptSettings {
    return { tools: this.options.tools.schemas, builtinTools: [...this.options.tools.builtinTools], date: this.options.date };
  }

  /** Adds the person's message and generates the assistant's turn. */
  send(text: string, hooks: TurnHooks): Promise<TurnSummary> {
    this.conversation.add({ role: 'user', content: text });
    return this.respond(hooks);
  }

  /** Generates the assistant's turn for the conversation as it stands. */
  async respond(hooks: TurnHooks): Promise<TurnSummary> {
    const summary: TurnSummary = {
      finishReason: 'stop', contextTokens: 0, promptTokens: 0, computedPromptTokens: 0, generatedTokens: 0, toolCalls: 0, prefillMs: 0, decodeMs: 0, decodeTokensPerSecond: 0,
    };
    for (let round = 0; ; round++) {
      if (round === this.options.maxToolRounds) {
        summary.finishReason = 'tool_rounds';
        break;
      }
      const reply = await this.generateMessage(hooks, summary);
      const complete = reply.finishReason === 'stop';
      const calls = complete ? reply.toolCalls : [];
      hooks.onEvent({ type: 'message', text: reply.text, toolCalls: calls });
      if (calls.length === 0) {
        // An interrupted or cut-off message is kept as text: it is what the person saw.
        const content = complete ? reply.content : reply.text;
        if (content.trim() !== '') this.conversation.add({ role: 'assistant', content });
        summary.finishReason = reply.finishReason;
        break;
      }
      this.conversation.add({ role: 'assistant', content: '', tool_calls: calls });
      summary.toolCalls += calls.length;
      for (const call of calls) await this.runCall(call, hooks);
      if (hooks.shouldStop()) {
        summary.finishReason = 'abort';
        break;
      }
    }
    summary.decodeTokensPerSecond = summary.decodeMs > 0 ? Math.round((summary.generatedTokens / summary.decodeMs) * 1000 * 100) / 100 : 0;
    hooks.onEvent({ type: 'turn_end', ...summary });
    return summary;
  }

  private async generateMessage(hooks: TurnHooks, summary: TurnSummary): Promise<MessageReply> {
    const reply = await this.messages.next({
      messages: this.conversation.messages,
      settings: this.promptSettings,
      maxNewTokens: this.options.maxNewTokens,
      onText: (text) => hooks.onEvent({ type: 'token', text }),
      onProgress: (figures) => hooks.onEvent({ type: 'progress', ...figures }),
      shouldStop: hooks.shouldStop,
    });
    summary.promptTokens += reply.promptTokens;
    summary.computedPromptTokens += reply.computedPromptTokens;
    summary.generatedTokens += reply.generatedTokens;
    summary.prefillMs += reply.prefillMs;
    summary.decodeMs += reply.decodeMs;
    summary.contextTokens = reply.promptTokens + reply.generatedTokens;
    return reply;
  }

  /** Asks, runs and records one call; its result (or refusal) becomes an ipython message. */
  private async runCall(call: ToolCall, hooks: TurnHooks): Promise<void> {
    hooks.onEvent({ type: 'tool_call', call });
    hooks.onEvent({ type: 'tool_state', id: call.id, state: 'awaiting_approval' });
    const started = performance.now();
    let outcome: { ok: boolean; content: string };
    if (await hooks.approve(call)) {
      hooks.onEvent({ type: 'tool_state', id: call.id, state: 'running' });
      outcome = await this.options.tools.run(call);
      hooks.onEvent({ type: 'tool_state', id: call.id, state: outcome.ok ? 'done' : 'error' });
    } else {
      outcome = { ok: false, content: `error: the user declined to run ${call.function.name}` };
      hooks.onEvent({ type: 'tool_state', id: call.id, state: 'refused' });
    }
    const ms = Math.round(performance.now() - started);
    hooks.onEvent({ type: 'tool_result', id: call.id, name: call.function.name, ok: outcome.ok, content: outcome.content, ms });
    this.conversation.add({ role: 'ipython', content: outcome.content, tool_call_id: call.id });
  }
}
