/**
 * A fake Hugging Face Hub for the tests, on two node:http servers on 127.0.0.1: the Hub itself
 * (the API and /resolve) and a separate "CDN" origin that /resolve redirects LFS files to with a
 * signed, expiring query string, as the real Hub does. It speaks the protocol huggingface_hub and
 * huggingface.js speak (the paths, headers and error codes of huggingface_hub's file_download.py
 * and hf_api.py), serves repos built from real fixture files with their real sha256 and git sha1,
 * counts every request, and has fault knobs for the failures a download must survive.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { gitSha1, sha256 } from './hub-cache-layout.js';

export interface FakeFile {
  path: string;
  content: Buffer;
  /** Stored in LFS: served from the CDN through a redirect, named by its sha256 in the cache. */
  lfs: boolean;
  /** A size the listing claims instead of the real one (to test the disk space check). */
  listedSize?: number;
}

export interface FakeRepo {
  id: string;
  /** Branches and tags → commit. */
  refs: Record<string, string>;
  /** Each commit's files. */
  commits: Record<string, FakeFile[]>;
  gated: boolean;
}

/** A request as the fake Hub saw it. */
export interface SeenRequest {
  origin: 'hub' | 'cdn';
  kind: 'revision' | 'tree' | 'resolve' | 'cdn' | 'other';
  method: string;
  url: string;
  repo?: string;
  file?: string;
  range?: string;
  authorization?: string;
  status: number;
  /** Body bytes sent before the answer ended (or was cut). */
  bytesSent: number;
}

/** Faults, each applied to the next requests for `file` (any file when absent) and used up. */
export interface Faults {
  /** Cut the connection after this many body bytes. */
  drop?: { file?: string; afterBytes: number; times: number };
  /** Send this many bytes, then nothing until the client gives up. */
  stall?: { file?: string; afterBytes: number; times: number };
  /** Answer 429 with Retry-After first. */
  tooManyRequests?: { file?: string; times: number; retryAfter: string };
  /** Answer 503 first. */
  serverError?: { file?: string; times: number };
  /** Send the whole file (200) whatever Range asks. */
  ignoreRange?: { file?: string; times: number };
  /** Flip the byte at this offset of the file. */
  corrupt?: { file?: string; offset: number; times: number };
  /** Sign the next redirects with an expiry already past, so that the CDN refuses them (403). */
  expireRedirects?: { times: number };
}

/** Commit hashes are git's: 40 hex digits. The fake makes them from the files it serves. */
function fakeCommit(repo: string, files: readonly FakeFile[], salt = ''): string {
  const hash = crypto.createHash('sha1').update(`${repo}\n${salt}\n`);
  for (const file of files) hash.update(`${file.path}\0${gitSha1(file.content)}\n`);
  return hash.digest('hex');
}

/** The files of a fixture folder (links followed), with the Hub's usual LFS rule: weights and big tokenizers. */
export function filesOf(folder: string, options: { skip?: readonly string[]; prefix?: string } = {}): FakeFile[] {
  return fs.readdirSync(folder).filter((name) => !(options.skip ?? []).includes(name)).sort().map((name) => ({
    path: `${options.prefix ?? ''}${name}`,
    content: fs.readFileSync(path.join(folder, name)),
    lfs: isLfsName(name),
  }));
}

export function isLfsName(name: string): boolean {
  return /\.(safetensors|gguf|bin|pth|pt)$/.test(name) || name === 'tokenizer.json';
}

export class FakeHub {
  readonly repos = new Map<string, FakeRepo>();
  readonly requests: SeenRequest[] = [];
  faults: Faults = {};
  /** Tokens whose owners were granted the gated repos; any other token is "pending". */
  readonly approvedTokens = new Set<string>();
  /** Entries per page of the tree listing. */
  pageSize = 4;
  private readonly hubServer = http.createServer((req, res) => this.handleHub(req, res));
  private readonly cdnServer = http.createServer((req, res) => this.handleCdn(req, res));
  private readonly secret = crypto.randomBytes(16).toString('hex');
  private readonly stalled = new Set<http.ServerResponse>();
  endpoint = '';
  cdnOrigin = '';

  static async start(): Promise<FakeHub> {
    const hub = new FakeHub();
    hub.endpoint = await listen(hub.hubServer);
    // Another host name for the same loopback address: clients (herd, huggingface_hub) tell the
    // Hub from the CDN by host, and must not send the token there.
    hub.cdnOrigin = (await listen(hub.cdnServer)).replace('127.0.0.1', 'localhost');
    return hub;
  }

  /** Adds a repo whose `main` is a commit of `files`; returns that commit. A dataset's id is `datasets/org/name`, its path on the Hub. */
  addRepo(id: string, files: FakeFile[], options: { gated?: boolean } = {}): string {
    const commit = fakeCommit(id, files);
    this.repos.set(id, { id, refs: { main: commit }, commits: { [commit]: files }, gated: options.gated ?? false });
    return commit;
  }

  /** Adds another commit to a repo under `ref` (a branch or tag); returns it. */
  addCommit(id: string, ref: string, files: FakeFile[]): string {
    const repo = this.repos.get(id)!;
    const commit = fakeCommit(id, files, ref);
    repo.commits[commit] = files;
    repo.refs[ref] = commit;
    return commit;
  }

  /** The requests for a file's content: /resolve (answered with the bytes or a redirect) and the CDN. */
  fileRequests(): SeenRequest[] {
    return this.requests.filter((r) => r.kind === 'resolve' || r.kind === 'cdn');
  }

  /** Bytes sent for a file beyond its size: what a resume saved is what this is not. */
  bytesSentFor(file: string): number {
    return this.requests.filter((r) => r.file === file).reduce((sum, r) => sum + r.bytesSent, 0);
  }

  resetCounts(): void {
    this.requests.length = 0;
  }

  async close(): Promise<void> {
    for (const res of this.stalled) res.destroy();
    await Promise.all([this.hubServer, this.cdnServer].map((server) => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    })));
  }

  // --- the Hub: /api/models/{repo}/revision/{rev}, /api/models/{repo}/tree/{rev}, /{repo}/resolve/{rev}/{path};
  // datasets at /api/datasets/{id}/…, /datasets/{id}/resolve/…, kept under the repo id datasets/{id}.

  private handleHub(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url!, this.endpoint);
    const seen = this.see('hub', req, url);
    let match: RegExpExecArray | null;
    const repoOf = (type: string, id: string) => (type === 'datasets' ? `datasets/${id}` : id);
    if ((match = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname))) {
      seen.kind = 'revision';
      this.answerRevision(res, seen, repoOf(match[1]!, match[2]!), decodeURIComponent(match[3]!));
    } else if ((match = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(url.pathname))) {
      seen.kind = 'tree';
      this.answerTree(res, seen, url, repoOf(match[1]!, match[2]!), decodeURIComponent(match[3]!));
    } else if ((match = /^\/((?:datasets\/)?[^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname))) {
      seen.kind = 'resolve';
      this.answerResolve(req, res, seen, match[1]!, decodeURIComponent(match[2]!), match[3]!.split('/').map(decodeURIComponent).join('/'));
    } else {
      this.fail(res, seen, 404, undefined, 'not found');
    }
  }

  private answerRevision(res: http.ServerResponse, seen: SeenRequest, repoId: string, revision: string): void {
    seen.repo = repoId;
    const found = this.findCommit(res, seen, repoId, revision);
    if (found === undefined) return;
    this.json(res, seen, { id: repoId, sha: found.commit, siblings: found.files.map((file) => ({ rfilename: file.path })) });
  }

  /** The recursive listing, pageSize entries a page, the next page in a Link header (as the Hub paginates). */
  private answerTree(res: http.ServerResponse, seen: SeenRequest, url: URL, repoId: string, revision: string): void {
    seen.repo = repoId;
    const found = this.findCommit(res, seen, repoId, revision);
    if (found === undefined) return;
    const entries = treeEntries(found.files);
    const start = Number(url.searchParams.get('cursor') ?? 0);
    const page = entries.slice(start, start + this.pageSize);
    if (start + this.pageSize < entries.length) {
      const next = new URL(url.href);
      next.searchParams.set('cursor', String(start + this.pageSize));
      res.setHeader('Link', `<${next.href}>; rel="next"`);
    }
    this.json(res, seen, page);
  }

  private answerResolve(req: http.IncomingMessage, res: http.ServerResponse, seen: SeenRequest, repoId: string, revision: string, filePath: string): void {
    seen.repo = repoId;
    seen.file = filePath;
    if (this.useFault('tooManyRequests', filePath)) {
      res.setHeader('Retry-After', this.faults.tooManyRequests!.retryAfter);
      return this.fail(res, seen, 429, undefined, 'rate limited');
    }
    if (this.useFault('serverError', filePath)) return this.fail(res, seen, 503, undefined, 'unavailable');
    const repo = this.repos.get(repoId);
    if (repo?.gated) {
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (token === undefined) return this.fail(res, seen, 401, 'GatedRepo', `Access to model ${repoId} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
      if (!this.approvedTokens.has(token)) return this.fail(res, seen, 403, 'GatedRepo', `Access to model ${repoId} is restricted and you are not in the authorized list. Visit ${this.endpoint}/${repoId} to ask for access.`);
    }
    const found = this.findCommit(res, seen, repoId, revision);
    if (found === undefined) return;
    const file = found.files.find((candidate) => candidate.path === filePath);
    if (file === undefined) return this.fail(res, seen, 404, 'EntryNotFound', `${filePath} does not exist on "${revision}"`);
    res.setHeader('X-Repo-Commit', found.commit);
    if (file.lfs) {
      const expired = this.useFault('expireRedirects', undefined);
      const expires = expired ? Math.floor(Date.now() / 1000) - 60 : Math.floor(Date.now() / 1000) + 3600;
      const location = new URL(`/repos/${sha256(file.content)}`, this.cdnOrigin);
      location.searchParams.set('file', filePath);
      location.searchParams.set('Expires', String(expires));
      location.searchParams.set('Signature', this.sign(location.pathname, expires));
      res.writeHead(302, {
        Location: location.href,
        'X-Linked-Etag': `"${sha256(file.content)}"`,
        'X-Linked-Size': String(file.content.length),
        'Content-Length': 0,
      });
      seen.status = 302;
      res.end();
      return;
    }
    res.setHeader('ETag', `"${gitSha1(file.content)}"`);
    this.sendBody(req, res, seen, file);
  }

  // --- the CDN: /repos/{sha256}?Expires=…&Signature=…

  private handleCdn(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url!, this.cdnOrigin);
    const seen = this.see('cdn', req, url);
    seen.kind = 'cdn';
    seen.file = url.searchParams.get('file') ?? undefined;
    const expires = Number(url.searchParams.get('Expires'));
    if (url.searchParams.get('Signature') !== this.sign(url.pathname, expires)) return this.fail(res, seen, 403, undefined, 'bad signature');
    if (expires < Date.now() / 1000) return this.fail(res, seen, 403, undefined, 'Request has expired');
    const hash = url.pathname.split('/').pop();
    const file = [...this.repos.values()].flatMap((repo) => Object.values(repo.commits).flat()).find((candidate) => candidate.lfs && sha256(candidate.content) === hash);
    if (file === undefined) return this.fail(res, seen, 404, undefined, 'no such object');
    this.sendBody(req, res, seen, file);
  }

  /** The file's bytes, from Range's start when asked (206), with the faults that apply. */
  private sendBody(req: http.IncomingMessage, res: http.ServerResponse, seen: SeenRequest, file: FakeFile): void {
    let content = file.content;
    const corrupt = this.useFault('corrupt', file.path) ? this.faults.corrupt! : undefined;
    if (corrupt !== undefined) {
      content = Buffer.from(content);
      content[corrupt.offset] = content[corrupt.offset]! ^ 0xff;
    }
    const rangeStart = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1];
    const honourRange = rangeStart !== undefined && !this.useFault('ignoreRange', file.path);
    const start = honourRange ? Number(rangeStart) : 0;
    const headers: http.OutgoingHttpHeaders = { 'Content-Length': content.length - start, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
    if (honourRange) headers['Content-Range'] = `bytes ${start}-${content.length - 1}/${content.length}`;
    seen.status = honourRange ? 206 : 200;
    res.writeHead(seen.status, headers);
    if (req.method === 'HEAD') return void res.end();
    const body = content.subarray(start);
    const drop = this.useFault('drop', file.path) ? this.faults.drop!.afterBytes : undefined;
    const stall = this.useFault('stall', file.path) ? this.faults.stall!.afterBytes : undefined;
    const cut = Math.min(drop ?? Infinity, stall ?? Infinity, body.length);
    seen.bytesSent = cut;
    if (cut === body.length) return void res.end(body);
    res.write(body.subarray(0, cut), () => {
      // A clean close (FIN after the bytes) rather than a reset, so the client surely holds every
      // byte counted as sent; it still sees the body end short of Content-Length.
      if (drop !== undefined) res.socket?.end();
      else this.stalled.add(res);
    });
    res.on('close', () => this.stalled.delete(res));
  }

  // --- helpers

  private see(origin: 'hub' | 'cdn', req: http.IncomingMessage, url: URL): SeenRequest {
    const seen: SeenRequest = { origin, kind: 'other', method: req.method!, url: url.href, status: 0, bytesSent: 0, range: req.headers.range, authorization: req.headers.authorization };
    this.requests.push(seen);
    return seen;
  }

  /** The commit a revision names, or an error answer as the Hub gives it (RepoNotFound, RevisionNotFound). */
  private findCommit(res: http.ServerResponse, seen: SeenRequest, repoId: string, revision: string): { commit: string; files: FakeFile[] } | undefined {
    const repo = this.repos.get(repoId);
    if (repo === undefined) {
      // The Hub hides private repos: unknown and private look alike, 401 without a token.
      this.fail(res, seen, seen.authorization === undefined ? 401 : 404, 'RepoNotFound', `Repository Not Found for url: ${seen.url}.`);
      return undefined;
    }
    const commit = repo.commits[revision] !== undefined ? revision : repo.refs[revision];
    if (commit === undefined) {
      this.fail(res, seen, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`);
      return undefined;
    }
    return { commit, files: repo.commits[commit]! };
  }

  private fail(res: http.ServerResponse, seen: SeenRequest, status: number, code: string | undefined, message: string): void {
    seen.status = status;
    const body = JSON.stringify({ error: message });
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...(code && { 'X-Error-Code': code, 'X-Error-Message': message }) });
    res.end(body);
  }

  private json(res: http.ServerResponse, seen: SeenRequest, value: unknown): void {
    seen.status = 200;
    const body = JSON.stringify(value);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }

  private sign(pathname: string, expires: number): string {
    return crypto.createHmac('sha256', this.secret).update(`${pathname}:${expires}`).digest('hex');
  }

  /** Whether a fault applies to this request; using it counts down its `times`. */
  private useFault(name: keyof Faults, file: string | undefined): boolean {
    const fault = this.faults[name] as { file?: string; times: number } | undefined;
    if (fault === undefined || fault.times <= 0 || (fault.file !== undefined && fault.file !== file)) return false;
    fault.times--;
    return true;
  }
}

/** The Hub's recursive tree: directories first at each level, as `{type, oid, size, path, lfs?}`. */
function treeEntries(files: readonly FakeFile[]): unknown[] {
  const folders = [...new Set(files.flatMap((file) => file.path.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/'))))];
  return [
    ...folders.map((folder) => ({ type: 'directory', oid: crypto.createHash('sha1').update(folder).digest('hex'), size: 0, path: folder })),
    ...files.map((file) => {
      // An LFS file's git object is its pointer; the content is known by its sha256.
      const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(file.content)}\nsize ${file.content.length}\n`);
      return {
        type: 'file',
        oid: gitSha1(file.lfs ? pointer : file.content),
        size: file.listedSize ?? file.content.length,
        path: file.path,
        ...(file.lfs && { lfs: { oid: sha256(file.content), size: file.listedSize ?? file.content.length, pointerSize: pointer.length } }),
      };
    }),
  ].sort((a, b) => a.path.localeCompare(b.path));
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/**
 * One fake Hub for a test file: started before its tests with the repos `addRepos` adds, counts
 * and faults cleared before each test, closed (and `work` removed) after them. `cacheEnv` gives
 * a fresh cache folder and the variables that point herd at it and at the fake Hub.
 */
export function fakeHubSuite(work: string, addRepos: (hub: FakeHub) => void): { cacheEnv(extra?: NodeJS.ProcessEnv): { cache: string; env: NodeJS.ProcessEnv } } {
  let hub: FakeHub | undefined;
  let caches = 0;
  beforeAll(async () => {
    hub = await FakeHub.start();
    addRepos(hub);
  });
  afterAll(async () => {
    await hub?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });
  beforeEach(() => {
    hub!.resetCounts();
    hub!.faults = {};
  });
  return {
    cacheEnv(extra = {}) {
      const cache = path.join(work, `cache-${++caches}`);
      return { cache, env: { HF_HUB_CACHE: cache, HF_HOME: path.join(work, 'home'), HF_ENDPOINT: hub!.endpoint, ...extra } };
    },
  };
}

/** Every entry below a folder, sorted: folders end in `/`, links show `-> target`. */
export function listTree(folder: string, prefix = ''): string[] {
  return fs.readdirSync(folder, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name)).flatMap((entry) => {
    const full = path.join(folder, entry.name);
    const relative = `${prefix}${entry.name}`;
    if (entry.isSymbolicLink()) return [`${relative} -> ${fs.readlinkSync(full)}`];
    return entry.isDirectory() ? [`${relative}/`, ...listTree(full, `${relative}/`)] : [relative];
  });
}

/** A file's blob name in the cache: the sha256 of an LFS file's content, git's blob sha1 of the rest. */
export function blobNameFor(file: FakeFile): string {
  return file.lfs ? sha256(file.content) : gitSha1(file.content);
}

/**
 * What listTree shows of a cache holding exactly `files` of one commit of `repo` on main, as
 * huggingface_hub lays it out: each blob once under its hash, refs/main, and a relative link per
 * file (top-level files here, so `../../blobs/`). Written from the layout's description, not from
 * herd's code.
 */
export function expectedCacheTree(repo: string, commit: string, files: readonly FakeFile[]): string[] {
  const folder = `models--${repo.replace('/', '--')}`;
  const sorted = [...files].sort((a, b) => a.path.localeCompare(b.path));
  return [
    `${folder}/`,
    `${folder}/blobs/`,
    ...[...new Set(sorted.map(blobNameFor))].sort().map((blob) => `${folder}/blobs/${blob}`),
    `${folder}/refs/`,
    `${folder}/refs/main`,
    `${folder}/snapshots/`,
    `${folder}/snapshots/${commit}/`,
    ...sorted.map((file) => `${folder}/snapshots/${commit}/${file.path} -> ../../blobs/${blobNameFor(file)}`),
  ];
}
