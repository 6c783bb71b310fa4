import fs from 'node:fs';
import os from 'node:os';

/**
 * A lock file beside a blob being downloaded, so that two herd processes never write the same
 * blob: created with O_EXCL, holding the owner's host and pid. A lock whose owner on this host
 * is gone, or that nobody has touched for STALE_MS (an owner on another host, or a hung one), is
 * stale and taken over. The owner touches it as bytes arrive.
 */

export const STALE_MS = 10 * 60 * 1000;

export interface BlobLock {
  /** Marks the lock as alive (its mtime), at most once a second. */
  touch(): void;
  release(): void;
}

export interface LockWaitOptions {
  /** How long to wait between looks at a held lock. */
  pollMs?: number;
  /** Called once when another process holds the lock, so the caller can say it is waiting. */
  onWait?: (owner: string) => void;
}

/** Takes the lock at `file`, waiting while a live owner holds it. */
export async function acquireBlobLock(file: string, options: LockWaitOptions = {}): Promise<BlobLock> {
  let told = false;
  for (;;) {
    const lock = tryLock(file);
    if (lock !== undefined) return lock;
    const owner = readOwner(file);
    if (owner === undefined) continue; // released between our two looks
    if (isStale(file, owner)) {
      fs.rmSync(file, { force: true });
      continue;
    }
    if (!told) options.onWait?.(owner);
    told = true;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 200));
  }
}

function tryLock(file: string): BlobLock | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw error;
  }
  fs.writeSync(fd, `${os.hostname()} ${process.pid}\n`);
  fs.closeSync(fd);
  let touched = Date.now();
  return {
    touch() {
      if (Date.now() - touched < 1000) return;
      touched = Date.now();
      const now = new Date();
      try {
        fs.utimesSync(file, now, now);
      } catch {
        // Taken over as stale while we were slow: the publish step still checks the blob.
      }
    },
    release() {
      if (readOwner(file) === `${os.hostname()} ${process.pid}`) fs.rmSync(file, { force: true });
    },
  };
}

function readOwner(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function isStale(file: string, owner: string): boolean {
  const [host, pidText] = owner.split(' ');
  if (host === os.hostname() && !isAlive(Number(pidText))) return true;
  try {
    return Date.now() - fs.statSync(file).mtimeMs > STALE_MS;
  } catch {
    return false;
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
