import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The Hub settings huggingface_hub reads from the environment, read the same way so that one
 * configuration serves herd and Python alike (huggingface_hub's constants.py).
 */
export interface HubSettings {
  /** HF_ENDPOINT without a trailing slash; https://huggingface.co by default. */
  endpoint: string;
  /** HF_TOKEN, else the token file `hf auth login` writes; undefined when neither is set. */
  token: string | undefined;
  /** HF_HUB_OFFLINE: never make a request, use the cache only. */
  offline: boolean;
  /** HF_HUB_DISABLE_PROGRESS_BARS: no progress bar and no progress lines. */
  progressDisabled: boolean;
  /** HF_HUB_DOWNLOAD_TIMEOUT (seconds, 10 by default): a download that sends nothing this long has stalled. */
  downloadTimeoutMs: number;
}

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export function hubSettings(env: NodeJS.ProcessEnv = process.env): HubSettings {
  return {
    endpoint: (nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT).replace(/\/+$/, ''),
    token: hubToken(env),
    offline: isTrue(env.HF_HUB_OFFLINE),
    progressDisabled: isTrue(env.HF_HUB_DISABLE_PROGRESS_BARS),
    downloadTimeoutMs: positiveSeconds(env.HF_HUB_DOWNLOAD_TIMEOUT, 10) * 1000,
  };
}

/** huggingface_hub's HF_HOME: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = nonEmpty(env.HF_HOME);
  if (explicit !== undefined) return expandHome(explicit);
  return path.join(expandHome(nonEmpty(env.XDG_CACHE_HOME) ?? path.join(os.homedir(), '.cache')), 'huggingface');
}

/** HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN), else the file at HF_TOKEN_PATH or HF_HOME/token. */
function hubToken(env: NodeJS.ProcessEnv): string | undefined {
  const fromEnv = nonEmpty(env.HF_TOKEN) ?? nonEmpty(env.HUGGING_FACE_HUB_TOKEN);
  if (fromEnv !== undefined) return fromEnv;
  const file = expandHome(nonEmpty(env.HF_TOKEN_PATH) ?? path.join(hfHome(env), 'token'));
  try {
    return nonEmpty(fs.readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

// huggingface_hub's ENV_VARS_TRUE_VALUES.
function isTrue(value: string | undefined): boolean {
  return value !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(value.trim().toUpperCase());
}

function positiveSeconds(value: string | undefined, fallback: number): number {
  const seconds = Number(value);
  return value !== undefined && Number.isFinite(seconds) && seconds > 0 ? seconds : fallback;
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed === undefined || trimmed === '' ? undefined : trimmed;
}

function expandHome(file: string): string {
  return file === '~' || file.startsWith('~/') ? path.join(os.homedir(), file.slice(1)) : file;
}
