import { HerdError } from '../errors.js';

/** A file of a repository's tree, as the Hub lists it. */
export interface RepoFile {
  path: string;
  size: number;
  /** The git blob id: the cache's blob name for a file not stored in LFS. */
  gitSha1: string;
  /** The LFS object's sha256: the cache's blob name for an LFS file. */
  lfsSha256?: string;
}

export interface SelectOptions {
  /** GGUF repositories: a quantization tag (Q4_K_M), a file name, or a path in the repository. */
  quant?: string;
  /** fnmatch patterns of files to take besides the default selection (`original/*`, `*.pth`). */
  include?: readonly string[];
  /** fnmatch patterns of files never to take, applied last. */
  exclude?: readonly string[];
  /**
   * The text of model.safetensors.index.json, when the caller has fetched it: the shards taken are
   * then exactly those its weight_map names. Without it, every top-level `*-of-*.safetensors`.
   */
  safetensorsIndex?: string;
}

const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';
/** What herd's loader and tokenizer read beside the weights: configs, tokenizers, chat templates. */
const SUPPORT_FILE = /^(?:[^/]+\.json|tokenizer\.model|[^/]+\.jinja)$/;
/** Default choice among several GGUF quantizations, as llama.cpp's `-hf` makes it. */
const DEFAULT_QUANT = 'Q4_K_M';

/**
 * The files herd takes from a repository:
 * - safetensors repositories: the weights herd loads (model.safetensors.index.json and its
 *   shards, or model.safetensors) and the top-level configs, tokenizer files and chat templates;
 *   never sub-folders such as original/, nor *.pth, *.bin or other weight formats;
 * - GGUF repositories: one quantization, every part of it when split (`-00001-of-0000N.gguf`),
 *   chosen by `quant`; without one, the only model there is, or Q4_K_M among several.
 * `include` adds files the default leaves out and `exclude` removes files, both fnmatch patterns
 * as huggingface_hub's allow/ignore patterns (`*` crosses `/`; a pattern ending in `/` means the
 * whole folder). A repository with nothing herd can load is a HerdError listing what it has.
 * The files come sorted by path: a GGUF model's first part, the one to load, comes first.
 */
export function selectFiles(repo: string, files: readonly RepoFile[], options: SelectOptions = {}): RepoFile[] {
  const included = files.filter((file) => matchesAny(file.path, options.include ?? []));
  const weights = options.quant !== undefined || !hasSafetensorsWeights(files) ? ggufWeights(repo, files, options.quant, included) : safetensorsWeights(files, options.safetensorsIndex);
  const chosen = new Set([...weights, ...included]);
  return files.filter((file) => chosen.has(file) && !matchesAny(file.path, options.exclude ?? [])).sort((a, b) => byCodeUnits(a.path, b.path));
}

/** Sorted by path, so a split GGUF's first part (`-00001-of-`) comes first. */
function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function hasSafetensorsWeights(files: readonly RepoFile[]): boolean {
  return files.some((file) => file.path === INDEX_FILE || file.path === SINGLE_FILE);
}

function safetensorsWeights(files: readonly RepoFile[], indexText: string | undefined): RepoFile[] {
  const support = files.filter((file) => SUPPORT_FILE.test(file.path));
  if (!files.some((file) => file.path === INDEX_FILE)) return [...support, ...files.filter((file) => file.path === SINGLE_FILE)];
  const shardNames = indexText === undefined ? undefined : indexShards(indexText);
  const shards = files.filter((file) => (shardNames ? shardNames.has(file.path) : /^[^/]+-of-[^/]+\.safetensors$/.test(file.path)));
  return [...support, ...shards];
}

/** The shard file names an index's weight_map points to. */
function indexShards(indexText: string): Set<string> {
  let index: unknown;
  try {
    index = JSON.parse(indexText);
  } catch (error) {
    throw new HerdError(`${INDEX_FILE} is not valid JSON (${(error as Error).message})`, { kind: 'model' });
  }
  const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null) throw new HerdError(`${INDEX_FILE} has no weight_map`, { kind: 'model' });
  return new Set(Object.values(weightMap).filter((value): value is string => typeof value === 'string'));
}

function ggufWeights(repo: string, files: readonly RepoFile[], quant: string | undefined, included: readonly RepoFile[]): RepoFile[] {
  if (!files.some((file) => isGguf(file.path))) {
    if (quant === undefined && included.length > 0) return [];
    const what = quant === undefined ? 'neither model.safetensors(.index.json) nor .gguf files' : `no .gguf files for :${quant}`;
    throw new HerdError(`${repo} has ${what}, so nothing herd can load (files: ${summarize(files.map((file) => file.path))})`, { kind: 'model' });
  }
  return chooseGguf(repo, files, quant);
}

/** A GGUF model of a repository: one file, or the parts of a split one in order. */
interface GgufModel<T> {
  /** The path without the split suffix: `Q8_0/model-Q8_0.gguf` for `Q8_0/model-Q8_0-00001-of-00002.gguf`. */
  key: string;
  parts: T[];
}

const SPLIT_SUFFIX = /-\d{5}-of-\d{5}(\.gguf)$/i;

/**
 * The files of one GGUF model of a repository (every part of a split model, the first first),
 * chosen by a quantization tag, a file name or a path. Tags match whole trailing words of the file
 * name, case-insensitively: `Q4_K` takes `model-Q4_K.gguf`, never `model-Q4_K_M.gguf`. Used on a
 * Hub listing and on a cached snapshot alike.
 */
export function chooseGguf<T extends { path: string }>(repo: string, files: readonly T[], quant?: string): T[] {
  const models = ggufModels(files);
  if (models.length === 0) throw new HerdError(`${repo} has no .gguf files`, { kind: 'model' });
  if (quant === undefined) {
    if (models.length === 1) return models[0]!.parts;
    const preferred = models.filter((model) => matchesQuant(model.key, DEFAULT_QUANT));
    if (preferred.length === 1) return preferred[0]!.parts;
    throw new HerdError(`${repo} has several GGUF quantizations; name one as ${repo}:TAG, one of: ${ggufTags(models).join(', ')}`);
  }
  const matches = models.filter((model) => matchesQuant(model.key, quant));
  if (matches.length === 1) return matches[0]!.parts;
  if (matches.length === 0) throw new HerdError(`no GGUF file in ${repo} matches "${quant}"; available tags: ${ggufTags(models).join(', ')}`);
  throw new HerdError(`"${quant}" matches several GGUF models in ${repo}: ${matches.map((model) => model.parts[0]!.path).join(', ')}; give the file name, as ${repo}:FILE`);
}

function ggufModels<T extends { path: string }>(files: readonly T[]): GgufModel<T>[] {
  const byKey = new Map<string, T[]>();
  for (const file of files) {
    // Vision projectors sit beside the language models in GGUF repositories; they are not one.
    if (!isGguf(file.path) || baseName(file.path).toLowerCase().startsWith('mmproj')) continue;
    const key = file.path.replace(SPLIT_SUFFIX, '$1');
    byKey.set(key, [...(byKey.get(key) ?? []), file]);
  }
  return [...byKey].map(([key, parts]) => ({ key, parts: parts.sort((a, b) => byCodeUnits(a.path, b.path)) }));
}

/** Whether a GGUF model (its path without split suffix) is the one `quant` names. */
function matchesQuant(key: string, quant: string): boolean {
  const wanted = quant.toLowerCase().replace(/\.gguf$/, '');
  const stemPath = key.toLowerCase().replace(/\.gguf$/, '');
  const stem = baseName(stemPath);
  return stemPath === wanted || stem === wanted || stem.endsWith(`-${wanted}`) || stem.endsWith(`.${wanted}`);
}

/**
 * What tells a repository's GGUF models apart: each stem after the part all stems share, cut at a
 * `-` or `.` (Q4_K_M, Q8_0, UD-Q4_K_XL); a lone model's last word.
 */
export function ggufTags(models: readonly { key: string }[]): string[] {
  const stems = models.map((model) => baseName(model.key).replace(/\.gguf$/i, ''));
  const shared = stems.length === 1 ? stems[0]!.replace(/[^-.]*$/, '') : commonPrefix(stems).replace(/[^-.]*$/, '');
  return [...new Set(stems.map((stem) => stem.slice(shared.length) || stem))].sort();
}

function commonPrefix(texts: readonly string[]): string {
  return texts.reduce((prefix, text) => {
    let length = 0;
    while (length < prefix.length && prefix[length] === text[length]) length++;
    return prefix.slice(0, length);
  });
}

/**
 * fnmatch as Python's fnmatch.fnmatch on POSIX, which huggingface_hub's allow/ignore patterns use:
 * `*` any run of characters (`/` included), `?` one character, `[abc]`/`[!abc]` a set; case
 * matters. A pattern ending in `/` matches everything below that folder.
 */
export function matchesGlob(filePath: string, pattern: string): boolean {
  return globRegExp(pattern.endsWith('/') ? `${pattern}*` : pattern).test(filePath);
}

function matchesAny(filePath: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => matchesGlob(filePath, pattern));
}

function globRegExp(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i]!;
    if (char === '*') source += '.*';
    else if (char === '?') source += '.';
    else if (char === '[') {
      // As fnmatch.translate: a `!` and then a `]` right after `[` belong to the set.
      let start = i + 1;
      if (pattern[start] === '!') start++;
      if (pattern[start] === ']') start++;
      const end = pattern.indexOf(']', start);
      if (end === -1) {
        source += '\\[';
        continue;
      }
      const body = pattern.slice(i + 1, end);
      source += `[${body.startsWith('!') ? `^${escapeSet(body.slice(1))}` : escapeSet(body)}]`;
      i = end;
    } else source += char.replace(/[.+^${}()|\\/\]]/g, '\\$&');
  }
  return new RegExp(`^${source}$`, 's');
}

/** Inside a set, only `\`, `^` and `]` mean something to a RegExp that they do not to fnmatch. */
function escapeSet(body: string): string {
  return body.replace(/[\\^\]]/g, '\\$&');
}

function isGguf(filePath: string): boolean {
  return filePath.toLowerCase().endsWith('.gguf');
}

function baseName(filePath: string): string {
  return filePath.slice(filePath.lastIndexOf('/') + 1);
}

function summarize(paths: readonly string[]): string {
  return paths.length <= 8 ? paths.join(', ') : `${paths.slice(0, 8).join(', ')} and ${paths.length - 8} more`;
}
