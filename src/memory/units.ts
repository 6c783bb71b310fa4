import { HerdError } from '../errors.js';

/**
 * Byte units. The Llama 3.1 post mixes decimal gigabytes (weights, training) and binary gibibytes
 * (KV cache), so every number herd prints names its unit and the unit is always explicit.
 */
export type ByteUnit = 'GB' | 'GiB';

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

export function bytesPerUnit(unit: ByteUnit): number {
  return unit === 'GB' ? 1e9 : 2 ** 30;
}

/** Bytes expressed in `unit`, unrounded. */
export function inUnit(bytes: number, unit: ByteUnit): number {
  return bytes / bytesPerUnit(unit);
}

/** "16.06 GB": two decimals, or three significant digits below 1 so small terms never read as 0.00. */
export function formatBytes(bytes: number, unit: ByteUnit): string {
  const value = inUnit(bytes, unit);
  const text = value >= 1 || value === 0 ? value.toFixed(2) : value.toPrecision(3);
  return `${text} ${unit}`;
}

/**
 * Parses a memory size such as "24GiB", "80GB" or "512 MiB". A unit is required: a bare "24"
 * could mean GB or GiB, and the two differ by 7%.
 */
export function parseSize(text: string, what: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)\s*$/i.exec(text);
  const unit = match?.[2]?.toLowerCase();
  const bytes = match && unit ? Number(match[1]) * (UNIT_BYTES[unit] ?? Number.NaN) : Number.NaN;
  if (!Number.isFinite(bytes) || bytes <= 0) {
    throw new HerdError(`${what} "${text}" is not a memory size; write it with a unit, such as 24GiB or 80GB`);
  }
  return bytes;
}

/**
 * Parses a token count: a positive integer, or a number with k/m where k = 1,024 and m = 1,048,576
 * tokens, so "128k" is 131,072, Llama 3.1's max_position_embeddings. (The post's KV table counts
 * 16k and 128k as 16,000 and 128,000; `--compare-post` applies that convention itself.)
 */
export function parseTokenCount(text: string, what: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([km]?)\s*$/i.exec(text);
  const multiplier = match?.[2]?.toLowerCase() === 'k' ? 1024 : match?.[2]?.toLowerCase() === 'm' ? 1024 ** 2 : 1;
  const tokens = match ? Number(match[1]) * multiplier : Number.NaN;
  if (!Number.isInteger(tokens) || tokens <= 0) {
    throw new HerdError(`${what} "${text}" is not a token count; use a positive whole number such as 8192 or 8k (1k = 1,024 tokens)`);
  }
  return tokens;
}

/** Parses a positive whole number given on the command line. */
export function parsePositiveInteger(text: string, what: string): number {
  const value = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new HerdError(`${what} "${text}" must be a positive whole number`);
  }
  return value;
}
