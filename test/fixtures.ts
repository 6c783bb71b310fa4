import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** ../shared beside the checkout: real fixtures nobody on the team wrote. */
export const SHARED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../shared');
export const TINY_LLAMA = path.join(SHARED, 'fixtures/tiny-llama-3.1');
export const STORIES = path.join(SHARED, 'fixtures/stories260K');
export const LLAMA_TOKENIZER = path.join(SHARED, 'fixtures/llama-3.1-tokenizer');
export const GGUF_LLAMACPP = path.join(SHARED, 'fixtures/gguf-llamacpp');

export function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}
