/**
 * Small scripted OpenAI-API servers on 127.0.0.1 (port 0) for the remote client's tests: each
 * request is recorded and answered by the test's handler, as JSON or as server-sent events.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown> | null;
}

export type Handler = (request: RecordedRequest, response: http.ServerResponse) => void;

export interface FakeServer {
  url: string;
  requests: RecordedRequest[];
  /** Requests to one path, in order. */
  to(path: string): RecordedRequest[];
  close(): Promise<void>;
}

export async function startFakeServer(handler: Handler): Promise<FakeServer> {
  const requests: RecordedRequest[] = [];
  const server = http.createServer((incoming, response) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const request = { method: incoming.method ?? 'GET', path: incoming.url ?? '/', headers: incoming.headers, body: text === '' ? null : (JSON.parse(text) as Record<string, unknown>) };
      requests.push(request);
      handler(request, response);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    to: (path) => requests.filter((request) => request.path === path),
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

export function sendJson(response: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'content-type': 'application/json', ...headers });
  response.end(JSON.stringify(body));
}

/** Server-sent events, each a JSON object, then [DONE]; written in separate chunks as a server streams them. */
export function sendEvents(response: http.ServerResponse, events: readonly object[]): void {
  response.writeHead(200, { 'content-type': 'text/event-stream' });
  for (const event of events) response.write(`data: ${JSON.stringify(event)}\n\n`);
  response.end('data: [DONE]\n\n');
}

export function modelList(...ids: string[]): object {
  return { object: 'list', data: ids.map((id) => ({ id, object: 'model', owned_by: 'test' })) };
}

/** An OpenAI error body, as vLLM and herd serve write it. */
export function errorBody(message: string): object {
  return { error: { message, type: 'invalid_request_error' } };
}
