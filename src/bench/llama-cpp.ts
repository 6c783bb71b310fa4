import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HerdError } from '../errors.js';

/** What `herd bench --compare llama.cpp` measures on llama.cpp, for the same file and threads. */
export interface LlamaCppFigures {
  version: string;
  threads: number;
  /** Loading the model and making its context. */
  load_ms: number;
  prefill_tokens_per_second: number;
  decode_tokens_per_second: number;
}

// The parts of node-llama-cpp 3's API used here (it is optional and not a dependency).
interface Sequence {
  evaluateWithoutGeneratingNewTokens(tokens: number[]): Promise<void>;
  evaluate(tokens: number[], options: { temperature: number }): AsyncGenerator<number>;
}
interface NodeLlamaCpp {
  getLlama(options: { gpu: false; build: 'never'; maxThreads: number; logLevel: 'error' }): Promise<{
    loadModel(options: { modelPath: string }): Promise<{
      createContext(options: { contextSize: number; threads: number; batchSize: number }): Promise<{ getSequence(): Sequence; dispose(): Promise<void> }>;
      dispose(): Promise<void>;
    }>;
    dispose(): Promise<void>;
  }>;
}

const INSTALL_HINT = 'npm install --no-save node-llama-cpp@3.21.1';

/**
 * Runs llama.cpp (through node-llama-cpp, when the person has installed it) on the same GGUF
 * file with the same thread count and the same prompt ids as herd's bench: prefill of the
 * prompt, then greedy decoding of `genTokens` tokens.
 */
export async function benchLlamaCpp(modelPath: string, prompt: Int32Array, genTokens: number, threads: number): Promise<LlamaCppFigures> {
  const library = await importNodeLlamaCpp();
  const llama = await library.module.getLlama({ gpu: false, build: 'never', maxThreads: threads, logLevel: 'error' });
  try {
    let started = performance.now();
    const model = await llama.loadModel({ modelPath });
    const context = await model.createContext({ contextSize: prompt.length + genTokens + 8, threads, batchSize: Math.max(prompt.length, 1) });
    const loadMs = performance.now() - started;
    const sequence = context.getSequence();
    const ids = [...prompt];
    started = performance.now();
    await sequence.evaluateWithoutGeneratingNewTokens(ids.slice(0, -1));
    const prefillSeconds = (performance.now() - started) / 1000;
    started = performance.now();
    let generated = 0;
    for await (const _token of sequence.evaluate(ids.slice(-1), { temperature: 0 })) {
      if (++generated >= genTokens) break;
    }
    const decodeSeconds = (performance.now() - started) / 1000;
    await context.dispose();
    await model.dispose();
    return {
      version: library.version,
      threads,
      load_ms: Math.round(loadMs),
      prefill_tokens_per_second: Math.round(((prompt.length - 1) / prefillSeconds) * 100) / 100,
      decode_tokens_per_second: Math.round((generated / decodeSeconds) * 100) / 100,
    };
  } finally {
    await llama.dispose();
  }
}

/** The version in the package.json above a package's entry file (its exports hide package.json). */
function packageVersion(entryFile: string): string {
  for (let dir = path.dirname(entryFile); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      const { name, version } = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: string; version?: string };
      if (name === 'node-llama-cpp' && version) return version;
    }
  }
  return 'unknown version';
}

async function importNodeLlamaCpp(): Promise<{ module: NodeLlamaCpp; version: string }> {
  // A variable specifier: node-llama-cpp is optional and never a dependency of herd.
  const specifier: string = 'node-llama-cpp';
  try {
    const module = (await import(specifier)) as NodeLlamaCpp;
    return { module, version: packageVersion(fileURLToPath(import.meta.resolve(specifier))) };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') throw new HerdError(`--compare llama.cpp needs node-llama-cpp, which is not installed: ${INSTALL_HINT}`);
    throw new HerdError(`node-llama-cpp failed to load: ${(error as Error).message.split('\n')[0]}`);
  }
}
