/**
 * The assistant's turn: generate a message; if it is tool calls (a message ended by <|eom_id|>,
 * or a parsed call), ask for approval, run each, add the results as ipython messages and
 * generate again in the same turn; a message ended by <|eot_id|> ends the turn.
 */
import type { FinishReason } from '../engine/generate.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import type { ToolCall } from '../templates/chat-template.js';
import { parseAssistantMessage } from '../templates/tool-calls.js';
import type { Conversation } from './conversation.js';
import { renderConversation, type PromptSettings } from './render.js';
import { refusal, withheldToolResult, withheldUserMessage, type Shield, type ShieldBlock, type ShieldStage } from './shield.js';
import type { TokenReply, TokenSource } from './token-source.js';
import type { ToolBox } from './tools.js';

export type ToolState = 'awaiting_approval' | 'running' | 'done' | 'error' | 'refused';

/** Why a turn ended: the model's finish reason, the cap on tool rounds, or a shield that blocked it. */
export type TurnEndReason = FinishReason | 'tool_rounds' | 'content_filter';

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
  /** A shield stopped content: a user turn, an assistant message or a tool result. */
  | { type: 'shield'; stage: ShieldStage; block: ShieldBlock }
  | ({ type: 'turn_end' } & TurnSummary);

export interface TurnHooks {
  onEvent(event: ChatEvent): void;
  /** Asked before each tool runs; false refuses it (the model is told). */
  approve(call: ToolCall): Promise<boolean>;
  /** Checked between tokens; true stops the turn (Ctrl+C). */
  shouldStop(): boolean;
}

export interface ChatOptions {
  source: TokenSource;
  tokenizer: HerdTokenizer;
  tools: ToolBox;
  /** The date the template writes (today when unset). */
  date?: Date;
  /** Ids that end a message (generation_config's eos_token_id). */
  stopTokenIds: readonly number[];
  maxNewTokens: number;
  /** Most generate → run tools rounds in one turn, so a model that keeps calling cannot loop forever. */
  maxToolRounds: number;
  /** Safety checks on user turns, replies and tool results (herd chat --guard, --prompt-guard). */
  shield?: Shield;
}

export class ChatAgent {
  constructor(readonly conversation: Conversation, private readonly options: ChatOptions) {}

  get tools(): ToolBox {
    return this.options.tools;
  }

  get contextLength(): number {
    return this.options.source.contextLength;
  }

  /** The prompt settings the template receives for this chat. */
  get promptSettings(): PromptSettings {
    return { tools: this.options.tools.schemas, builtinTools: [...this.options.tools.builtinTools], date: this.options.date };
  }

  /** Adds the person's message and generates the assistant's turn; a blocked message never reaches the model. */
  async send(text: string, hooks: TurnHooks): Promise<TurnSummary> {
    const block = await this.options.shield?.checkUserTurn(this.conversation.messages, text);
    if (block) {
      this.conversation.add({ role: 'user', content: withheldUserMessage(block) });
      return this.refuse('user', block, hooks, emptySummary());
    }
    this.conversation.add({ role: 'user', content: text });
    return this.respond(hooks);
  }

  /** Generates the assistant's turn for the conversation as it stands. */
  async respond(hooks: TurnHooks): Promise<TurnSummary> {
    const summary = emptySummary();
    for (let round = 0; ; round++) {
      if (round === this.options.maxToolRounds) {
        summary.finishReason = 'tool_rounds';
        break;
      }
      const reply = await this.generateMessage(hooks, summary);
      const block = await this.options.shield?.checkReply(this.conversation.messages, reply.text);
      if (block) return this.refuse('assistant', block, hooks, summary);
      // A checked reply is shown once it has passed, whole.
      if (this.options.shield?.checksReplies && reply.text !== '') hooks.onEvent({ type: 'token', text: reply.text });
      const parsed = parseAssistantMessage(reply.text);
      const complete = reply.finishReason === 'stop';
      const calls = complete ? parsed.toolCalls : [];
      hooks.onEvent({ type: 'message', text: reply.text, toolCalls: calls });
      if (calls.length === 0) {
        // An interrupted or cut-off message is kept as text: it is what the person saw.
        const content = complete ? parsed.content : reply.text;
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
    return this.endTurn(summary, hooks);
  }

  /** Ends the turn with a refusal in place of what the shield stopped. */
  private refuse(stage: ShieldStage, block: ShieldBlock, hooks: TurnHooks, summary: TurnSummary): TurnSummary {
    hooks.onEvent({ type: 'shield', stage, block });
    const text = refusal(block);
    hooks.onEvent({ type: 'token', text });
    hooks.onEvent({ type: 'message', text, toolCalls: [] });
    this.conversation.add({ role: 'assistant', content: text });
    summary.finishReason = 'content_filter';
    return this.endTurn(summary, hooks);
  }

  private endTurn(summary: TurnSummary, hooks: TurnHooks): TurnSummary {
    summary.decodeTokensPerSecond = summary.decodeMs > 0 ? Math.round((summary.generatedTokens / summary.decodeMs) * 1000 * 100) / 100 : 0;
    hooks.onEvent({ type: 'turn_end', ...summary });
    return summary;
  }

  private async generateMessage(hooks: TurnHooks, summary: TurnSummary): Promise<TokenReply> {
    const prompt = renderConversation(this.options.tokenizer, this.conversation.messages, this.promptSettings);
    const room = this.contextLength - prompt.ids.length;
    const progress = new DecodeProgress(prompt.ids.length);
    const reply = await this.options.source.next({
      promptIds: prompt.ids,
      maxNewTokens: Math.min(this.options.maxNewTokens, Math.max(room, 0)),
      stopTokenIds: this.options.stopTokenIds,
      onText: (text) => {
        if (!this.options.shield?.checksReplies) hooks.onEvent({ type: 'token', text });
      },
      onToken: () => hooks.onEvent({ type: 'progress', ...progress.next() }),
      shouldStop: hooks.shouldStop,
    });
    summary.promptTokens += prompt.ids.length;
    summary.computedPromptTokens += reply.computedPromptTokens;
    summary.generatedTokens += reply.generatedIds.length;
    summary.prefillMs += reply.prefillMs;
    summary.decodeMs += reply.decodeMs;
    summary.contextTokens = prompt.ids.length + reply.generatedIds.length;
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
    const block = outcome.ok ? await this.options.shield?.checkToolResult(call.function.name, outcome.content) : null;
    if (block) {
      hooks.onEvent({ type: 'shield', stage: 'tool_result', block });
      outcome = { ok: false, content: withheldToolResult(call.function.name, block) };
    }
    const ms = Math.round(performance.now() - started);
    hooks.onEvent({ type: 'tool_result', id: call.id, name: call.function.name, ok: outcome.ok, content: outcome.content, ms });
    this.conversation.add({ role: 'ipython', content: outcome.content, tool_call_id: call.id });
  }
}

function emptySummary(): TurnSummary {
  return { finishReason: 'stop', contextTokens: 0, promptTokens: 0, computedPromptTokens: 0, generatedTokens: 0, toolCalls: 0, prefillMs: 0, decodeMs: 0, decodeTokensPerSecond: 0 };
}

/**
 * Live figures for one message. The first token comes from the prompt's pass, so speed counts
 * the tokens after it over the time since it, as the turn's decode_tokens_per_second does.
 */
class DecodeProgress {
  private generated = 0;
  private firstTokenAt = 0;

  constructor(private readonly promptTokens: number) {}

  next(): { contextTokens: number; tokensPerSecond: number } {
    const now = performance.now();
    if (this.generated === 0) this.firstTokenAt = now;
    this.generated++;
    const elapsedMs = now - this.firstTokenAt;
    const tokensPerSecond = elapsedMs > 0 ? Math.round(((this.generated - 1) / elapsedMs) * 1000 * 100) / 100 : 0;
    return { contextTokens: this.promptTokens + this.generated, tokensPerSecond };
  }
}
