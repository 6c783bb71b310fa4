import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/**
 * The fixtures committed with the repository (see test/fixtures/README.md), so that a clone with
 * nothing beside it tests itself.
 */
export const REPO_FIXTURES = path.join(HERE, 'fixtures');

/**
 * The team's shared folder: HERD_SHARED, else ../shared beside the checkout; null when neither
 * exists. Only the opt-in tier (`npm run test:shared`, files named *.shared.test.ts) needs it: it
 * holds the full data sets the repository keeps trimmed copies of.
 */
export const SHARED: string | null = (() => {
  const candidate = process.env.HERD_SHARED ? path.resolve(process.env.HERD_SHARED) : path.resolve(HERE, '../../shared');
  return fs.existsSync(candidate) ? candidate : null;
})();

/** SHARED, or an error that says where the opt-in tier looked (it must fail, not skip, without it). */
export function requireShared(): string {
  if (SHARED === null) {
    const looked = process.env.HERD_SHARED ? `HERD_SHARED=${process.env.HERD_SHARED}` : `${path.resolve(HERE, '../../shared')} (../shared beside the checkout)`;
    throw new Error(`the opt-in tier reads the shared fixtures and data, which are not at ${looked}; set HERD_SHARED to the folder that holds fixtures/ and data/`);
  }
  return SHARED;
}

/**
 * A fixture folder: the repository's copy first, then the shared folder's as an optional extra (a
 * fixture not copied yet). A fixture found in neither fails the suites that import it, by name.
 */
export function fixture(name: string): string {
  const inRepo = path.join(REPO_FIXTURES, name);
  if (fs.existsSync(inRepo)) return inRepo;
  if (SHARED !== null && fs.existsSync(path.join(SHARED, 'fixtures', name))) return path.join(SHARED, 'fixtures', name);
  throw new Error(`fixture ${name}: neither ${inRepo} nor ${SHARED === null ? '../shared (absent)' : path.join(SHARED, 'fixtures', name)} exists`);
}

export const TINY_LLAMA = fixture('tiny-llama-3.1');
export const STORIES = fixture('stories260K');
export const LLAMA_TOKENIZER = fixture('llama-3.1-tokenizer');
export const LLAMA_CHAT = fixture('llama-3.1-chat');
export const PROMPT_GUARD_TINY = fixture('prompt-guard-tiny');
/** llama.cpp-quantized GGUF files (Q4_K_M, Q5_K_M, Q6_K, Q8_0) with llama.cpp's outputs in reference.json. */
export const GGUF_LLAMACPP = fixture('gguf-llamacpp');

/**
 * Evaluation and training data in shared/data's layout: the repository's copy, whole files where a
 * test depends on a split's full length (few-shot draws), the first rows elsewhere (see
 * test/fixtures/data/README.md). Pass it as `--data` like a user's download folder.
 */
export const DATA = path.join(REPO_FIXTURES, 'data');

export function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}
