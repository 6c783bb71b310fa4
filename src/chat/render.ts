/**
 * The exact prompt a conversation becomes: the model's own chat template, rendered with the
 * variables transformers passes, then tokenized without added special tokens (the template
 * writes <|begin_of_text|> itself).
 */
import type { HerdTokenizer } from '../engine/tokenizer.js';
import { formatDateString, renderChatTemplate, selectChatTemplate, type ChatMessage } from '../templates/chat-template.js';

export interface PromptSettings {
  /** OpenAI function schemas given to the model (without herd's `command`). */
  tools?: unknown[];
  /** Built-in tools switched on (brave_search, wolfram_alpha, code_interpreter). */
  builtinTools?: string[];
  /** Today when unset. */
  date?: Date;
}

export interface RenderedPrompt {
  text: string;
  ids: number[];
}

/** Renders messages for the model to answer (or, with addGenerationPrompt false, as they stand). */
export function renderConversation(
  tokenizer: HerdTokenizer,
  messages: readonly ChatMessage[],
  settings: PromptSettings,
  addGenerationPrompt = true,
): RenderedPrompt {
  const tools = settings.tools !== undefined && settings.tools.length > 0 ? settings.tools : undefined;
  const builtinTools = settings.builtinTools !== undefined && settings.builtinTools.length > 0 ? settings.builtinTools : undefined;
  const template = selectChatTemplate(tokenizer.settings.chatTemplate, { source: 'tokenizer_config.json', hasTools: tools !== undefined });
  const text = renderChatTemplate(template, {
    messages: oneCallPerMessage(messages),
    tools,
    builtinTools,
    dateString: formatDateString(settings.date ?? new Date()),
    addGenerationPrompt,
    bosToken: tokenizer.settings.bosToken ?? '',
    eosToken: tokenizer.settings.eosToken ?? '',
    templateSource: 'tokenizer_config.json',
  });
  return { text, ids: tokenizer.encode(text, false) };
}

/**
 * Llama 3.1's template takes one tool call per assistant message. An assistant message with
 * several calls (kept whole in the session, in OpenAI's shape) is given to it as one call
 * followed by its result, then the next call and its result, which is how the model sees
 * consecutive calls it made one at a time.
 */
export function oneCallPerMessage(messages: readonly ChatMessage[]): ChatMessage[] {
  const result: ChatMessage[] = [];
  for (let index = 0; index < messages.length; index++) {
    const message = messages[index]!;
    const calls = message.tool_calls ?? [];
    if (calls.length <= 1) {
      result.push(message);
      continue;
    }
    const results = new Map<string, ChatMessage>();
    while (isToolResult(messages[index + 1]) && calls.some((call) => call.id === messages[index + 1]!.tool_call_id)) {
      index++;
      results.set(messages[index]!.tool_call_id!, messages[index]!);
    }
    for (const call of calls) {
      result.push({ ...message, content: '', tool_calls: [call] });
      const answer = results.get(call.id);
      if (answer) result.push(answer);
    }
  }
  return result;
}

function isToolResult(message: ChatMessage | undefined): boolean {
  return message !== undefined && (message.role === 'ipython' || message.role === 'tool');
}
