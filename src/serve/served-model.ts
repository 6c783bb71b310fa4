/**
 * The endpoints about the model rather than generation, in vLLM's shapes (lm-eval's remote
 * tokenizer probes /tokenizer_info and /tokenize): GET /v1/models, POST /tokenize,
 * POST /detokenize, GET /tokenizer_info.
 */
import { renderConversation } from '../chat/render.js';
import { badRequest } from './api-error.js';
import { readMessages, readToolSetup } from './chat-request.js';
import type { Exchange, ServeContext } from './context.js';
import type { RequestFields } from './fields.js';

/** A request naming another model is refused rather than silently answered by this one. */
export function checkModelName(context: ServeContext, fields: RequestFields): void {
  const name = fields.string('model');
  if (name !== undefined && name !== context.model.id) {
    throw badRequest(`the model "${name}" is not served here; this server serves "${context.model.id}"`, 'model', 'model_not_found');
  }
}

export function listModels(context: ServeContext): object {
  return { object: 'list', data: [modelCard(context)] };
}

function modelCard(context: ServeContext) {
  return { id: context.model.id, object: 'model', created: context.model.created, owned_by: 'herd', max_model_len: context.generator.contextLength };
}

/** Text (`prompt`, with the BOS unless add_special_tokens is false) or a conversation (`messages`, through the chat template) to ids. */
export function tokenize(context: ServeContext, { fields }: Exchange): object {
  checkModelName(context, fields);
  const tokenizer = context.model.tokenizer;
  let tokens: number[];
  if (fields.has('messages')) {
    const setup = readToolSetup(fields);
    const rendered = renderConversation(tokenizer, readMessages(fields), { tools: setup.tools, builtinTools: setup.builtinTools }, fields.boolean('add_generation_prompt') ?? true);
    tokens = rendered.ids;
  } else {
    const prompt = fields.string('prompt');
    if (prompt === undefined) throw badRequest('give "prompt" (text) or "messages"', 'prompt');
    tokens = tokenizer.encode(prompt, fields.boolean('add_special_tokens') ?? true);
  }
  const strings = fields.boolean('return_token_strs') ? { token_strs: tokens.map((id) => tokenizer.idToToken(id) ?? '') } : {};
  return { count: tokens.length, max_model_len: context.generator.contextLength, tokens, ...strings };
}

export function detokenize(context: ServeContext, { fields }: Exchange): object {
  checkModelName(context, fields);
  if (!fields.has('tokens')) throw badRequest('"tokens" (a list of token ids) is required', 'tokens');
  const tokens = fields.integers('tokens', 0, context.model.vocabSize - 1);
  return { prompt: context.model.tokenizer.decode(tokens) };
}

export function tokenizerInfo(context: ServeContext): object {
  const settings = context.model.tokenizer.settings;
  const template = settings.chatTemplate;
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: settings.bosToken,
    eos_token: settings.eosToken,
    chat_template: typeof template === 'string' ? template : (template?.default ?? null),
    model_max_length: context.generator.contextLength,
  };
}
