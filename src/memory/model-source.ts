import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { HerdError } from '../errors.js';
import { parseLlamaConfig } from '../spec/llama-config.js';
import type { ModelSpec } from './architecture.js';
import { ggufModelSpec } from './gguf-model.js';
import { presetModel } from './presets.js';
import { isPresetName, PRESET_NAMES } from '../spec/presets.js';

/** Resolves `--model`: a preset name, a Hugging Face folder or its config.json, or a GGUF file. */
export async function resolveModel(input: string): Promise<ModelSpec> {
  if (isPresetName(input)) return presetModel(input);
  const kind = await pathKind(input);
  if (kind === 'missing') {
    throw new HerdError(`unknown preset or missing path "${input}"; presets: ${PRESET_NAMES.join(', ')}`);
  }
  if (kind === 'directory') return readHfConfig(join(input, 'config.json'), basename(input));
  if (input.toLowerCase().endsWith('.gguf')) return ggufModelSpec(input);
  return readHfConfig(input, basename(dirname(input)));
}

async function pathKind(path: string): Promise<'missing' | 'directory' | 'file'> {
  try {
    return (await stat(path)).isDirectory() ? 'directory' : 'file';
  } catch {
    return 'missing';
  }
}

async function readHfConfig(path: string, name: string): Promise<ModelSpec> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new HerdError(`cannot read ${path}; a model folder needs a config.json`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new HerdError(`${path} is not valid JSON`);
  }
  return { name, source: path, architecture: parseLlamaConfig(raw, path) };
}
