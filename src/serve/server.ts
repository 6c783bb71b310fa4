/**
 * herd's HTTP server on node:http: routing, the API key, CORS, the body size limit, error
 * objects, request lifetimes (client disconnects, --timeout) and a graceful stop. The endpoints
 * live in their own files; this one decides who may call what and how failures are answered.
 */
import { timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiError, toApiError } from './api-error.js';
import { chatCompletions } from './chat-completions.js';
import { completions } from './completions.js';
import { RequestLifetime, type Exchange, type ServeContext } from './context.js';
import { RequestFields } from './fields.js';
import { parseJsonObject, readBody, sendError, sendJson } from './http-io.js';
import { ServeMetrics } from './metrics.js';
import { detokenize, listModels, tokenize, tokenizerInfo } from './served-model.js';
import { generateTgi, generateTgiStream } from './tgi.js';

export interface ServerOptions {
  /** Requests must carry `Authorization: Bearer KEY` (all but /health and /metrics). */
  apiKey?: string;
  /** Access-Control-Allow-Origin for browsers ("*" or one origin). */
  corsOrigin?: string;
  /** Largest request body accepted (413 beyond). */
  maxBodyBytes: number;
  /** Seconds a request may run before it is cancelled (504); null: no limit. */
  timeoutSeconds: number | null;
}

export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;

type Handler = (context: ServeContext, exchange: Exchange) => Promise<object | undefined> | object;

interface Route {
  method: 'GET' | 'POST';
  handler: Handler;
  /** Reachable without the API key (health checks and scrapers). */
  open?: boolean;
}

const ROUTES: Record<string, Route> = {
  '/v1/chat/completions': { method: 'POST', handler: chatCompletions },
  '/v1/completions': { method: 'POST', handler: completions },
  '/v1/models': { method: 'GET', handler: listModels },
  '/tokenize': { method: 'POST', handler: tokenize },
  '/detokenize': { method: 'POST', handler: detokenize },
  '/tokenizer_info': { method: 'GET', handler: tokenizerInfo },
  '/generate': { method: 'POST', handler: generateTgi },
  '/generate_stream': { method: 'POST', handler: generateTgiStream },
};

export class HerdServer {
  readonly http: http.Server;
  readonly metrics = new ServeMetrics();
  private context: ServeContext | null = null;
  private readonly stopping = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly options: ServerOptions) {
    this.http = http.createServer((request, response) => this.track(this.handle(request, response)));
  }

  /** The model is loaded: endpoints answer from now on (until then /health says 503). */
  ready(context: Omit<ServeContext, 'metrics'>): void {
    this.context = { ...context, metrics: this.metrics };
  }

  /** Listens and resolves with the base URL. */
  listen(port: number, host: string): Promise<string> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        const address = this.http.address() as AddressInfo;
        const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
        resolve(`http://${shownHost}:${address.port}`);
      });
    });
  }

  /**
   * Stops taking connections, lets requests in flight finish for up to `graceMs`, then cancels
   * the rest (a stream gets an error event and [DONE]), closes the generator and every socket.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.http.close();
    this.http.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([Promise.allSettled([...this.inFlight]), grace]);
    clearTimeout(timer);
    this.stopping.abort();
    await this.context?.generator.close();
    await Promise.allSettled([...this.inFlight]);
    this.http.closeAllConnections();
  }

  private track(work: Promise<void>): void {
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname.replace(/\/+$/, '') || '/';
    const startedMs = performance.now();
    response.on('close', () => this.metrics.countRequest(ROUTES[path] ? path : 'other', response.writableFinished ? response.statusCode : 499));
    this.applyCors(request, response);
    try {
      if (request.method === 'OPTIONS') {
        response.writeHead(204).end();
        return;
      }
      if (path === '/health') return this.health(response);
      if (path === '/metrics') return this.sendMetrics(request, response);
      const route = ROUTES[path];
      if (route === undefined) throw new ApiError(404, `no endpoint ${path}`, 'invalid_request_error', null, 'not_found');
      if (request.method !== route.method) throw new ApiError(405, `${path} takes ${route.method}, not ${request.method}`, 'invalid_request_error', null, 'method_not_allowed');
      this.authorize(request);
      await this.serve(route, request, response, startedMs);
    } catch (error) {
      sendError(response, toApiError(error));
    }
  }

  private async serve(route: Route, request: IncomingMessage, response: ServerResponse, startedMs: number): Promise<void> {
    if (this.stopping.signal.aborted) throw new ApiError(503, 'the server is shutting down', 'server_error', null, 'server_shutting_down');
    const context = this.context;
    if (context === null) throw new ApiError(503, 'the model is still loading', 'server_error', null, 'model_loading');
    const fields = new RequestFields(route.method === 'POST' ? parseJsonObject(await readBody(request, this.options.maxBodyBytes)) : {});
    const lifetime = new RequestLifetime(response, this.options.timeoutSeconds, this.stopping.signal);
    try {
      const body = await route.handler(context, { fields, response, signal: lifetime.signal, startedMs });
      if (body !== undefined) sendJson(response, 200, body);
    } finally {
      lifetime.dispose();
    }
  }

  private health(response: ServerResponse): void {
    if (this.context === null) sendJson(response, 503, { status: 'loading' });
    else if (this.stopping.signal.aborted) sendJson(response, 503, { status: 'stopping' });
    else sendJson(response, 200, { status: 'ok' });
  }

  private sendMetrics(request: IncomingMessage, response: ServerResponse): void {
    if (request.method !== 'GET') throw new ApiError(405, `/metrics takes GET, not ${request.method}`, 'invalid_request_error', null, 'method_not_allowed');
    const text = this.metrics.render(this.context?.generator.stats() ?? null);
    response.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
    response.end(text);
  }

  private authorize(request: IncomingMessage): void {
    const key = this.options.apiKey;
    if (key === undefined) return;
    const given = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? '')?.[1]?.trim() ?? '';
    const expected = Buffer.from(key);
    const actual = Buffer.from(given);
    if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
      throw new ApiError(401, given === '' ? 'an API key is required: send "Authorization: Bearer KEY"' : 'the API key is wrong', 'invalid_request_error', null, 'invalid_api_key');
    }
  }

  private applyCors(request: IncomingMessage, response: ServerResponse): void {
    const origin = this.options.corsOrigin;
    if (origin === undefined) return;
    response.setHeader('Access-Control-Allow-Origin', origin);
    response.setHeader('Access-Control-Allow-Methods', 'GET, POST, OPTIONS');
    // The headers a preflight asks for are allowed: the openai package sends its own x-stainless-* ones.
    response.setHeader('Access-Control-Allow-Headers', request.headers['access-control-request-headers'] ?? 'Authorization, Content-Type');
    if (origin !== '*') response.setHeader('Vary', 'Origin');
  }
}
