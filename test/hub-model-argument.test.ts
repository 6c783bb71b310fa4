import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isHubModelArgument, modelDisplayName, resolveModelArgument } from '../src/cli/model-argument.js';
import { HerdError } from '../src/errors.js';
import { GGUF_LLAMACPP, STORIES, TINY_LLAMA, readJson } from './fixtures.js';
import { FakeHub, filesOf } from './fake-hub.js';
import { folderContents, pythonStyleCache, sha256 } from './hub-cache-layout.js';

// --model through the cache with HF_HUB_OFFLINE=1: nothing there may make a request (there is no
// Hub to answer one), so every answer comes from caches laid out by hand as Python writes them.
// Then, online against the fake Hub (test/fake-hub.ts), what each command's part of a model costs.
const COMMIT = '1'.repeat(40);
const OLD_COMMIT = '2'.repeat(40);
const TINY_FILES = ['config.json', 'generation_config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json'];
const GGUF_FILES = ['model-Q4_K_M.gguf', 'model-Q5_K_M.gguf', 'model-Q6_K.gguf', 'model-Q8_0.gguf'];
const ggufReference = readJson<{ files: Record<string, { file: string; sha256: string }> }>(path.join(GGUF_LLAMACPP, 'reference.json'));

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-model-argument-'));
const cacheDir = path.join(work, 'hub');
const env = { HF_HUB_CACHE: cacheDir, HF_HUB_OFFLINE: '1' };
const resolve = (arg: string | undefined, part?: 'weights' | 'tokenizer' | 'config') => resolveModelArgument(arg, { env, json: true, part });
const snapshot = (repo: string, commit = COMMIT) => path.join(cacheDir, `models--${repo.replace('/', '--')}`, 'snapshots', commit);

beforeAll(() => {
  pythonStyleCache(cacheDir, 'org/tiny', { [COMMIT]: folderContents(TINY_LLAMA, TINY_FILES), [OLD_COMMIT]: folderContents(TINY_LLAMA, ['config.json']) }, { main: COMMIT, v0: OLD_COMMIT });
  pythonStyleCache(cacheDir, 'org/tiny-GGUF', { [COMMIT]: folderContents(GGUF_LLAMACPP, GGUF_FILES) }, { main: COMMIT });
  // What `herd memory` and `herd prompt` leave behind: configs and tokenizer, no weights.
  pythonStyleCache(cacheDir, 'org/configs-only', { [COMMIT]: folderContents(TINY_LLAMA, ['config.json', 'tokenizer.json', 'tokenizer_config.json']) }, { main: COMMIT });
  // Python on a file system without symlinks keeps real files in the snapshot.
  fs.mkdirSync(snapshot('org/copies'), { recursive: true });
  for (const name of fs.readdirSync(STORIES)) fs.copyFileSync(path.join(STORIES, name), path.join(snapshot('org/copies'), name));
  fs.mkdirSync(path.join(cacheDir, 'models--org--copies', 'refs'));
  fs.writeFileSync(path.join(cacheDir, 'models--org--copies', 'refs', 'main'), COMMIT);
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

async function failure(promise: Promise<unknown>): Promise<HerdError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(HerdError);
    return error as HerdError;
  }
  throw new Error('expected a HerdError');
}

describe('local paths and the default', () => {
  test('no --model stays undefined, an existing path is returned as it is', async () => {
    expect(await resolve(undefined)).toBeUndefined();
    expect(await resolve(STORIES)).toBe(STORIES);
    const gguf = path.join(GGUF_LLAMACPP, 'model-Q8_0.gguf');
    expect(await resolve(gguf)).toBe(gguf);
  });

  test('a malformed name and a missing path are one line each', async () => {
    expect((await failure(resolve('gpt2'))).message).toMatch(/^"gpt2" is neither an existing folder or file nor a Hugging Face id/);
    expect((await failure(resolve(path.join(work, 'missing')))).message).toBe(`model folder ${path.join(work, 'missing')} does not exist`);
  });
});

describe('Hugging Face ids from the cache, with HF_HUB_OFFLINE=1', () => {
  test('org/name is the snapshot main points to; @revision picks another', async () => {
    expect(await resolve('org/tiny')).toBe(snapshot('org/tiny'));
    expect(await resolve(`org/tiny@${COMMIT}`)).toBe(snapshot('org/tiny'));
    // v0's snapshot holds a config alone: enough for herd memory, not for a run.
    expect(await resolve('org/tiny@v0', 'config')).toBe(path.join(snapshot('org/tiny', OLD_COMMIT), 'config.json'));
    const incomplete = await failure(resolve('org/tiny@v0'));
    expect(incomplete.message).toMatch(/^HF_HUB_OFFLINE is set and the cached org\/tiny@v0 \(2222222\) lacks .*model/);
  });

  test(':QUANT picks the GGUF file, byte for byte the fixture llama.cpp quantized', async () => {
    for (const quant of ['Q4_K_M', 'q8_0']) {
      const file = await resolve(`org/tiny-GGUF:${quant}`);
      expect(path.dirname(file!)).toBe(snapshot('org/tiny-GGUF'));
      expect(sha256(fs.readFileSync(file!))).toBe(ggufReference.files[quant.toUpperCase()]!.sha256);
    }
  });

  test('a tag the cache lacks lists the tags it has', async () => {
    const error = await failure(resolve('org/tiny-GGUF:Q5'));
    expect(error.message).toContain('no GGUF file in org/tiny-GGUF matches "Q5"; available tags: Q4_K_M, Q5_K_M, Q6_K, Q8_0');
    expect(error.message.split('\n')).toHaveLength(1);
  });

  test('a model that is not cached says so and how to get it', async () => {
    const error = await failure(resolve('org/not-pulled'));
    expect(error.message).toBe(`HF_HUB_OFFLINE is set and org/not-pulled is not in the cache (${cacheDir}): run herd pull org/not-pulled online first`);
    expect((await failure(resolve('org/not-pulled', 'tokenizer'))).message).toBe(`HF_HUB_OFFLINE is set and org/not-pulled is not in the cache (${cacheDir}): run herd pull org/not-pulled online first`);
    expect((await failure(resolve('org/tiny@v9'))).message).toMatch(/^HF_HUB_OFFLINE is set and org\/tiny@v9 is not in the cache/);
  });

  test('tokenizer and config reads need only those files; a snapshot without them is refused', async () => {
    expect(await resolve('org/configs-only', 'tokenizer')).toBe(snapshot('org/configs-only'));
    expect(await resolve('org/configs-only', 'config')).toBe(path.join(snapshot('org/configs-only'), 'config.json'));
    const noTokenizer = await failure(resolve('org/tiny@v0', 'tokenizer'));
    expect(noTokenizer.message).toBe('org/tiny@v0 has no tokenizer.json');
    expect(noTokenizer.file).toBe(path.join(snapshot('org/tiny', OLD_COMMIT), 'tokenizer.json'));
  });

  test('a snapshot of real files (no symlinks) is found like any other', async () => {
    expect(await resolve('org/copies')).toBe(snapshot('org/copies'));
  });

  test('running a model marks its blobs used (their access time), nothing else', async () => {
    const blobs = path.join(cacheDir, 'models--org--tiny', 'blobs');
    const old = new Date('2025-05-05T05:05:05Z');
    for (const blob of fs.readdirSync(blobs)) fs.utimesSync(path.join(blobs, blob), old, old);
    const before = Date.now();
    await resolve('org/tiny');
    for (const blob of fs.readdirSync(blobs)) {
      const stat = fs.statSync(path.join(blobs, blob));
      expect(stat.mtime).toEqual(old);
      expect(stat.atimeMs).toBeGreaterThanOrEqual(before - 1000);
    }
  });
});

describe('names for people', () => {
  test('a cache snapshot (or a file in it) is org/name; other paths their own name', () => {
    expect(modelDisplayName(snapshot('org/tiny'))).toBe('org/tiny');
    expect(modelDisplayName(path.join(snapshot('org/tiny-GGUF'), 'model-Q8_0.gguf'))).toBe('org/tiny-GGUF');
    expect(modelDisplayName(STORIES)).toBe('stories260K');
    expect(modelDisplayName(path.join(GGUF_LLAMACPP, 'model-Q8_0.gguf'))).toBe('model-Q8_0.gguf');
  });

  test('isHubModelArgument: ids yes; presets, paths and malformed names no', () => {
    expect(isHubModelArgument('meta-llama/Llama-3.1-8B')).toBe(true);
    expect(isHubModelArgument('org/x@v1:Q4_K_M')).toBe(true);
    expect(isHubModelArgument('llama-3.1-8b')).toBe(false);
    expect(isHubModelArgument(STORIES)).toBe(false);
    expect(isHubModelArgument('./missing/folder')).toBe(false);
  });
});

describe('online: each command downloads the part of a model it reads', () => {
  let hub: FakeHub;
  const onlineCache = path.join(work, 'online');
  const online = { HF_HUB_CACHE: onlineCache, HF_HOME: path.join(work, 'no-home') };
  beforeAll(async () => {
    hub = await FakeHub.start();
    hub.addRepo('org/tiny', filesOf(TINY_LLAMA, { skip: ['reference.json'] }));
    hub.addRepo('org/tiny-GGUF', filesOf(GGUF_LLAMACPP, { skip: ['reference.json', 'README.md', 'source'] }));
  });
  afterAll(() => hub.close());
  const fetched = () => [...new Set(hub.fileRequests().map((request) => request.file!))].sort();

  test('herd memory: config.json and the other small files, never the weights', async () => {
    const config = await resolveModelArgument('org/tiny', { env: { ...online, HF_ENDPOINT: hub.endpoint }, json: true, part: 'config' });
    expect(config).toMatch(/models--org--tiny\/snapshots\/[0-9a-f]{40}\/config\.json$/);
    expect(fs.readFileSync(config!)).toEqual(fs.readFileSync(path.join(TINY_LLAMA, 'config.json')));
    expect(fetched().filter((file) => file.endsWith('.safetensors'))).toEqual([]);
    expect(fetched()).toContain('tokenizer.json');
  });

  test('herd memory on a GGUF repository: the one quantization, whose header holds the config', async () => {
    hub.resetCounts();
    const file = await resolveModelArgument('org/tiny-GGUF:Q6_K', { env: { ...online, HF_ENDPOINT: hub.endpoint }, json: true, part: 'config' });
    expect(sha256(fs.readFileSync(file!))).toBe(ggufReference.files.Q6_K!.sha256);
    expect(fetched()).toEqual(['model-Q6_K.gguf']);
    // Without a tag (and no config.json in the repository): the Q4_K_M llama.cpp would pick. (A
    // fresh cache: with Q6_K cached, the cache's only quantization would be the one taken.)
    hub.resetCounts();
    const fresh = { ...online, HF_HUB_CACHE: path.join(work, 'online-fresh'), HF_ENDPOINT: hub.endpoint };
    const chosen = await resolveModelArgument('org/tiny-GGUF', { env: fresh, json: true, part: 'config' });
    expect(sha256(fs.readFileSync(chosen!))).toBe(ggufReference.files.Q4_K_M!.sha256);
    expect(fetched()).toEqual(['model-Q4_K_M.gguf']);
  });

  test('herd prompt on a GGUF quantization is refused before any download', async () => {
    hub.resetCounts();
    const error = await failure(resolveModelArgument('org/tiny-GGUF:Q8_0', { env: { ...online, HF_ENDPOINT: hub.endpoint }, json: true, part: 'tokenizer' }));
    expect(error.message).toBe('org/tiny-GGUF:Q8_0 is one GGUF file, and this command reads tokenizer.json from a model folder: name a safetensors repository, without :Q8_0');
    expect(hub.requests).toEqual([]);
  });
});
