import fs from 'node:fs';
import path from 'node:path';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { PREFILL_CHUNK_TOKENS } from '../src/engine/model.js';
import { DATA, TINY_LLAMA } from './fixtures.js';

let loaded: LoadedModel;
let ids: number[];

beforeAll(async () => {
  loaded = await loadModel(TINY_LLAMA, { backend: 'wasm' });
  const text = fs.readFileSync(path.join(DATA, 'text/wikitext-2-raw-test.txt'), 'utf8').slice(0, 12000);
  ids = loaded.tokenizer.encode(text, true).slice(0, 2100);
});

function fullRecomputation(prefix: number[]): Float32Array {
  const cache = loaded.model.createCache(prefix.length);
  try {
    return loaded.model.forward(Int32Array.from(prefix), cache);
  } finally {
    cache.dispose();
  }
}

function maxAbsDifference(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

test('a prompt of more than 2,000 tokens: decoding from the KV cache equals full recomputation', () => {
  expect(ids.length).toBe(2100);
  const cache = loaded.model.createCache(ids.length);
  loaded.model.forward(Int32Array.from(ids.slice(0, 2090)), cache);
  let cached: Float32Array = new Float32Array();
  for (const id of ids.slice(2090)) cached = loaded.model.forward(Int32Array.of(id), cache);
  expect(cache.length).toBe(2100);
  cache.dispose();
  // Logits are about ±0.3 here; float32 with a different summation order agrees to ~1e-6.
  expect(maxAbsDifference(cached, fullRecomputation(ids))).toBeLessThan(1e-4);
});

test('lowering the cache length rewinds: the next tokens overwrite the old positions', () => {
  const cache = loaded.model.createCache(64);
  loaded.model.forward(Int32Array.from(ids.slice(0, 40)), cache);
  cache.length = 30;
  const other = [791, 6864, 315];
  const rewound = loaded.model.forward(Int32Array.from(other), cache);
  cache.dispose();
  expect(maxAbsDifference(rewound, fullRecomputation([...ids.slice(0, 30), ...other]))).toBeLessThan(1e-5);
});

test('all-position logits equal last-position logits at each prefix', () => {
  const prefix = ids.slice(0, 12);
  const cache = loaded.model.createCache(12);
  const all = loaded.model.forward(Int32Array.from(prefix), cache, { allPositions: true });
  cache.dispose();
  const vocab = loaded.config.vocabSize;
  for (const position of [0, 5, 11]) {
    const row = all.subarray(position * vocab, (position + 1) * vocab);
    expect(maxAbsDifference(row, fullRecomputation(prefix.slice(0, position + 1)))).toBeLessThan(1e-5);
  }
});

describe.each(['wasm', 'kernels'] as const)('a long input runs through the layers in parts (%s backend)', (backend) => {
  let model: LoadedModel['model'];

  beforeAll(async () => {
    model = backend === 'wasm' ? loaded.model : (await loadModel(TINY_LLAMA, { backend, threads: 2 })).model;
  });

  function run(prompt: number[], chunkTokens: number | undefined, allPositions = false): Float32Array {
    const cache = model.createCache(prompt.length);
    try {
      const logits = model.forward(Int32Array.from(prompt), cache, { chunkTokens, allPositions });
      expect(cache.length).toBe(prompt.length);
      return logits;
    } finally {
      cache.dispose();
    }
  }

  test("the last position's logits equal those of one pass, in the default parts and in parts of 7", () => {
    const prompt = ids.slice(0, 2 * PREFILL_CHUNK_TOKENS + 44);
    const onePass = run(prompt, prompt.length);
    expect(maxAbsDifference(run(prompt, undefined), onePass)).toBeLessThan(1e-5);
    expect(maxAbsDifference(run(prompt, 7), onePass)).toBeLessThan(1e-5);
  });

  test("every position's logits equal those of one pass", () => {
    const prompt = ids.slice(0, 20);
    expect(maxAbsDifference(run(prompt, 6, true), run(prompt, prompt.length, true))).toBeLessThan(1e-5);
  });

  test('an input longer than the cache is refused before any part of it runs', () => {
    const cache = model.createCache(10);
    expect(() => model.forward(Int32Array.from(ids.slice(0, 12)), cache, { chunkTokens: 4 })).toThrow('sequence of 12 tokens exceeds the context of 10 positions');
    expect(cache.length).toBe(0);
    expect(() => model.forward(Int32Array.of(1), cache, { chunkTokens: 0 })).toThrow('chunkTokens must be at least 1');
    cache.dispose();
  });
});
