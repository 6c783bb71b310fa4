import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HerdError } from '../errors.js';
import { writeFileAtomically } from '../formats/files.js';
import { isSafeRevision } from './model-name.js';
import { repoKind } from './repo-type.js';
import { chooseGguf } from './select-files.js';
import { hfHome } from './settings.js';

/**
 * The Hugging Face cache exactly as Python's huggingface_hub lays it out (file_download.py,
 * utils/_cache_manager.py), so that herd, transformers, vLLM and llama.cpp share one copy:
 *
 *     <cache>/models--org--name/
 *       refs/main                       the commit "main" pointed to: 40 hex digits, no newline
 *       blobs/<etag>                    each file's content once, named by its sha256 (LFS files)
 *                                       or its git sha1 (the rest)
 *       snapshots/<commit>/<path>       relative symlinks ../../blobs/<etag> (one more ../ per
 *                                       folder in <path>); real files where symlinks fail
 *       .no_exist/<commit>/<path>       empty files: what Python learned a commit does not have
 *
 * herd creates nothing else inside it.
 */

const COMMIT = /^[0-9a-f]{40}$/;

/** Where the cache is: HF_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME or ~/.cache, then huggingface/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  return explicit ? expandHome(explicit) : path.join(hfHome(env), 'hub');
}

/** `models--org--name` (`datasets--org--name`): the repository type, then the id's parts, joined by `--`. */
export function repoFolderName(repo: string): string {
  const { type, id } = repoKind(repo);
  return [`${type}s`, ...id.split('/')].join('--');
}

export function repoDir(cacheDir: string, repo: string): string {
  return path.join(cacheDir, repoFolderName(repo));
}

export function snapshotDir(cacheDir: string, repo: string, commit: string): string {
  if (!COMMIT.test(commit)) throw new HerdError(`"${commit}" is not a 40-digit commit hash`);
  return path.join(repoDir(cacheDir, repo), 'snapshots', commit);
}

export function blobPath(cacheDir: string, repo: string, blobName: string): string {
  if (!/^[\w.-]+$/.test(blobName) || /^\.+$/.test(blobName)) throw new HerdError(`"${blobName}" is not a blob name`);
  return path.join(repoDir(cacheDir, repo), 'blobs', blobName);
}

/**
 * The commit a revision stands for in the cache: a commit hash with a snapshot is itself; a
 * branch or tag is what refs/<revision> holds. Undefined when the cache does not know it.
 */
export function readRef(cacheDir: string, repo: string, revision: string): string | undefined {
  if (COMMIT.test(revision)) return fs.existsSync(snapshotDir(cacheDir, repo, revision)) ? revision : undefined;
  const file = refPath(cacheDir, repo, revision);
  if (!fs.existsSync(file)) return undefined;
  const commit = fs.readFileSync(file, 'utf8').trim();
  return COMMIT.test(commit) ? commit : undefined;
}

/** Records that `ref` points to `commit`, as huggingface_hub does: the bare hash, no newline. */
export function writeRef(cacheDir: string, repo: string, ref: string, commit: string): void {
  if (!COMMIT.test(commit)) throw new HerdError(`"${commit}" is not a 40-digit commit hash`);
  const file = refPath(cacheDir, repo, ref);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomically(file, [Buffer.from(commit, 'ascii')]);
}

/**
 * Moves a downloaded and verified file into blobs/ under its etag. A blob already there has the
 * same content by construction (its name is its hash), so the new copy is dropped.
 */
export function publishBlob(cacheDir: string, repo: string, blobName: string, verifiedTempFile: string): string {
  const target = blobPath(cacheDir, repo, blobName);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  if (fs.existsSync(target)) fs.rmSync(verifiedTempFile, { force: true });
  else fs.renameSync(verifiedTempFile, target);
  return target;
}

type Symlink = (target: string, linkPath: string) => void;

/**
 * Makes snapshots/<commit>/<filePath> point at blobs/<blobName> with a relative symlink, so the
 * cache still works after being moved. Where the file system refuses symlinks (Windows without
 * developer mode, some network drives) the blob is copied instead, as huggingface_hub does for a
 * blob that may be shared. `symlink` is replaceable to test that path.
 */
export function linkSnapshotFile(cacheDir: string, repo: string, commit: string, filePath: string, blobName: string, symlink: Symlink = fs.symlinkSync): string {
  const blob = blobPath(cacheDir, repo, blobName);
  const pointer = path.join(snapshotDir(cacheDir, repo, commit), ...repoPathParts(filePath));
  fs.mkdirSync(path.dirname(pointer), { recursive: true });
  fs.rmSync(pointer, { force: true });
  try {
    symlink(path.relative(path.dirname(pointer), blob), pointer);
  } catch {
    fs.copyFileSync(blob, pointer);
  }
  return pointer;
}

/** A file of a cached snapshot. */
export interface CachedFile {
  /** Its path in the repository, with `/`. */
  path: string;
  /** Where its content is: the blob it links to, or the file itself where it is a copy. */
  blobPath: string;
  size: number;
  lastUsed: Date;
}

export interface CachedRevision {
  commit: string;
  /** Branches and tags pointing at it (`main`, `refs/pr/1`). */
  refs: string[];
  path: string;
  files: CachedFile[];
  /** Its files' bytes, each blob once. */
  size: number;
  lastUsed: Date;
}

export interface CachedRepo {
  repo: string;
  path: string;
  revisions: CachedRevision[];
  /** Bytes on disk, each blob once however many snapshots link to it. */
  sizeOnDisk: number;
  /** Distinct blobs (or copies). */
  fileCount: number;
  lastUsed: Date;
}

/**
 * Every model repository in the cache, by id. "Last used" is the newest access time of a
 * repository's blobs, as huggingface_hub's scan_cache_dir reports it; herd sets it when it runs a
 * model (markSnapshotUsed) rather than trusting the file system's relatime updates.
 */
export function scanCache(cacheDir: string): CachedRepo[] {
  if (!fs.existsSync(cacheDir)) return [];
  return fs.readdirSync(cacheDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && entry.name.startsWith('models--') && fs.existsSync(path.join(cacheDir, entry.name, 'snapshots')))
    .map((entry) => scanRepo(path.join(cacheDir, entry.name)))
    .sort((a, b) => a.repo.localeCompare(b.repo));
}

function scanRepo(folder: string): CachedRepo {
  const repo = path.basename(folder).split('--').slice(1).join('/');
  const refsByCommit = readRefs(path.join(folder, 'refs'));
  const snapshots = path.join(folder, 'snapshots');
  const revisions = fs.readdirSync(snapshots, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => scanRevision(path.join(snapshots, entry.name), refsByCommit.get(entry.name) ?? []))
    .sort((a, b) => a.commit.localeCompare(b.commit));
  const blobs = uniqueBlobs(revisions.flatMap((revision) => revision.files));
  return {
    repo,
    path: folder,
    revisions,
    sizeOnDisk: sumSizes(blobs),
    fileCount: blobs.length,
    lastUsed: newest([...blobs.map((file) => file.lastUsed), ...revisions.map((revision) => revision.lastUsed)], fs.statSync(folder).mtime),
  };
}

function scanRevision(folder: string, refs: string[]): CachedRevision {
  const files = listFiles(folder).flatMap((relative) => {
    const pointer = path.join(folder, ...relative.split('/'));
    let blob: string;
    let stat: fs.Stats;
    try {
      blob = fs.realpathSync(pointer);
      stat = fs.statSync(blob);
    } catch {
      return []; // a link whose blob is gone: the file is not cached
    }
    return [{ path: relative, blobPath: blob, size: stat.size, lastUsed: stat.atime }];
  });
  return {
    commit: path.basename(folder),
    refs: [...refs].sort(),
    path: folder,
    files,
    size: sumSizes(uniqueBlobs(files)),
    lastUsed: newest(files.map((file) => file.lastUsed), fs.statSync(folder).mtime),
  };
}

/** refs/ as commit → ref names, sub-folders included (`refs/pr/1`). */
function readRefs(folder: string): Map<string, string[]> {
  const byCommit = new Map<string, string[]>();
  if (!fs.existsSync(folder)) return byCommit;
  for (const ref of listFiles(folder)) {
    const commit = fs.readFileSync(path.join(folder, ...ref.split('/')), 'utf8').trim();
    byCommit.set(commit, [...(byCommit.get(commit) ?? []), ref]);
  }
  return byCommit;
}

/** Every file (or link) below a folder, as `/`-separated paths relative to it, sorted. */
export function listFiles(folder: string, prefix = ''): string[] {
  return fs.readdirSync(folder, { withFileTypes: true })
    .flatMap((entry) => {
      const relative = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
      return entry.isDirectory() ? listFiles(path.join(folder, entry.name), relative) : [relative];
    })
    .sort();
}

function uniqueBlobs(files: readonly CachedFile[]): CachedFile[] {
  return [...new Map(files.map((file) => [file.blobPath, file])).values()];
}

function sumSizes(files: readonly CachedFile[]): number {
  return files.reduce((total, file) => total + file.size, 0);
}

function newest(dates: readonly Date[], fallback: Date): Date {
  return dates.length === 0 ? fallback : new Date(Math.max(...dates.map((date) => date.getTime())));
}

/**
 * Records that a snapshot was used now: the access time of its blobs, which is what
 * huggingface_hub's scan (and `herd models`) report as last used. Nothing is written into the
 * cache. A read-only shared cache is fine: this is a courtesy, never a failure.
 */
export function markSnapshotUsed(snapshot: string, now = new Date()): void {
  for (const relative of listFiles(snapshot)) {
    try {
      const blob = fs.realpathSync(path.join(snapshot, ...relative.split('/')));
      fs.utimesSync(blob, now, fs.statSync(blob).mtime);
    } catch {
      // a missing blob or a cache we may not write: leave its time as it is
    }
  }
}

export interface Removal {
  repo: string;
  removedCommits: string[];
  removedRefs: string[];
  /** Files taken out of a snapshot that stays (one GGUF quantization of several). */
  removedFiles: string[];
  freedBytes: number;
  /** The whole models--org--name folder went: no snapshot was left. */
  removedRepo: boolean;
}

/**
 * Removes a model from the cache: one revision (its snapshot, the refs pointing at it, and the
 * blobs no other snapshot links to), or, without a revision, the whole repository folder. When
 * the last snapshot goes, so does the folder. Nothing outside models--org--name is touched.
 */
export function removeModel(cacheDir: string, repo: string, revision?: string): Removal {
  const revisions = cachedRevisions(cacheDir, repo);
  if (revision === undefined) return removeRepoFolder(cacheDir, repo, revisions);
  return removeRevision(cacheDir, repo, revisions, findCachedCommit(cacheDir, repo, revision, revisions));
}

/**
 * Removes one GGUF model (every part of a split one) from the snapshot a revision points to, and
 * the blobs nothing else links to: one quantization of a repository whose snapshot holds several.
 * A snapshot left with nothing goes as a whole revision does.
 */
export function removeGgufModel(cacheDir: string, repo: string, revision: string, quant: string): Removal {
  const revisions = cachedRevisions(cacheDir, repo);
  const commit = findCachedCommit(cacheDir, repo, revision, revisions);
  const target = revisions.find((candidate) => candidate.commit === commit)!;
  const parts = chooseGguf(repo, target.files, quant);
  if (parts.length === target.files.length) return { ...removeRevision(cacheDir, repo, revisions, commit), removedFiles: parts.map((part) => part.path) };
  const kept = revisions.flatMap((other) => other.files.filter((file) => !parts.includes(file)));
  const freedBytes = deleteUnlinkedBlobs(cacheDir, repo, parts, kept);
  for (const part of parts) {
    const pointer = path.join(target.path, ...part.path.split('/'));
    fs.rmSync(pointer, { force: true });
    removeEmptyFolders(path.dirname(pointer), target.path);
  }
  return { repo, removedCommits: [], removedRefs: [], removedFiles: parts.map((part) => part.path), freedBytes, removedRepo: false };
}

/** The revisions of a cached repository; a HerdError when it is not cached. */
function cachedRevisions(cacheDir: string, repo: string): CachedRevision[] {
  const folder = repoDir(cacheDir, repo);
  if (!fs.existsSync(folder)) throw new HerdError(`${repo} is not in the cache (${cacheDir}); herd models lists what is`);
  return fs.existsSync(path.join(folder, 'snapshots')) ? scanRepo(folder).revisions : [];
}

function removeRevision(cacheDir: string, repo: string, revisions: readonly CachedRevision[], commit: string): Removal {
  const removed = revisions.find((candidate) => candidate.commit === commit)!;
  const kept = revisions.filter((candidate) => candidate !== removed);
  if (kept.length === 0) return removeRepoFolder(cacheDir, repo, revisions);
  const freedBytes = deleteUnlinkedBlobs(cacheDir, repo, removed.files, kept.flatMap((other) => other.files));
  fs.rmSync(removed.path, { recursive: true, force: true });
  fs.rmSync(path.join(repoDir(cacheDir, repo), '.no_exist', commit), { recursive: true, force: true });
  for (const ref of removed.refs) fs.rmSync(refPath(cacheDir, repo, ref), { force: true });
  return { repo, removedCommits: [commit], removedRefs: removed.refs, removedFiles: [], freedBytes, removedRepo: false };
}

/**
 * Deletes the blobs of `removed` files that no `kept` file links to, and returns the bytes they
 * and the removed files that are real copies (no symlink) free. Only this repository's own blobs
 * are candidates, whatever a link points at.
 */
function deleteUnlinkedBlobs(cacheDir: string, repo: string, removed: readonly CachedFile[], kept: readonly CachedFile[]): number {
  const blobs = path.join(repoDir(cacheDir, repo), 'blobs');
  const blobsFolder = fs.existsSync(blobs) ? fs.realpathSync(blobs) : undefined;
  const stillLinked = new Set(kept.map((file) => file.blobPath));
  const inBlobs = (file: CachedFile) => path.dirname(file.blobPath) === blobsFolder;
  const orphans = uniqueBlobs(removed).filter((file) => inBlobs(file) && !stillLinked.has(file.blobPath));
  for (const blob of orphans) fs.rmSync(blob.blobPath, { force: true });
  return sumSizes(orphans) + sumSizes(removed.filter((file) => !inBlobs(file)));
}

/** Removes `folder` and the folders above it up to `top` (kept) while they are empty. */
function removeEmptyFolders(folder: string, top: string): void {
  for (let current = folder; current !== top && current.startsWith(top + path.sep) && fs.readdirSync(current).length === 0; current = path.dirname(current)) {
    fs.rmdirSync(current);
  }
}

function removeRepoFolder(cacheDir: string, repo: string, revisions: readonly CachedRevision[]): Removal {
  const folder = repoDir(cacheDir, repo);
  const freedBytes = ['blobs', 'snapshots'].reduce((total, sub) => total + diskBytes(path.join(folder, sub)), 0);
  fs.rmSync(folder, { recursive: true, force: true });
  // huggingface_hub keeps its download locks beside the repositories, in .locks/models--org--name.
  fs.rmSync(path.join(cacheDir, '.locks', repoFolderName(repo)), { recursive: true, force: true });
  return {
    repo,
    removedCommits: revisions.map((revision) => revision.commit),
    removedRefs: revisions.flatMap((revision) => revision.refs),
    removedFiles: [],
    freedBytes,
    removedRepo: true,
  };
}

/** A revision that has a snapshot: a ref, a full commit, or a commit's first 7 or more digits. */
function findCachedCommit(cacheDir: string, repo: string, revision: string, revisions: readonly CachedRevision[]): string {
  const commit = isSafeRevision(revision) ? readRef(cacheDir, repo, revision) : undefined;
  const matches = commit !== undefined ? [commit] : /^[0-9a-f]{7,40}$/.test(revision) ? revisions.map((r) => r.commit).filter((c) => c.startsWith(revision)) : [];
  if (matches.length === 1 && revisions.some((r) => r.commit === matches[0])) return matches[0]!;
  const cached = revisions.map((r) => (r.refs.length > 0 ? `${r.refs.join(', ')} (${r.commit.slice(0, 7)})` : r.commit.slice(0, 7))).join('; ');
  throw new HerdError(`revision ${revision} of ${repo} is not in the cache; cached: ${cached || 'none'}`);
}

/** Bytes of the regular files below a folder (links count nothing: their blobs are counted). */
function diskBytes(folder: string): number {
  if (!fs.existsSync(folder)) return 0;
  return listFiles(folder).reduce((total, relative) => {
    const stat = fs.lstatSync(path.join(folder, ...relative.split('/')));
    return total + (stat.isFile() ? stat.size : 0);
  }, 0);
}

function refPath(cacheDir: string, repo: string, ref: string): string {
  if (!isSafeRevision(ref)) throw new HerdError(`"${ref}" is not a valid revision (a branch, tag or commit)`);
  return path.join(repoDir(cacheDir, repo), 'refs', ...ref.split('/'));
}

/** A repository path's folders and name; `..`, empty parts and absolute paths are refused. */
function repoPathParts(filePath: string): string[] {
  const parts = filePath.split('/');
  if (filePath.startsWith('/') || filePath.includes('\\') || parts.some((part) => part === '' || part === '.' || part === '..')) {
    throw new HerdError(`"${filePath}" is not a file path inside a repository`);
  }
  return parts;
}

function expandHome(value: string): string {
  return value === '~' || value.startsWith('~/') ? path.join(os.homedir(), value.slice(1)) : value;
}
