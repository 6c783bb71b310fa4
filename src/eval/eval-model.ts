/**
 * What the task runner needs of a model: a tokenizer (prompts are built and encoded the same way
 * wherever the model runs), continuation log-likelihoods, rolling log-likelihoods and greedy
 * generation until stop strings. The local engine is one implementation; a server that speaks the
 * OpenAI API (src/remote) is the other, beneath the same runner.
 */
import { generate, ReusableCache } from '../engine/generate.js';
import type { LoadedModel } from '../engine/load.js';
import { GREEDY } from '../engine/sampling.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import { HerdError } from '../errors.js';
import { LoglikelihoodScorer, type ContinuationScore, type TokenRequest } from './loglikelihood.js';
import type { OutputType } from './task-config.js';

export interface EvalModel {
  readonly tokenizer: HerdTokenizer;
  /** lm-eval's prefix_token_id: BOS, else the end-of-text token. */
  readonly prefixToken: number;
  /** Documents run at once (the local engine runs one: it keeps one KV cache). */
  readonly concurrency: number;
  /** Requests of one task, sharing what the model keeps between them; fails when the model cannot answer this output type. */
  open(outputType: OutputType, maxLength: number): EvalRequests;
}

export interface EvalRequests {
  score(requests: readonly TokenRequest[]): Promise<ContinuationScore[]>;
  /** lm-eval's loglikelihood_rolling over text tokens (no BOS). */
  rollingLoglikelihood(tokens: readonly number[]): Promise<number>;
  /** Greedy continuation of the prompt until an end-of-text id or a stop string (cut before it). */
  generateUntil(promptIds: readonly number[], maxNewTokens: number, until: readonly string[]): Promise<string>;
  dispose(): void;
}

/** The model in this process, keeping one KV cache for scoring and one for generation across a task. */
export class LocalEvalModel implements EvalModel {
  readonly concurrency = 1;

  constructor(readonly loaded: LoadedModel) {}

  get tokenizer(): HerdTokenizer {
    return this.loaded.tokenizer;
  }

  get prefixToken(): number {
    const id = this.loaded.config.bosTokenId ?? this.loaded.config.eosTokenIds[0];
    if (id === undefined) throw new HerdError('the model has neither a bos_token_id nor an eos_token_id for scoring from an empty context');
    return id;
  }

  open(_outputType: OutputType, maxLength: number): EvalRequests {
    const scorer = new LoglikelihoodScorer(this.loaded.model, maxLength);
    const generation = new ReusableCache();
    const { loaded } = this;
    const prefixToken = this.prefixToken;
    return {
      score: async (requests) => scorer.score(requests),
      rollingLoglikelihood: async (tokens) => scorer.rollingLoglikelihood(tokens, prefixToken),
      generateUntil: async (promptIds, maxNewTokens, until) => generate(loaded.model, loaded.tokenizer, {
        reuseCache: generation, promptIds, maxNewTokens, sampling: GREEDY, stopTokenIds: loaded.generation.eosTokenIds, stopStrings: until, topLogprobs: 0,
      }).text,
      dispose: () => {
        scorer.dispose();
        generation.dispose();
      },
    };
  }
}

/** A loaded model as the runner's EvalModel (callers may pass either). */
export function asEvalModel(model: EvalModel | LoadedModel): EvalModel {
  return 'open' in model ? model : new LocalEvalModel(model);
}
