import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { scanCacheDir } from '@huggingface/hub';
import Ajv2020 from 'ajv/dist/2020.js';
import { pullModel } from '../src/hub/ensure.js';
import { STORIES, TINY_LLAMA, readJson } from './fixtures.js';
import { blobNameFor, expectedCacheTree, fakeHubSuite, filesOf, listTree, type FakeHub } from './fake-hub.js';
import { HANG_GUARD_MS } from './hang-guard.js';
import { sha256 } from './hub-cache-layout.js';
import { BIN } from './herd-cli.js';

// Models by name through the built CLI against the fake Hub (test/fake-hub.ts): `herd generate
// --model org/tiny` downloads and reproduces the fixture's reference tokens, the cache is laid out
// file by file as huggingface_hub lays it out, a second run and an offline run ask for no file,
// a killed download resumes in the next run, and other readers of the cache (@huggingface/hub's
// scanner, Python's huggingface_hub where installed) find what herd wrote.

const SCHEMA_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../docs/schemas');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-hub-cli-'));
const TINY_FILES = filesOf(TINY_LLAMA, { skip: ['reference.json'] });
/** What herd takes from tiny-llama-3.1: weights, index, configs and tokenizer files, not README.md. */
const TINY_TAKEN = TINY_FILES.filter((file) => file.path !== 'README.md').sort((a, b) => a.path.localeCompare(b.path));
const FIRST_SHARD = 'model-00001-of-00002.safetensors';
const tiny = readJson<{ cases: Array<{ name: string; prompt_ids: number[]; generated_ids: number[] }> }>(path.join(TINY_LLAMA, 'reference.json')).cases.find((c) => c.name === 'capital')!;
let hub: FakeHub;

const suite = fakeHubSuite(work, (started) => {
  hub = started;
  hub.addRepo('org/tiny', [...TINY_FILES, { path: 'original/consolidated.00.pth', content: Buffer.from('Meta format weights'), lfs: true }]);
  hub.addRepo('karpathy/stories', filesOf(STORIES, { skip: ['reference.json'] }));
  hub.addRepo('meta-llama/gated', filesOf(STORIES, { skip: ['reference.json'] }), { gated: true });
});

/** A fresh cache and the environment that points the CLI at it and at the fake Hub, with no token or proxy of this machine's. */
function environment(extra: NodeJS.ProcessEnv = {}): { cache: string; env: NodeJS.ProcessEnv } {
  const { NODE_ENV: _test, HF_TOKEN: _token, HF_HUB_OFFLINE: _offline, HF_HUB_DISABLE_PROGRESS_BARS: _bars, HTTPS_PROXY: _a, HTTP_PROXY: _b, https_proxy: _c, http_proxy: _d, ...base } = process.env;
  const { cache, env } = suite.cacheEnv({ HERD_HUB_RETRY_BASE_MS: '1', ...extra });
  return { cache, env: { ...base, ...env } };
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The built CLI as a child process, without blocking this process: the fake Hub answering it runs
 * here. `whileRunning` may act on the child (to kill it) before it exits.
 */
function herdAsync(args: string[], env: NodeJS.ProcessEnv, input = '', whileRunning?: (child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const guard = setTimeout(() => child.kill('SIGKILL'), HANG_GUARD_MS);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(guard);
      resolve({ status, stdout, stderr });
    });
    child.stdin.end(input);
    whileRunning?.(child);
  });
}


const generateArgs = (model: string, tokens: number) => ['generate', '--model', model, '--prompt-ids', '-', '--json', '--temperature', '0', '-n', String(tokens)];

describe('herd generate --model org/tiny', () => {
  let cache = '';
  let env: NodeJS.ProcessEnv = {};
  beforeAll(() => ({ cache, env } = environment()));
  const commit = () => hub.repos.get('org/tiny')!.refs.main!;

  test('downloads the model and reproduces the reference tokens; the cache is huggingface_hub\'s layout, file by file', async () => {
    const run = await herdAsync(generateArgs('org/tiny', 16), env, JSON.stringify(tiny.prompt_ids));
    expect(run.stderr).not.toMatch(/^herd: /m);
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout).generated_ids).toEqual(tiny.generated_ids);
    // --json: no progress on stderr.
    expect(run.stderr).toBe('');
    expect(listTree(cache)).toEqual(expectedCacheTree('org/tiny', commit(), TINY_TAKEN));
    expect(fs.readFileSync(path.join(cache, 'models--org--tiny', 'refs', 'main'), 'utf8')).toBe(commit());
    // Each blob holds its file, so its name is the hash of its own content.
    for (const file of TINY_TAKEN) expect(fs.readFileSync(path.join(cache, 'models--org--tiny', 'blobs', blobNameFor(file))).equals(file.content)).toBe(true);
    expect(hub.fileRequests().map((r) => r.file)).not.toContain('original/consolidated.00.pth');
  });

  test('a second run makes no file request, only the revision check; HF_HUB_OFFLINE=1 makes no request at all', async () => {
    const again = await herdAsync(generateArgs('org/tiny', 2), env, JSON.stringify(tiny.prompt_ids));
    expect(again.status).toBe(0);
    expect(JSON.parse(again.stdout).generated_ids).toEqual(tiny.generated_ids.slice(0, 2));
    expect(hub.fileRequests()).toEqual([]);
    expect(hub.requests.map((r) => r.kind)).toEqual(['revision']);
    hub.resetCounts();
    const offline = await herdAsync(generateArgs('org/tiny', 2), { ...env, HF_HUB_OFFLINE: '1' }, JSON.stringify(tiny.prompt_ids));
    expect(offline.status).toBe(0);
    expect(JSON.parse(offline.stdout).generated_ids).toEqual(tiny.generated_ids.slice(0, 2));
    expect(hub.requests).toEqual([]);
  });

  test('@huggingface/hub\'s cache scanner finds what herd wrote', async () => {
    const scanned = await scanCacheDir(cache);
    expect(scanned.warnings).toEqual([]);
    expect(scanned.repos.map((repo) => repo.id)).toEqual([{ type: 'model', name: 'org/tiny' }]);
    const [revision] = scanned.repos[0]!.revisions;
    expect(revision!.commitOid).toBe(commit());
    expect(revision!.refs).toEqual(['main']);
    expect(revision!.files.map((file) => file.path.slice(revision!.path.length + 1)).sort()).toEqual(TINY_TAKEN.map((file) => file.path).sort());
    expect(scanned.size).toBe(TINY_TAKEN.reduce((sum, file) => sum + file.content.length, 0));
  });
});

describe('herd pull', () => {
  test('a download killed part way resumes in the next run from the bytes the partial file holds', async () => {
    const { cache, env } = environment({ HF_HUB_DOWNLOAD_TIMEOUT: '600' });
    const shard = TINY_FILES.find((file) => file.path === FIRST_SHARD)!;
    const partial = path.join(cache, 'models--org--tiny', 'blobs', `${sha256(shard.content)}.herd-partial`);
    const kept = 5_000_000;
    // The server sends `kept` bytes of the shard, then nothing: the child is killed while it waits.
    hub.faults.stall = { file: FIRST_SHARD, afterBytes: kept, times: 1 };
    const killed = await herdAsync(['pull', 'org/tiny'], env, '', (child) => {
      const poll = setInterval(() => {
        if (fs.existsSync(partial) && fs.statSync(partial).size === kept) {
          clearInterval(poll);
          child.kill('SIGKILL');
        }
      }, 50);
      child.on('close', () => clearInterval(poll));
    });
    expect(killed.status).toBeNull();
    expect(fs.statSync(partial).size).toBe(kept);
    // The dead process's lock is left behind; the next run takes it over.
    expect(fs.existsSync(partial.replace('herd-partial', 'herd-lock'))).toBe(true);
    const resumed = await herdAsync(['pull', 'org/tiny', '--json'], env);
    expect(resumed.stderr).toBe('');
    expect(resumed.status).toBe(0);
    expect(hub.requests.filter((r) => r.kind === 'cdn' && r.file === FIRST_SHARD).map((r) => r.range)).toEqual([undefined, `bytes=${kept}-`]);
    expect(hub.bytesSentFor(FIRST_SHARD)).toBe(shard.content.length);
    const report = JSON.parse(resumed.stdout);
    const ajv = new Ajv2020.default({ allErrors: true, strict: true, allowUnionTypes: true });
    const validate = ajv.compile(JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, 'herd.pull.schema.json'), 'utf8')));
    expect(validate(report) ? 'valid' : ajv.errorsText(validate.errors)).toBe('valid');
    expect(report.model_path).toBe(path.join(cache, 'models--org--tiny', 'snapshots', hub.repos.get('org/tiny')!.refs.main!));
    expect(report.files.find((file: { path: string }) => file.path === FIRST_SHARD)).toEqual({ path: FIRST_SHARD, size: shard.content.length, blob: sha256(shard.content), downloaded: true });
    expect(listTree(cache).filter((entry) => /herd-(partial|lock)/.test(entry))).toEqual([]);
  });

  test('a gated model without a token is one line on stderr and one herd.error/1 object with --json', async () => {
    const { env } = environment();
    const run = await herdAsync(['pull', 'meta-llama/gated', '--json'], env);
    expect(run.status).toBe(1);
    expect(run.stderr).toBe(`herd: meta-llama/gated is a gated model: accept its license at ${hub.endpoint}/meta-llama/gated, then set HF_TOKEN to a token of that account\n`);
    expect(JSON.parse(run.stdout).error.type).toBe('network');
  });

  test('progress is plain lines on stderr in a pipe, none under HF_HUB_DISABLE_PROGRESS_BARS; the path to load is the one line on stdout', async () => {
    const stories = hub.repos.get('karpathy/stories')!;
    const shown = environment();
    const run = await herdAsync(['pull', 'karpathy/stories'], shown.env);
    expect(run.stdout).toBe(`${path.join(shown.cache, 'models--karpathy--stories', 'snapshots', stories.refs.main!)}\n`);
    const lines = run.stderr.trimEnd().split('\n');
    // The index-less repo: config, generation config, weights, special tokens, tokenizer and its config.
    expect(lines[0]).toBe(`downloading karpathy/stories@${stories.refs.main!.slice(0, 7)}: 6 files, 1.0 MiB`);
    expect(lines.slice(1, -1).sort()).toEqual(['  config.json (604 B)', '  generation_config.json (45 B)', '  model.safetensors (1020.5 KiB)', '  special_tokens_map.json (414 B)', '  tokenizer.json (14.4 KiB)', '  tokenizer_config.json (855 B)']);
    expect(lines.at(-1)).toMatch(/^downloaded 1\.0 MiB in \d+\.\d s \(.+\/s\)$/);
    const quiet = environment({ HF_HUB_DISABLE_PROGRESS_BARS: '1' });
    const silent = await herdAsync(['pull', 'karpathy/stories'], quiet.env);
    expect(silent.stderr).toBe('');
    expect(silent.stdout).toBe(`${path.join(quiet.cache, 'models--karpathy--stories', 'snapshots', stories.refs.main!)}\n`);
  });
});

describe('Python\'s huggingface_hub and herd share one cache', () => {
  const python = spawnSync('python3', ['-c', 'import huggingface_hub; print(huggingface_hub.__version__)'], { encoding: 'utf8', timeout: HANG_GUARD_MS });
  const available = python.status === 0;

  test('Python finds herd\'s download offline, and herd finds Python\'s offline (run where python3 has huggingface_hub)', async () => {
    if (!available) {
      // The one conditional the issue allows: the cross-check needs Python's huggingface_hub.
      console.log(`not applicable here: python3 cannot import huggingface_hub (${(python.stderr || python.error?.message || '').trim().split('\n').pop()}); the Python cross-check runs where it can`);
      return;
    }
    const herdSide = environment();
    const pulled = await herdAsync(['pull', 'karpathy/stories'], herdSide.env);
    expect(pulled.status).toBe(0);
    const found = await runPython("from huggingface_hub import snapshot_download; print(snapshot_download('karpathy/stories'))", { ...herdSide.env, HF_HUB_OFFLINE: '1' });
    expect(found).toBe(pulled.stdout.trim());

    const pythonSide = environment();
    const downloaded = await runPython("from huggingface_hub import snapshot_download; print(snapshot_download('karpathy/stories', allow_patterns=['*.json', '*.safetensors']))", pythonSide.env);
    hub.resetCounts();
    const herdView = await pullModel({ repo: 'karpathy/stories' }, { env: { ...pythonSide.env, HF_HUB_OFFLINE: '1' } });
    expect(herdView.modelPath).toBe(downloaded);
    expect(hub.requests).toEqual([]);
  });
});

/** Runs Python without blocking the fake Hub; its last stdout line. */
function runPython(code: string, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', code], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (status) => (status === 0 ? resolve(stdout.trim().split('\n').pop()!) : reject(new Error(`python3 exited ${status}: ${stderr}`))));
  });
}
