import path from 'node:path';
import { generate } from '../src/engine/generate.js';
import { loadModel } from '../src/engine/load.js';
import { GREEDY } from '../src/engine/sampling.js';
import { herdWith } from './herd-cli.js';
import { GGUF_LLAMACPP, STORIES, TINY_LLAMA, readJson } from './fixtures.js';

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

// Q4_K_M's Q6_K tensors are widened to float32 on the native backend (exact math, as the WASM
// kernels' Q6_K path computes): the Q4_K matrices decide whether the tokens agree.
test.each(['model-Q8_0.gguf', 'model-Q4_K_M.gguf'])('%s: native greedy tokens equal the WASM kernels\'', async (file) => {
  const model = path.join(GGUF_LLAMACPP, file);
  const [native, kernels] = [await greedy(model, 'native', storyStart, 16), await greedy(model, 'kernels', storyStart, 16)];
  expect(native.backend).toBe('native');
  expect(native.result.generatedIds).toEqual(kernels.result.generatedIds);
});

test('automatic selection: native for a file of types it computes on, the WASM kernels when one tensor is not (Q6_K)', async () => {
  expect((await loadModel(path.join(GGUF_LLAMACPP, 'model-Q8_0.gguf'), { threads: 1 })).model.backendName).toBe('native');
  expect((await loadModel(path.join(GGUF_LLAMACPP, 'model-Q4_K_M.gguf'), { threads: 1 })).model.backendName).toBe('kernels');
});

describe('the CLI', () => {
  const q8 = path.join(GGUF_LLAMACPP, 'model-Q8_0.gguf');
  const prompt = JSON.stringify(storyStart);
  const args = ['generate', '-m', q8, '--prompt-ids', '-', '-n', '8', '--temperature', '0', '--threads', '1', '--json'];

  test('HERD_NATIVE=0: env says why, and the same Q8_0 file runs on the WASM kernels with the native backend\'s tokens', () => {
    const env = JSON.parse(herdWith({ HERD_NATIVE: '0' }, ['env', '--json']).stdout);
    expect(env.backends.find((b: { name: string }) => b.name === 'native')).toEqual({ name: 'native', available: false, reason: 'switched off by HERD_NATIVE=0' });
    expect(env.default_backend.packed).toBe('kernels');
    const [off, on] = [herdWith({ HERD_NATIVE: '0' }, args, prompt), herdWith({}, args, prompt)];
    expect([off.status, on.status]).toEqual([0, 0]);
    const [offJson, onJson] = [JSON.parse(off.stdout), JSON.parse(on.stdout)];
    expect([offJson.backend, onJson.backend]).toEqual(['kernels', 'native']);
    expect(offJson.generated_ids).toHaveLength(8);
    expect(offJson.generated_ids).toEqual(onJson.generated_ids);
  });

  test('HERD_CPU_ISA forces a path (env says so) and one this build lacks is one error line', () => {
    const env = JSON.parse(herdWith({ HERD_CPU_ISA: 'scalar' }, ['env', '--json']).stdout);
    expect(env.backends.find((b: { name: string }) => b.name === 'native').reason).toContain('scalar path (forced by HERD_CPU_ISA=scalar');
    const refused = herdWith({ HERD_CPU_ISA: 'avx9000' }, [...args, '--backend', 'native'], prompt);
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
