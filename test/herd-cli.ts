import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { STORIES } from './fixtures.js';
import { HANG_GUARD_MS } from './hang-guard.js';

/** The built CLI (npm test builds first), run as a person or a script runs it. */
export const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/run.js');

export function herd(args: string[], input?: string, extraEnv: Record<string, string> = {}) {
  // Without jest's NODE_ENV=test, under which oclif adds development warnings to stderr.
  const { NODE_ENV: _test, ...env } = process.env;
  const result = spawnSync(process.execPath, [BIN, ...args], { input, encoding: 'utf8', timeout: HANG_GUARD_MS, env: { ...env, ...extraEnv } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** A writable copy of the stories260K fixture, changed by `change` (to break it on purpose). */
export function storiesCopy(change: (dir: string) => void): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-cli-'));
  for (const name of fs.readdirSync(STORIES)) {
    fs.copyFileSync(path.join(STORIES, name), path.join(dir, name));
    fs.chmodSync(path.join(dir, name), 0o644);
  }
  change(dir);
  return dir;
}
