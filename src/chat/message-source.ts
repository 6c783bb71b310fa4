/**
 * Where the assistant's next message comes from, given the conversation. Most sources are a
 * TokenSource beneath herd's own rendering of the chat template and its own tool-call parsing (the
 * local engine, a server's raw /v1/completions); a server that only speaks /v1/chat/completions
 * takes the messages and returns its own tool calls. The chat loop sees only this interface.
 */
import type { FinishReason } from '../engine/generate.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import type { ChatMessage, ToolCall } from '../templates/chat-template.js';
import { parseAssistantMessage } from '../templates/tool-calls.js';
import { renderConversation, type PromptSettings } from './render.js';
import type { TokenSource } from './token-source.js';

export interface MessageRequest {
  messages: readonly ChatMessage[];
  settings: PromptSettings;
  maxNewTokens: number;
  onText: (delta: string) => void;
  /** After each generated token: the context filled so far and this message's decode speed. */
  onProgress: (progress: DecodeFigures) => void;
  shouldStop: () => boolean;
}

export interface MessageReply {
  /** The message as generated (what the person saw streamed). */
  text: string;
  /** The message's text when it is not tool calls (Meta's decoder empties it for calls). */
  content: string;
  toolCalls: ToolCall[];
  finishReason: FinishReason;
  promptTokens: number;
  computedPromptTokens: number;
  generatedTokens: number;
  prefillMs: number;
  decodeMs: number;
}

export interface MessageSource {
  /** Most tokens prompt and reply may hold together. */
  readonly contextLength: number;
  next(request: MessageRequest): Promise<MessageReply>;
  dispose(): void;
}

/** herd renders the chat template, a TokenSource continues it, herd parses the tool calls. */
export class TemplateMessageSource implements MessageSource {
  constructor(
    private readonly source: TokenSource,
    private readonly tokenizer: HerdTokenizer,
    /** Ids that end a message (generation_config's eos_token_id). */
    private readonly stopTokenIds: readonly number[],
  ) {}

  get contextLength(): number {
    return this.source.contextLength;
  }

  async next(request: MessageRequest): Promise<MessageReply> {
    const prompt = renderConversation(this.tokenizer, request.messages, request.settings);
    const room = this.contextLength - prompt.ids.length;
    const progress = new DecodeProgress(prompt.ids.length);
    const reply = await this.source.next({
      promptIds: prompt.ids,
      maxNewTokens: Math.min(request.maxNewTokens, Math.max(room, 0)),
      stopTokenIds: this.stopTokenIds,
      onText: request.onText,
      onToken: () => request.onProgress(progress.next()),
      shouldStop: request.shouldStop,
    });
    const parsed = parseAssistantMessage(reply.text);
    return {
      text: reply.text,
      content: parsed.content,
      toolCalls: parsed.toolCalls,
      finishReason: reply.finishReason,
      promptTokens: prompt.ids.length,
      computedPromptTokens: reply.computedPromptTokens,
      generatedTokens: reply.generatedIds.length,
      prefillMs: reply.prefillMs,
      decodeMs: reply.decodeMs,
    };
  }

  dispose(): void {
    this.source.dispose();
  }
}

export interface DecodeFigures {
  contextTokens: number;
  tokensPerSecond: number;
}

/**
 * Live figures for one message. The first token comes from the prompt's pass, so speed counts
 * the tokens after it over the time since it, as the turn's decode_tokens_per_second does.
 */
export class DecodeProgress {
  private generated = 0;
  private firstTokenAt = 0;

  constructor(private readonly promptTokens: number) {}

  next(): DecodeFigures {
    const now = performance.now();
    if (this.generated === 0) this.firstTokenAt = now;
    this.generated++;
    const elapsedMs = now - this.firstTokenAt;
    const tokensPerSecond = elapsedMs > 0 ? Math.round(((this.generated - 1) / elapsedMs) * 1000 * 100) / 100 : 0;
    return { contextTokens: this.promptTokens + this.generated, tokensPerSecond };
  }
}
