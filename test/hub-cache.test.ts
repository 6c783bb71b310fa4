import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { scanCacheDir } from '@huggingface/hub';
import { HerdError } from '../src/errors.js';
import { gitSha1, pythonStyleCache, sha256 } from './hub-cache-layout.js';
import { blobPath, hubCacheDir, linkSnapshotFile, listFiles, markSnapshotUsed, publishBlob, readRef, removeGgufModel, removeModel, repoFolderName, scanCache, snapshotDir, writeRef } from '../src/hub/cache.js';

// The layout every test checks against is huggingface_hub's, built by hand in hub-cache-layout.ts.
const COMMIT_A = 'a'.repeat(40);
const COMMIT_B = '0123456789abcdef0123456789abcdef01234567';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-hub-cache-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
let caches = 0;
const newCache = () => fs.mkdirSync(path.join(work, `cache-${++caches}`), { recursive: true }) ?? path.join(work, `cache-${caches}`);

/** Every entry under a folder, links shown with their target, as `ls -R` would list them. */
function tree(folder: string, prefix = ''): string[] {
  return fs.readdirSync(folder, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name)).flatMap((entry) => {
    const relative = `${prefix}${entry.name}`;
    const full = path.join(folder, entry.name);
    if (entry.isSymbolicLink()) return [`${relative} -> ${fs.readlinkSync(full)}`];
    if (entry.isDirectory()) return [`${relative}/`, ...tree(full, `${relative}/`)];
    return [relative];
  });
}

const CONFIG = Buffer.from('{"model_type": "llama"}\n');
const WEIGHTS = Buffer.from('safetensors weights, stored in LFS');
const WEIGHTS_V2 = Buffer.from('safetensors weights, second version');
const PARAMS = Buffer.from('{"dim": 8}');

describe('where the cache is', () => {
  test('HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME or ~/.cache, then huggingface/hub', () => {
    expect(hubCacheDir({ HF_HUB_CACHE: '/c/hub', HF_HOME: '/h' })).toBe('/c/hub');
    expect(hubCacheDir({ HUGGINGFACE_HUB_CACHE: '/legacy', HF_HOME: '/h' })).toBe('/legacy');
    expect(hubCacheDir({ HF_HOME: '/h', XDG_CACHE_HOME: '/x' })).toBe(path.join('/h', 'hub'));
    expect(hubCacheDir({ XDG_CACHE_HOME: '/x' })).toBe(path.join('/x', 'huggingface', 'hub'));
    expect(hubCacheDir({})).toBe(path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
    expect(hubCacheDir({ HF_HOME: '~/hf' })).toBe(path.join(os.homedir(), 'hf', 'hub'));
  });

  test('a repository lives in models--org--name', () => {
    expect(repoFolderName('meta-llama/Llama-3.1-8B-Instruct')).toBe('models--meta-llama--Llama-3.1-8B-Instruct');
  });
});

describe('what herd writes is the huggingface_hub layout, and nothing else', () => {
  const cacheDir = newCache();
  const repo = 'org/tiny';
  const stage = (name: string, content: Buffer) => {
    const file = path.join(work, `staged-${name}`);
    fs.writeFileSync(file, content);
    return file;
  };

  beforeAll(() => {
    const files: Array<[string, Buffer, string]> = [
      ['config.json', CONFIG, gitSha1(CONFIG)],
      ['model.safetensors', WEIGHTS, sha256(WEIGHTS)],
      ['original/params.json', PARAMS, gitSha1(PARAMS)],
    ];
    for (const [file, content, etag] of files) {
      publishBlob(cacheDir, repo, etag, stage(file.replace('/', '_'), content));
      linkSnapshotFile(cacheDir, repo, COMMIT_A, file, etag);
    }
    writeRef(cacheDir, repo, 'main', COMMIT_A);
    writeRef(cacheDir, repo, 'refs/pr/1', COMMIT_A);
  });

  test('file by file: refs hold the bare commit, snapshots link relatively to blobs named by their hash', () => {
    expect(tree(cacheDir)).toEqual([
      'models--org--tiny/',
      'models--org--tiny/blobs/',
      ...[gitSha1(CONFIG), sha256(WEIGHTS), gitSha1(PARAMS)].sort().map((etag) => `models--org--tiny/blobs/${etag}`),
      'models--org--tiny/refs/',
      'models--org--tiny/refs/main',
      'models--org--tiny/refs/refs/',
      'models--org--tiny/refs/refs/pr/',
      'models--org--tiny/refs/refs/pr/1',
      'models--org--tiny/snapshots/',
      `models--org--tiny/snapshots/${COMMIT_A}/`,
      `models--org--tiny/snapshots/${COMMIT_A}/config.json -> ../../blobs/${gitSha1(CONFIG)}`,
      `models--org--tiny/snapshots/${COMMIT_A}/model.safetensors -> ../../blobs/${sha256(WEIGHTS)}`,
      `models--org--tiny/snapshots/${COMMIT_A}/original/`,
      `models--org--tiny/snapshots/${COMMIT_A}/original/params.json -> ../../../blobs/${gitSha1(PARAMS)}`,
    ]);
    expect(fs.readFileSync(path.join(cacheDir, 'models--org--tiny', 'refs', 'main'))).toEqual(Buffer.from(COMMIT_A, 'ascii'));
    for (const file of listFiles(path.join(cacheDir, 'models--org--tiny', 'blobs'))) {
      const content = fs.readFileSync(path.join(cacheDir, 'models--org--tiny', 'blobs', file));
      expect([sha256(content), gitSha1(content)]).toContain(file);
    }
    expect(fs.readFileSync(path.join(snapshotDir(cacheDir, repo, COMMIT_A), 'original', 'params.json'))).toEqual(PARAMS);
  });

  test('publishing a blob that is already there drops the new copy and changes nothing', () => {
    const staged = stage('again', WEIGHTS);
    const before = tree(cacheDir);
    expect(publishBlob(cacheDir, repo, sha256(WEIGHTS), staged)).toBe(blobPath(cacheDir, repo, sha256(WEIGHTS)));
    expect(fs.existsSync(staged)).toBe(false);
    expect(tree(cacheDir)).toEqual(before);
  });

  test("@huggingface/hub's own cache reader finds what herd wrote", async () => {
    const info = await scanCacheDir(cacheDir);
    expect(info.warnings).toEqual([]);
    expect(info.repos).toHaveLength(1);
    const [cached] = info.repos;
    expect(cached!.id).toEqual({ name: repo, type: 'model' });
    // Its reader lists a snapshot's top level only: original/ is a folder it skips.
    expect(cached!.size).toBe(CONFIG.length + WEIGHTS.length);
    expect(cached!.revisions.map((revision) => [revision.commitOid, revision.refs])).toEqual([[COMMIT_A, ['main']]]);
    const files = cached!.revisions[0]!.files.map((file) => [path.basename(file.path), path.basename(file.blob.path), file.blob.size]).sort();
    expect(files).toEqual([['config.json', gitSha1(CONFIG), CONFIG.length], ['model.safetensors', sha256(WEIGHTS), WEIGHTS.length]]);
  });

  test('readRef: a branch gives its commit; a commit with a snapshot is itself; anything else is unknown', () => {
    expect(readRef(cacheDir, repo, 'main')).toBe(COMMIT_A);
    expect(readRef(cacheDir, repo, 'refs/pr/1')).toBe(COMMIT_A);
    expect(readRef(cacheDir, repo, COMMIT_A)).toBe(COMMIT_A);
    expect(readRef(cacheDir, repo, COMMIT_B)).toBeUndefined();
    expect(readRef(cacheDir, repo, 'v2')).toBeUndefined();
    expect(readRef(cacheDir, 'org/other', 'main')).toBeUndefined();
    expect(() => readRef(cacheDir, repo, '../../etc')).toThrow(HerdError);
  });

  test('paths that would leave the snapshot, and names that are not blobs, are refused', () => {
    expect(() => linkSnapshotFile(cacheDir, repo, COMMIT_A, '../escape', sha256(WEIGHTS))).toThrow('"../escape" is not a file path inside a repository');
    expect(() => linkSnapshotFile(cacheDir, repo, COMMIT_A, '/etc/passwd', sha256(WEIGHTS))).toThrow(HerdError);
    expect(() => blobPath(cacheDir, repo, '../x')).toThrow(HerdError);
    expect(() => snapshotDir(cacheDir, repo, 'main')).toThrow('"main" is not a 40-digit commit hash');
    expect(() => writeRef(cacheDir, repo, 'main', 'abc')).toThrow(HerdError);
  });

  test('where symlinks fail, the snapshot holds a real copy of the blob', () => {
    const refuse = () => {
      throw Object.assign(new Error('symlinks not permitted'), { code: 'EPERM' });
    };
    const pointer = linkSnapshotFile(cacheDir, repo, COMMIT_B, 'model.safetensors', sha256(WEIGHTS), refuse);
    expect(fs.lstatSync(pointer).isFile()).toBe(true);
    expect(fs.readFileSync(pointer)).toEqual(WEIGHTS);
    fs.rmSync(path.join(cacheDir, 'models--org--tiny', 'snapshots', COMMIT_B), { recursive: true });
  });
});

describe('herd reads a cache Python wrote', () => {
  const cacheDir = newCache();
  beforeAll(() => {
    pythonStyleCache(cacheDir, 'meta-llama/Llama-3.2-1B', {
      [COMMIT_A]: { 'config.json': { content: CONFIG, lfs: false }, 'model.safetensors': { content: WEIGHTS, lfs: true }, 'original/params.json': { content: PARAMS, lfs: false } },
      [COMMIT_B]: { 'config.json': { content: CONFIG, lfs: false }, 'model.safetensors': { content: WEIGHTS_V2, lfs: true } },
    }, { main: COMMIT_B, 'refs/pr/3': COMMIT_A });
    pythonStyleCache(cacheDir, 'org/other', { [COMMIT_A]: { 'config.json': { content: PARAMS, lfs: false } } }, { main: COMMIT_A });
    // What else Python keeps there: its locks, the files it learned a commit lacks, dataset repos.
    fs.mkdirSync(path.join(cacheDir, '.locks', 'models--meta-llama--Llama-3.2-1B'), { recursive: true });
    fs.writeFileSync(path.join(cacheDir, '.locks', 'models--meta-llama--Llama-3.2-1B', `${sha256(WEIGHTS)}.lock`), '');
    fs.mkdirSync(path.join(cacheDir, 'models--meta-llama--Llama-3.2-1B', '.no_exist', COMMIT_A), { recursive: true });
    fs.writeFileSync(path.join(cacheDir, 'models--meta-llama--Llama-3.2-1B', '.no_exist', COMMIT_A, 'generation_config.json'), '');
    pythonStyleCache(cacheDir, 'org/data', { [COMMIT_A]: { 'train.jsonl': { content: PARAMS, lfs: false } } }, {});
    fs.renameSync(path.join(cacheDir, 'models--org--data'), path.join(cacheDir, 'datasets--org--data'));
    fs.writeFileSync(path.join(cacheDir, 'version.txt'), '1');
  });

  test('every model repository, its refs, files, and size on disk with each blob counted once', () => {
    const repos = scanCache(cacheDir);
    expect(repos.map((repo) => repo.repo)).toEqual(['meta-llama/Llama-3.2-1B', 'org/other']);
    const [llama] = repos;
    // config.json is one blob shared by both snapshots.
    expect(llama!.sizeOnDisk).toBe(CONFIG.length + WEIGHTS.length + PARAMS.length + WEIGHTS_V2.length);
    expect(llama!.fileCount).toBe(4);
    const revisions = Object.fromEntries(llama!.revisions.map((revision) => [revision.commit, revision]));
    expect(revisions[COMMIT_A]!.refs).toEqual(['refs/pr/3']);
    expect(revisions[COMMIT_B]!.refs).toEqual(['main']);
    expect(revisions[COMMIT_A]!.files.map((file) => [file.path, path.basename(file.blobPath), file.size])).toEqual([
      ['config.json', gitSha1(CONFIG), CONFIG.length],
      ['model.safetensors', sha256(WEIGHTS), WEIGHTS.length],
      ['original/params.json', gitSha1(PARAMS), PARAMS.length],
    ]);
    expect(revisions[COMMIT_B]!.size).toBe(CONFIG.length + WEIGHTS_V2.length);
    expect(readRef(cacheDir, 'meta-llama/Llama-3.2-1B', 'main')).toBe(COMMIT_B);
  });

  test('last used is the newest access time of the blobs, which markSnapshotUsed sets', () => {
    const repoFolder = path.join(cacheDir, 'models--meta-llama--Llama-3.2-1B');
    const old = new Date('2025-01-02T03:04:05Z');
    for (const blob of fs.readdirSync(path.join(repoFolder, 'blobs'))) fs.utimesSync(path.join(repoFolder, 'blobs', blob), old, old);
    expect(scanCache(cacheDir)[0]!.lastUsed).toEqual(old);
    const now = new Date('2026-06-07T08:09:10Z');
    markSnapshotUsed(snapshotDir(cacheDir, 'meta-llama/Llama-3.2-1B', COMMIT_B), now);
    const [llama] = scanCache(cacheDir);
    expect(llama!.lastUsed).toEqual(now);
    const revisions = Object.fromEntries(llama!.revisions.map((revision) => [revision.commit, revision.lastUsed]));
    // COMMIT_A shares config.json with COMMIT_B, so it was touched too.
    expect(revisions[COMMIT_B]).toEqual(now);
    expect(fs.statSync(path.join(repoFolder, 'blobs', sha256(WEIGHTS))).atime).toEqual(old);
    // Nothing was modified: only access times.
    expect(fs.statSync(path.join(repoFolder, 'blobs', sha256(WEIGHTS_V2))).mtime).toEqual(old);
  });
});

describe('removing a model', () => {
  const build = () => {
    const cacheDir = newCache();
    pythonStyleCache(cacheDir, 'org/model', {
      [COMMIT_A]: { 'config.json': { content: CONFIG, lfs: false }, 'model.safetensors': { content: WEIGHTS, lfs: true } },
      [COMMIT_B]: { 'config.json': { content: CONFIG, lfs: false }, 'model.safetensors': { content: WEIGHTS_V2, lfs: true } },
    }, { main: COMMIT_B, v1: COMMIT_A });
    pythonStyleCache(cacheDir, 'org/other', { [COMMIT_A]: { 'config.json': { content: CONFIG, lfs: false } } }, { main: COMMIT_A });
    fs.mkdirSync(path.join(cacheDir, 'models--org--model', '.no_exist', COMMIT_A), { recursive: true });
    return cacheDir;
  };

  test('one revision: its snapshot, its refs and the blobs only it used; shared blobs and other repos stay', () => {
    const cacheDir = build();
    const other = tree(path.join(cacheDir, 'models--org--other'));
    const removal = removeModel(cacheDir, 'org/model', 'v1');
    expect(removal).toEqual({ repo: 'org/model', removedCommits: [COMMIT_A], removedRefs: ['v1'], removedFiles: [], freedBytes: WEIGHTS.length, removedRepo: false });
    expect(tree(path.join(cacheDir, 'models--org--model'))).toEqual([
      '.no_exist/',
      'blobs/',
      ...[gitSha1(CONFIG), sha256(WEIGHTS_V2)].sort().map((etag) => `blobs/${etag}`),
      'refs/',
      'refs/main',
      'snapshots/',
      `snapshots/${COMMIT_B}/`,
      `snapshots/${COMMIT_B}/config.json -> ../../blobs/${gitSha1(CONFIG)}`,
      `snapshots/${COMMIT_B}/model.safetensors -> ../../blobs/${sha256(WEIGHTS_V2)}`,
    ]);
    expect(tree(path.join(cacheDir, 'models--org--other'))).toEqual(other);
  });

  test('a commit prefix names a revision too; the last revision takes the whole folder and its locks with it', () => {
    const cacheDir = build();
    fs.mkdirSync(path.join(cacheDir, '.locks', 'models--org--model'), { recursive: true });
    expect(removeModel(cacheDir, 'org/model', COMMIT_B.slice(0, 7)).removedCommits).toEqual([COMMIT_B]);
    const last = removeModel(cacheDir, 'org/model', 'v1');
    expect(last).toEqual({ repo: 'org/model', removedCommits: [COMMIT_A], removedRefs: ['v1'], removedFiles: [], freedBytes: CONFIG.length + WEIGHTS.length, removedRepo: true });
    expect(fs.readdirSync(cacheDir).sort()).toEqual(['.locks', 'models--org--other']);
    expect(fs.readdirSync(path.join(cacheDir, '.locks'))).toEqual([]);
  });

  test('without a revision: the whole repository, every blob counted once', () => {
    const cacheDir = build();
    expect(removeModel(cacheDir, 'org/model')).toEqual({
      repo: 'org/model', removedCommits: [COMMIT_A, COMMIT_B].sort(), removedRefs: expect.arrayContaining(['main', 'v1']), removedFiles: [], freedBytes: CONFIG.length + WEIGHTS.length + WEIGHTS_V2.length, removedRepo: true,
    });
    expect(fs.readdirSync(cacheDir)).toEqual(['models--org--other']);
  });

  test('an unknown model or revision is one clear error and removes nothing', () => {
    const cacheDir = build();
    const before = tree(cacheDir);
    expect(() => removeModel(cacheDir, 'org/missing')).toThrow(`org/missing is not in the cache (${cacheDir}); herd models lists what is`);
    expect(() => removeModel(cacheDir, 'org/model', 'v9')).toThrow(`revision v9 of org/model is not in the cache; cached: main (${COMMIT_B.slice(0, 7)}); v1 (${COMMIT_A.slice(0, 7)})`);
    expect(() => removeModel(cacheDir, 'org/model', 'fff0000')).toThrow(HerdError);
    expect(tree(cacheDir)).toEqual(before);
  });

  test('one GGUF quantization: its parts and their blobs; other quantizations, and blobs another revision links, stay', () => {
    const cacheDir = newCache();
    const [q4, q8a, q8b] = ['Q4_K_M weights', 'Q8_0 part one', 'Q8_0 part two'].map((text) => Buffer.from(text));
    pythonStyleCache(cacheDir, 'org/gguf', {
      [COMMIT_A]: { 'm-Q4_K_M.gguf': { content: q4!, lfs: true }, 'Q8_0/m-Q8_0-00001-of-00002.gguf': { content: q8a!, lfs: true }, 'Q8_0/m-Q8_0-00002-of-00002.gguf': { content: q8b!, lfs: true } },
      [COMMIT_B]: { 'Q8_0/m-Q8_0-00002-of-00002.gguf': { content: q8b!, lfs: true } },
    }, { main: COMMIT_A, old: COMMIT_B });
    expect(removeGgufModel(cacheDir, 'org/gguf', 'main', 'Q8_0')).toEqual({
      repo: 'org/gguf', removedCommits: [], removedRefs: [], removedFiles: ['Q8_0/m-Q8_0-00001-of-00002.gguf', 'Q8_0/m-Q8_0-00002-of-00002.gguf'], freedBytes: q8a!.length, removedRepo: false,
    });
    expect(tree(path.join(cacheDir, 'models--org--gguf'))).toEqual([
      'blobs/',
      ...[sha256(q4!), sha256(q8b!)].sort().map((etag) => `blobs/${etag}`),
      'refs/',
      'refs/main',
      'refs/old',
      'snapshots/',
      `snapshots/${COMMIT_B}/`,
      `snapshots/${COMMIT_B}/Q8_0/`,
      `snapshots/${COMMIT_B}/Q8_0/m-Q8_0-00002-of-00002.gguf -> ../../../blobs/${sha256(q8b!)}`,
      `snapshots/${COMMIT_A}/`,
      `snapshots/${COMMIT_A}/m-Q4_K_M.gguf -> ../../blobs/${sha256(q4!)}`,
    ]);
    expect(() => removeGgufModel(cacheDir, 'org/gguf', 'main', 'Q5_K_M')).toThrow('no GGUF file in org/gguf matches "Q5_K_M"; available tags: Q4_K_M');
    // The last quantization of a snapshot takes the revision with it.
    expect(removeGgufModel(cacheDir, 'org/gguf', 'main', 'Q4_K_M')).toMatchObject({ removedCommits: [COMMIT_A], removedRefs: ['main'], removedFiles: ['m-Q4_K_M.gguf'], freedBytes: q4!.length });
  });
});
