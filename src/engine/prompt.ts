import { HerdError } from '../errors.js';
import { formatDateString, renderChatTemplate, selectChatTemplate, type ChatMessage } from '../templates/chat-template.js';
import type { HerdTokenizer } from './tokenizer.js';

export interface PromptRequest {
  text: string;
  /**
   * Feed the text as is (BOS added as the tokenizer's post-processor says, unless the text starts
   * with it), skipping any chat template.
   */
  raw: boolean;
  system?: string;
  /** Passed to the template as date_string. */
  date?: Date;
}

/**
 * Prompt ids for one user turn: through the model's chat template when it has one (the template
 * writes the BOS itself, so none is added), else the raw text with the tokenizer's special tokens.
 */
export function promptIds(tokenizer: HerdTokenizer, request: PromptRequest): number[] {
  const settings = tokenizer.settings;
  if (request.raw || settings.chatTemplate === null) {
    if (request.system !== undefined) throw new HerdError('--system needs a chat template, and this model has none (or --raw was given)');
    // Text that already starts with the BOS token (a chat template rendered by hand) gets no
    // second one: the post-processor would add it blindly, as transformers does.
    const startsWithBos = settings.bosToken !== null && settings.bosToken !== '' && request.text.startsWith(settings.bosToken);
    return tokenizer.encode(request.text, !startsWithBos);
  }
  const template = selectChatTemplate(settings.chatTemplate, { source: 'tokenizer_config.json', hasTools: false });
  const messages: ChatMessage[] = [];
  if (request.system !== undefined) messages.push({ role: 'system', content: request.system });
  messages.push({ role: 'user', content: request.text });
  const rendered = renderChatTemplate(template, {
    messages,
    addGenerationPrompt: true,
    dateString: formatDateString(request.date ?? new Date()),
    bosToken: settings.bosToken ?? '',
    eosToken: settings.eosToken ?? '',
  });
  return tokenizer.encode(rendered, false);
}
