import fs from 'node:fs';
import path from 'node:path';
import { HerdError } from '../errors.js';
import { hubCacheDir, markSnapshotUsed, readRef, snapshotDir } from '../hub/cache.js';
import type { EnsureOptions } from '../hub/ensure.js';
import { formatHubName, parseModelArgument, type HubModelName } from '../hub/model-name.js';
import { hubSettings } from '../hub/settings.js';
import { downloadProgress } from './download-progress.js';
import { InterruptWatch } from './interrupt.js';

/**
 * What a command reads of its --model:
 * - weights: the whole model (a snapshot folder, or a GGUF repository's first .gguf file);
 * - tokenizer: the tokenizer and chat template files, read from the snapshot folder;
 * - config: config.json alone (herd memory), given as that file's path.
 * A GGUF model (`org/name:QUANT`, or a GGUF repository without config.json) holds its config
 * inside, so it is fetched whole; its tokenizer is no tokenizer.json, so `tokenizer` refuses it.
 */
export type ModelPart = 'weights' | 'tokenizer' | 'config';

export interface ModelArgumentOptions {
  /** What the command reads; `weights` by default. */
  part?: ModelPart;
  /** --json: no progress bar. */
  json?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** Weight files of every format a repository may hold: what tokenizer and config reads leave out. */
const WEIGHT_PATTERNS = ['*.safetensors', '*.gguf', '*.bin', '*.pth', '*.pt', '*.h5', '*.msgpack', '*.onnx', '*.ckpt'];

/** The file a partial read needs from a snapshot. */
const NEEDED_FILE: Record<Exclude<ModelPart, 'weights'>, string> = { tokenizer: 'tokenizer.json', config: 'config.json' };

/**
 * Resolves --model to a local path: an existing folder or file as it is; a Hugging Face id
 * (org/name[@revision][:QUANT]) through the cache, downloading what is missing with a progress
 * bar, or from the cache alone under HF_HUB_OFFLINE. Undefined stays undefined (the command's
 * default model). A model run from the cache is marked used (docs/models.md).
 */
export async function resolveModelArgument(arg: string | undefined, options: ModelArgumentOptions = {}): Promise<string | undefined> {
  if (arg === undefined) return undefined;
  const parsed = parseModelArgument(arg);
  if (parsed.kind === 'local') return parsed.path;
  const { name } = parsed;
  const env = options.env ?? process.env;
  const part = options.part ?? 'weights';
  if (part === 'tokenizer' && name.quant !== undefined) {
    throw new HerdError(`${formatHubName(name)} is one GGUF file, and this command reads tokenizer.json from a model folder: name a safetensors repository, without :${name.quant}`);
  }
  // Ctrl-C stops a download between two reads, keeping its partial files for the next run (exit 130).
  const interrupt = new InterruptWatch();
  const download: DownloadOptions = { env, progress: options.json ? undefined : downloadProgress(env), shouldStop: () => interrupt.interrupted };
  try {
    return await hubModelPath(name, part, download);
  } finally {
    interrupt.dispose();
  }
}

type DownloadOptions = Pick<EnsureOptions, 'env' | 'progress' | 'shouldStop'> & { env: NodeJS.ProcessEnv };

/**
 * The Hub client, imported only when a Hub name is resolved: @huggingface/hub and its hashing
 * modules add about 10 MB to the RSS of every run that loads them, a local model's included.
 */
const hubDownloads = () => import('../hub/ensure.js');

async function hubModelPath(name: HubModelName, part: ModelPart, download: DownloadOptions): Promise<string> {
  // A GGUF file holds its own config: herd memory reads its header.
  if (part === 'weights' || name.quant !== undefined) return runnableModel(name, download);
  const snapshot = hubSettings(download.env).offline ? cachedSnapshot(name, download.env) : (await (await hubDownloads()).pullModel(name, { ...download, exclude: WEIGHT_PATTERNS })).snapshot;
  const needed = path.join(snapshot, NEEDED_FILE[part]);
  if (fs.existsSync(needed)) return part === 'config' ? needed : snapshot;
  // A GGUF repository has no config.json: the header of the quantization llama.cpp would pick holds it.
  if (part === 'config') return runnableModel(name, download);
  throw new HerdError(`${formatHubName(name)} has no ${NEEDED_FILE[part]}`, { kind: 'model', file: needed });
}

/** The whole model, from the cache or downloaded; its blobs are marked used. */
async function runnableModel(name: HubModelName, download: DownloadOptions): Promise<string> {
  const modelPath = await (await hubDownloads()).ensureModel(name, download);
  const snapshot = snapshotOf(modelPath);
  if (snapshot !== undefined) markSnapshotUsed(snapshot);
  return modelPath;
}

/** The snapshot a branch or commit points to in the cache, without any request. */
function cachedSnapshot(name: HubModelName, env: NodeJS.ProcessEnv): string {
  const cacheDir = hubCacheDir(env);
  const commit = readRef(cacheDir, name.repo, name.revision ?? 'main');
  if (commit === undefined) {
    throw new HerdError(`HF_HUB_OFFLINE is set and ${formatHubName(name)} is not in the cache (${cacheDir}): run herd pull ${formatHubName(name)} online first`, { kind: 'model' });
  }
  return snapshotDir(cacheDir, name.repo, commit);
}

/** True when --model names a model on the Hub (not a path, not a preset, not malformed). */
export function isHubModelArgument(arg: string): boolean {
  try {
    return parseModelArgument(arg).kind === 'hub';
  } catch {
    return false;
  }
}

/**
 * A model's name for people and file names: `org/name` for a snapshot in the Hugging Face cache
 * (whose folder is only a commit hash), the file or folder name otherwise.
 */
export function modelDisplayName(modelPath: string): string {
  const snapshot = snapshotOf(path.resolve(modelPath));
  const repoFolder = snapshot === undefined ? undefined : path.basename(path.dirname(path.dirname(snapshot)));
  if (repoFolder?.startsWith('models--')) return repoFolder.split('--').slice(1).join('/');
  return path.basename(path.resolve(modelPath));
}

/** snapshots/<commit> at or above a path (a GGUF file may sit in a sub-folder of it). */
function snapshotOf(modelPath: string): string | undefined {
  for (let folder = modelPath; path.dirname(folder) !== folder; folder = path.dirname(folder)) {
    if (path.basename(path.dirname(folder)) === 'snapshots') return folder;
  }
  return undefined;
}
