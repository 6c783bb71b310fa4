import fs from 'node:fs';
import { HerdError } from '../errors.js';
import { isCommitHash, listRepoFiles, resolveRevision } from './api.js';
import { blobPath, hubCacheDir, linkSnapshotFile, readRef, snapshotDir, writeRef } from './cache.js';
import { cachedModel } from './cached-model.js';
import { downloadFiles, type DownloadProgress, type FileOutcome } from './download-files.js';
import { blobNameOf } from './download.js';
import { HubUnreachable } from './hub-errors.js';
import { HubClient, type HubClientOptions } from './http.js';
import { formatHubName, type HubModelName } from './model-name.js';
import { selectFiles, type RepoFile } from './select-files.js';
import { hubSettings } from './settings.js';

/**
 * A model named by its Hub id, made local: the cache is used when it holds the model (after one
 * revision check, none offline or for a commit hash), otherwise the files herd needs are
 * downloaded into huggingface_hub's layout, linked into the snapshot, and the ref recorded.
 */

export interface EnsureOptions {
  /** fnmatch patterns of extra files to take (`herd pull --include`). */
  include?: readonly string[];
  /** fnmatch patterns of files to leave out. */
  exclude?: readonly string[];
  /** Never make a request; HF_HUB_OFFLINE by default. */
  offline?: boolean;
  progress?: DownloadProgress;
  /** Ctrl-C (an InterruptWatch's flag): the download stops with a HerdInterrupted, keeping its partial files. */
  shouldStop?: () => boolean;
  env?: NodeJS.ProcessEnv;
  /** Retry policy and backoff clock, for tests. */
  client?: HubClientOptions;
}

export interface PulledModel {
  repo: string;
  revision: string;
  commit: string;
  snapshot: string;
  /** What to load: the snapshot folder, or a GGUF repo's (first) .gguf file; null when the files taken are no whole model. */
  modelPath: string | null;
  /** What the snapshot lacks for a whole model, when modelPath is null. */
  missing: string[];
  /** The files taken; empty when a cached snapshot was used without listing the repo. */
  files: FileOutcome[];
  /** Whether the cache was used as it was, without listing the repository. */
  fromCache: boolean;
}

/** The local path to load for a Hub model name (interface agreed with src/cli/model-argument.ts). */
export async function ensureModel(name: HubModelName, options: EnsureOptions = {}): Promise<string> {
  const pulled = await pullModel(name, options);
  if (pulled.modelPath === null) throw new HerdError(`${formatHubName(name)}: the files taken are not a whole model (missing ${pulled.missing.join(', ')})`, { kind: 'model', file: pulled.snapshot });
  return pulled.modelPath;
}

export async function pullModel(name: HubModelName, options: EnsureOptions = {}): Promise<PulledModel> {
  const env = options.env ?? process.env;
  const settings = hubSettings(env);
  const cacheDir = hubCacheDir(env);
  const revision = name.revision ?? 'main';
  if (options.offline ?? settings.offline) return fromCacheOnly(cacheDir, name, revision);
  const selecting = (options.include?.length ?? 0) > 0 || (options.exclude?.length ?? 0) > 0;
  // A commit never changes: a whole cached snapshot of one needs no request at all.
  if (isCommitHash(revision) && !selecting) {
    const cached = cachedResult(cacheDir, name, revision, revision);
    if (cached.modelPath !== null) return cached;
  }
  const client = new HubClient(settings, { ...options.client, env });
  let commit: string;
  try {
    commit = await resolveRevision(client, name.repo, revision);
  } catch (error) {
    // No network: a model the cache holds for this revision still runs, as with huggingface_hub.
    const cachedCommit = error instanceof HubUnreachable ? readRef(cacheDir, name.repo, revision) : undefined;
    const cached = cachedCommit === undefined ? undefined : cachedResult(cacheDir, name, revision, cachedCommit);
    if (cached?.modelPath) return cached;
    throw error;
  }
  if (!selecting) {
    const cached = cachedResult(cacheDir, name, revision, commit);
    if (cached.modelPath !== null) {
      recordRef(cacheDir, name.repo, revision, commit);
      return cached;
    }
  }
  return download(client, cacheDir, name, revision, commit, options, settings.downloadTimeoutMs);
}

async function download(client: HubClient, cacheDir: string, name: HubModelName, revision: string, commit: string, options: EnsureOptions, stallMs: number): Promise<PulledModel> {
  const shouldStop = options.shouldStop;
  const files = await listRepoFiles(client, name.repo, commit);
  const label = `${name.repo}@${commit.slice(0, 7)}`;
  const jobsOf = (chosen: readonly RepoFile[]) => chosen.map((file) => ({ repo: name.repo, commit, file }));
  // The safetensors index says which shards are the model; it is fetched first, on its own.
  const index = name.quant === undefined ? files.find((file) => file.path === 'model.safetensors.index.json') : undefined;
  let safetensorsIndex: string | undefined;
  let indexDownloaded = false;
  if (index !== undefined) {
    indexDownloaded = (await downloadFiles(client, cacheDir, jobsOf([index]), { label, stallMs, shouldStop }))[0]!.downloaded;
    safetensorsIndex = fs.readFileSync(blobPath(cacheDir, name.repo, blobNameOf(index)), 'utf8');
  }
  const chosen = selectFiles(name.repo, files, { quant: name.quant, include: options.include, exclude: options.exclude, safetensorsIndex });
  const outcomes = (await downloadFiles(client, cacheDir, jobsOf(chosen), { label, stallMs, progress: options.progress, shouldStop }))
    .map((outcome) => (outcome.file === index && indexDownloaded ? { ...outcome, downloaded: true } : outcome));
  for (const outcome of outcomes) linkSnapshotFile(cacheDir, name.repo, commit, outcome.file.path, outcome.blob);
  recordRef(cacheDir, name.repo, revision, commit);
  const whole = cachedModel(snapshotDir(cacheDir, name.repo, commit), name.repo, name.quant);
  return {
    repo: name.repo,
    revision,
    commit,
    snapshot: snapshotDir(cacheDir, name.repo, commit),
    modelPath: 'modelPath' in whole ? whole.modelPath : null,
    missing: 'missing' in whole ? whole.missing : [],
    files: outcomes,
    fromCache: false,
  };
}

/** HF_HUB_OFFLINE: the cache alone, with an error naming what it lacks. */
function fromCacheOnly(cacheDir: string, name: HubModelName, revision: string): PulledModel {
  const commit = readRef(cacheDir, name.repo, revision);
  if (commit === undefined) {
    throw new HerdError(`HF_HUB_OFFLINE is set and ${formatHubName(name)} is not in the cache (${cacheDir}): run herd pull ${formatHubName(name)} online first`, { kind: 'model' });
  }
  const cached = cachedResult(cacheDir, name, revision, commit);
  if (cached.modelPath === null) {
    throw new HerdError(`HF_HUB_OFFLINE is set and the cached ${formatHubName(name)} (${commit.slice(0, 7)}) lacks ${cached.missing.join(', ')}: run herd pull ${formatHubName(name)} online first`, { kind: 'model', file: cached.snapshot });
  }
  return cached;
}

function cachedResult(cacheDir: string, name: HubModelName, revision: string, commit: string): PulledModel {
  const snapshot = snapshotDir(cacheDir, name.repo, commit);
  const whole = cachedModel(snapshot, name.repo, name.quant);
  return {
    repo: name.repo,
    revision,
    commit,
    snapshot,
    modelPath: 'modelPath' in whole ? whole.modelPath : null,
    missing: 'missing' in whole ? whole.missing : [],
    files: [],
    fromCache: true,
  };
}

/** refs/<branch or tag> → commit, as huggingface_hub records it; a commit hash needs no ref. */
function recordRef(cacheDir: string, repo: string, revision: string, commit: string): void {
  if (revision !== commit && readRef(cacheDir, repo, revision) !== commit) writeRef(cacheDir, repo, revision, commit);
}
