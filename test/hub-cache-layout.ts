import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

// huggingface_hub's cache layout (file_download.py, utils/_cache_manager.py), written out from its
// documentation rather than through herd's code, for the tests to build caches "as Python does".

export const sha256 = (content: Buffer) => crypto.createHash('sha256').update(content).digest('hex');
/** git's blob id: the etag the Hub gives a file that is not in LFS. */
export const gitSha1 = (content: Buffer) => crypto.createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');

export interface CachedContent {
  content: Buffer;
  /** Stored in LFS on the Hub (weights): the blob is named by its sha256, else by its git sha1. */
  lfs: boolean;
}

/**
 * A cache as Python's hf_hub_download leaves it: models--org--name/blobs/<etag>, snapshots/<commit>/<path>
 * as relative links ../../blobs/<etag> (one ../ more per folder in the path), refs/<ref> holding the
 * bare commit.
 */
export function pythonStyleCache(cacheDir: string, repo: string, snapshots: Record<string, Record<string, CachedContent>>, refs: Record<string, string>): void {
  const repoFolder = path.join(cacheDir, `models--${repo.replace('/', '--')}`);
  for (const [commit, files] of Object.entries(snapshots)) {
    for (const [file, { content, lfs }] of Object.entries(files)) {
      const etag = lfs ? sha256(content) : gitSha1(content);
      fs.mkdirSync(path.join(repoFolder, 'blobs'), { recursive: true });
      fs.writeFileSync(path.join(repoFolder, 'blobs', etag), content);
      const pointer = path.join(repoFolder, 'snapshots', commit, file);
      fs.mkdirSync(path.dirname(pointer), { recursive: true });
      fs.symlinkSync(`${'../'.repeat(file.split('/').length + 1)}blobs/${etag}`, pointer);
    }
  }
  for (const [ref, commit] of Object.entries(refs)) {
    fs.mkdirSync(path.dirname(path.join(repoFolder, 'refs', ref)), { recursive: true });
    fs.writeFileSync(path.join(repoFolder, 'refs', ref), commit);
  }
}

/** A fixture folder's files (the names given, or all) as cache contents; weights and GGUF files count as LFS. */
export function folderContents(folder: string, names: readonly string[] = fs.readdirSync(folder)): Record<string, CachedContent> {
  return Object.fromEntries(names.map((name) => [name, { content: fs.readFileSync(path.join(folder, name)), lfs: /\.(safetensors|gguf)$/.test(name) }]));
}
