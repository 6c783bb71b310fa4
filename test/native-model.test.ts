import { jest } from '@jest/globals';
import path from 'node:path';
import { generate } from '../src/engine/generate.js';
import { loadModel } from '../src/backends/load.js';
import { GREEDY } from '../src/engine/sampling.js';
import { herd } from './herd-cli.js';
import { GGUF_LLAMACPP, STORIES, TINY_LLAMA, readJson } from './fixtures.js';
import { compareSteps, fixtureFile, KERNEL_TOLERANCES, reference } from './gguf-llamacpp-reference.js';

/**
 * The one model definition on the native kernels: the shared fixtures' reference outputs, the
 * WASM kernels' greedy tokens on llama.cpp's own GGUF files, automatic selection, and the
 * fallback to the WASM kernels when the addon is switched off (HERD_NATIVE=0).
 */
interface Case {
  prompt_ids: number[];
  generated_ids: number[];
  steps: Array<{ top: Array<[number, number]> }>;
}
const gguf = readJson<{ cases: Array<{ name: string; prompt_ids: number[] }> }>(path.join(GGUF_LLAMACPP, 'reference.json'));
const storyStart = gguf.cases.find((c) => c.name === 'story_start')!.prompt_ids;

async function greedy(model: string, backend: string | undefined, promptIds: number[], maxNewTokens: number, threads = 2) {
  const loaded = await loadModel(model, { backend, threads });
  const result = generate(loaded.model, loaded.tokenizer, { promptIds, maxNewTokens, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs: 5 });
  return { result, backend: loaded.model.backendName };
}

test('tiny-llama-3.1 (BF16 computed as stored): greedy ids and top-5 logprobs within 1e-3 of the oracle', async () => {
  const { cases } = readJson<{ cases: Case[] }>(`${TINY_LLAMA}/reference.json`);
  for (const c of cases) {
    const { result, backend } = await greedy(TINY_LLAMA, 'native', c.prompt_ids, 16);
    expect(backend).toBe('native');
    expect(result.generatedIds).toEqual(c.generated_ids);
    result.tokens.forEach((token, step) =>
      token.top.forEach(([id, logprob], rank) => {
        expect(id).toBe(c.steps[step]!.top[rank]![0]);
        expect(Math.abs(logprob - c.steps[step]!.top[rank]![1])).toBeLessThan(1e-3);
      }),
    );
  }
});

test('stories260K (F32) on 3 threads: the 40 reference tokens', async () => {
  const reference = readJson<{ generated_ids: number[] }>(`${STORIES}/reference.json`);
  const { result } = await greedy(STORIES, 'native', [1], 40, 3);
  expect(result.generatedIds).toEqual(reference.generated_ids);
});

// Q4_K_M's Q6_K matrices run on 8-bit activations here and on float ones in the WASM kernels:
// the tokens agree where the top two are further apart than that rounding moves them.
test.each(['model-Q8_0.gguf', 'model-Q4_K_M.gguf'])('%s: native greedy tokens equal the WASM kernels\'', async (file) => {
  const model = path.join(GGUF_LLAMACPP, file);
  const [native, kernels] = [await greedy(model, 'native', storyStart, 16), await greedy(model, 'kernels', storyStart, 16)];
  expect(native.backend).toBe('native');
  expect(native.result.generatedIds).toEqual(kernels.result.generatedIds);
});

// Teacher-forced along llama.cpp's greedy sequences. llama.cpp quantizes the activations of its Q6_K
// and Q5_K products to Q8_K as these kernels do, so they stay near it (measured 0.036-0.14; the WASM
// kernels, on float activations, 0.16-0.17) and 0.09-0.17 from exact math, about where llama.cpp is:
// the WASM kernels' bound against exact math (1e-4, float activations) cannot apply.
test.each(['Q6_K', 'Q5_K_M'])('%s file on the native kernels: logprobs within the WASM kernels\' bound of llama.cpp\'s', async (type) => {
  const loaded = await loadModel(fixtureFile(type), { backend: 'native', threads: 2 });
  expect(loaded.model.backendName).toBe('native');
  const tolerance = KERNEL_TOLERANCES[type]!;
  for (const c of reference.cases) {
    const againstLlamaCpp = compareSteps(loaded, c.prompt_ids, reference.files[type]!.llama_cpp.cases[c.name]!, 2 * tolerance.llamaCpp);
    expect(againstLlamaCpp.argmaxDiffers).toEqual([]);
    expect(againstLlamaCpp.maxDiff).toBeLessThan(tolerance.llamaCpp);
  }
});

test('automatic selection: native for the four llama.cpp files (Q8_0, Q4_K, Q5_K, Q6_K and F32 tensors), none widened', async () => {
  const stderr: string[] = [];
  const spy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => stderr.push(String(chunk)) > 0);
  try {
    for (const type of ['Q8_0', 'Q4_K_M', 'Q5_K_M', 'Q6_K']) expect((await loadModel(fixtureFile(type), { threads: 1 })).model.backendName).toBe('native');
  } finally {
    spy.mockRestore();
  }
  expect(stderr.join('')).not.toMatch(/widening/);
});

describe('the CLI', () => {
  const q8 = path.join(GGUF_LLAMACPP, 'model-Q8_0.gguf');
  const prompt = JSON.stringify(storyStart);
  const args = ['generate', '-m', q8, '--prompt-ids', '-', '-n', '8', '--temperature', '0', '--threads', '1', '--json'];

  test('HERD_NATIVE=0: env says why, and the same Q8_0 file runs on the WASM kernels with the native backend\'s tokens', () => {
    const env = JSON.parse(herd(['env', '--json'], undefined, { HERD_NATIVE: '0' }).stdout);
    expect(env.backends.find((b: { name: string }) => b.name === 'native')).toEqual({ name: 'native', available: false, reason: 'switched off by HERD_NATIVE=0' });
    expect(env.default_backend.packed).toBe('kernels');
    const [off, on] = [herd(args, prompt, { HERD_NATIVE: '0' }), herd(args, prompt)];
    expect([off.status, on.status]).toEqual([0, 0]);
    const [offJson, onJson] = [JSON.parse(off.stdout), JSON.parse(on.stdout)];
    expect([offJson.backend, onJson.backend]).toEqual(['kernels', 'native']);
    expect(offJson.generated_ids).toHaveLength(8);
    expect(offJson.generated_ids).toEqual(onJson.generated_ids);
  });

  test('HERD_CPU_ISA forces a path (env says so) and one this build lacks is one error line', () => {
    const env = JSON.parse(herd(['env', '--json'], undefined, { HERD_CPU_ISA: 'scalar' }).stdout);
    expect(env.backends.find((b: { name: string }) => b.name === 'native').reason).toContain('scalar path (forced by HERD_CPU_ISA=scalar');
    const refused = herd([...args, '--backend', 'native'], prompt, { HERD_CPU_ISA: 'avx9000' });
    expect(refused.status).not.toBe(0);
    expect(refused.stderr.trim().split('\n')[0]).toMatch(/HERD_CPU_ISA=avx9000 cannot run here/);
  });
});

test('a batched pass of three sequences (F16 caches, one copied from another) gives each its own forward\'s logits', async () => {
  const loaded = await loadModel(path.join(GGUF_LLAMACPP, 'model-Q8_0.gguf'), { backend: 'native', threads: 3, kvCacheType: 'f16' });
  const { model } = loaded;
  const prompts = [storyStart.slice(0, 7), storyStart.slice(3, 15), storyStart.slice(10, 12)].map((ids) => Int32Array.from(ids));
  const alone = prompts.map((ids) => {
    const cache = model.createCache(32);
    model.forward(ids.subarray(0, ids.length - 1), cache);
    return model.forward(ids.subarray(ids.length - 1), cache);
  });
  // Each sequence's prefix first (the third's through copyCache from a cache holding it), then the last ids of all three in one pass.
  const caches = prompts.map(() => model.createCache(32));
  model.forward(prompts[0]!.subarray(0, -1), caches[0]!);
  model.forward(prompts[1]!.subarray(0, -1), caches[1]!);
  const donor = model.createCache(16);
  model.forward(prompts[2]!.subarray(0, -1), donor);
  model.copyCache(donor, caches[2]!, prompts[2]!.length - 1);
  const batched = model.forwardBatch(prompts.map((ids, i) => ({ ids: ids.subarray(-1), cache: caches[i]! })));
  batched.forEach((logits, i) => {
    const worst = logits.reduce((most, value, v) => Math.max(most, Math.abs(value - alone[i]![v]!)), 0);
    // The same rows through the same kernels: only the products' summation across a batch of rows may differ.
    expect(worst).toBeLessThan(1e-4);
  });
});
