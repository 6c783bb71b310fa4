/**
 * One split of a Hub dataset made local: the repository's data files for the split are
 * downloaded into huggingface_hub's cache (datasets--org--name, blobs linked into the snapshot,
 * the ref recorded), or taken from it offline (HF_HUB_OFFLINE) or when the Hub is unreachable.
 * The files of a split are found by name, as the `datasets` library's default data-files
 * patterns do: a file or folder named for the split (`train.jsonl`, `data/train-00000-of-00002.parquet`,
 * `train/part-0.csv`). Parquet is preferred when a split has several formats.
 */
import path from 'node:path';
import fs from 'node:fs';
import { HerdError } from '../errors.js';
import { listRepoFiles, resolveRevision } from './api.js';
import { hubCacheDir, linkSnapshotFile, listFiles, readRef, snapshotDir, writeRef } from './cache.js';
import { downloadFiles, type DownloadProgress } from './download-files.js';
import { HubUnreachable } from './hub-errors.js';
import { HubClient } from './http.js';
import { datasetRepo } from './repo-type.js';
import { hubSettings } from './settings.js';

/** Data file formats in order of preference. */
const DATA_EXTENSIONS = ['.parquet', '.jsonl', '.json', '.csv'];

export interface DatasetSplitOptions {
  revision?: string;
  /** Never make a request; HF_HUB_OFFLINE by default. */
  offline?: boolean;
  progress?: DownloadProgress;
  shouldStop?: () => boolean;
  env?: NodeJS.ProcessEnv;
}

export interface DatasetSplit {
  commit: string;
  /** The split's files in the snapshot, sorted (shard order). */
  files: string[];
}

/**
 * The paths (`/`-separated, in the repository) of the split's data files. A path matches when one
 * of its parts is the split's name followed by nothing, a `-`, a `.` or a digit (so `train` takes
 * `train-00000.parquet` but not `train_prefs-00000.parquet`, which is the split `train_prefs`).
 */
export function splitDataFiles(paths: readonly string[], split: string): string[] {
  const escaped = split.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const named = new RegExp(`(^|[-_.])${escaped}($|[-.0-9])`);
  const matching = paths.filter((file) => file.split('/').some((part) => named.test(part)));
  for (const extension of DATA_EXTENSIONS) {
    const files = matching.filter((file) => file.toLowerCase().endsWith(extension));
    if (files.length > 0) return files.sort();
  }
  return [];
}

export async function pullDatasetSplit(id: string, split: string, options: DatasetSplitOptions = {}): Promise<DatasetSplit> {
  const env = options.env ?? process.env;
  const settings = hubSettings(env);
  const cacheDir = hubCacheDir(env);
  const repo = datasetRepo(id);
  const revision = options.revision ?? 'main';
  const label = `${id}@${revision}`;
  if (options.offline ?? settings.offline) return cachedSplit(cacheDir, id, split, revision, `HF_HUB_OFFLINE is set and dataset ${label}`);
  const client = new HubClient(settings, { env });
  let commit: string;
  try {
    commit = await resolveRevision(client, repo, revision);
  } catch (error) {
    // No network: a split the cache holds still runs, as with huggingface_hub.
    if (error instanceof HubUnreachable && readRef(cacheDir, repo, revision) !== undefined) return cachedSplit(cacheDir, id, split, revision, `dataset ${label}`);
    throw error;
  }
  const listed = await listRepoFiles(client, repo, commit);
  const wanted = new Set(splitDataFiles(listed.map((file) => file.path), split));
  const chosen = listed.filter((file) => wanted.has(file.path));
  if (chosen.length === 0) throw noSplit(label, split, listed.map((file) => file.path));
  const outcomes = await downloadFiles(client, cacheDir, chosen.map((file) => ({ repo, commit, file })), { label: `${id}@${commit.slice(0, 7)}`, stallMs: settings.downloadTimeoutMs, progress: options.progress, shouldStop: options.shouldStop });
  for (const outcome of outcomes) linkSnapshotFile(cacheDir, repo, commit, outcome.file.path, outcome.blob);
  if (revision !== commit && readRef(cacheDir, repo, revision) !== commit) writeRef(cacheDir, repo, revision, commit);
  const snapshot = snapshotDir(cacheDir, repo, commit);
  return { commit, files: [...wanted].sort().map((file) => path.join(snapshot, ...file.split('/'))) };
}

/** The split from the cache alone; `what` opens the message when the cache lacks it. */
function cachedSplit(cacheDir: string, id: string, split: string, revision: string, what: string): DatasetSplit {
  const repo = datasetRepo(id);
  const commit = readRef(cacheDir, repo, revision);
  const snapshot = commit === undefined ? undefined : snapshotDir(cacheDir, repo, commit);
  const files = snapshot === undefined || !fs.existsSync(snapshot) ? [] : splitDataFiles(listFiles(snapshot), split);
  if (commit === undefined || files.length === 0) {
    throw new HerdError(`${what} has no split "${split}" in the cache (${cacheDir}): run once online to download it`);
  }
  return { commit, files: files.map((file) => path.join(snapshot!, ...file.split('/'))) };
}

function noSplit(label: string, split: string, paths: readonly string[]): HerdError {
  const data = paths.filter((file) => DATA_EXTENSIONS.some((extension) => file.toLowerCase().endsWith(extension))).sort();
  return new HerdError(`dataset ${label}: no data files for split "${split}" (data files: ${data.length > 0 ? data.join(', ') : 'none'})`);
}
