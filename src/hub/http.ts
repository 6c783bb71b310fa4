import { createRequire } from 'node:module';
import type { Dispatcher, EnvHttpProxyAgent } from 'undici';
import { HerdError } from '../errors.js';
import type { HubSettings } from './settings.js';
import { hubError, networkError, type RequestSubject } from './hub-errors.js';

/**
 * Requests to the Hub on Node's own fetch: the token only ever goes to HF_ENDPOINT's origin,
 * 429 and 5xx answers and dropped connections are retried with exponential backoff (honouring
 * Retry-After), HTTPS_PROXY/HTTP_PROXY/NO_PROXY are honoured, and a failure becomes one HerdError
 * line that says what the Hub meant (hub-errors.ts).
 */

export interface RetryPolicy {
  /** Tries in all, the first included. */
  attempts: number;
  /** The first backoff; each later one doubles, up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface HubClientOptions {
  retry?: Partial<RetryPolicy>;
  /** How a backoff waits; tests record the delays instead of waiting them. */
  sleep?: (ms: number) => Promise<void>;
  /** Where the proxy variables and HERD_HUB_RETRY_BASE_MS are read. */
  env?: NodeJS.ProcessEnv;
}

export type HubRequest = { method?: 'GET' | 'HEAD'; headers?: Record<string, string>; redirect?: 'manual' | 'follow'; signal?: AbortSignal };

// Connection failures worth another try; a refused connection or an unknown host is not transient.
const TRANSIENT_CODES = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

export class HubClient {
  readonly endpoint: string;
  readonly hasToken: boolean;
  readonly retry: RetryPolicy;
  private readonly token: string | undefined;
  private readonly origin: string;
  private readonly dispatcher: Dispatcher | undefined;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(settings: HubSettings, options: HubClientOptions = {}) {
    const env = options.env ?? process.env;
    this.endpoint = settings.endpoint;
    this.token = settings.token;
    this.hasToken = settings.token !== undefined;
    this.origin = new URL(settings.endpoint).origin;
    this.dispatcher = proxyDispatcher(env);
    const base = Number(env.HERD_HUB_RETRY_BASE_MS);
    this.retry = { attempts: 5, baseDelayMs: Number.isFinite(base) && base >= 0 ? base : 1000, maxDelayMs: 60_000, ...options.retry };
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /**
   * One request, retried on 429, 5xx and dropped connections. Resolves to any answer below 400
   * or one `accept` takes (the caller handles it); anything else is thrown as a HerdError.
   */
  async send(url: string, request: HubRequest, subject: RequestSubject, accept: (status: number) => boolean = () => false): Promise<Response> {
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= this.retry.attempts;
      let response: Response;
      try {
        response = await fetch(url, this.init(url, request));
      } catch (error) {
        // The caller's own stall watchdog fired: it decides what to do.
        if (request.signal?.aborted) throw error;
        if (last || !isTransient(error)) throw networkError(url, error);
        await this.backoff(attempt, undefined);
        continue;
      }
      if (response.status < 400 || accept(response.status)) return response;
      if (!last && (response.status === 429 || response.status >= 500)) {
        await response.body?.cancel();
        await this.backoff(attempt, response.headers.get('retry-after'));
        continue;
      }
      throw await hubError(response, subject, { endpoint: this.endpoint, hasToken: this.hasToken, attempts: attempt });
    }
  }

  /** Waits before try `attempt + 1`: Retry-After when the server gave one, else base·2^(attempt-1). */
  async backoff(attempt: number, retryAfter: string | null | undefined): Promise<void> {
    const asked = retryAfterMs(retryAfter);
    const delay = asked ?? this.retry.baseDelayMs * 2 ** (attempt - 1);
    await this.sleep(Math.min(delay, this.retry.maxDelayMs));
  }

  private init(url: string, request: HubRequest): RequestInit & { dispatcher?: Dispatcher } {
    const headers: Record<string, string> = { 'User-Agent': 'herd', ...request.headers };
    // The token is for the Hub alone: never for the CDN a download is redirected to.
    if (this.token !== undefined && new URL(url).origin === this.origin) headers.Authorization = `Bearer ${this.token}`;
    return { method: request.method ?? 'GET', headers, redirect: request.redirect ?? 'manual', signal: request.signal, ...(this.dispatcher && { dispatcher: this.dispatcher }) };
  }
}

/** Whether a failed fetch, or a body that stopped, is worth another try. */
export function isTransient(error: unknown): boolean {
  if (error instanceof HerdError) return false;
  const cause = (error as { cause?: { code?: unknown } }).cause;
  const code = (error as { code?: unknown }).code ?? cause?.code;
  // undici ends a body cut short with TypeError('terminated').
  return (typeof code === 'string' && TRANSIENT_CODES.has(code)) || (error instanceof TypeError && error.message === 'terminated');
}

/** Retry-After as milliseconds: delay-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function retryAfterMs(value: string | null | undefined): number | undefined {
  if (value === null || value === undefined || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** undici's EnvHttpProxyAgent when a proxy is configured, so that NO_PROXY is honoured as curl does. */
function proxyDispatcher(env: NodeJS.ProcessEnv): Dispatcher | undefined {
  const httpsProxy = env.HTTPS_PROXY ?? env.https_proxy;
  const httpProxy = env.HTTP_PROXY ?? env.http_proxy;
  if (!httpsProxy && !httpProxy) return undefined;
  // undici flags the agent as experimental with a process warning, which a CLI would print on every run.
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  try {
    // Required here, not imported at the top: undici is ~18 MB of code that every command loading a model would hold otherwise.
    const { EnvHttpProxyAgent: ProxyAgent } = createRequire(import.meta.url)('undici') as { EnvHttpProxyAgent: typeof EnvHttpProxyAgent };
    return new ProxyAgent({ httpProxy: httpProxy || undefined, httpsProxy: httpsProxy || httpProxy || undefined, noProxy: env.NO_PROXY ?? env.no_proxy ?? '' });
  } finally {
    process.emitWarning = emitWarning;
  }
}
