/**
 * Text Generation Inference's own API, which the Llama 3.1 post points to: POST /generate and
 * POST /generate_stream with `{"inputs": text, "parameters": {…}}`. TGI decodes greedily unless
 * do_sample is set or a sampling parameter is given, and its finish reasons are
 * `length`, `eos_token` and `stop_sequence`.
 */
import type { GeneratedToken } from '../engine/generate.js';
import { toApiError } from './api-error.js';
import type { Exchange, ServeContext } from './context.js';
import { RequestFields } from './fields.js';
import { completionBudget, readGenerationParams } from './params.js';
import { EventStream } from './sse.js';
import { runTextSequence, type TextSequence } from './text-sequence.js';

/** TGI's default max_new_tokens. */
const DEFAULT_MAX_NEW_TOKENS = 100;
const SAMPLING_FIELDS = ['temperature', 'top_p', 'top_k', 'typical_p'];

interface TgiRequest {
  inputs: string;
  ids: number[];
  parameters: RequestFields;
  details: boolean;
}

export async function generateTgi(context: ServeContext, exchange: Exchange): Promise<object> {
  const request = readTgiRequest(context, exchange.fields);
  const { sequence, seed } = await runTgi(context, exchange, request);
  const returnFullText = request.parameters.boolean('return_full_text') ?? false;
  return {
    generated_text: (returnFullText ? request.inputs : '') + sequence.text,
    ...(request.details && { details: tgiDetails(context, sequence, seed, true) }),
  };
}

export async function generateTgiStream(context: ServeContext, exchange: Exchange): Promise<undefined> {
  const request = readTgiRequest(context, exchange.fields);
  const events = new EventStream(exchange.response);
  let last: GeneratedToken | null = null;
  try {
    const { sequence, seed } = await runTgi(context, exchange, request, (token) => {
      // Each token goes out when the next arrives, so that the last one can carry the whole text.
      if (last !== null) events.send({ index: 0, token: tgiToken(context, last), generated_text: null, details: null });
      last = token;
    });
    const final = sequence.tokens[sequence.tokens.length - 1];
    if (final !== undefined) {
      events.send({ index: 0, token: tgiToken(context, final), generated_text: sequence.text, details: { ...tgiDetails(context, sequence, seed, false), input_length: request.ids.length } });
    }
    events.end(false);
  } catch (error) {
    events.fail(toApiError(error), false);
  }
  return undefined;
}

function readTgiRequest(context: ServeContext, fields: RequestFields): TgiRequest {
  const inputs = fields.string('inputs');
  if (inputs === undefined || inputs === '') throw fields.wrong('inputs', 'must be a non-empty string');
  const parameters = fields.object('parameters') ?? new RequestFields({}, 'parameters.');
  return { inputs, ids: context.model.tokenizer.encode(inputs, true), parameters, details: parameters.boolean('details') ?? false };
}

async function runTgi(context: ServeContext, exchange: Exchange, request: TgiRequest, onToken?: (token: GeneratedToken) => void) {
  const p = request.parameters;
  const maxNewTokens = p.number('max_new_tokens', { min: 1, integer: true }) ?? DEFAULT_MAX_NEW_TOKENS;
  const params = readGenerationParams(p, context.model.generation, context.model.vocabSize, { defaultMaxTokens: maxNewTokens });
  const sampled = (p.boolean('do_sample') ?? false) || SAMPLING_FIELDS.some((name) => p.has(name));
  const sampling = sampled ? params.sampling : { ...params.sampling, temperature: 0 };
  const clock = context.metrics.tokenClock(exchange.startedMs);
  context.metrics.promptTokens += request.ids.length;
  const sequence = await runTextSequence(context, {
    promptIds: request.ids,
    maxNewTokens: completionBudget(request.ids.length, maxNewTokens, context.generator.contextLength),
    sampling,
    stopTokenIds: params.stopTokenIds,
    stopStrings: params.stopStrings,
    topLogprobs: 1,
    signal: exchange.signal,
    onToken: (token) => {
      clock();
      onToken?.(token);
    },
  });
  return { sequence, seed: sampled ? sampling.seed : null };
}

function tgiToken(context: ServeContext, token: GeneratedToken) {
  return { id: token.id, text: context.model.tokenizer.decode([token.id]), logprob: token.logprob, special: context.model.tokenizer.isSpecial(token.id) };
}

function tgiDetails(context: ServeContext, sequence: TextSequence, seed: number | null, withTokens: boolean) {
  const last = sequence.tokens[sequence.tokens.length - 1];
  const endedByEos = last !== undefined && sequence.result.stoppedBy === last.id;
  const finishReason = sequence.finishReason === 'length' ? 'length' : endedByEos ? 'eos_token' : 'stop_sequence';
  return {
    finish_reason: finishReason,
    generated_tokens: sequence.tokens.length,
    seed,
    ...(withTokens && { prefill: [], tokens: sequence.tokens.map((token) => tgiToken(context, token)) }),
  };
}
