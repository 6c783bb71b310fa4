/**
 * Typed reads of a request's JSON fields. A field that is absent or null reads as undefined
 * (clients send `"stop": null` and the like); a field of the wrong type or out of range is a 400
 * naming it. Fields nobody reads are ignored: clients send many the server does not know.
 */
import { badRequest } from './api-error.js';

interface NumberRange {
  min?: number;
  max?: number;
  integer?: boolean;
  /** The lower bound itself is not allowed (top_p > 0). */
  exclusiveMin?: boolean;
}

export class RequestFields {
  constructor(readonly body: Record<string, unknown>, private readonly prefix = '') {}

  has(name: string): boolean {
    return this.body[name] !== undefined && this.body[name] !== null;
  }

  raw(name: string): unknown {
    return this.has(name) ? this.body[name] : undefined;
  }

  number(name: string, range: NumberRange = {}): number | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    const { min = -Infinity, max = Infinity, integer = false, exclusiveMin = false } = range;
    const kind = integer ? 'an integer' : 'a number';
    if (typeof value !== 'number' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) throw this.wrong(name, `must be ${kind}`);
    if (value < min || (exclusiveMin && value === min) || value > max) throw this.wrong(name, `must be ${kind} ${rangeText(min, max, exclusiveMin)}, got ${value}`);
    return value;
  }

  boolean(name: string): boolean | undefined {
    const value = this.raw(name);
    if (value !== undefined && typeof value !== 'boolean') throw this.wrong(name, 'must be true or false');
    return value as boolean | undefined;
  }

  string(name: string): string | undefined {
    const value = this.raw(name);
    if (value !== undefined && typeof value !== 'string') throw this.wrong(name, 'must be a string');
    return value as string | undefined;
  }

  /** A string or a list of strings (OpenAI's `stop`). */
  strings(name: string): string[] {
    const value = this.raw(name);
    if (value === undefined) return [];
    if (typeof value === 'string') return value === '' ? [] : [value];
    if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return (value as string[]).filter((item) => item !== '');
    throw this.wrong(name, 'must be a string or a list of strings');
  }

  integers(name: string, min: number, max: number): number[] {
    const value = this.raw(name);
    if (value === undefined) return [];
    if (Array.isArray(value) && value.every((item) => Number.isInteger(item) && item >= min && item <= max)) return value as number[];
    throw this.wrong(name, `must be a list of integers from ${min} to ${max}`);
  }

  object(name: string): RequestFields | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    if (typeof value !== 'object' || Array.isArray(value)) throw this.wrong(name, 'must be an object');
    return new RequestFields(value as Record<string, unknown>, `${this.prefix}${name}.`);
  }

  wrong(name: string, problem: string) {
    return badRequest(`"${this.prefix}${name}" ${problem}`, `${this.prefix}${name}`);
  }
}

function rangeText(min: number, max: number, exclusiveMin: boolean): string {
  const low = exclusiveMin ? `greater than ${min}` : `at least ${min}`;
  if (min > -Infinity && max < Infinity) return exclusiveMin ? `in (${min}, ${max}]` : `from ${min} to ${max}`;
  if (min > -Infinity) return low;
  return max < Infinity ? `at most ${max}` : '';
}
