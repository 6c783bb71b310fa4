import { listFiles } from '@huggingface/hub';
import { HerdError } from '../errors.js';
import type { HubClient } from './http.js';
import { repoKind } from './repo-type.js';
import type { RepoFile } from './select-files.js';

/**
 * The three questions herd asks the Hub: which commit a revision names, which files that commit
 * holds (with their hashes), and where a file's bytes are. The paths are the Hub's HTTP API, as
 * huggingface_hub and huggingface.js call it.
 */

const COMMIT = /^[0-9a-f]{40}$/;

export function isCommitHash(revision: string): boolean {
  return COMMIT.test(revision);
}

/** /api/models/{id} or /api/datasets/{id}. */
function apiPath(repo: string): string {
  const { type, id } = repoKind(repo);
  return `/api/${type}s/${id}`;
}

/** The commit a branch, tag or commit names: `sha` of GET /api/models/{repo}/revision/{rev} (/api/datasets/… for a dataset). */
export async function resolveRevision(client: HubClient, repo: string, revision: string): Promise<string> {
  const url = `${client.endpoint}${apiPath(repo)}/revision/${encodeURIComponent(revision)}`;
  const response = await client.send(url, { headers: { Accept: 'application/json' }, redirect: 'follow' }, { repo, revision });
  const sha = ((await response.json()) as { sha?: unknown }).sha;
  if (typeof sha !== 'string' || !isCommitHash(sha)) throw new HerdError(`${client.endpoint} gave no commit for ${repo}@${revision}`, { kind: 'network' });
  return sha;
}

/** What the tree listing says of one entry (GET /api/models/{repo}/tree/{rev}?recursive=true). */
interface TreeEntry {
  type: 'file' | 'directory' | string;
  path: string;
  oid: string;
  size: number;
  lfs?: { oid: string; size: number; pointerSize: number };
}

/** Every file of a commit, through every page of the listing (huggingface.js's listFiles follows Link: rel="next"). */
export async function listRepoFiles(client: HubClient, repo: string, commit: string): Promise<RepoFile[]> {
  const files: RepoFile[] = [];
  const entries = listFiles({
    repo: { type: repoKind(repo).type, name: repoKind(repo).id },
    revision: commit,
    recursive: true,
    hubUrl: client.endpoint,
    // The client adds the token, retries, and turns the Hub's errors into herd's.
    fetch: (url: string | URL | Request) => client.send(String(url), { headers: { Accept: 'application/json' }, redirect: 'follow' }, { repo, revision: commit }),
  }) as AsyncGenerator<TreeEntry>;
  for await (const entry of entries) {
    if (entry.type !== 'file') continue;
    // An LFS file's size is its content's; the tree's `size` is that too, but lfs.size says it surely.
    files.push({ path: entry.path, size: entry.lfs?.size ?? entry.size, gitSha1: entry.oid, ...(entry.lfs && { lfsSha256: entry.lfs.oid }) });
  }
  return files;
}

/** What the Hub says of a file on /resolve, read from its answer (the redirect itself for LFS files). */
export interface FileBody {
  response: Response;
  /** X-Linked-Etag (LFS) or ETag, without quotes or W/: the blob's name in the cache. */
  etag: string | undefined;
  /** X-Repo-Commit. */
  commit: string | undefined;
  /** X-Linked-Size or Content-Length of the whole file, when the Hub gave it. */
  size: number | undefined;
}

/**
 * The bytes of `path` at `commit` from `offset` on, through {endpoint}/{repo}/resolve/{commit}/{path}.
 * Redirects are followed here, not by fetch: a relative one (a renamed repo) stays on the Hub
 * and keeps the token; the absolute one to the CDN carries its own signature and never the token.
 * The answer is 200 (the whole file) or 206 (from offset); a caller that asked for a range must
 * cope with 200, which a server ignoring Range sends. A 403 from the CDN (an expired signature)
 * is returned as it is, for the caller to resolve again.
 */
export async function openFile(client: HubClient, repo: string, commit: string, path: string, offset: number, signal?: AbortSignal): Promise<FileBody> {
  const subject = { repo, revision: commit, file: path };
  const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
  let url = `${client.endpoint}/${repo}/resolve/${commit}/${path.split('/').map(encodeURIComponent).join('/')}`;
  let linked: Pick<FileBody, 'etag' | 'commit' | 'size'> = { etag: undefined, commit: undefined, size: undefined };
  for (let hops = 0; hops < 10; hops++) {
    const onHub = new URL(url).origin === new URL(client.endpoint).origin;
    const response = await client.send(url, { headers, signal }, subject, (status) => !onHub && status === 403);
    if (response.status >= 300 && response.status < 400) {
      const location = response.headers.get('location');
      if (location === null) throw new HerdError(`${new URL(url).host} redirected ${repo} ${path} nowhere (no Location)`, { kind: 'network' });
      linked = { ...linked, ...definedOnly(fileFacts(response.headers)) };
      await response.body?.cancel();
      url = new URL(location, url).href;
      continue;
    }
    return { response, ...definedOnly(fileFacts(response.headers)), ...definedOnly(linked) } as FileBody;
  }
  throw new HerdError(`too many redirects for ${repo} ${path}`, { kind: 'network' });
}

/** The file facts a /resolve answer carries. Content-Length counts only for a whole-file answer. */
function fileFacts(headers: Headers): Pick<FileBody, 'etag' | 'commit' | 'size'> {
  const linkedSize = headers.get('x-linked-size');
  return {
    etag: normalizeEtag(headers.get('x-linked-etag') ?? headers.get('etag')),
    commit: headers.get('x-repo-commit') ?? undefined,
    size: linkedSize === null ? undefined : Number(linkedSize),
  };
}

/** `W/"abc"` → `abc`, as huggingface_hub's _normalize_etag. */
export function normalizeEtag(etag: string | null): string | undefined {
  if (etag === null) return undefined;
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

function definedOnly<T extends object>(object: T): Partial<T> {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined)) as Partial<T>;
}
