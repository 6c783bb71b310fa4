/**
 * herd eval against a server: the same runner, prompts and tokenizer as a local run (the tokenizer
 * comes from --template-from, so the server reads the very token ids the local engine would), with
 * loglikelihoods from echo + logprobs and answers from greedy completions, several documents at once.
 */
import type { HerdTokenizer } from '../engine/tokenizer.js';
import { HerdError } from '../errors.js';
import type { EvalModel, EvalRequests } from '../eval/eval-model.js';
import { rollingWindows, scoredSequence, type ContinuationScore, type TokenRequest } from '../eval/loglikelihood.js';
import type { OutputType } from '../eval/task-config.js';
import type { EndpointCapabilities } from './capabilities.js';
import type { EndpointClient } from './client.js';
import { complete, promptLogprobs } from './completions.js';

export class RemoteEvalModel implements EvalModel {
  constructor(
    private readonly client: EndpointClient,
    private readonly capabilities: EndpointCapabilities,
    readonly tokenizer: HerdTokenizer,
    readonly concurrency: number,
  ) {}

  get prefixToken(): number {
    const { bosToken, eosToken } = this.tokenizer.settings;
    const id = (bosToken === null ? undefined : this.tokenizer.tokenToId(bosToken)) ?? (eosToken === null ? undefined : this.tokenizer.tokenToId(eosToken));
    if (id === undefined) throw new HerdError('--template-from: the tokenizer has neither a bos_token nor an eos_token for scoring from an empty context');
    return id;
  }

  open(outputType: OutputType, maxLength: number): EvalRequests {
    const { client, capabilities } = this;
    if (!capabilities.completions) throw new HerdError(`${capabilities.endpoint} has no /v1/completions, which herd eval needs for ${outputType} tasks`);
    if (outputType !== 'generate_until' && !capabilities.promptLogprobs) {
      throw new HerdError(`${capabilities.endpoint} does not return prompt logprobs (echo + logprobs on /v1/completions), which ${outputType} tasks need; generate_until tasks run on it`);
    }
    const model = capabilities.model;
    const score = (requests: readonly TokenRequest[]) => Promise.all(requests.map((request) => scoreRemotely(client, model, request, maxLength)));
    const eos = this.tokenizer.settings.eosToken;
    return {
      score,
      rollingLoglikelihood: async (tokens) => {
        const windows = rollingWindows(tokens, this.prefixToken, maxLength).map(([context, continuation]) => ({ context, continuation }));
        return (await score(windows)).reduce((sum, window) => sum + window.logprob, 0);
      },
      generateUntil: async (promptIds, maxNewTokens, until) => {
        const result = await complete(client, { model, prompt: promptIds, maxTokens: maxNewTokens, stop: until, sampling: { temperature: 0 } });
        // A server that returns the end-of-text token as text (skip_special_tokens off) ends the answer there, as the engine does.
        return eos !== null && result.text.endsWith(eos) ? result.text.slice(0, -eos.length) : result.text;
      },
      dispose: () => undefined,
    };
  }
}

async function scoreRemotely(client: EndpointClient, model: string, request: TokenRequest, maxLength: number): Promise<ContinuationScore> {
  const { tokens, firstScored } = scoredSequence(request, maxLength);
  const prompt = await promptLogprobs(client, model, tokens);
  const tokenLogprobs = prompt.logprobs.slice(firstScored).map((value) => value ?? Number.NaN);
  return {
    logprob: tokenLogprobs.reduce((sum, value) => sum + value, 0),
    isGreedy: prompt.greedy.slice(firstScored).every(Boolean),
    tokenLogprobs,
  };
}
