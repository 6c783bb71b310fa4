import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';
import { loadModel } from '../src/backends/load.js';
import { openModel } from '../src/engine/load.js';
import { MergeRanks } from '../src/engine/merge-ranks.js';
import { HerdTokenizer } from '../src/engine/tokenizer.js';
import { readGgufHeader } from '../src/formats/gguf.js';
import { endOfGenerationIds } from '../src/formats/gguf-tokenizer.js';
import { GGUF_LLAMACPP, LLAMA_TOKENIZER, readJson } from './fixtures.js';
import { HANG_GUARD_MS } from './hang-guard.js';

/*
 * What a loaded model holds besides its weights and KV cache (docs/performance.md, "Peak RSS"):
 * the tokenizer's build inputs, the GGUF vocabulary arrays and modules the chosen backend never
 * uses are let go. Invariants, not RSS thresholds (RSS varies by machine).
 */

const Q8_GGUF = path.join(GGUF_LLAMACPP, 'model-Q8_0.gguf');
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('the tokenizer keeps no build inputs', () => {
  const tokenizerJson = readJson<object>(path.join(LLAMA_TOKENIZER, 'tokenizer.json'));
  const configJson = readJson<Record<string, unknown>>(path.join(LLAMA_TOKENIZER, 'tokenizer_config.json'));

  test('the tokenizer.json object, its vocab and merges are no longer referenced', () => {
    const built = (HerdTokenizer.fromJson(tokenizerJson, configJson) as unknown as { tokenizer: Record<string, unknown> }).tokenizer;
    const model = built.model as { config: Record<string, unknown>; merges: unknown[]; bpe_ranks: MergeRanks };
    expect(built.tokenizer).toBeNull();
    expect(model.config.vocab).toBeUndefined();
    expect(model.config.merges).toBeUndefined();
    expect(model.merges).toHaveLength(0);
    // The merge ranks are typed arrays keyed by piece ids, not a Map of 280,147 JSON strings: 5-byte records (2.6 MiB as two Int32Arrays).
    expect(model.bpe_ranks).toBeInstanceOf(MergeRanks);
    expect(model.bpe_ranks.bytes).toBeLessThan(2 * 2 ** 20);
  });

  test("every one of Llama 3's merges has the library's own rank, and a pair that is no merge has none", () => {
    const lean = (HerdTokenizer.fromJson(tokenizerJson, configJson) as unknown as { tokenizer: { model: { bpe_ranks: MergeRanks } } }).tokenizer.model.bpe_ranks;
    const reference = (new Tokenizer(tokenizerJson, configJson) as unknown as { model: { bpe_ranks: Map<string, number> } }).model.bpe_ranks;
    expect(reference.size).toBe(280_147);
    const differing = [...reference].filter(([key, rank]) => lean.get(key) !== rank);
    expect(differing).toEqual([]);
    for (const pair of [['Ġ', 'Ġ'], ['t', 'Ġ'], ['the', 'the'], ['not a piece', 'x']]) {
      const key = JSON.stringify(pair);
      expect([key, lean.get(key)]).toEqual([key, reference.get(key)]);
    }
  });

  test("merges listed twice, with pieces outside the vocabulary or with a second space rank as the library's", () => {
    const vocab = Object.fromEntries(['a', 'b', 'c', 'ab', 'bc', 'abc', 'cab'].map((piece, id) => [piece, id]));
    const merges = ['a b', 'b c', 'a b', 'x y', 'ab c', 'c ab z', 'a x'];
    const json = { model: { type: 'BPE', vocab, merges, unk_token: null }, normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [] };
    const reference = (new Tokenizer(json, {}) as unknown as { model: { bpe_ranks: Map<string, number> } }).model.bpe_ranks;
    const lean = MergeRanks.build(merges, new Map(Object.entries(vocab)));
    for (const key of [...reference.keys(), JSON.stringify(['b', 'a']), JSON.stringify(['c', 'x'])]) expect([key, lean.get(key)]).toEqual([key, reference.get(key)]);
    expect(lean.get(JSON.stringify(['a', 'b']))).toBe(2);
  });

  test('encodes and decodes as the library does with everything kept', () => {
    const reference = new Tokenizer(tokenizerJson, configJson);
    const lean = HerdTokenizer.fromJson(tokenizerJson, configJson);
    const text = "Héllo wörld — isn't BPE fun? 12345 <|eot_id|>\n\tcode: `x += 1`";
    const ids = reference.encode(text, { add_special_tokens: true }).ids;
    expect(lean.encode(text, true)).toEqual(ids);
    expect(lean.decode(ids)).toBe(reference.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }));
  });
});

describe('a GGUF model lets its vocabulary arrays go once the tokenizer is built', () => {
  test('the metadata loses tokens and merges; the stop ids and a second read are unchanged', () => {
    const { config, checkpoint, readTokenizer } = openModel(Q8_GGUF);
    try {
      const metadata = (checkpoint as unknown as { file: { metadata: Map<string, unknown> } }).file.metadata;
      expect(metadata.has('tokenizer.ggml.tokens')).toBe(true);
      const tokenizer = readTokenizer();
      expect(metadata.has('tokenizer.ggml.tokens')).toBe(false);
      expect(metadata.has('tokenizer.ggml.merges')).toBe(false);
      expect(metadata.has('tokenizer.ggml.token_type')).toBe(false);
      expect(readTokenizer()).toBe(tokenizer);
      const fresh = readGgufHeader(Q8_GGUF).metadata;
      expect(config.eosTokenIds).toEqual(endOfGenerationIds(fresh));
      const tokens = fresh.get('tokenizer.ggml.tokens') as string[];
      expect(tokenizer.encode('<|eot_id|>', false)).toEqual([tokens.indexOf('<|eot_id|>')]);
      expect(tokenizer.decode([tokens.length - 1])).toBe(tokens.at(-1));
    } finally {
      checkpoint.close();
    }
  });
});

describe('a caller that runs token ids only (herd bench) builds no tokenizer', () => {
  test('skipTokenizer lets the GGUF vocabulary arrays go at once; the stop ids stay', () => {
    const { config, checkpoint, skipTokenizer } = openModel(Q8_GGUF);
    try {
      const metadata = (checkpoint as unknown as { file: { metadata: Map<string, unknown> } }).file.metadata;
      expect(metadata.has('tokenizer.ggml.tokens')).toBe(true);
      skipTokenizer();
      expect(['tokenizer.ggml.tokens', 'tokenizer.ggml.merges', 'tokenizer.ggml.token_type'].filter((key) => metadata.has(key))).toEqual([]);
      expect(config.eosTokenIds).toEqual(endOfGenerationIds(readGgufHeader(Q8_GGUF).metadata));
    } finally {
      checkpoint.close();
    }
  });

  test('loadModel with tokenizer: false gives a model without one, which runs', async () => {
    const loaded = await loadModel(Q8_GGUF, { backend: 'kernels', threads: 1, tokenizer: false });
    try {
      expect('tokenizer' in loaded).toBe(false);
      const cache = loaded.model.createCache(4);
      const logits = loaded.model.forward(Int32Array.of(1, 2), cache);
      cache.dispose();
      expect(logits).toHaveLength(loaded.config.vocabSize);
      expect(logits.every(Number.isFinite)).toBe(true);
    } finally {
      loaded.model.dispose();
    }
    const withTokenizer = await loadModel(Q8_GGUF, { backend: 'kernels', threads: 1 });
    withTokenizer.model.dispose();
    expect(withTokenizer.tokenizer.encode('<|eot_id|>', false)).toHaveLength(1);
  });
});

/**
 * Loads the Q8_0 GGUF on the native backend in a fresh Node (a module loaded once stays loaded, so
 * only a process of its own shows what loading needed) and reports what got loaded besides.
 */
const LOAD_AND_REPORT = `
import { createRequire } from 'node:module';
let wasmModules = 0;
const Module = WebAssembly.Module;
WebAssembly.Module = new Proxy(Module, { construct: (target, args) => (wasmModules++, Reflect.construct(target, args)) });
const { loadModel } = await import('./dist/backends/load.js');
await import('./dist/hub/http.js');
const loaded = await loadModel(process.argv[1], { backend: process.env.BACKEND, threads: 1 });
const cached = Object.keys(createRequire(import.meta.url).cache);
const has = (name) => cached.some((file) => file.includes('/node_modules/' + name + '/'));
console.log(JSON.stringify({ backend: loaded.model.backendName, wasmModules, tfjs: has('@tensorflow/tfjs-core'), undici: has('undici') }));
process.exit(0);
`;

function loadInFreshNode(backend: string): Record<string, unknown> {
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', LOAD_AND_REPORT, Q8_GGUF], {
    cwd: ROOT, encoding: 'utf8', timeout: HANG_GUARD_MS, env: { ...process.env, BACKEND: backend },
  });
  if (result.status !== 0) throw new Error(`loading in a fresh node failed (${result.status}): ${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

describe('a model on the native kernels loads nothing another backend needs (built dist/)', () => {
  test('no WebAssembly module compiled, tfjs and undici not loaded', () => {
    expect(loadInFreshNode('native')).toEqual({ backend: 'native', wasmModules: 0, tfjs: false, undici: false });
  });

  test('the same probe sees the WASM kernels and tfjs when they are the backend (it can fail)', () => {
    const kernels = loadInFreshNode('kernels');
    expect(kernels).toMatchObject({ backend: 'kernels', tfjs: false });
    expect(kernels.wasmModules).toBeGreaterThan(0);
    expect(loadInFreshNode('wasm')).toMatchObject({ backend: 'wasm', tfjs: true });
  });
});

/**
 * Resolves a local --model in a fresh Node and lists the @huggingface packages imported (ESM, so a
 * module hook records them): the Hub client costs about 10 MiB of RSS and a local model needs none of it.
 */
const RESOLVE_AND_LIST = `
import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const { port1, port2 } = new MessageChannel();
const imported = new Set();
port1.on('message', (url) => { const found = /node_modules\\/(@huggingface\\/[^/]+)\\//.exec(url); if (found) imported.add(found[1]); });
const hooks = 'let port; export function initialize(data) { port = data.port; } export async function load(url, context, next) { port.postMessage(url); return next(url, context); }';
register('data:text/javascript,' + encodeURIComponent(hooks), { data: { port: port2 }, transferList: [port2] });
const { resolveModelArgument } = await import('./dist/cli/model-argument.js');
await import('./dist/commands/generate.js');
await import('./dist/commands/bench.js');
const resolved = await resolveModelArgument(process.argv[1]);
await new Promise((resolve) => setTimeout(resolve, 200));
console.log(JSON.stringify({ resolved, imported: [...imported].sort() }));
process.exit(0);
`;

describe('herd generate and bench on a local model import no Hub client (built dist/)', () => {
  test('@huggingface/hub is not imported; the tokenizer and template packages are (the probe sees imports)', () => {
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', RESOLVE_AND_LIST, Q8_GGUF], { cwd: ROOT, encoding: 'utf8', timeout: HANG_GUARD_MS });
    if (result.status !== 0) throw new Error(`the probe failed (${result.status}): ${result.stderr}`);
    const { resolved, imported } = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { resolved: string; imported: string[] };
    expect(resolved).toBe(Q8_GGUF);
    expect(imported).toContain('@huggingface/tokenizers');
    expect(imported).not.toContain('@huggingface/hub');
  });
});
