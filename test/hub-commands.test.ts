import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import { TINY_LLAMA, readJson } from './fixtures.js';
import { folderContents, gitSha1, pythonStyleCache, sha256 } from './hub-cache-layout.js';
import { herd } from './herd-cli.js';

// herd models, herd rm and --model org/name through the built CLI, on caches laid out by hand as
// Python writes them.
const SCHEMA_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../docs/schemas');
const ajv = new Ajv2020.default({ allErrors: true, strict: true, allowUnionTypes: true });
const validate = (name: string, value: unknown) => {
  const check = ajv.getSchema(`herd.${name}/1`) ?? ajv.compile(JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, `herd.${name}.schema.json`), 'utf8')));
  return check(value) ? 'valid' : ajv.errorsText(check.errors);
};

const COMMIT_A = 'a'.repeat(40);
const COMMIT_B = 'b'.repeat(40);
const CONFIG = Buffer.from('{"model_type": "llama"}');
const WEIGHTS = Buffer.from('weights of the first revision');
const WEIGHTS_V2 = Buffer.from('weights of the second revision, longer');
const GGUF = Buffer.from('GGUF quantized weights');
const GGUF_Q8 = Buffer.from('GGUF weights at 8 bits');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-hub-commands-'));
const cacheDir = path.join(work, 'hub');
const savedCache = process.env.HF_HUB_CACHE;
// herd() passes this process's environment to the CLI.
beforeAll(() => {
  process.env.HF_HUB_CACHE = cacheDir;
  pythonStyleCache(cacheDir, 'org/model', {
    [COMMIT_A]: { 'config.json': { content: CONFIG, lfs: false }, 'model.safetensors': { content: WEIGHTS, lfs: true } },
    [COMMIT_B]: { 'config.json': { content: CONFIG, lfs: false }, 'model.safetensors': { content: WEIGHTS_V2, lfs: true } },
  }, { main: COMMIT_B, v1: COMMIT_A });
  pythonStyleCache(cacheDir, 'org/model-GGUF', { [COMMIT_A]: { 'model-Q4_K_M.gguf': { content: GGUF, lfs: true }, 'model-Q8_0.gguf': { content: GGUF_Q8, lfs: true } } }, { main: COMMIT_A });
  const old = new Date('2026-01-02T03:04:05Z');
  for (const blob of fs.readdirSync(path.join(cacheDir, 'models--org--model', 'blobs'))) fs.utimesSync(path.join(cacheDir, 'models--org--model', 'blobs', blob), old, old);
});
afterAll(() => {
  if (savedCache === undefined) delete process.env.HF_HUB_CACHE;
  else process.env.HF_HUB_CACHE = savedCache;
  fs.rmSync(work, { recursive: true, force: true });
});

function expectOneLineError(result: ReturnType<typeof herd>, status: number, message: string): void {
  expect(result.status).toBe(status);
  expect(result.stdout).toBe('');
  expect(result.stderr).toBe(`herd: ${message}\n`);
}

describe('herd models', () => {
  test('--json: every model, its revisions and refs, sizes with each blob once, last used', () => {
    const result = herd(['models', '--json']);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(validate('models', report)).toBe('valid');
    expect(report.cache_dir).toBe(cacheDir);
    expect(report.size_on_disk).toBe(CONFIG.length + WEIGHTS.length + WEIGHTS_V2.length + GGUF.length + GGUF_Q8.length);
    expect(report.models.map((model: { repo: string }) => model.repo)).toEqual(['org/model', 'org/model-GGUF']);
    const [model] = report.models;
    expect(model).toMatchObject({ path: path.join(cacheDir, 'models--org--model'), size_on_disk: CONFIG.length + WEIGHTS.length + WEIGHTS_V2.length, file_count: 3, last_used: '2026-01-02T03:04:05.000Z' });
    expect(model.revisions).toEqual([
      { commit: COMMIT_A, refs: ['v1'], path: path.join(cacheDir, 'models--org--model', 'snapshots', COMMIT_A), files: ['config.json', 'model.safetensors'], size: CONFIG.length + WEIGHTS.length, last_used: '2026-01-02T03:04:05.000Z' },
      { commit: COMMIT_B, refs: ['main'], path: path.join(cacheDir, 'models--org--model', 'snapshots', COMMIT_B), files: ['config.json', 'model.safetensors'], size: CONFIG.length + WEIGHTS_V2.length, last_used: '2026-01-02T03:04:05.000Z' },
    ]);
  });

  test('text: a row per revision, its refs and short commit, and no colour when piped', () => {
    const result = herd(['models']);
    expect(result.status).toBe(0);
    expect(result.stdout).not.toMatch(/\u001b\[/);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`Models in ${cacheDir}`);
    expect(lines[1]).toMatch(/^MODEL +REVISION +FILES +SIZE +LAST USED$/);
    expect(lines[2]).toMatch(new RegExp(`^org/model +v1 aaaaaaa +2 +${CONFIG.length + WEIGHTS.length} B +2026-01-02 03:04 UTC$`));
    expect(lines[3]).toMatch(/^ +main bbbbbbb +2 /);
    expect(lines[4]).toMatch(/^org\/model-GGUF +main aaaaaaa +2 /);
    expect(lines[5]).toMatch(/^ +2 models, .* on disk, each blob counted once$/);
  });

  test('an absent cache is an empty list', () => {
    const empty = path.join(work, 'nothing-here');
    process.env.HF_HUB_CACHE = empty;
    try {
      expect(JSON.parse(herd(['models', '--json']).stdout)).toEqual({ schema: 'herd.models/1', cache_dir: empty, size_on_disk: 0, models: [] });
    } finally {
      process.env.HF_HUB_CACHE = cacheDir;
    }
  });
});

describe('herd rm', () => {
  test('one revision: its snapshot, ref and the blob only it used; the shared config stays', () => {
    const result = herd(['rm', 'org/model@v1', '--json']);
    expect(result.stderr).toBe('');
    const report = JSON.parse(result.stdout);
    expect(validate('rm', report)).toBe('valid');
    expect(report).toEqual({ schema: 'herd.rm/1', cache_dir: cacheDir, repo: 'org/model', removed_commits: [COMMIT_A], removed_refs: ['v1'], removed_files: [], freed_bytes: WEIGHTS.length, removed_repo: false });
    const repoFolder = path.join(cacheDir, 'models--org--model');
    expect(fs.readdirSync(path.join(repoFolder, 'blobs')).sort()).toEqual([gitSha1(CONFIG), sha256(WEIGHTS_V2)].sort());
    expect(fs.readdirSync(path.join(repoFolder, 'snapshots'))).toEqual([COMMIT_B]);
    expect(fs.readdirSync(path.join(repoFolder, 'refs'))).toEqual(['main']);
  });

  test('what is not cached, and a name with a quantization, are refused in one line and remove nothing', () => {
    const unknown = herd(['rm', 'org/unknown', '--json']);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toBe(`herd: org/unknown is not in the cache (${cacheDir}); herd models lists what is\n`);
    expect(JSON.parse(unknown.stdout)).toEqual({ schema: 'herd.error/1', error: { type: 'input', message: `org/unknown is not in the cache (${cacheDir}); herd models lists what is` } });
    expectOneLineError(herd(['rm', 'org/model', '--revision', 'v1']), 1, `revision v1 of org/model is not in the cache; cached: main (bbbbbbb)`);
    expectOneLineError(herd(['rm', 'org/model-GGUF:Q5_K_M']), 1, 'no GGUF file in org/model-GGUF matches "Q5_K_M"; available tags: Q4_K_M, Q8_0');
    expect(fs.existsSync(path.join(cacheDir, 'models--org--model', 'snapshots', COMMIT_B))).toBe(true);
  });

  test('org/name:QUANT: one GGUF quantization, the other staying', () => {
    const report = JSON.parse(herd(['rm', 'org/model-GGUF:Q8_0', '--json']).stdout);
    expect(report).toMatchObject({ removed_commits: [], removed_files: ['model-Q8_0.gguf'], freed_bytes: GGUF_Q8.length, removed_repo: false });
    expect(fs.readdirSync(path.join(cacheDir, 'models--org--model-GGUF', 'snapshots', COMMIT_A))).toEqual(['model-Q4_K_M.gguf']);
    expect(fs.readdirSync(path.join(cacheDir, 'models--org--model-GGUF', 'blobs'))).toEqual([sha256(GGUF)]);
  });

  test('the whole model, leaving the other model alone', () => {
    const result = herd(['rm', 'org/model']);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^removed org/model from ${cacheDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, freeing \\S+ \\S+\\n$`));
    expect(fs.readdirSync(cacheDir)).toEqual(['models--org--model-GGUF']);
  });
});

describe('--model org/name from the cache, with HF_HUB_OFFLINE=1 (no Hub to ask)', () => {
  const tiny = readJson<{ cases: Array<{ name: string; prompt_ids: number[]; generated_ids: number[] }> }>(path.join(TINY_LLAMA, 'reference.json')).cases.find((c) => c.name === 'capital')!;
  const TINY_FILES = ['config.json', 'generation_config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json'];
  beforeAll(() => {
    process.env.HF_HUB_OFFLINE = '1';
    pythonStyleCache(cacheDir, 'meta-llama/tiny', { [COMMIT_A]: folderContents(TINY_LLAMA, TINY_FILES), [COMMIT_B]: folderContents(TINY_LLAMA, ['config.json']) }, { main: COMMIT_A, configs: COMMIT_B });
  });
  afterAll(() => {
    delete process.env.HF_HUB_OFFLINE;
  });

  test('herd generate runs a cached model and reproduces the reference greedy tokens', () => {
    const result = herd(['generate', '--model', 'meta-llama/tiny', '--prompt-ids', '-', '--json', '--temperature', '0', '-n', '16'], JSON.stringify(tiny.prompt_ids));
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.model).toBe(path.join(cacheDir, 'models--meta-llama--tiny', 'snapshots', COMMIT_A));
    expect(report.generated_ids).toEqual(tiny.generated_ids);
  });

  test('herd memory needs only the config, and names the model by its id', () => {
    const result = herd(['memory', '--model', 'meta-llama/tiny@configs', '--json']);
    expect(result.stderr).toBe('');
    const config = JSON.parse(fs.readFileSync(path.join(TINY_LLAMA, 'config.json'), 'utf8'));
    const report = JSON.parse(result.stdout);
    expect(report.plan.model.name).toBe('meta-llama/tiny@configs');
    expect(report.plan.model.architecture.numHiddenLayers).toBe(config.num_hidden_layers);
  });

  test('a model the cache lacks is one line saying how to get it', () => {
    expectOneLineError(herd(['generate', '--model', 'meta-llama/absent', 'Hi']), 1, `HF_HUB_OFFLINE is set and meta-llama/absent is not in the cache (${cacheDir}): run herd pull meta-llama/absent online first`);
  });
});
