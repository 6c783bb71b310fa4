import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { activateBackend } from '../backends/registry.js';
import { isGgufFile } from '../engine/load.js';
import { HerdError, modelError } from '../errors.js';
import { readJsonFile } from '../formats/files.js';
import { PromptGuard } from './prompt-guard.js';

/** The two kinds of safety model herd runs, told apart by config.json's architecture. */
export type GuardKind = 'llama-guard' | 'prompt-guard';

const LLAMA_ARCHITECTURE = 'LlamaForCausalLM';
const DEBERTA_ARCHITECTURE = 'DebertaV2ForSequenceClassification';

/**
 * Which guard a model folder (or GGUF file) holds. Both kinds need their tokenizer.json, checked
 * here so that a half-copied folder says so before any weight is read.
 */
export function detectGuardKind(target: string): GuardKind {
  if (isGgufFile(target)) return 'llama-guard';
  if (!fs.existsSync(target) || !fs.statSync(target).isDirectory()) throw modelError(`guard model ${target} does not exist (a model folder or a .gguf file)`, target);
  const configFile = path.join(target, 'config.json');
  const config = readJsonFile(configFile, true) as { architectures?: unknown } | null;
  const architectures = Array.isArray(config?.architectures) ? config.architectures : [];
  const kind = architectures.includes(LLAMA_ARCHITECTURE) ? 'llama-guard' : architectures.includes(DEBERTA_ARCHITECTURE) ? 'prompt-guard' : undefined;
  if (kind === undefined) {
    throw modelError(`${target} is neither a Llama Guard (${LLAMA_ARCHITECTURE}) nor a DeBERTa-v2 classifier (${DEBERTA_ARCHITECTURE}); config.json names ${JSON.stringify(architectures)}`, configFile);
  }
  const tokenizerFile = path.join(target, 'tokenizer.json');
  if (!fs.existsSync(tokenizerFile)) throw modelError(`${target}: no tokenizer.json; ${kind === 'llama-guard' ? 'Llama Guard' : 'Prompt Guard'} needs the tokenizer.json of its model repository`, tokenizerFile);
  return kind;
}

/** Refuses a folder of the other kind under a flag that names one. */
export function expectGuardKind(target: string, expected: GuardKind, flag: string): void {
  const kind = detectGuardKind(target);
  if (kind !== expected) {
    const wanted = expected === 'llama-guard' ? `a Llama Guard (${LLAMA_ARCHITECTURE})` : `a Prompt Guard (${DEBERTA_ARCHITECTURE})`;
    throw modelError(`${flag} ${target}: expected ${wanted}, found a ${kind === 'llama-guard' ? 'Llama model' : 'DeBERTa-v2 classifier'}`, target);
  }
}

/**
 * Loads Prompt Guard on a tfjs backend. When tfjs already computes (the main model runs on it),
 * Prompt Guard shares that backend rather than switching tfjs under the main model; otherwise
 * (the main model on herd's kernels, or none) it takes `backend`, by default the first tfjs one.
 */
export async function loadPromptGuard(dir: string, options: { backend?: string; mainModelOnTfjs?: boolean } = {}): Promise<PromptGuard> {
  expectGuardKind(dir, 'prompt-guard', '--prompt-guard');
  if (options.backend === 'kernels') throw new HerdError("Prompt Guard runs on tfjs (node-gpu, node, wasm, cpu); herd's kernels run Llama models only");
  if (!options.mainModelOnTfjs) await activateBackend({ backend: options.backend ?? 'tfjs' });
  else await tf.ready();
  return PromptGuard.load(dir);
}
