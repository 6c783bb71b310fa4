/**
 * Errors as OpenAI-compatible clients expect them: an HTTP status and the body
 * `{"error": {"message", "type", "param", "code"}}` (the openai package reads `error.message`,
 * lm-eval and curl users read the status).
 */
import { HerdError } from '../errors.js';
import { QueueFullError } from './scheduler.js';

export interface ErrorObject {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Retry-After on 429). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get body(): { error: ErrorObject } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A request the client got wrong (400), naming the field at fault. */
export function badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, code);
}

/**
 * Any failure as the status and error object to send: a full queue is 429 with Retry-After, a
 * HerdError of the request's making (the prompt longer than the context, say) is 400, and
 * anything else is the server's fault (500) — its message still says what happened.
 */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof QueueFullError) {
    return new ApiError(429, error.message, 'rate_limit_exceeded', null, 'queue_full', { 'Retry-After': String(Math.max(1, Math.ceil(error.retryAfterSeconds))) });
  }
  if (error instanceof HerdError && (error.kind === 'input' || error.kind === 'usage')) return badRequest(error.message);
  return new ApiError(500, `internal error: ${(error as Error).message ?? String(error)}`, 'server_error');
}
