/** Response ids and timestamps in OpenAI's style. */
import { randomUUID } from 'node:crypto';

export function responseId(prefix: 'chatcmpl' | 'cmpl'): string {
  return `${prefix}-${randomUUID().replaceAll('-', '')}`;
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** 0, 1, …, count - 1. */
export function indices(count: number): number[] {
  return Array.from({ length: count }, (_, index) => index);
}
