import fs from 'node:fs';
import path from 'node:path';
import { blobPath } from './cache.js';
import { checkFreeSpace } from './disk-space.js';
import { blobNameOf, downloadBlob, partialBytes, type BlobJob } from './download.js';
import type { HubClient } from './http.js';
import type { RepoFile } from './select-files.js';

/**
 * Several files of one commit at once, with one combined progress report: the free space is
 * checked against what is missing before the first byte, then CONCURRENCY downloads run side by
 * side. Blobs the cache already holds cost nothing.
 */

export const CONCURRENCY = 4;

/** What a download reports as it goes; the command line draws it (src/cli/download-progress.ts). */
export interface DownloadProgress {
  /** Once, before the first byte: the bytes to fetch and those already in partial files. */
  start(plan: { label: string; files: number; totalBytes: number; resumedBytes: number }): void;
  /** Bytes arrived; negative when a restart threw some away. */
  advance(bytes: number): void;
  fileDone(file: RepoFile): void;
  /** Another process is downloading this blob; this one waits for it. */
  waiting(file: RepoFile): void;
  stop(): void;
}

export interface FileOutcome {
  file: RepoFile;
  blob: string;
  downloaded: boolean;
}

export async function downloadFiles(
  client: HubClient,
  cacheDir: string,
  jobs: readonly BlobJob[],
  options: { label: string; stallMs: number; progress?: DownloadProgress; shouldStop?: () => boolean },
): Promise<FileOutcome[]> {
  const missing = uniqueMissingBlobs(cacheDir, jobs);
  if (missing.length === 0) return jobs.map((job) => ({ file: job.file, blob: blobNameOf(job.file), downloaded: false }));
  const resumedBytes = missing.reduce((sum, job) => sum + partialBytes(cacheDir, job), 0);
  const totalBytes = missing.reduce((sum, job) => sum + job.file.size, 0);
  const blobs = path.dirname(blobPath(cacheDir, jobs[0]!.repo, 'x'));
  fs.mkdirSync(blobs, { recursive: true });
  checkFreeSpace(blobs, totalBytes - resumedBytes);
  const progress = options.progress;
  progress?.start({ label: options.label, files: missing.length, totalBytes, resumedBytes });
  const downloaded = new Set<string>();
  try {
    await runPool(missing, CONCURRENCY, async (job) => {
      const outcome = await downloadBlob(client, cacheDir, job, {
        stallMs: options.stallMs,
        counter: (bytes) => progress?.advance(bytes),
        onWait: (file) => progress?.waiting(file),
        shouldStop: options.shouldStop,
      });
      if (outcome === 'downloaded') downloaded.add(blobNameOf(job.file));
      progress?.fileDone(job.file);
    });
  } finally {
    progress?.stop();
  }
  return jobs.map((job) => ({ file: job.file, blob: blobNameOf(job.file), downloaded: downloaded.has(blobNameOf(job.file)) }));
}

/** The jobs whose blob is not in the cache, one per blob (two paths may share a content). */
function uniqueMissingBlobs(cacheDir: string, jobs: readonly BlobJob[]): BlobJob[] {
  const byBlob = new Map<string, BlobJob>();
  for (const job of jobs) {
    const name = blobNameOf(job.file);
    if (!byBlob.has(name) && !fs.existsSync(blobPath(cacheDir, job.repo, name))) byBlob.set(name, job);
  }
  return [...byBlob.values()];
}

/**
 * Runs `work` over the items, at most `limit` at a time. The first failure stops new work from
 * starting and is thrown once the running items have settled, so no download is left writing.
 */
async function runPool<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure.error;
}
