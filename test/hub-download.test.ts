import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { readGgufModel } from '../src/formats/gguf-split.js';
import { acquireBlobLock } from '../src/hub/blob-lock.js';
import { pullModel, type EnsureOptions } from '../src/hub/ensure.js';
import type { DownloadProgress } from '../src/hub/download-files.js';
import { HerdError, HerdInterrupted } from '../src/errors.js';
import { GGUF_LLAMACPP, STORIES } from './fixtures.js';
import { blobNameFor, expectedCacheTree, fakeHubSuite, filesOf, listTree, type FakeFile, type FakeHub } from './fake-hub.js';
import { writeSplitGguf } from './gguf-rewrite.js';
import { HANG_GUARD_MS } from './hang-guard.js';

// herd's download side against a fake Hub (test/fake-hub.ts), in process: the cache layout it
// writes, what it asks for, and how it survives the failures the fake injects. Reference values
// are the fixture files themselves and their hashes, computed here from their definitions.

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-hub-download-'));
let hub: FakeHub;
const STORIES_FILES = filesOf(STORIES, { skip: ['reference.json'] });
/** What herd takes from a safetensors repo: the weights, configs and tokenizer files (not README.md or LICENSE). */
const TAKEN = STORIES_FILES.filter((file) => /\.(json|safetensors)$/.test(file.path)).sort((a, b) => a.path.localeCompare(b.path));
const WEIGHTS = 'model.safetensors';
const weightsSize = fs.statSync(path.join(STORIES, WEIGHTS)).size;

// A GGUF repo laid out as the big ones are: a split quantization in a folder, single files beside it.
const ggufDir = path.join(work, 'gguf');

const suite = fakeHubSuite(work, (started) => {
  hub = started;
  hub.addRepo('karpathy/stories', [...STORIES_FILES, { path: 'original/consolidated.00.pth', content: Buffer.from('not for herd'), lfs: true }]);
  hub.addRepo('meta-llama/gated-stories', STORIES_FILES, { gated: true });
  fs.mkdirSync(ggufDir);
  writeSplitGguf(path.join(GGUF_LLAMACPP, 'model-Q4_K_M.gguf'), path.join(ggufDir, 'tiny-Q4_K_M'), 2);
  const q5 = fs.readFileSync(path.join(GGUF_LLAMACPP, 'model-Q5_K_M.gguf'));
  const ggufFiles: FakeFile[] = [
    ...filesOf(ggufDir, { prefix: 'Q4_K_M/' }),
    { path: 'tiny-Q8_0.gguf', content: fs.readFileSync(path.join(GGUF_LLAMACPP, 'model-Q8_0.gguf')), lfs: true },
    { path: 'tiny-Q5_K_M.gguf', content: q5, lfs: true },
    { path: 'tiny-chat-Q5_K_M.gguf', content: q5, lfs: true },
    { path: 'README.md', content: Buffer.from('# tiny GGUF\n'), lfs: false },
  ];
  hub.addRepo('org/tiny-GGUF', ggufFiles);
});

/** A fresh, empty cache folder and the environment that points herd at it and the fake Hub. */
const freshCache = (extra: NodeJS.ProcessEnv = {}) => suite.cacheEnv({ HF_HUB_DOWNLOAD_TIMEOUT: '5', ...extra });

/** Backoffs are recorded, never waited. */
function pull(repo: string, env: NodeJS.ProcessEnv, options: EnsureOptions & { quant?: string; revision?: string } = {}) {
  const sleeps: number[] = [];
  const { quant, revision, ...rest } = options;
  const result = pullModel({ repo, ...(quant && { quant }), ...(revision && { revision }) }, { env, client: { sleep: async (ms) => void sleeps.push(ms) }, ...rest });
  return { result, sleeps };
}


describe('a download into the huggingface_hub cache layout', () => {
  test('org/name lands as refs/main, blobs named by their hashes and relative links, and nothing else', async () => {
    const { cache, env } = freshCache();
    const pulled = await pull('karpathy/stories', env).result;
    const commit = hub.repos.get('karpathy/stories')!.refs.main!;
    const repoDir = path.join(cache, 'models--karpathy--stories');
    expect(pulled.commit).toBe(commit);
    expect(pulled.modelPath).toBe(path.join(repoDir, 'snapshots', commit));
    // refs/main: the 40-hex commit, no newline.
    expect(fs.readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8')).toBe(commit);
    expect(listTree(cache)).toEqual(expectedCacheTree('karpathy/stories', commit, TAKEN));
    // Each blob is its file's content, and its name is that content's hash.
    for (const file of TAKEN) {
      expect(fs.readFileSync(path.join(pulled.snapshot, file.path)).equals(file.content)).toBe(true);
    }
    // The listing took more than one page, and original/*.pth was never asked for.
    expect(hub.requests.filter((r) => r.kind === 'tree').length).toBeGreaterThan(1);
    expect(hub.fileRequests().map((r) => r.file)).not.toContain('original/consolidated.00.pth');
  });

  test('a second run asks only for the revision; a commit hash or HF_HUB_OFFLINE=1 asks nothing', async () => {
    const { env } = freshCache();
    const first = await pull('karpathy/stories', env).result;
    hub.resetCounts();
    const again = await pull('karpathy/stories', env).result;
    expect(again.modelPath).toBe(first.modelPath);
    expect(hub.fileRequests()).toEqual([]);
    expect(hub.requests.map((r) => r.kind)).toEqual(['revision']);
    hub.resetCounts();
    await pull('karpathy/stories', env, { revision: first.commit }).result;
    await pull('karpathy/stories', { ...env, HF_HUB_OFFLINE: '1' }).result;
    expect(hub.requests).toEqual([]);
  });

  test('offline, a model missing from the cache is one clear error, and no request is made', async () => {
    const { env } = freshCache({ HF_HUB_OFFLINE: '1' });
    await expect(pull('karpathy/stories', env).result).rejects.toThrow(/^HF_HUB_OFFLINE is set and karpathy\/stories is not in the cache \(.*\): run herd pull karpathy\/stories online first$/);
    expect(hub.requests).toEqual([]);
  });

  test('the token goes to the Hub and never to the CDN', async () => {
    const { env } = freshCache({ HF_TOKEN: 'hf_reader' });
    await pull('karpathy/stories', env).result;
    const cdn = hub.requests.filter((r) => r.origin === 'cdn');
    expect(cdn.length).toBeGreaterThan(0);
    expect(cdn.every((r) => r.authorization === undefined)).toBe(true);
    expect(hub.requests.filter((r) => r.origin === 'hub').every((r) => r.authorization === 'Bearer hf_reader')).toBe(true);
  });
});

describe('downloads that fail part way', () => {
  test('a dropped connection resumes from what arrived: only bytes lost in flight are sent twice, and counted', async () => {
    const { cache, env } = freshCache();
    hub.faults.drop = { file: WEIGHTS, afterBytes: 300_000, times: 2 };
    const pulled = await pull('karpathy/stories', env).result;
    expect(fs.readFileSync(path.join(pulled.snapshot, WEIGHTS)).equals(fs.readFileSync(path.join(STORIES, WEIGHTS)))).toBe(true);
    // Each retry asks for the rest from what the partial file holds: at most the bytes the server
    // sent before it dropped (a few may still have been in flight), and more than the last retry.
    const starts = hub.requests.filter((r) => r.kind === 'cdn' && r.file === WEIGHTS).map((r) => Number(/^bytes=(\d+)-$/.exec(r.range ?? 'bytes=0-')![1]));
    expect(starts).toHaveLength(3);
    expect(starts[0]).toBe(0);
    expect(starts[1]).toBeGreaterThan(0);
    expect(starts[1]).toBeLessThanOrEqual(300_000);
    expect(starts[2]).toBeGreaterThan(starts[1]!);
    expect(starts[2]).toBeLessThanOrEqual(starts[1]! + 300_000);
    // Bytes sent twice are exactly those lost in flight at each drop: none when the client kept all.
    const resent = (300_000 - starts[1]!) + (starts[1]! + 300_000 - starts[2]!);
    expect(hub.bytesSentFor(WEIGHTS)).toBe(weightsSize + resent);
    expect(listTree(cache).filter((entry) => /herd-(partial|lock)/.test(entry))).toEqual([]);
  });

  test('Ctrl-C stops a download, even one waiting for bytes, and keeps what arrived for the next run', async () => {
    const { cache, env } = freshCache({ HF_HUB_DOWNLOAD_TIMEOUT: '600' });
    const partial = path.join(cache, 'models--karpathy--stories', 'blobs', `${blobNameFor(TAKEN.find((f) => f.path === WEIGHTS)!)}.herd-partial`);
    hub.faults.stall = { file: WEIGHTS, afterBytes: 200_000, times: 1 };
    let interrupted = false;
    const pulling = pull('karpathy/stories', env, { shouldStop: () => interrupted }).result;
    // Interrupt once the weights hold their 200,000 bytes and every other file is complete (on a
    // busy machine a small file may still be on its way when the weights stall).
    const blobs = path.dirname(partial);
    const othersDone = () => TAKEN.filter((f) => f.path !== WEIGHTS).every((f) => fs.existsSync(path.join(blobs, blobNameFor(f))));
    while (!(fs.existsSync(partial) && fs.statSync(partial).size === 200_000 && othersDone())) await new Promise((resolve) => setTimeout(resolve, 20));
    interrupted = true;
    await expect(pulling).rejects.toThrow(new HerdInterrupted('the download of karpathy/stories stopped; 200000 of 1044992 bytes of model.safetensors are kept and the same command resumes from there'));
    expect(listTree(cache).filter((entry) => /herd-(partial|lock)/.test(entry))).toEqual([`models--karpathy--stories/blobs/${path.basename(partial)}`]);
    await pull('karpathy/stories', env).result;
    expect(hub.requests.filter((r) => r.kind === 'cdn' && r.file === WEIGHTS).map((r) => r.range)).toEqual([undefined, 'bytes=200000-']);
  });

  test('a server that ignores Range sends the whole file again, and the download starts over cleanly', async () => {
    const { env } = freshCache();
    hub.faults.drop = { file: WEIGHTS, afterBytes: 500_000, times: 1 };
    hub.faults.ignoreRange = { file: WEIGHTS, times: 1 };
    const pulled = await pull('karpathy/stories', env).result;
    expect(fs.readFileSync(path.join(pulled.snapshot, WEIGHTS)).equals(fs.readFileSync(path.join(STORIES, WEIGHTS)))).toBe(true);
    expect(hub.bytesSentFor(WEIGHTS)).toBe(weightsSize + 500_000);
  });

  test('a stalled download is dropped after HF_HUB_DOWNLOAD_TIMEOUT and resumed', async () => {
    const { env } = freshCache({ HF_HUB_DOWNLOAD_TIMEOUT: '0.3' });
    hub.faults.stall = { file: WEIGHTS, afterBytes: 100_000, times: 1 };
    const pulled = await pull('karpathy/stories', env).result;
    expect(fs.statSync(path.join(pulled.snapshot, WEIGHTS)).size).toBe(weightsSize);
    expect(hub.requests.filter((r) => r.kind === 'cdn' && r.file === WEIGHTS).map((r) => r.range)).toEqual([undefined, 'bytes=100000-']);
  });

  test('a corrupt byte fails with one line and publishes nothing of that file', async () => {
    const { cache, env } = freshCache();
    hub.faults.corrupt = { file: WEIGHTS, offset: 123_456, times: 1 };
    const error = await pull('karpathy/stories', env).result.catch((e: unknown) => e as HerdError);
    expect(error).toBeInstanceOf(HerdError);
    const weightsBlob = blobNameFor(STORIES_FILES.find((f) => f.path === WEIGHTS)!);
    expect((error as HerdError).message).toMatch(new RegExp(`^karpathy/stories model\\.safetensors arrived corrupt \\(sha256 [0-9a-f]{64}, expected ${weightsBlob}\\); nothing was kept, run again$`));
    const entries = listTree(cache);
    expect(entries.filter((entry) => entry.includes(weightsBlob) || entry.includes(WEIGHTS))).toEqual([]);
    expect(entries.some((entry) => entry.includes('refs/main'))).toBe(false);
  });

  test('an expired signed link is resolved again and the download continues', async () => {
    const { env } = freshCache();
    hub.faults.expireRedirects = { times: 1 };
    await pull('karpathy/stories', env).result;
    const refused = hub.requests.filter((r) => r.kind === 'cdn' && r.status === 403);
    expect(refused).toHaveLength(1);
    expect(hub.requests.filter((r) => r.kind === 'resolve' && r.file === refused[0]!.file)).toHaveLength(2);
  });

  test('429 then 200 is retried after the Retry-After asked for; 503 backs off exponentially', async () => {
    const { env } = freshCache();
    hub.faults.tooManyRequests = { file: 'config.json', times: 1, retryAfter: '7' };
    hub.faults.serverError = { file: 'tokenizer.json', times: 2 };
    const { result, sleeps } = pull('karpathy/stories', env);
    await result;
    expect(sleeps.sort((a, b) => a - b)).toEqual([1000, 2000, 7000]);
    expect(hub.requests.filter((r) => r.file === 'config.json').map((r) => r.status)).toEqual([429, 200]);
  });

  test('not enough disk space is refused before the first byte, with both numbers', async () => {
    hub.addRepo('org/huge', [...STORIES_FILES.filter((f) => f.path !== WEIGHTS), { path: WEIGHTS, content: Buffer.alloc(8), lfs: true, listedSize: 2 ** 60 }]);
    const { env } = freshCache();
    await expect(pull('org/huge', env).result).rejects.toThrow(/^not enough disk space in .*blobs: the download needs 1024\.0 PiB \(\d+ bytes\) and .* \(\d+ bytes\) is free$/);
    expect(hub.fileRequests()).toEqual([]);
  });
});

describe('the Hub says no', () => {
  test('a gated model: one message without a token, another for a token not approved yet, and an approved one downloads', async () => {
    const noToken = freshCache();
    await expect(pull('meta-llama/gated-stories', noToken.env).result).rejects.toThrow(
      `meta-llama/gated-stories is a gated model: accept its license at ${hub.endpoint}/meta-llama/gated-stories, then set HF_TOKEN to a token of that account`,
    );
    const pending = freshCache({ HF_TOKEN: 'hf_pending' });
    await expect(pull('meta-llama/gated-stories', pending.env).result).rejects.toThrow(
      `meta-llama/gated-stories is gated and this token's access is not approved yet (the request is pending or was declined): see ${hub.endpoint}/meta-llama/gated-stories`,
    );
    hub.approvedTokens.add('hf_granted');
    // The token file huggingface_hub's login writes, found through HF_TOKEN_PATH.
    const tokenFile = path.join(work, 'token');
    fs.writeFileSync(tokenFile, 'hf_granted\n');
    const granted = freshCache({ HF_TOKEN_PATH: tokenFile });
    expect((await pull('meta-llama/gated-stories', granted.env).result).modelPath).not.toBeNull();
  });

  test('an unknown repo, an unknown revision, and no network are one line each', async () => {
    const { env } = freshCache();
    await expect(pull('org/absent', env).result).rejects.toThrow(`no model org/absent on ${hub.endpoint} (a private one needs HF_TOKEN)`);
    await expect(pull('karpathy/stories', env, { revision: 'v9' }).result).rejects.toThrow('karpathy/stories has no revision v9 (a branch, tag or commit)');
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await expect(pull('karpathy/stories', { ...env, HF_ENDPOINT: `http://127.0.0.1:${port}` }).result).rejects.toThrow(
      `cannot reach http://127.0.0.1:${port} (ECONNREFUSED): check the network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only the cache`,
    );
  });

  test('without a network, a model the cache holds still runs', async () => {
    const { env } = freshCache();
    const first = await pull('karpathy/stories', env).result;
    const again = await pull('karpathy/stories', { ...env, HF_ENDPOINT: 'http://127.0.0.1:9' }).result;
    expect(again.modelPath).toBe(first.modelPath);
  });
});

describe('GGUF repositories', () => {
  test(':Q4_K_M takes exactly its two split parts, from their folder, and loads as one model', async () => {
    const { cache, env } = freshCache();
    const pulled = await pull('org/tiny-GGUF', env, { quant: 'Q4_K_M' }).result;
    expect(hub.fileRequests().filter((r) => r.kind === 'resolve').map((r) => r.file).sort()).toEqual(['Q4_K_M/tiny-Q4_K_M-00001-of-00002.gguf', 'Q4_K_M/tiny-Q4_K_M-00002-of-00002.gguf']);
    expect(pulled.modelPath).toBe(path.join(pulled.snapshot, 'Q4_K_M', 'tiny-Q4_K_M-00001-of-00002.gguf'));
    const links = listTree(cache).filter((entry) => entry.includes(' -> '));
    expect(links).toHaveLength(2);
    // One folder deeper: one more ../ in the relative link.
    for (const link of links) expect(link).toMatch(/ -> \.\.\/\.\.\/\.\.\/blobs\/[0-9a-f]{64}$/);
    const whole = readGgufModel(pulled.modelPath!, { headerOnly: true });
    expect(whole.tensors.size).toBe(readGgufModel(path.join(GGUF_LLAMACPP, 'model-Q4_K_M.gguf'), { headerOnly: true }).tensors.size);
  });

  test('a tag two files share lists both; an unknown one lists the tags there are', async () => {
    const { env } = freshCache();
    await expect(pull('org/tiny-GGUF', env, { quant: 'Q5_K_M' }).result).rejects.toThrow(/tiny-Q5_K_M\.gguf.*tiny-chat-Q5_K_M\.gguf|tiny-chat-Q5_K_M\.gguf.*tiny-Q5_K_M\.gguf/);
    await expect(pull('org/tiny-GGUF', env, { quant: 'Q2_K' }).result).rejects.toThrow(/Q4_K_M.*Q8_0/);
    expect(hub.fileRequests()).toEqual([]);
  });
});

describe('two downloads of one blob', () => {
  test('a lock held by a live process is waited for; the blob is then downloaded once', async () => {
    const { cache, env } = freshCache();
    const weights = STORIES_FILES.find((f) => f.path === WEIGHTS)!;
    const blobs = path.join(cache, 'models--karpathy--stories', 'blobs');
    fs.mkdirSync(blobs, { recursive: true });
    const held = await acquireBlobLock(path.join(blobs, `${blobNameFor(weights)}.herd-lock`));
    let waitedFor: string | undefined;
    const progress: DownloadProgress = { start() {}, advance() {}, fileDone() {}, stop() {}, waiting: (file) => void (waitedFor = file.path) };
    const pulling = pull('karpathy/stories', env, { progress }).result;
    while (waitedFor === undefined) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(waitedFor).toBe(WEIGHTS);
    expect(hub.requests.filter((r) => r.file === WEIGHTS)).toEqual([]);
    held.release();
    await pulling;
    expect(hub.requests.filter((r) => r.kind === 'cdn' && r.file === WEIGHTS)).toHaveLength(1);
  });

  test('a lock left by a process that is gone is taken over', async () => {
    const { cache, env } = freshCache();
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8', timeout: HANG_GUARD_MS }).stdout;
    const weights = STORIES_FILES.find((f) => f.path === WEIGHTS)!;
    const blobs = path.join(cache, 'models--karpathy--stories', 'blobs');
    fs.mkdirSync(blobs, { recursive: true });
    fs.writeFileSync(path.join(blobs, `${blobNameFor(weights)}.herd-lock`), `${os.hostname()} ${gone}\n`);
    await pull('karpathy/stories', env).result;
    expect(fs.readdirSync(blobs).filter((name) => name.includes('herd-'))).toEqual([]);
  });

  test('two pulls at once fetch each blob once', async () => {
    const { env } = freshCache();
    await Promise.all([pull('karpathy/stories', env).result, pull('karpathy/stories', env).result]);
    const perFile = new Map<string, number>();
    for (const r of hub.requests.filter((r) => r.kind === 'resolve')) perFile.set(r.file!, (perFile.get(r.file!) ?? 0) + 1);
    expect([...perFile.values()].every((count) => count === 1)).toBe(true);
    expect(perFile.size).toBe(TAKEN.length);
  });
});

describe('proxies', () => {
  test('HTTP_PROXY carries the requests to the Hub and the CDN; a host NO_PROXY names bypasses it', async () => {
    const tunnels: string[] = [];
    // A proxy as undici uses one: a CONNECT tunnel to each origin.
    const proxy = http.createServer();
    const sockets: net.Socket[] = [];
    proxy.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
      tunnels.push(req.url!);
      sockets.push(client);
      const [host, port] = req.url!.split(':');
      const upstream = net.connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    try {
      await pull('karpathy/stories', freshCache({ HTTP_PROXY: proxyUrl }).env).result;
      expect(new Set(tunnels)).toEqual(new Set([new URL(hub.endpoint).host, new URL(hub.cdnOrigin).host]));
      tunnels.length = 0;
      // The Hub is 127.0.0.1, the CDN localhost: only the CDN still goes through the proxy.
      await pull('karpathy/stories', freshCache({ HTTP_PROXY: proxyUrl, NO_PROXY: '127.0.0.1' }).env).result;
      expect(new Set(tunnels)).toEqual(new Set([new URL(hub.cdnOrigin).host]));
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });
});
