import { activateBackend } from '../src/backends/registry.js';
import { generate } from '../src/engine/generate.js';
import { floatToHalf } from '../src/formats/half.js';
import { loadModel } from '../src/backends/load.js';
import { openModelFolder } from '../src/engine/load.js';
import { LlamaForCausalLM } from '../src/engine/model.js';
import type { Ops } from '../src/engine/ops.js';
import type { Block32Format, PackedFormat, WeightSource } from '../src/formats/weights.js';
import { ropeTables } from '../src/engine/rope.js';
import { GREEDY, seededRandom } from '../src/engine/sampling.js';
import { KernelOps } from '../src/kernels/wasm-ops.js';
import { StoredWeights } from './stored-weights.js';
import { quantizeBlocks } from '../src/formats/ggml-blocks.js';
import { quantizeQ4K } from '../src/formats/ggml-k-blocks.js';
import type { KQuantType } from '../src/formats/ggml-k-quants.js';
import { roundHalfEven } from '../src/formats/int4.js';
import { STORIES, TINY_LLAMA, readJson } from './fixtures.js';

/**
 * The formats this file packs itself (INT4_G128 comes from AWQ/GPTQ checkpoints:
 * test/kernels-int4.test.ts; the other GGUF blocks of 32 are built in test/kernels-blocks32.test.ts,
 * the other K-quants in test/kernels-kquants.test.ts).
 */
type TestFormat = Exclude<PackedFormat, 'INT4_G128' | Block32Format | KQuantType>;

/** The shared stored weights, filled with float values packed here in the format under test. */
class MemorySource extends StoredWeights {
  add(name: string, format: TestFormat, shape: number[], values: Float32Array): this {
    return this.addPacked(name, format, shape, pack(format, values));
  }
}

function pack(format: TestFormat, values: Float32Array): Uint8Array {
  if (format === 'F32') return new Uint8Array(Float32Array.from(values).buffer);
  if (format === 'F16') return new Uint8Array(Uint16Array.from(values, floatToHalf).buffer);
  if (format === 'BF16') return new Uint8Array(Uint16Array.from(new Uint32Array(Float32Array.from(values).buffer), (bits) => bits >>> 16).buffer);
  if (format === 'Q4_K') return quantizeQ4K(values);
  return quantizeBlocks(format, values);
}

const random = seededRandom(11);
const gaussianFrom = (seed: number, count: number) => {
  const draw = seededRandom(seed);
  return Float32Array.from({ length: count }, () => (draw() + draw() + draw() - 1.5) * 2);
};
const gaussian = (count: number, scale = 1) => Float32Array.from({ length: count }, () => scale * (random() + random() + random() - 1.5) * 2);

type AnyOps = Ops<unknown, unknown>;
type Compute = (ops: AnyOps, input: Record<string, unknown>, weights: Record<string, unknown>) => unknown;

let reference: AnyOps;
let kernels: AnyOps;

beforeAll(async () => {
  reference = await activateBackend({ backend: 'wasm' });
});

/**
 * Runs one computation on a backend. Inputs enter through embedding rows of an F32 table (a
 * public op); weights and tables are loaded before the scratch scope of the pass.
 */
function run(ops: AnyOps, inputs: Record<string, Float32Array>, width: number, source: WeightSource, weightNames: string[], compute: Compute): Float32Array {
  const tables = new MemorySource();
  for (const [name, data] of Object.entries(inputs)) tables.add(name, 'F32', [data.length / width, width], data);
  const loadedTables = Object.keys(inputs).map((name) => [name, ops.embeddingWeight(name, tables)] as const);
  const weights = Object.fromEntries(weightNames.map((name) => [name, name.startsWith('norm') ? ops.vectorWeight(name, source) : ops.linearWeight(name, source)]));
  return ops.scope(() => {
    const input = Object.fromEntries(loadedTables.map(([name, table]) => [name, ops.embedding(table, Int32Array.from({ length: inputs[name]!.length / width }, (_, i) => i))]));
    return ops.read(compute(ops, input, weights));
  });
}

function onBoth(inputs: Record<string, Float32Array>, width: number, source: WeightSource, weightNames: string[], compute: Compute): [Float32Array, Float32Array] {
  return [run(kernels, inputs, width, source, weightNames, compute), run(reference, inputs, width, source, weightNames, compute)];
}

function expectClose(actual: Float32Array, expected: Float32Array, tolerance: number): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / (1 + Math.abs(expected[i]!)));
  expect(worst).toBeLessThan(tolerance);
}

/** x quantized to Q8_0 blocks and back, as the kernel's activations are (float32 scale, round half to even). */
function quantizedActivations(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < x.length / 32; b++) {
    const block = x.subarray(b * 32, (b + 1) * 32);
    const scale = Math.fround(Math.max(...Array.from(block, Math.abs)) / 127);
    const inverse = scale === 0 ? 0 : Math.fround(1 / scale);
    block.forEach((value, i) => (out[b * 32 + i] = roundHalfEven(Math.fround(value * inverse)) * scale));
  }
  return out;
}

/** Half the Q8_0 quantization step of each activation's block: the most rounding moves it. */
function halfSteps(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < x.length / 32; b++) out.fill(Math.max(...Array.from(x.subarray(b * 32, (b + 1) * 32), Math.abs)) / 127 / 2, b * 32, (b + 1) * 32);
  return out;
}

function matmul(w: Float32Array, x: Float32Array, rows: number, cols: number, tokens: number): Float32Array {
  const y = new Float32Array(rows * tokens);
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) {
      let sum = 0;
      for (let k = 0; k < cols; k++) sum += w[r * cols + k]! * x[t * cols + k]!;
      y[t * rows + r] = sum;
    }
  }
  return y;
}

// Every test runs on one thread and on three (the main thread and two workers, each holding a
// shard of every linear weight), whatever the machine's core count.
describe.each([1, 3])('%i thread(s)', (threads) => {
  beforeAll(async () => {
    kernels = (await KernelOps.create({ threads })) as unknown as AnyOps;
  });

  afterAll(async () => {
    await (kernels as unknown as KernelOps).close();
  });

  describe('each kernel equals the tfjs op on awkward shapes', () => {
    // 13 × 67: single rows and the scalar tail; 37 × 2050 on one thread: also decode's passes of
    // four rows in streams some 64 KiB apart.
    test.each([
      ['F32', 13, 67], ['F16', 13, 67], ['BF16', 13, 67], ['F32', 37, 2050], ['F16', 37, 2050], ['BF16', 37, 2050],
    ] as const)('linear on %s weights: %i rows, K = %i, 1 to 6 tokens', (format, rows, cols) => {
      const source = new MemorySource().add('w', format, [rows, cols], gaussian(rows * cols, 0.1));
      for (let tokens = 1; tokens <= 6; tokens++) {
        const [onKernels, onTfjs] = onBoth({ x: gaussian(tokens * cols) }, cols, source, ['w'], (ops, input, weights) => ops.linear(input.x, weights.w));
        // Both sides round in float32, in different orders: the difference grows as √K.
        expectClose(onKernels, onTfjs, 2e-6 * Math.sqrt(cols));
      }
    });

    // With workers a linear returns before their rows arrive; whatever reads it first waits for them.
    test('three linears of one input (as q, k and v), read last first', () => {
      const source = new MemorySource();
      for (const name of ['q', 'k', 'v']) source.add(name, 'F32', [13, 67], gaussian(13 * 67, 0.1));
      const [onKernels, onTfjs] = onBoth({ x: gaussian(3 * 67) }, 67, source, ['q', 'k', 'v'], (ops, input, weights) => {
        const [q, k, v] = [weights.q, weights.k, weights.v].map((w) => ops.linear(input.x, w));
        return ops.add(ops.add(v!, k!), q!);
      });
      expectClose(onKernels, onTfjs, 1e-5);
    });

    // The workers' activations and results cross in shared buffers of 4 Mi floats: here a and b
    // (520 × 4096 results each) do not fit together, and c (520 × 8200) does not fit at all.
    test('linears whose results exceed the buffers shared with the workers', () => {
      const source = new MemorySource()
        .add('a', 'F32', [4096, 8], gaussian(4096 * 8, 0.3)).add('b', 'F32', [4096, 8], gaussian(4096 * 8, 0.3)).add('c', 'F32', [8200, 8], gaussian(8200 * 8, 0.3))
        .add('fromA', 'F32', [16, 4096], gaussian(16 * 4096, 0.02)).add('fromC', 'F32', [16, 8200], gaussian(16 * 8200, 0.02));
      const [onKernels, onTfjs] = onBoth({ x: gaussian(520 * 8) }, 8, source, ['a', 'b', 'c', 'fromA', 'fromC'], (ops, input, w) => {
        const [a, b, c] = [w.a, w.b, w.c].map((weight) => ops.linear(input.x, weight));
        return ops.add(ops.add(ops.linear(a!, w.fromA), ops.linear(b!, w.fromA)), ops.linear(c!, w.fromC));
      });
      expectClose(onKernels, onTfjs, 1e-4);
    });

    test('rmsnorm, swiglu and add with 37 features', () => {
      const source = new MemorySource().add('norm', 'F32', [37], gaussian(37));
      const [onKernels, onTfjs] = onBoth({ a: gaussian(3 * 37), b: gaussian(3 * 37) }, 37, source, ['norm'], (ops, input, weights) =>
        ops.add(ops.swiglu(ops.rmsNorm(input.a, weights.norm, 1e-5), input.b), input.a));
      expectClose(onKernels, onTfjs, 1e-5);
    });

    test('RoPE on 3 heads of 10 at positions 5..8, then the last 2 rows', () => {
      const tables = ropeTables(Float32Array.of(1, 0.3, 0.05, 0.01, 0.002), 5, 4);
      const [onKernels, onTfjs] = onBoth({ x: gaussian(4 * 30) }, 30, new MemorySource(), [], (ops, input) => ops.lastRows(ops.rope(input.x, 3, tables), 2));
      expect(onKernels).toHaveLength(60);
      expectClose(onKernels, onTfjs, 1e-6);
    });

    // Head 12: values a dimension at a time; head 40: one pass of 32 dimensions, then 8 more.
    test.each([12, 40])('grouped-query attention over a cache: 6 heads, 2 kv heads, head %i, prefill 5 then 3 more', (headDim) => {
      const steps = [5, 3].map((rows, step) => ({
        rows, q: gaussianFrom(step, rows * 6 * headDim), k: gaussianFrom(step + 10, rows * 2 * headDim), v: gaussianFrom(step + 20, rows * 2 * headDim),
      }));
      const [onKernels, onTfjs] = [kernels, reference].map((ops) => {
        const cache = ops.createKvCache({ layers: 1, kvHeads: 2, headDim, capacity: 9 });
        const outputs = steps.map(({ rows, q, k, v }) => {
          const tables = new MemorySource().add('q', 'F32', [rows, 6 * headDim], q).add('k', 'F32', [rows, 2 * headDim], k).add('v', 'F32', [rows, 2 * headDim], v);
          const loaded = ['q', 'k', 'v'].map((name) => ops.embeddingWeight(name, tables));
          const out = ops.scope(() => {
            const [qs, ks, vs] = loaded.map((table) => ops.embedding(table, Int32Array.from({ length: rows }, (_, i) => i)));
            return ops.read(ops.attention(qs!, ks!, vs!, 0, [{ cache, start: cache.length, rows }]));
          });
          cache.length += rows;
          return out;
        });
        cache.dispose();
        return outputs;
      });
      onKernels!.forEach((output, step) => expectClose(output, onTfjs![step]!, 1e-5));
    });

    test.each([['F32', 64], ['BF16', 64], ['Q8_0', 64], ['Q4_0', 64], ['Q4_K', 256]] as const)('embedding rows from a %s table of width %i', (format, width) => {
      const source = new MemorySource().add('table', format, [9, width], gaussian(9 * width));
      const ids = Int32Array.of(8, 0, 3, 3);
      const table = kernels.embeddingWeight('table', source);
      const onKernels = kernels.scope(() => kernels.read(kernels.embedding(table, ids)));
      const values = source.readFloat('table').data;
      const expected = Float32Array.from({ length: ids.length * width }, (_, i) => values[ids[Math.floor(i / width)]! * width + (i % width)]!);
      expectClose(onKernels, expected, 1e-6);
    });
  });

  describe('quantized matrix-vector products', () => {
    // 13 rows: groups of four and a short last group; 71 rows: also decode's passes of 32 rows in
    // eight streams (Q4_K: 16 rows in four); 263 rows of 2048 or 4096: streams spaced 64 KiB apart.
    test.each([
      ['Q8_0', 13, 96, 102], ['Q8_0', 71, 96, 102], ['Q8_0', 263, 2048, 2176], ['Q4_0', 13, 96, 54], ['Q4_0', 71, 64, 36], ['Q4_0', 263, 4096, 2304],
      ['Q4_K', 13, 512, 288], ['Q4_K', 71, 256, 144], ['Q4_K', 263, 2048, 1152],
    ] as const)('%s: equals dequantize-then-matmul of the Q8_0-quantized activations; %i rows, K = %i', (format, rows, cols, rowBytes) => {
      const source = new MemorySource().add('w', format, [rows, cols], gaussian(rows * cols, 0.1));
      expect(source.describePacked('w').byteLength).toBe(rows * rowBytes);
      const weights = source.readFloat('w').data;
      // 3 and 6 tokens: decode's passes for a batch of sequences (up to 8 tokens) where rows come
      // in passes of 32, prefill's passes of up to four tokens for the rest; 11 tokens: prefill's
      // passes throughout, and a short last one.
      for (const tokens of [1, 3, 6, 11]) {
        const x = gaussian(tokens * cols);
        const onKernels = run(kernels, { x }, cols, source, ['w'], (ops, input, w) => ops.linear(input.x, w.w));
        // The kernel multiplies integer codes: exactly Σ dequant(W) · dequant(quant(x)), up to float rounding.
        expectClose(onKernels, matmul(weights, quantizedActivations(x), rows, cols, tokens), 1e-5);
        // Against the float activations, each output is off by at most Σ|w|·(half a quantization step).
        const exact = matmul(weights, x, rows, cols, tokens);
        const bound = matmul(weights.map(Math.abs), halfSteps(x), rows, cols, tokens);
        onKernels.forEach((value, i) => expect(Math.abs(value - exact[i]!)).toBeLessThanOrEqual(bound[i]! * 1.0001 + 1e-5));
      }
    });
    // Every weight and activation code at ±127: a pair of products reaches 2·127² = 32258, the
    // most an int16 lane of the 8-bit dot product holds, and rows 0 and 1 have all products of one
    // sign. Exact integer sums give dequantize-then-matmul to float rounding; a wrapped or
    // saturated lane would be off by 65536 · scale².
    test.each(['Q8_0', 'Q4_0'] as const)('%s at the extremes of the codes: still exact', (format) => {
      const rows = 37, cols = 128;
      const signs = Float32Array.from({ length: cols }, () => (random() < 0.5 ? -1 : 1));
      const w = Float32Array.from({ length: rows * cols }, (_, i) => {
        const r = Math.floor(i / cols), c = i % cols;
        return r === 0 ? signs[c]! : r === 1 ? -signs[c]! : random() < 0.5 ? -1 : 1;
      });
      const source = new MemorySource().add('w', format, [rows, cols], w);
      const x = Float32Array.from(signs, (sign) => sign * 3);
      const onKernels = run(kernels, { x }, cols, source, ['w'], (ops, input, weights) => ops.linear(input.x, weights.w));
      expectClose(onKernels, matmul(source.readFloat('w').data, quantizedActivations(x), rows, cols, 1), 1e-5);
      expect(Math.abs(onKernels[0]!)).toBeGreaterThan(100);
    });
  });

  describe('the model on the kernels', () => {
    test('tiny-llama-3.1 (BF16 weights computed as stored): greedy ids and top-5 logprobs of the oracle', async () => {
      const loaded = await loadModel(TINY_LLAMA, { backend: 'kernels', threads });
      const { cases } = readJson<{ cases: Array<{ prompt_ids: number[]; generated_ids: number[]; steps: Array<{ top: Array<[number, number]> }> }> }>(`${TINY_LLAMA}/reference.json`);
      for (const c of cases) {
        const result = generate(loaded.model, loaded.tokenizer, { promptIds: c.prompt_ids, maxNewTokens: 16, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs: 5 });
        expect(result.generatedIds).toEqual(c.generated_ids);
        result.tokens.forEach((token, step) => token.top.forEach(([id, logprob], rank) => {
          expect(id).toBe(c.steps[step]!.top[rank]![0]);
          expect(Math.abs(logprob - c.steps[step]!.top[rank]![1])).toBeLessThan(1e-3);
        }));
      }
    });

    test('stories260K (F32): the 40 reference tokens', async () => {
      const loaded = await loadModel(STORIES, { backend: 'kernels', threads });
      const reference = readJson<{ generated_ids: number[] }>(`${STORIES}/reference.json`);
      const result = generate(loaded.model, loaded.tokenizer, { promptIds: [1], maxNewTokens: 40, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs: 0 });
      expect(result.generatedIds).toEqual(reference.generated_ids);
    });

    test('weights spread over many memories per thread give exactly the logits of one memory per thread', async () => {
      const { config, checkpoint } = openModelFolder(TINY_LLAMA);
      const logitsWith = async (weightBytesPerMemory?: number) => {
        const ops = await KernelOps.create({ threads, weightBytesPerMemory });
        try {
          const model = LlamaForCausalLM.load(config, checkpoint, ops as unknown as AnyOps);
          const cache = model.createCache(6);
          // Embedding lookups and products in every memory, on a prompt and a decoded token.
          const prompt = model.forward(Int32Array.of(128000, 791, 6864, 315, 9822), cache, { allPositions: true });
          const decoded = model.forward(Int32Array.of(1174), cache);
          return { logits: [...prompt, ...decoded], memories: ops.mainMemories };
        } finally {
          await ops.close();
        }
      };
      try {
        const single = await logitsWith();
        // 40 KiB a memory: tiny-llama's matrices take 4 to 24 KiB as BF16 (a thread's share of
        // them less), its embedding table and head 16 MiB each, so the threads make several memories.
        const spread = await logitsWith(40 * 1024);
        expect(single.memories).toBe(1);
        expect(spread.memories).toBeGreaterThanOrEqual(4);
        expect(spread.logits).toHaveLength(single.logits.length);
        expect(spread.logits.filter((logit, i) => logit !== single.logits[i])).toHaveLength(0);
      } finally {
        checkpoint.close();
      }
    });

    test('stories260K in Q8_0: the kernels give the greedy tokens the tfjs path gives on the same weights', () => {
      // Q8_0 needs rows that are multiples of 32: every matrix but down_proj (172 columns), which stays F32.
      const { config, checkpoint } = openModelFolder(STORIES);
      const source = new MemorySource();
      for (const name of checkpoint.names()) {
        const host = checkpoint.readFloat(name);
        const quantizable = host.shape.length === 2 && host.shape[1]! % 32 === 0;
        source.add(name, quantizable ? 'Q8_0' : 'F32', host.shape, host.data);
      }
      checkpoint.close();
      const greedyIds = (ops: AnyOps) => {
        const model = LlamaForCausalLM.load(config, source, ops);
        const cache = model.createCache(41);
        const ids = [1];
        let logits = model.forward(Int32Array.of(1), cache);
        for (let step = 0; step < 40; step++) {
          ids.push(logits.indexOf(Math.max(...logits)));
          logits = model.forward(Int32Array.of(ids[ids.length - 1]!), cache);
        }
        cache.dispose();
        model.dispose();
        return ids;
      };
      expect(greedyIds(kernels)).toEqual(greedyIds(reference));
    });
  });
});

describe('F16 KV cache', () => {
  // On two threads each keeps one of the two kv heads' cache.
  test.each([[12, 1], [40, 2]])('attention over half-precision keys and values stays within half precision of float32 (head %i, %i thread(s))', async (headDim, threads) => {
    const half = (await KernelOps.create({ threads, kvCacheType: 'f16' })) as unknown as AnyOps;
    const rows = 6;
    const inputs = { q: gaussianFrom(1, rows * 6 * headDim), k: gaussianFrom(2, rows * 2 * headDim), v: gaussianFrom(3, rows * 2 * headDim) };
    const [onHalf, onTfjs] = [half, reference].map((ops) => {
      const cache = ops.createKvCache({ layers: 1, kvHeads: 2, headDim, capacity: rows });
      const tables = new MemorySource().add('q', 'F32', [rows, 6 * headDim], inputs.q).add('k', 'F32', [rows, 2 * headDim], inputs.k).add('v', 'F32', [rows, 2 * headDim], inputs.v);
      const loaded = ['q', 'k', 'v'].map((name) => ops.embeddingWeight(name, tables));
      const out = ops.scope(() => {
        const [q, k, v] = loaded.map((table) => ops.embedding(table, Int32Array.from({ length: rows }, (_, i) => i)));
        return ops.read(ops.attention(q!, k!, v!, 0, [{ cache, start: 0, rows }]));
      });
      cache.dispose();
      return out;
    });
    // Half precision keeps 11 significant bits: relative error about 5e-4 per value.
    expectClose(onHalf!, onTfjs!, 5e-3);
    await (half as unknown as KernelOps).close();
  });

  test('stories260K with an F16 KV cache: the 40 reference tokens, logprobs moved only by half-precision rounding', async () => {
    const run = async (kvCacheType: 'f32' | 'f16') => {
      const loaded = await loadModel(STORIES, { backend: 'kernels', threads: 1, kvCacheType });
      return generate(loaded.model, loaded.tokenizer, { promptIds: [1], maxNewTokens: 40, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs: 1 });
    };
    const [full, half] = [await run('f32'), await run('f16')];
    const reference = readJson<{ generated_ids: number[] }>(`${STORIES}/reference.json`);
    expect(half.generatedIds).toEqual(reference.generated_ids);
    const shifts = half.tokens.map((token, i) => Math.abs(token.logprob - full.tokens[i]!.logprob));
    // Nonzero: the cache really is half precision; small: 11 significant bits.
    expect(Math.max(...shifts)).toBeGreaterThan(0);
    expect(Math.max(...shifts)).toBeLessThan(1e-2);
  });
});
