import { activateBackend } from '../src/backends/registry.js';
import type { Ops } from '../src/engine/ops.js';
import { seededRandom } from '../src/engine/sampling.js';
import { K_QUANT_BYTES, type KQuantType } from '../src/formats/ggml-k-quants.js';
import { floatToHalf } from '../src/formats/half.js';
import { KernelOps } from '../src/kernels/wasm-ops.js';
import { exactProducts, linearOn, StoredWeights } from './stored-weights.js';

/**
 * The K-quant kernels (linear_kquant, embedding_kquant) against the TypeScript dequantizers,
 * which test/ggml-k-quants.test.ts checks against the block definitions. The kernels multiply
 * float activations, so a product must equal dequantize-then-matmul up to float32 rounding.
 */

type AnyOps = Ops<unknown, unknown>;

// Where each type keeps its f16 super-scale d and, for the types with mins, dmin.
const SCALE_OFFSETS: Record<KQuantType, { d: number; dmin?: number }> = {
  Q6_K: { d: 208 }, Q5_K: { d: 0, dmin: 2 }, Q3_K: { d: 108 }, Q2_K: { d: 80, dmin: 82 }, IQ4_XS: { d: 0 },
};
const TYPES = Object.keys(SCALE_OFFSETS) as KQuantType[];

/**
 * Rows of random super-blocks: every code, scale and bit-field byte random (any bytes are a valid
 * block), d and dmin set to f16 values of about 1/500 so the weights are of a model's size.
 */
function randomRows(type: KQuantType, rows: number, cols: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  const blockBytes = K_QUANT_BYTES[type];
  const bytes = Uint8Array.from({ length: rows * (cols / 256) * blockBytes }, () => Math.floor(random() * 256));
  const { d, dmin } = SCALE_OFFSETS[type];
  for (let at = 0; at < bytes.length; at += blockBytes) {
    for (const offset of dmin === undefined ? [d] : [d, dmin]) {
      const bits = floatToHalf((0.5 + random()) / 500);
      bytes[at + offset] = bits & 0xff;
      bytes[at + offset + 1] = bits >> 8;
    }
  }
  return bytes;
}

const gaussian = (count: number, seed: number) => {
  const random = seededRandom(seed);
  return Float32Array.from({ length: count }, () => (random() + random() + random() - 1.5) * 2);
};

describe.each([1, 3])('%i thread(s)', (threads) => {
  let kernels: AnyOps;
  beforeAll(async () => {
    kernels = (await KernelOps.create({ threads })) as unknown as AnyOps;
  });
  afterAll(async () => {
    await (kernels as unknown as KernelOps).close();
  });

  // 1 and 3 rows: no full group of four; 37: decode's four rows at a time and a tail; 263 rows of
  // 2048 (Q6_K: 1,680 bytes a row): four streams some 64 KiB apart, then single rows.
  // 1, 3 and 37 tokens: decode, prefill's passes of four with a short one, and a second tile of 32
  // (263 × 2048 stops at 3, to keep the float64 reference quick).
  describe.each(TYPES)('%s', (type) => {
    test.each([[1, 256, [1, 3, 37]], [3, 512, [1, 3, 37]], [37, 256, [1, 3, 37]], [263, 2048, [1, 3]]])('linear: %i rows, K = %i, tokens %j, equals dequantize-then-matmul', (rows, cols, tokenCounts) => {
      const source = new StoredWeights().addPacked('w', type, [rows, cols], randomRows(type, rows, cols, rows + cols));
      const w = source.readFloat('w').data;
      for (const tokens of tokenCounts) {
        const x = gaussian(tokens * cols, tokens);
        const y = linearOn(kernels, source, 'w', x, cols);
        const { exact, magnitude } = exactProducts(w, x, rows, cols);
        expect(y).toHaveLength(rows * tokens);
        // float32 sums of `cols` products: off by far less than 2e-5 · Σ|w·x|.
        y.forEach((value, i) => expect(Math.abs(value - exact[i]!)).toBeLessThanOrEqual(2e-5 * magnitude[i]! + 1e-30));
      }
    });

    test('embedding rows equal the dequantized rows exactly', () => {
      const width = 512;
      const source = new StoredWeights().addPacked('table', type, [9, width], randomRows(type, 9, width, 5));
      const ids = Int32Array.of(8, 0, 3, 3);
      const table = kernels.embeddingWeight('table', source);
      const rows = kernels.scope(() => kernels.read(kernels.embedding(table, ids)));
      const values = source.readFloat('table').data;
      expect([...rows]).toEqual(Array.from({ length: ids.length * width }, (_, i) => values[ids[Math.floor(i / width)]! * width + (i % width)]!));
    });
  });
});

// The tfjs backend reads K-quant weights through readFloat: the same products as the kernels.
test('the tfjs backend computes the same products from the dequantized weights', async () => {
  const reference = (await activateBackend({ backend: 'wasm' })) as unknown as AnyOps;
  const kernels = (await KernelOps.create({ threads: 1 })) as unknown as AnyOps;
  try {
    for (const type of TYPES) {
      const source = new StoredWeights().addPacked('w', type, [13, 512], randomRows(type, 13, 512, 77));
      const x = gaussian(5 * 512, 9);
      const onKernels = linearOn(kernels, source, 'w', x, 512);
      const onTfjs = linearOn(reference, source, 'w', x, 512);
      onKernels.forEach((value, i) => expect(Math.abs(value - onTfjs[i]!)).toBeLessThan(1e-4 * (1 + Math.abs(onTfjs[i]!))));
    }
  } finally {
    await (kernels as unknown as KernelOps).close();
  }
});
