import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelError } from '../errors.js';
import { Checkpoint } from '../formats/checkpoint.js';
import { tensorShapes } from '../spec/tensors.js';
import { checkRunnable } from './runnable.js';
import { parseLlamaConfig, tokenIdList, type LlamaConfig } from '../spec/llama-config.js';
import type { LlamaForCausalLM } from './model.js';
import type { PackedFormat, WeightSource } from '../formats/weights.js';
import { GgufWeights } from '../formats/gguf-llama.js';
import { dropTokenizerArrays, tokenizerFromGguf } from '../formats/gguf-tokenizer.js';
import { layoutFromConfig } from '../formats/quantized-layouts.js';
import { HerdTokenizer } from './tokenizer.js';
import { readJsonFile } from '../formats/files.js';

/** The model that ships inside herd (karpathy's stories260K), used when no --model is given. */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../../models/stories260K', import.meta.url));

/** Sampling defaults and stop ids from generation_config.json. */
export interface GenerationDefaults {
  eosTokenIds: number[];
  doSample: boolean;
  temperature: number | null;
  topP: number | null;
  topK: number | null;
  repetitionPenalty: number | null;
}

/** A model on its backend, without the tokenizer (for callers that run token ids only, such as `herd bench`). */
export interface LoadedWeights {
  dir: string;
  config: LlamaConfig;
  generation: GenerationDefaults;
  model: LlamaForCausalLM<unknown, unknown>;
  loadMs: number;
}

export interface LoadedModel extends LoadedWeights {
  tokenizer: HerdTokenizer;
}

/**
 * A model before any weight reaches a backend: a Hugging Face folder or a single GGUF file, its
 * config and weights validated. Choosing a backend and loading onto it is src/backends/load.ts'.
 */
export interface OpenedModel {
  config: LlamaConfig;
  checkpoint: WeightSource & { close(): void };
  readTokenizer(): HerdTokenizer;
  readGeneration(): GenerationDefaults;
  /** For a caller that will not read the tokenizer: lets go of what it is built from (a GGUF's vocabulary arrays). */
  skipTokenizer(): void;
}

export function openModel(dir: string): OpenedModel {
  if (isGgufFile(dir)) {
    const { weights, config } = GgufWeights.open(dir);
    try {
      checkRunnable(config, dir);
      weights.validate(tensorShapes(config));
    } catch (error) {
      weights.close();
      throw error;
    }
    let tokenizer: HerdTokenizer | null = null;
    const readTokenizer = () => {
      if (tokenizer) return tokenizer;
      const { tokenizerJson, tokenizerConfig } = tokenizerFromGguf(weights.file.metadata, dir);
      tokenizer = HerdTokenizer.fromJson(tokenizerJson, tokenizerConfig);
      // The config and stop ids are read; from here on the checkpoint only reads tensors, so the
      // vocabulary's arrays need not stay alive beside the weights while they load.
      dropTokenizerArrays(weights.file.metadata);
      return tokenizer;
    };
    const readGeneration = () => ({ eosTokenIds: config.eosTokenIds, doSample: false, temperature: null, topP: null, topK: null, repetitionPenalty: null });
    return { config, checkpoint: weights, readTokenizer, readGeneration, skipTokenizer: () => dropTokenizerArrays(weights.file.metadata) };
  }
  const { config, checkpoint } = openModelFolder(dir);
  return { config, checkpoint, readTokenizer: () => HerdTokenizer.fromDir(dir), readGeneration: () => readGenerationDefaults(dir, config), skipTokenizer: () => {} };
}

/** A .gguf file (herd runs GGUF models from the file itself, not a folder). */
export function isGgufFile(file: string): boolean {
  return file.toLowerCase().endsWith('.gguf') && fs.existsSync(file) && fs.statSync(file).isFile();
}

/**
 * Reads config.json and checks the checkpoint against it, without loading any weights. A
 * `quantization_config` selects the quantized layout whose weights are dequantized at load.
 */
export function openModelFolder(dir: string): { config: LlamaConfig; checkpoint: Checkpoint } {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw modelError(`model folder ${dir} does not exist`, dir);
  const rawConfig = readJsonFile(path.join(dir, 'config.json'), true);
  const config = parseLlamaConfig(rawConfig, 'config.json');
  checkRunnable(config, 'config.json');
  const checkpoint = Checkpoint.open(dir, layoutFromConfig(rawConfig, 'config.json'));
  try {
    checkpoint.validateAgainst(config);
  } catch (error) {
    checkpoint.close();
    throw error;
  }
  return { config, checkpoint };
}

/** A weight as stored: its type (F32 where the source gives floats only) and shape. */
export interface StoredTensor {
  name: string;
  format: PackedFormat;
  shape: readonly number[];
}

/** Every weight of the model as stored, before any is read: what choosing a backend and the memory check go by. */
export function storedTensors(checkpoint: WeightSource, config: LlamaConfig): StoredTensor[] {
  return [...tensorShapes(config)].map(([name, shape]) => ({ name, format: checkpoint.describePacked?.(name)?.format ?? 'F32', shape }));
}

/** generation_config.json of a folder; the stop ids fall back to config.json's eos_token_id. */
export function readGenerationDefaults(dir: string, config: Pick<LlamaConfig, 'eosTokenIds'>): GenerationDefaults {
  const json = (readJsonFile(path.join(dir, 'generation_config.json'), false) ?? {}) as Record<string, unknown>;
  const number = (key: string): number | null => (typeof json[key] === 'number' ? json[key] : null);
  const eos = tokenIdList(json.eos_token_id);
  return {
    eosTokenIds: eos.length > 0 ? eos : config.eosTokenIds,
    doSample: json.do_sample === true,
    temperature: number('temperature'),
    topP: number('top_p'),
    topK: number('top_k'),
    repetitionPenalty: number('repetition_penalty'),
  };
}
