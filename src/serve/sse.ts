/**
 * Server-sent events as OpenAI's streaming endpoints send them: `data: {json}\n\n` per chunk and
 * `data: [DONE]` at the end. An error after the stream has started cannot change the status, so
 * it goes as `data: {"error": …}` followed by `data: [DONE]`, as vLLM does.
 */
import type { ServerResponse } from 'node:http';
import type { ApiError } from './api-error.js';

// Nothing is written before a request has its first token (or its end): a request refused at
// admission still gets its own status.

export class EventStream {
  private started = false;

  constructor(private readonly response: ServerResponse) {}

  /** Whether anything was sent: before that, a failure can still be an ordinary error response with its status (429, 400). */
  get opened(): boolean {
    return this.started;
  }

  /** Whether the client is gone (nothing more can reach it). */
  get closed(): boolean {
    return this.response.destroyed || this.response.writableEnded;
  }

  send(data: unknown): void {
    this.start();
    if (!this.closed) this.response.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** TGI's stream has no [DONE]; it just ends. */
  end(withDone = true): void {
    this.start();
    if (this.closed) return;
    if (withDone) this.response.write('data: [DONE]\n\n');
    this.response.end();
  }

  /**
   * A failure: thrown again (for an ordinary status and error object) while nothing was sent —
   * a full queue is a 429, not an error event — else an error event, then the end.
   */
  fail(error: ApiError, withDone = true): void {
    if (!this.started) throw error;
    this.send(error.body);
    this.end(withDone);
  }

  private start(): void {
    if (this.started || this.response.headersSent) return;
    this.started = true;
    this.response.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    // Headers go now, so a client sees the stream open before the first token (time to first byte).
    this.response.flushHeaders();
  }
}
