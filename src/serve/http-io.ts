/** Reading request bodies and writing JSON responses on node:http, with the size limit applied while reading. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, badRequest } from './api-error.js';

/**
 * Reads the whole body, refusing (413) as soon as it passes `limitBytes` rather than buffering an
 * unbounded upload; a Content-Length over the limit is refused before any byte is read.
 */
export async function readBody(request: IncomingMessage, limitBytes: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limitBytes) throw tooLarge(limitBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) throw tooLarge(limitBytes);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function tooLarge(limitBytes: number): ApiError {
  // The rest of the upload is not read: the connection closes after the answer.
  return new ApiError(413, `the request body is larger than the server's limit of ${limitBytes} bytes`, 'invalid_request_error', null, 'request_too_large', { Connection: 'close' });
}

/** The body as one JSON object; anything else is a 400 that says what was wrong. */
export function parseJsonObject(body: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw badRequest(`the request body is not valid JSON: ${(error as Error).message}`, null, 'invalid_json');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badRequest('the request body must be a JSON object', null, 'invalid_json');
  return value as Record<string, unknown>;
}

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  response.end(text);
}

export function sendError(response: ServerResponse, error: ApiError): void {
  if (response.headersSent) {
    response.end();
    return;
  }
  sendJson(response, error.status, error.body, error.headers);
}
