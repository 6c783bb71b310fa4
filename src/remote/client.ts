/**
 * A client of an OpenAI-compatible server (vLLM, TGI's /v1 routes, llama.cpp's llama-server,
 * Ollama, herd serve) on Node's fetch. Every failure is one line that says what to do: a dead
 * endpoint, a refused key, a model the server does not list. 429 and 503 are retried with
 * exponential backoff, honouring Retry-After, because a loaded server says so when it sheds load.
 */
import { HerdError } from '../errors.js';

export interface EndpointSettings {
  /** The server's base URL, with or without a trailing /v1. */
  url: string;
  apiKey?: string;
  /** --endpoint-model: the served model to use (default: the only one, or the first, it lists). */
  model?: string;
  /** Per request, headers and whole body (default 10 minutes: a long completion on a busy server). */
  timeoutMs?: number;
  /** Retries of a 429 or 503 (default 5). */
  retries?: number;
  /** First backoff when the server gives no Retry-After (default 500 ms; doubled each retry). Tests set it near 0. */
  retryBaseMs?: number;
  /** Longest wait a Retry-After may ask for (default 60 s). */
  maxRetryDelayMs?: number;
  /** --concurrency: most requests in flight at once (default 1). */
  concurrency?: number;
}

const DEFAULT_TIMEOUT_MS = 600_000;
const DEFAULT_RETRIES = 5;
const DEFAULT_RETRY_BASE_MS = 500;
const DEFAULT_MAX_RETRY_DELAY_MS = 60_000;

/** Statuses that mean "come back later" rather than "this request is wrong". */
const RETRIED_STATUSES: ReadonlySet<number> = new Set([429, 503]);

/** A status the server answered with, kept so that capability probes can tell "no such route" from a failure. */
export class EndpointHttpError extends HerdError {
  constructor(message: string, readonly status: number) {
    super(message, { kind: status === 401 || status === 403 ? 'input' : 'network' });
  }
}

export interface ServedModel {
  id: string;
  /** Longest context the server allows, when it says (vLLM's max_model_len). */
  contextLength: number | null;
}

export class EndpointClient {
  /** The base URL without /v1, where vLLM's /tokenize and /health also live. */
  readonly base: string;
  /** Requests sent (retries included), for tests and --verbose. */
  requestsSent = 0;
  private readonly slots: Slots;

  constructor(readonly settings: EndpointSettings) {
    let url: URL;
    try {
      url = new URL(settings.url);
    } catch {
      throw new HerdError(`--endpoint ${settings.url}: not a URL (expected e.g. http://127.0.0.1:8000)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new HerdError(`--endpoint ${settings.url}: expected an http:// or https:// URL`);
    this.base = url.href.replace(/\/+$/, '').replace(/\/v1$/, '');
    this.slots = new Slots(settings.concurrency ?? 1);
  }

  /** The models /v1/models lists, with vLLM's max_model_len where given. */
  async listModels(): Promise<ServedModel[]> {
    const body = (await this.getJson('/v1/models')) as { data?: Array<{ id?: unknown; max_model_len?: unknown }> };
    if (!Array.isArray(body.data)) throw new HerdError(`${this.base}/v1/models: not an OpenAI model list (no "data" array)`, { kind: 'network' });
    return body.data
      .filter((entry) => typeof entry.id === 'string')
      .map((entry) => ({ id: entry.id as string, contextLength: typeof entry.max_model_len === 'number' ? entry.max_model_len : null }));
  }

  /** The model to ask for: --endpoint-model when the server lists it, else the first listed. */
  async resolveModel(listed?: ServedModel[]): Promise<ServedModel> {
    listed ??= await this.listModels();
    const wanted = this.settings.model;
    if (wanted !== undefined) {
      const found = listed.find((model) => model.id === wanted);
      if (found) return found;
      throw new HerdError(`${this.base} does not serve "${wanted}" (--endpoint-model); it lists: ${listed.length > 0 ? listed.map((model) => model.id).join(', ') : 'no models'}`);
    }
    if (listed.length === 0) throw new HerdError(`${this.base}/v1/models lists no models`, { kind: 'network' });
    return listed[0]!;
  }

  getJson(route: string): Promise<unknown> {
    return this.send(route, undefined).then((response) => readJson(response, this.url(route)));
  }

  postJson(route: string, body: object): Promise<unknown> {
    return this.send(route, body).then((response) => readJson(response, this.url(route)));
  }

  /** POSTs with "stream": true and yields each server-sent event's JSON until [DONE]. */
  async *postStream(route: string, body: object): AsyncGenerator<unknown> {
    const response = await this.send(route, { ...body, stream: true });
    if (response.body === null) throw new HerdError(`${this.url(route)}: the stream has no body`, { kind: 'network' });
    for await (const data of serverSentData(response.body)) {
      if (data === '[DONE]') return;
      try {
        yield JSON.parse(data);
      } catch {
        throw new HerdError(`${this.url(route)}: a streamed event is not JSON: ${data.slice(0, 80)}`, { kind: 'network' });
      }
    }
  }

  url(route: string): string {
    return `${this.base}${route}`;
  }

  /**
   * One request, retried while the server answers 429 or 503; any other non-2xx status is an error.
   * It holds one of the --concurrency slots until its headers arrive (a stream's body is read after).
   */
  private async send(route: string, body: object | undefined): Promise<Response> {
    await this.slots.acquire();
    try {
      return await this.sendWithRetries(route, body);
    } finally {
      this.slots.release();
    }
  }

  private async sendWithRetries(route: string, body: object | undefined): Promise<Response> {
    const retries = this.settings.retries ?? DEFAULT_RETRIES;
    for (let attempt = 0; ; attempt++) {
      const response = await this.fetchOnce(route, body);
      if (response.ok) return response;
      if (RETRIED_STATUSES.has(response.status) && attempt < retries) {
        await response.body?.cancel();
        await sleep(this.retryDelay(response, attempt));
        continue;
      }
      throw await this.statusError(route, response, attempt);
    }
  }

  private async fetchOnce(route: string, body: object | undefined): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json, text/event-stream' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.settings.apiKey) headers.authorization = `Bearer ${this.settings.apiKey}`;
    this.requestsSent++;
    try {
      return await fetch(this.url(route), {
        method: body === undefined ? 'GET' : 'POST',
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.settings.timeoutMs ?? DEFAULT_TIMEOUT_MS),
      });
    } catch (error) {
      throw this.connectionError(error as Error);
    }
  }

  private connectionError(error: Error): HerdError {
    if (error.name === 'TimeoutError') return new HerdError(`${this.base} did not answer within ${(this.settings.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000} s`, { kind: 'network' });
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const reason = cause?.code ?? cause?.message ?? error.message;
    return new HerdError(`cannot reach the endpoint ${this.base} (${reason}): is the server running?`, { kind: 'network' });
  }

  private retryDelay(response: Response, attempt: number): number {
    return retryDelayMs(response.headers.get('retry-after'), attempt, this.settings.retryBaseMs ?? DEFAULT_RETRY_BASE_MS, this.settings.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS);
  }

  private async statusError(route: string, response: Response, attempt: number): Promise<EndpointHttpError> {
    const detail = serverMessage(await response.text().catch(() => ''));
    const where = `${this.url(route)}: HTTP ${response.status}`;
    if (response.status === 401 || response.status === 403) {
      const key = this.settings.apiKey ? 'the API key was refused' : 'the server wants an API key';
      return new EndpointHttpError(`${where}: ${key}: pass --api-key or set HERD_API_KEY${detail ? ` (${detail})` : ''}`, response.status);
    }
    const retried = attempt > 0 ? ` after ${attempt} retries` : '';
    return new EndpointHttpError(`${where}${retried}${detail ? `: ${detail}` : ''}`, response.status);
  }
}

/** The wait before retry `attempt` (0-based): Retry-After in seconds or as an HTTP date, else base · 2^attempt; at most maxMs. */
export function retryDelayMs(retryAfter: string | null, attempt: number, baseMs: number, maxMs: number, now = Date.now()): number {
  if (retryAfter !== null && retryAfter.trim() !== '') {
    const seconds = Number(retryAfter);
    const delay = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(retryAfter) - now;
    if (Number.isFinite(delay)) return Math.min(Math.max(delay, 0), maxMs);
  }
  return Math.min(baseMs * 2 ** attempt, maxMs);
}

/** The message an OpenAI-style error body carries ({"error": {"message"}} or {"error": "…"} or {"detail"}), on one line. */
function serverMessage(text: string): string {
  let message = text;
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown; detail?: unknown };
    const candidate = typeof body.error === 'string' ? body.error : body.error?.message ?? body.message ?? body.detail;
    if (typeof candidate === 'string') message = candidate;
  } catch {
    // Not JSON: the text itself.
  }
  return message.replace(/\s+/g, ' ').trim().slice(0, 300);
}

async function readJson(response: Response, url: string): Promise<unknown> {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new HerdError(`${url}: the answer is not JSON: ${text.slice(0, 80)}`, { kind: 'network' });
  }
}

/** The data of each server-sent event (lines "data: …", events separated by a blank line). */
export async function* serverSentData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let pending = '';
  let data: string[] = [];
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true });
    const lines = pending.split(/\r?\n/);
    pending = lines.pop()!;
    for (const line of lines) {
      if (line === '') {
        if (data.length > 0) yield data.join('\n');
        data = [];
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
    }
  }
  if (data.length > 0) yield data.join('\n');
}

/** A counting semaphore: at most `size` holders, the rest wait in arrival order. */
class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(size: number) {
    this.free = Math.max(1, size);
  }

  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
