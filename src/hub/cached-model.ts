import fs from 'node:fs';
import path from 'node:path';
import { HerdError } from '../errors.js';
import { splitPartPath } from '../formats/gguf-split.js';
import { listFiles } from './cache.js';
import { chooseGguf } from './select-files.js';

/**
 * Whether a cached snapshot holds a whole model, judged from the snapshot alone (no request):
 * what offline use and a cached run rely on. A snapshot holds a model when its weights are all
 * there: every shard the safetensors index names, model.safetensors, or every part of the GGUF
 * the quantization tag picks. A link whose blob is gone counts as missing.
 */

export type CachedModel = { modelPath: string } | { missing: string[] };

const SPLIT_PART = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i;

export function cachedModel(snapshot: string, repo: string, quant: string | undefined): CachedModel {
  if (!fs.existsSync(snapshot)) return { missing: ['the snapshot folder'] };
  const present = listFiles(snapshot).filter((file) => fs.existsSync(path.join(snapshot, ...file.split('/'))));
  const has = new Set(present);
  if (quant === undefined && (has.has('model.safetensors.index.json') || has.has('model.safetensors'))) return safetensorsModel(snapshot, has);
  const ggufs = present.filter((file) => file.toLowerCase().endsWith('.gguf'));
  if (ggufs.length === 0) return { missing: [quant === undefined ? 'config.json and weights (model.safetensors or a .gguf file)' : `a .gguf file for :${quant}`] };
  let parts: { path: string }[];
  try {
    parts = chooseGguf(repo, ggufs.map((file) => ({ path: file })), quant);
  } catch (error) {
    // The cache lacks the quantization asked for (or cannot tell which): a download decides.
    if (error instanceof HerdError) return { missing: [error.message] };
    throw error;
  }
  const missing = missingSplitParts(parts.map((part) => part.path), has);
  return missing.length > 0 ? { missing } : { modelPath: path.join(snapshot, ...parts[0]!.path.split('/')) };
}

function safetensorsModel(snapshot: string, has: ReadonlySet<string>): CachedModel {
  const expected = ['config.json', ...(has.has('model.safetensors.index.json') ? indexShards(snapshot) : ['model.safetensors'])];
  const missing = expected.filter((file) => !has.has(file));
  return missing.length > 0 ? { missing } : { modelPath: snapshot };
}

function indexShards(snapshot: string): string[] {
  const index = JSON.parse(fs.readFileSync(path.join(snapshot, 'model.safetensors.index.json'), 'utf8')) as { weight_map?: Record<string, string> };
  return [...new Set(Object.values(index.weight_map ?? {}))].sort();
}

/** Every part a split GGUF's names promise (`-00001-of-00003.gguf` promises three). */
function missingSplitParts(parts: readonly string[], has: ReadonlySet<string>): string[] {
  const match = SPLIT_PART.exec(parts[0]!);
  if (!match) return [];
  const count = Number(match[3]);
  const names = Array.from({ length: count }, (_, index) => splitPartPath(match[1]!, index, count));
  return names.filter((name) => !has.has(name));
}
