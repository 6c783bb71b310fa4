/**
 * POST /v1/completions, the legacy text API: `prompt` as text, a list of texts, token ids or
 * lists of ids; `echo` with `logprobs` returns the prompt tokens' logprobs in the legacy shape
 * (`tokens`, `token_logprobs` with null for the first, `top_logprobs`, `text_offset`), which is
 * what lm-evaluation-harness's `local-completions` model reads for loglikelihood tasks.
 */
import { toApiError } from './api-error.js';
import { indices, responseId, unixSeconds } from './completion-ids.js';
import type { Exchange, ServeContext } from './context.js';
import type { RequestFields } from './fields.js';
import { legacyLogprobs, type LegacyLogprobs, type ScoredToken } from './logprobs.js';
import { choiceSampling, completionBudget, readGenerationParams, type GenerationParams } from './params.js';
import { checkModelName } from './served-model.js';
import { EventStream } from './sse.js';
import { runTextSequence, type TextSequence } from './text-sequence.js';

/** OpenAI's default max_tokens for completions (vLLM's too). */
const DEFAULT_MAX_TOKENS = 16;
/** OpenAI allows up to 5 for completions; vLLM, like chat, 20. */
const MAX_LEGACY_LOGPROBS = 20;

interface Prompt {
  ids: number[];
  text: string;
}

interface CompletionRequest {
  prompts: Prompt[];
  params: GenerationParams;
  /** Top alternatives per token; null: no logprobs. */
  logprobs: number | null;
  echo: boolean;
  stream: boolean;
  includeUsage: boolean;
}

interface ChoiceOutcome {
  index: number;
  text: string;
  logprobs: LegacyLogprobs | null;
  finishReason: 'stop' | 'length';
  sequence: TextSequence;
  promptTokens: number;
}

export async function completions(context: ServeContext, exchange: Exchange): Promise<object | undefined> {
  const request = readCompletionRequest(context, exchange.fields);
  const head = { id: responseId('cmpl'), created: unixSeconds(), model: context.model.id };
  const budgets = request.prompts.map((prompt) => completionBudget(prompt.ids.length, request.params.maxTokens, context.generator.contextLength));
  const jobs = request.prompts.flatMap((prompt, promptIndex) => indices(request.params.n).map((choice) => ({ prompt, choice, index: promptIndex * request.params.n + choice, budget: budgets[promptIndex]! })));
  context.metrics.promptTokens += request.prompts.reduce((sum, prompt) => sum + prompt.ids.length, 0);
  const run = (job: (typeof jobs)[number], onText?: (text: string) => void) => runChoice(context, exchange, request, job, onText);
  if (request.stream) {
    await streamChoices(exchange, request, head, jobs, run);
    return undefined;
  }
  const outcomes = await Promise.all(jobs.map((job) => run(job)));
  return {
    ...head,
    object: 'text_completion',
    choices: outcomes.map((outcome) => ({ index: outcome.index, text: outcome.text, logprobs: outcome.logprobs, finish_reason: outcome.finishReason })),
    usage: usage(request, outcomes),
  };
}

function readCompletionRequest(context: ServeContext, fields: RequestFields): CompletionRequest {
  checkModelName(context, fields);
  return {
    prompts: readPrompts(context, fields),
    params: readGenerationParams(fields, context.model.generation, context.model.vocabSize, { defaultMaxTokens: DEFAULT_MAX_TOKENS }),
    logprobs: fields.number('logprobs', { min: 0, max: MAX_LEGACY_LOGPROBS, integer: true }) ?? null,
    echo: fields.boolean('echo') ?? false,
    stream: fields.boolean('stream') ?? false,
    includeUsage: fields.object('stream_options')?.boolean('include_usage') ?? false,
  };
}

/** Text is encoded with the BOS (add_special_tokens, as vLLM does); token ids are used as given. */
function readPrompts(context: ServeContext, fields: RequestFields): Prompt[] {
  const tokenizer = context.model.tokenizer;
  const value = fields.raw('prompt');
  const isIds = (item: unknown): item is number[] => Array.isArray(item) && item.length > 0 && item.every((id) => Number.isInteger(id) && id >= 0 && id < context.model.vocabSize);
  let prompts: Prompt[] | undefined;
  if (typeof value === 'string') prompts = [{ ids: tokenizer.encode(value, true), text: value }];
  else if (isIds(value)) prompts = [{ ids: value, text: tokenizer.decode(value) }];
  else if (Array.isArray(value) && value.length > 0 && value.every((item) => typeof item === 'string')) prompts = (value as string[]).map((text) => ({ ids: tokenizer.encode(text, true), text }));
  else if (Array.isArray(value) && value.length > 0 && value.every(isIds)) prompts = (value as number[][]).map((ids) => ({ ids, text: tokenizer.decode(ids) }));
  if (prompts === undefined) throw fields.wrong('prompt', `must be a string, a list of strings, a list of token ids (0 to ${context.model.vocabSize - 1}) or a list of such lists`);
  if (prompts.some((prompt) => prompt.ids.length === 0)) throw fields.wrong('prompt', 'is empty');
  return prompts;
}

async function runChoice(
  context: ServeContext,
  exchange: Exchange,
  request: CompletionRequest,
  job: { prompt: Prompt; choice: number; index: number; budget: number },
  onText?: (text: string) => void,
): Promise<ChoiceOutcome> {
  const wantsPromptLogprobs = request.echo && request.logprobs !== null;
  const sequence = await runTextSequence(context, {
    promptIds: job.prompt.ids,
    maxNewTokens: job.budget,
    sampling: choiceSampling(request.params, job.choice),
    stopTokenIds: request.params.stopTokenIds,
    stopStrings: request.params.stopStrings,
    topLogprobs: request.logprobs ?? 0,
    ...(wantsPromptLogprobs && { promptLogprobs: request.logprobs! }),
    signal: exchange.signal,
    onToken: context.metrics.tokenClock(exchange.startedMs),
    onText: onText === undefined ? undefined : (text) => onText(text),
  });
  const echoed = request.echo ? job.prompt.text : '';
  return {
    index: job.index,
    text: echoed + sequence.text,
    logprobs: request.logprobs === null ? null : choiceLogprobs(context, job.prompt, sequence, wantsPromptLogprobs, echoed.length),
    finishReason: sequence.finishReason,
    sequence,
    promptTokens: job.prompt.ids.length,
  };
}

/** The generated tokens' logprobs, after the prompt's when echoed (the first prompt token has none). */
function choiceLogprobs(context: ServeContext, prompt: Prompt, sequence: TextSequence, withPrompt: boolean, generatedOffset: number): LegacyLogprobs {
  const generated: ScoredToken[] = sequence.tokens.map((token) => ({ id: token.id, logprob: token.logprob, top: token.top }));
  if (!withPrompt) return legacyLogprobs(context.model.tokenizer, generated, generatedOffset);
  const scores = sequence.result.promptLogprobs;
  if (scores === undefined || scores.length !== prompt.ids.length) throw new Error(`the generator returned ${scores?.length ?? 'no'} prompt logprobs for a ${prompt.ids.length}-token prompt`);
  const promptScored: ScoredToken[] = prompt.ids.map((id, position) => {
    const score = scores[position] ?? null;
    return { id, logprob: score?.logprob ?? null, top: score?.top ?? null };
  });
  return legacyLogprobs(context.model.tokenizer, [...promptScored, ...generated]);
}

function usage(request: CompletionRequest, outcomes: readonly ChoiceOutcome[]) {
  const promptTokens = request.prompts.reduce((sum, prompt) => sum + prompt.ids.length, 0);
  const completionTokens = outcomes.reduce((sum, outcome) => sum + outcome.sequence.tokens.length, 0);
  const cached = outcomes.filter((outcome) => outcome.index % request.params.n === 0).reduce((sum, outcome) => sum + outcome.sequence.result.cachedPromptTokens, 0);
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens, prompt_tokens_details: { cached_tokens: cached } };
}

/** Text chunks as they become final; the echoed prompt first; logprobs with each choice's last chunk. */
async function streamChoices<Job extends { prompt: Prompt; index: number }>(
  exchange: Exchange,
  request: CompletionRequest,
  head: { id: string; created: number; model: string },
  jobs: Job[],
  run: (job: Job, onText: (text: string) => void) => Promise<ChoiceOutcome>,
): Promise<void> {
  const events = new EventStream(exchange.response);
  const usageField = request.includeUsage ? { usage: null } : {};
  const opened = new Set<number>();
  const send = (index: number, text: string, logprobs: LegacyLogprobs | null = null, finishReason: string | null = null) => {
    // The echoed prompt goes with a choice's first chunk (nothing is sent before a first token; see EventStream).
    const echoed = request.echo && !opened.has(index) ? jobs.find((job) => job.index === index)!.prompt.text : '';
    opened.add(index);
    events.send({ ...head, object: 'text_completion', choices: [{ index, text: echoed + text, logprobs, finish_reason: finishReason }], ...usageField });
  };
  try {
    const outcomes = await Promise.all(jobs.map(async (job) => {
      const outcome = await run(job, (text) => send(job.index, text));
      send(job.index, '', outcome.logprobs, outcome.finishReason);
      return outcome;
    }));
    if (request.includeUsage) events.send({ ...head, object: 'text_completion', choices: [], usage: usage(request, outcomes) });
    events.end();
  } catch (error) {
    events.fail(toApiError(error));
  }
}
