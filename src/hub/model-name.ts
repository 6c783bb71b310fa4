import fs from 'node:fs';
import { HerdError, HerdUsageError } from '../errors.js';

/**
 * A model named by its Hugging Face id: `org/name`, optionally `@revision` (a branch, tag or
 * commit) and, for GGUF repositories, `:QUANT` (a quantization tag such as Q4_K_M, or a file name).
 */
export interface HubModelName {
  repo: string;
  revision?: string;
  quant?: string;
}

export type ModelArgument = { kind: 'local'; path: string } | { kind: 'hub'; name: HubModelName };

/**
 * huggingface_hub's validate_repo_id rules for one part of `org/name`: word characters, `-` and
 * `.`, at most 96 of them, starting and ending with a word character, never `--` or `..` (the cache
 * folder `models--org--name` joins the parts with `--`, so a part holding `--` would be ambiguous).
 */
const REPO_PART = /^\w(?:[\w.-]{0,94}\w)?$/;

/** `org/name`, then `@revision` (git refs cannot hold `:`), then `:QUANT`. */
const HUB_NAME = /^([^/@:\s]+)\/([^/@:\s]+)(?:@([^:\s]+))?(?::(\S+))?$/;

/** Endings that name a local file, never a repository: a missing one is a missing file. */
const LOCAL_FILE_ENDINGS = /\.(gguf|json|safetensors)$/i;

/**
 * What `--model` names: an existing path (folder or file) is local; otherwise `org/name`,
 * `org/name@revision`, `org/name:QUANT` or `org/name@revision:QUANT` is a Hugging Face id. A path
 * that does not exist and is no such id is a HerdError saying both.
 */
export function parseModelArgument(arg: string): ModelArgument {
  if (fs.existsSync(arg)) return { kind: 'local', path: arg };
  if (looksLikePath(arg)) throw new HerdError(`model ${LOCAL_FILE_ENDINGS.test(arg) ? 'file' : 'folder'} ${arg} does not exist`, { kind: 'model', file: arg });
  return { kind: 'hub', name: parseHubName(arg) };
}

/** Parses `org/name[@revision][:QUANT]` without looking at the file system. */
export function parseHubName(arg: string): HubModelName {
  const match = HUB_NAME.exec(arg);
  if (!match) throw notAModelName(arg);
  const [, org, name, revision, quant] = match;
  for (const part of [org!, name!]) {
    if (!REPO_PART.test(part) || part.includes('--') || part.includes('..') || part.endsWith('.git')) throw notAModelName(arg);
  }
  if (revision !== undefined && !isSafeRevision(revision)) throw new HerdError(`"${revision}" in ${arg} is not a valid revision (a branch, tag or commit)`);
  if (quant !== undefined && (quant.startsWith('/') || quant.split('/').includes('..'))) throw new HerdError(`"${quant}" in ${arg} is not a quantization tag or a file name`);
  return { repo: `${org}/${name}`, ...(revision !== undefined && { revision }), ...(quant !== undefined && { quant }) };
}

/**
 * A command's MODEL argument with its --revision flag (herd pull, herd rm): the revision given
 * either way, and a usage error when both give different ones.
 */
export function parseHubNameWithRevision(arg: string, revisionFlag: string | undefined): HubModelName {
  const name = parseHubName(arg);
  if (revisionFlag === undefined) return name;
  if (name.revision !== undefined && name.revision !== revisionFlag) throw new HerdUsageError(`${arg} names revision ${name.revision} but --revision says ${revisionFlag}; give one`);
  if (!isSafeRevision(revisionFlag)) throw new HerdUsageError(`--revision "${revisionFlag}" is not a valid revision (a branch, tag or commit)`);
  return { ...name, revision: revisionFlag };
}

/** The name as a person writes it: `org/name@revision:QUANT`, leaving out what is not given. */
export function formatHubName(name: HubModelName): string {
  return `${name.repo}${name.revision === undefined ? '' : `@${name.revision}`}${name.quant === undefined ? '' : `:${name.quant}`}`;
}

/**
 * A revision becomes a path under refs/ in the cache (`refs/pr/1` included), so it may hold `/`
 * but never climb out of its folder.
 */
export function isSafeRevision(revision: string): boolean {
  return revision !== '' && !revision.startsWith('/') && !revision.endsWith('/') && !revision.split('/').some((part) => part === '' || part === '.' || part === '..');
}

/**
 * Relative, absolute and home-relative paths, nested folders and file names: what no Hub id looks
 * like before its `@revision` or `:QUANT`.
 */
function looksLikePath(arg: string): boolean {
  const beforeSuffix = arg.split(/[@:]/)[0]!;
  return /^[.~/\\]/.test(arg) || arg.includes('\\') || beforeSuffix.split('/').length > 2 || LOCAL_FILE_ENDINGS.test(beforeSuffix);
}

function notAModelName(arg: string): HerdError {
  return new HerdError(`"${arg}" is neither an existing folder or file nor a Hugging Face id (org/name, org/name@revision, org/name:QUANT)`);
}
