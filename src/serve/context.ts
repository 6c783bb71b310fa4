/** What every endpoint works with: the generator, the model's tokenizer and defaults, metrics, and the request's lifetime. */
import type { ServerResponse } from 'node:http';
import type { GenerationDefaults } from '../engine/load.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import type { ChatMessage } from '../templates/chat-template.js';
import { ApiError } from './api-error.js';
import type { RequestFields } from './fields.js';
import type { ServeMetrics } from './metrics.js';
import type { Generator } from './scheduler.js';

/**
 * A check on a conversation before it is answered and on the answer before it is returned (the
 * Llama Guard shield hooks in here): false ends the reply with finish_reason "content_filter".
 */
export interface ChatShield {
  /** Whether replies are judged too (Llama Guard), so a streamed reply must be held until it passed. */
  readonly checksReplies: boolean;
  allows(messages: readonly ChatMessage[]): Promise<boolean>;
}

export interface ServedModel {
  /** The id clients name in "model" (and /v1/models lists). */
  id: string;
  tokenizer: HerdTokenizer;
  /** generation_config.json: sampling defaults and the stop ids. */
  generation: GenerationDefaults;
  vocabSize: number;
  /** Unix seconds the server loaded the model. */
  created: number;
}

export interface ServeContext {
  generator: Generator;
  model: ServedModel;
  metrics: ServeMetrics;
  shield?: ChatShield;
}

/** One HTTP exchange: its parsed fields, where the answer goes, and the signal that cancels its work. */
export interface Exchange {
  fields: RequestFields;
  response: ServerResponse;
  signal: AbortSignal;
  /** When the request arrived (performance.now()), for time to first token. */
  startedMs: number;
}

/** Why a request's work was cancelled; each becomes the error its client sees (if it is still there). */
export const CANCELLED = {
  clientGone: () => new ApiError(499, 'the client closed the connection', 'client_closed_request'),
  timeout: (seconds: number) => new ApiError(504, `the request ran past the server's --timeout of ${seconds} s`, 'timeout', null, 'timeout'),
  shutdown: () => new ApiError(503, 'the server is shutting down', 'server_error', null, 'server_shutting_down'),
};

/**
 * Ties a request's work to the things that end it early: the client closing the connection
 * (res 'close' before the response finished), --timeout, and the server shutting down.
 */
export class RequestLifetime {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly onShutdown = () => this.controller.abort(CANCELLED.shutdown());

  constructor(response: ServerResponse, timeoutSeconds: number | null, private readonly shutdown: AbortSignal) {
    response.on('close', () => {
      if (!response.writableFinished) this.controller.abort(CANCELLED.clientGone());
    });
    if (timeoutSeconds !== null) this.timer = setTimeout(() => this.controller.abort(CANCELLED.timeout(timeoutSeconds)), timeoutSeconds * 1000);
    if (shutdown.aborted) this.onShutdown();
    else shutdown.addEventListener('abort', this.onShutdown, { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.shutdown.removeEventListener('abort', this.onShutdown);
  }
}
