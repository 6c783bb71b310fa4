import type { Ops } from '../src/engine/ops.js';
import { seededRandom } from '../src/engine/sampling.js';
import { type Block32Format, type WeightSource } from '../src/formats/weights.js';
import { KernelOps } from '../src/kernels/wasm-ops.js';
import { randomPacked } from './random-packed.js';
import { exactProducts, linearOn, StoredWeights } from './stored-weights.js';

// The kernels of src/kernels/assembly/blocks32.ts against exact math on the same weights: each
// product is compared with float64 dequantize-then-matmul, where the dequantization is
// dequantizeGgml (held to ggml's block definitions by hand-built blocks in ggml-types.test.ts).

type AnyOps = Ops<unknown, unknown>;

const FORMATS: Block32Format[] = ['Q4_1', 'Q5_0', 'Q5_1', 'IQ4_NL'];
const random = seededRandom(32);

/** Random GGUF rows of `format`: random code and qh bytes, f16 scales (and mins) of either sign up to 0.05. */
const randomRows = (format: Block32Format, rows: number, cols: number) => randomPacked(format, rows, cols, rows * cols).bytes;

function gaussian(count: number): Float32Array {
  return Float32Array.from({ length: count }, () => (random() + random() + random() - 1.5) * 2);
}

/**
 * Checks y = x·Wᵀ against float64 sums over the dequantized weights: each output within
 * 2e-6 · Σ_k |w_k·x_k| (float32 rounding of products and partial sums in any order, √K-ish).
 */
function expectExactMath(y: Float32Array, w: Float32Array, x: Float32Array, rows: number, cols: number): void {
  const { exact, magnitude } = exactProducts(w, x, rows, cols);
  expect(y).toHaveLength(exact.length);
  let worst = 0;
  y.forEach((value, i) => (worst = Math.max(worst, Math.abs(value - exact[i]!) / (magnitude[i]! * 2e-6 + 1e-30))));
  expect(worst).toBeLessThan(1);
}

// One thread, and three (the main thread and two workers, each holding a shard of the rows).
describe.each([1, 3])('%i thread(s)', (threads) => {
  let ops: AnyOps;

  beforeAll(async () => {
    ops = (await KernelOps.create({ threads })) as unknown as AnyOps;
  });

  afterAll(async () => {
    await (ops as unknown as KernelOps).close();
  });

  // 13 × 64: rows not a multiple of four; 37 × 96: an odd block count; 211 × 2048: decode's passes
  // of four rows some 64 KiB apart, then the rows left over (37 tokens there would only slow the
  // float64 reference down).
  describe.each(FORMATS)('%s', (format) => {
    test.each([[13, 64, [1, 3, 37]], [37, 96, [1, 3, 37]], [211, 2048, [1, 3]]])('linear with %i rows of %i equals dequantize-then-matmul for %j tokens', (rows, cols, tokenCounts) => {
      const source = new StoredWeights().addPacked('w', format, [rows, cols], randomRows(format, rows, cols));
      const w = source.readFloat('w').data;
      for (const tokens of tokenCounts) {
        const x = gaussian(tokens * cols);
        expectExactMath(linearOn(ops, source, 'w', x, cols), w, x, rows, cols);
      }
    });

    test('embedding rows are exactly the dequantized rows', () => {
      const [rows, cols] = [23, 96];
      const source = new StoredWeights().addPacked('table', format, [rows, cols], randomRows(format, rows, cols));
      const table = ops.embeddingWeight('table', source);
      const ids = Int32Array.of(0, 22, 5, 5, 13, 21, 8);
      const got = ops.scope(() => ops.read(ops.embedding(table, ids)));
      const all = source.readFloat('table').data;
      const expected = [...ids].flatMap((id) => [...all.subarray(id * cols, (id + 1) * cols)]);
      expect([...got]).toEqual(expected);
    });
  });
});

test('a quantized type the kernels do not compute on is dequantized at load with one notice of its memory cost per type', async () => {
  const notices: string[] = [];
  const ops = await KernelOps.create({ threads: 1, notice: (line) => notices.push(line) });
  try {
    const floats = new StoredWeights().addFloat('a', [4, 32], new Float32Array(128)).addFloat('b', [4, 32], new Float32Array(128));
    // As GGUF's TQ2_0 is: only floats to offer, 66 bytes per 256 weights stored.
    const source: WeightSource = { readFloat: (name) => floats.readFloat(name), dequantizedAtLoad: () => ({ type: 'TQ2_0', bytesPerWeight: 66 / 256 }) };
    ops.linearWeight('a', source);
    ops.linearWeight('b', source);
    expect(notices).toEqual(['the CPU kernels do not compute on TQ2_0; its tensors are dequantized to float32 at load (4 bytes per weight instead of 0.258, 15.5× the memory)']);
  } finally {
    await ops.close();
  }
});
