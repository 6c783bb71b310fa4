import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { HerdError, HerdInterrupted } from '../errors.js';
import { openFile } from './api.js';
import { acquireBlobLock, type BlobLock } from './blob-lock.js';
import { blobPath, publishBlob } from './cache.js';
import { isTransient, type HubClient } from './http.js';
import type { RepoFile } from './select-files.js';

/**
 * herd's download loop for one file of a repo into the cache's blobs/ (what @huggingface/hub's
 * download lacks): bytes go to a herd-owned partial file beside the blob, resumed with Range
 * after a dropped connection, a stall or a new run; the file's hash (sha256 for LFS files, git's
 * sha1 for the rest) is checked before the blob is published, and a mismatch keeps nothing; a
 * lock keeps two processes from writing the same blob.
 */

export interface BlobJob {
  repo: string;
  commit: string;
  file: RepoFile;
}

/** Counts bytes as they arrive; a negative count takes back bytes thrown away (a restart). */
export type ByteCounter = (bytes: number) => void;

export interface DownloadOptions {
  /** How long a download may send nothing before it counts as dropped (HF_HUB_DOWNLOAD_TIMEOUT). */
  stallMs: number;
  counter?: ByteCounter;
  /** Called when another process holds the blob's lock. */
  onWait?: (file: RepoFile) => void;
  /** Ctrl-C: checked as bytes arrive; the partial file is kept for the next run. */
  shouldStop?: () => boolean;
}

/** The blob's name in the cache: the LFS sha256, else the git blob sha1 (what the Hub's ETag says). */
export function blobNameOf(file: RepoFile): string {
  return file.lfsSha256 ?? file.gitSha1;
}

export function partialPathOf(blob: string): string {
  return `${blob}.herd-partial`;
}

export function lockPathOf(blob: string): string {
  return `${blob}.herd-lock`;
}

/** Downloads a job's blob unless the cache has it; 'present' when it was there (or another process put it there). */
export async function downloadBlob(client: HubClient, cacheDir: string, job: BlobJob, options: DownloadOptions): Promise<'downloaded' | 'present'> {
  const name = blobNameOf(job.file);
  const blob = blobPath(cacheDir, job.repo, name);
  if (fs.existsSync(blob)) return 'present';
  fs.mkdirSync(path.dirname(blob), { recursive: true });
  const lock = await acquireBlobLock(lockPathOf(blob), { onWait: () => options.onWait?.(job.file) });
  try {
    if (fs.existsSync(blob)) return 'present';
    const partial = partialPathOf(blob);
    await fetchIntoPartial(client, job, partial, lock, options);
    await verifyOrDiscard(job, partial);
    publishBlob(cacheDir, job.repo, name, partial);
    return 'downloaded';
  } finally {
    lock.release();
  }
}

/** Bytes already in the partial file, counted once at the start so progress shows the resume. */
export function partialBytes(cacheDir: string, job: BlobJob): number {
  return sizeOf(partialPathOf(blobPath(cacheDir, job.repo, blobNameOf(job.file))));
}

/**
 * Fills `partial` to the file's size, resuming from what it holds. A try that brings new bytes
 * resets the count of failures; only `attempts` tries in a row without progress give up, and
 * what arrived stays in the partial file for the next run.
 */
async function fetchIntoPartial(client: HubClient, job: BlobJob, partial: string, lock: BlobLock, options: DownloadOptions): Promise<void> {
  const count = options.counter ?? (() => {});
  let failures = 0;
  for (;;) {
    const offset = sizeOf(partial);
    if (offset === job.file.size && fs.existsSync(partial)) return;
    if (offset > job.file.size) {
      // More than the file holds: nothing in it can be trusted.
      fs.rmSync(partial);
      count(-offset);
      continue;
    }
    const outcome = await fetchOnce(client, job, partial, offset, lock, options, count);
    if (outcome === 'progress') failures = 0;
    else failures++;
    if (failures >= client.retry.attempts) {
      const kept = sizeOf(partial);
      throw new HerdError(`${job.repo} ${job.file.path}: the download kept failing (${outcome}) after ${failures} tries; ${kept} of ${job.file.size} bytes are kept and the next run resumes from there`, { kind: 'network' });
    }
    if (outcome !== 'progress') await client.backoff(failures, undefined);
  }
}

type TryOutcome = 'progress' | 'no bytes' | 'expired link' | 'stalled';

/** One request for the rest of the file, appended to the partial file until it ends or drops. */
async function fetchOnce(client: HubClient, job: BlobJob, partial: string, offset: number, lock: BlobLock, options: DownloadOptions, count: ByteCounter): Promise<TryOutcome> {
  const watchdog = new StallWatchdog(options.stallMs);
  // Ctrl-C must also stop a download that is waiting for bytes.
  const stopPoll = options.shouldStop && setInterval(() => options.shouldStop!() && watchdog.abort(), 100);
  let received = 0;
  try {
    const body = await openFile(client, job.repo, job.commit, job.file.path, offset, watchdog.signal);
    const { response } = body;
    // The CDN refuses a signed link that expired: resolve again for a fresh one.
    if (response.status === 403) {
      await response.body?.cancel();
      return 'expired link';
    }
    checkFacts(job, body);
    let start = offset;
    if (response.status === 200 && offset > 0) {
      // The server ignored Range and sends the whole file: start over.
      count(-offset);
      start = 0;
    } else if (response.status === 206) {
      checkContentRange(job, response.headers.get('content-range'), offset);
    }
    const handle = await fs.promises.open(partial, start === 0 ? 'w' : 'a');
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        watchdog.reset();
        await handle.write(chunk);
        received += chunk.length;
        count(chunk.length);
        lock.touch();
        if (options.shouldStop?.()) break;
      }
    } finally {
      await handle.close();
    }
    // A file whose last bytes arrived as Ctrl-C came is finished: it is published, not reported as stopped.
    if (options.shouldStop?.() && sizeOf(partial) < job.file.size) throw stopped(job, partial);
    return received > 0 ? 'progress' : 'no bytes';
  } catch (error) {
    if (options.shouldStop?.()) throw stopped(job, partial);
    if (watchdog.signal.aborted) return received > 0 ? 'progress' : 'stalled';
    if (!isTransient(error)) throw error;
    return received > 0 ? 'progress' : 'no bytes';
  } finally {
    watchdog.stop();
    clearInterval(stopPoll);
  }
}

function stopped(job: BlobJob, partial: string): HerdInterrupted {
  return new HerdInterrupted(`the download of ${job.repo} stopped; ${sizeOf(partial)} of ${job.file.size} bytes of ${job.file.path} are kept and the same command resumes from there`);
}

/** The answer must be about the file the listing named: same blob, same commit. */
function checkFacts(job: BlobJob, body: { etag?: string; commit?: string }): void {
  const expected = blobNameOf(job.file);
  if (body.etag !== undefined && body.etag !== expected) {
    throw new HerdError(`${job.repo} ${job.file.path}: the Hub now serves blob ${body.etag}, not ${expected} as listed for commit ${job.commit}; run again`, { kind: 'network' });
  }
  if (body.commit !== undefined && body.commit !== job.commit) {
    throw new HerdError(`${job.repo} ${job.file.path}: the Hub answered for commit ${body.commit}, not ${job.commit}`, { kind: 'network' });
  }
}

function checkContentRange(job: BlobJob, header: string | null, offset: number): void {
  const start = /^bytes (\d+)-/.exec(header ?? '')?.[1];
  if (start !== undefined && Number(start) !== offset) {
    throw new HerdError(`${job.repo} ${job.file.path}: asked for bytes from ${offset}, got ${header}`, { kind: 'network' });
  }
}

/** Checks the finished file's hash; a mismatch deletes it, so nothing of it is kept. */
async function verifyOrDiscard(job: BlobJob, partial: string): Promise<void> {
  const lfs = job.file.lfsSha256 !== undefined;
  const actual = await fileHash(partial, lfs ? 'sha256' : 'git-sha1');
  const expected = blobNameOf(job.file);
  if (actual === expected) return;
  fs.rmSync(partial, { force: true });
  throw new HerdError(`${job.repo} ${job.file.path} arrived corrupt (${lfs ? 'sha256' : 'git sha1'} ${actual}, expected ${expected}); nothing was kept, run again`, { kind: 'network' });
}

/** sha256 of a file, or git's blob sha1 (sha1 of `blob <size>\0` then the content). */
export async function fileHash(file: string, kind: 'sha256' | 'git-sha1'): Promise<string> {
  const hash = crypto.createHash(kind === 'sha256' ? 'sha256' : 'sha1');
  if (kind === 'git-sha1') hash.update(`blob ${fs.statSync(file).size}\0`);
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function sizeOf(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** Aborts the request when no byte has come for `ms`: a stalled connection counts as dropped. */
class StallWatchdog {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout;

  constructor(ms: number) {
    this.timer = setTimeout(() => this.controller.abort(), ms);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  reset(): void {
    this.timer.refresh();
  }

  abort(): void {
    this.controller.abort();
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}
