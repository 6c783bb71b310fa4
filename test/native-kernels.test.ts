import { dequantizeBlocks, quantizeBlocks } from '../src/formats/ggml-blocks.js';
import { dequantizeGgml } from '../src/formats/ggml-dequantize.js';
import { GgmlType } from '../src/formats/gguf.js';
import { dequantizeQ4K, quantizeQ4K } from '../src/formats/ggml-k-blocks.js';
import { floatToHalf, halfToFloat } from '../src/formats/half.js';
import { seededRandom } from '../src/engine/sampling.js';
import { ISA_NAMES, requireNativeAddon } from '../src/native/addon.js';
import { NATIVE_FORMAT_CODES } from '../src/native/native-ops.js';
import { randomPacked, RANDOM_PACKED_FORMATS, type RandomPackedFormat } from './random-packed.js';

/**
 * Every native kernel against a float64 reference computed here from first principles (the
 * project's dequantizers for the stored weights), on every instruction-set path this CPU runs
 * and on 1 and 3 threads, on awkward shapes: odd row counts, one token and several, float rows
 * whose length is no multiple of any vector width. The addon must be built: this file fails
 * (it does not skip) when it is missing.
 */
const addon = requireNativeAddon();
const runnable = ISA_NAMES.filter((name) => addon.info().paths[name] === '');

type Format = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_K' | RandomPackedFormat;
const isRandomPacked = (format: Format): format is RandomPackedFormat => (RANDOM_PACKED_FORMATS as readonly string[]).includes(format);
/** Formats whose activations are Q8_K (blocks of 256); the other quantized ones take Q8_0's blocks of 32. */
const Q8_K_FORMATS: readonly Format[] = ['Q4_K', 'Q6_K', 'Q5_K', 'Q3_K', 'Q2_K', 'IQ4_XS'];

const gaussian = (seed: number, count: number) => {
  const draw = seededRandom(seed);
  return Float32Array.from({ length: count }, () => (draw() + draw() + draw() - 1.5) * 2);
};

/** Packed matrices by format, shape and seed: every path and thread count multiplies the same bytes. */
const packedCache = new Map<string, { bytes: Uint8Array; weights: Float32Array }>();

function packedRandom(format: Format, rows: number, cols: number, seed: number) {
  const key = `${format}/${rows}/${cols}/${seed}`;
  if (!packedCache.has(key)) packedCache.set(key, isRandomPacked(format) ? randomPacked(format, rows, cols, seed) : pack(format, gaussian(seed, rows * cols)));
  return packedCache.get(key)!;
}

/** Stored bytes of the values in a format, and the weights they stand for (the reference's view of them). */
function pack(format: Exclude<Format, RandomPackedFormat>, values: Float32Array): { bytes: Uint8Array; weights: Float32Array } {
  switch (format) {
    case 'F32':
      return { bytes: new Uint8Array(values.slice().buffer), weights: values };
    case 'F16': {
      const halves = Uint16Array.from(values, floatToHalf);
      return { bytes: new Uint8Array(halves.buffer), weights: Float32Array.from(halves, halfToFloat) };
    }
    case 'BF16': {
      const halves = Uint16Array.from(new Uint32Array(values.slice().buffer), (bits) => bits >>> 16);
      return { bytes: new Uint8Array(halves.buffer), weights: new Float32Array(Uint32Array.from(halves, (h) => h << 16).buffer) };
    }
    case 'Q4_K': {
      const bytes = quantizeQ4K(values);
      return { bytes, weights: dequantizeQ4K(bytes, values.length) };
    }
    default: {
      const bytes = quantizeBlocks(format, values);
      return { bytes, weights: dequantizeBlocks(format, bytes, values.length) };
    }
  }
}

/**
 * The activations as the int8 products see them: blocks of 256 (Q8_K, for the K-quants and
 * IQ4_XS) or of 32 (Q8_0, for the other quantized formats) with scale max|x| / 127 and codes
 * round(x / scale), as llama.cpp quantizes them. Against these the products are exact integer
 * sums up to float32 rounding; the 8-bit activations themselves move a product by up to
 * Σ|w|·scale/2, which is what a reference on the float activations would have to allow.
 */
function quantizedActivations(format: Format, x: Float32Array): Float64Array {
  const block = format === 'F32' || format === 'F16' || format === 'BF16' ? 0 : Q8_K_FORMATS.includes(format) ? 256 : 32;
  if (block === 0) return Float64Array.from(x);
  const out = new Float64Array(x.length);
  for (let start = 0; start < x.length; start += block) {
    const part = x.subarray(start, start + block);
    const scale = Math.fround(Math.max(...part.map(Math.abs)) / 127);
    part.forEach((value, i) => (out[start + i] = scale === 0 ? 0 : Math.round(Math.fround(value * Math.fround(1 / scale))) * scale));
  }
  return out;
}

/** y = x · Wᵀ in float64, and Σ|w·x| per output (the scale of its rounding error). */
function referenceLinear(weights: Float32Array, rows: number, cols: number, x: Float64Array, tokens: number) {
  const y = new Float64Array(tokens * rows);
  const magnitude = new Float64Array(tokens * rows);
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) {
      let sum = 0;
      let size = 0;
      for (let k = 0; k < cols; k++) {
        const product = weights[r * cols + k]! * x[t * cols + k]!;
        sum += product;
        size += Math.abs(product);
      }
      y[t * rows + r] = sum;
      magnitude[t * rows + r] = size;
    }
  }
  return { y, magnitude };
}

function expectWithin(actual: Float32Array, expected: ArrayLike<number>, tolerance: (i: number) => number): void {
  expect(actual.length).toBe(expected.length);
  const worst = [...actual].map((value, i) => Math.abs(value - expected[i]!) / tolerance(i)).reduce((a, b) => Math.max(a, b), 0);
  // Below 1: every element within its tolerance.
  expect(worst).toBeLessThan(1);
}

// Float rows of 67 and 300 leave tails after every vector width; block formats need whole blocks:
// 37 rows are no multiple of a tile's 4, and 96 columns are an odd number of 32-blocks (the
// AVX-512 path takes two blocks a step).
const LINEAR_SHAPES: Array<[Format, number, number]> = [
  ['F32', 37, 67],
  ['F16', 37, 300],
  ['BF16', 37, 67],
  ['Q8_0', 37, 96],
  ['Q4_0', 37, 96],
  ['Q4_K', 37, 512],
  // Two and three super-blocks.
  ['Q6_K', 37, 768],
  ['Q5_K', 37, 512],
  ['Q3_K', 37, 768],
  ['Q2_K', 37, 512],
  // Three blocks of 32; IQ4_XS two super-blocks of 256; INT4_G128 three groups of 128.
  ['Q4_1', 37, 96],
  ['Q5_0', 37, 96],
  ['Q5_1', 37, 96],
  ['IQ4_NL', 37, 96],
  ['IQ4_XS', 37, 512],
  ['INT4_G128', 37, 384],
];
const LINEAR_TOKENS = [1, 5, 17];

/** The blocked F32 product's weights, activations and float64 reference, made once for every path (the reference is 31M products). */
const blockedF32Case = (() => {
  let made: ReturnType<typeof make> | undefined;
  function make() {
    const [rows, cols, tokens] = [131, 600, 400];
    const { bytes, weights } = packedRandom('F32', rows, cols, 5);
    const x = gaussian(6, tokens * cols);
    const { y: expected, magnitude } = referenceLinear(weights, rows, cols, Float64Array.from(x), tokens);
    return { rows, cols, tokens, bytes, x, expected, magnitude };
  }
  return () => (made ??= make());
})();
const results = new Map<string, Float32Array>();

afterAll(() => addon.stopThreads());

describe.each(runnable.flatMap((isa) => [1, 3].map((threads) => [isa, threads] as const)))('the %s path on %i thread(s)', (isa, threads) => {
  beforeAll(() => {
    addon.choose(isa);
    addon.startThreads(threads);
  });

  // 1 token (decode's row groups), 5 and 17 (tiles of 2 or 4 tokens and a remainder of 1).
  test.each(LINEAR_SHAPES.flatMap(([format, rows, cols]) => LINEAR_TOKENS.map((tokens) => [format, rows, cols, tokens] as const)))(
    'linear on %s weights [%i, %i] × %i token(s) equals the float64 product (activations quantized as llama.cpp does)',
    (format, rows, cols, tokens) => {
      const { bytes, weights } = packedRandom(format, rows, cols, rows + cols);
      const x = gaussian(tokens, tokens * cols);
      const y = new Float32Array(tokens * rows);
      addon.linear(NATIVE_FORMAT_CODES[format]!, bytes, rows, cols, x, tokens, y);
      const { y: expected, magnitude } = referenceLinear(weights, rows, cols, quantizedActivations(format, x), tokens);
      // float32 accumulation over `cols` terms: a few ulps of Σ|w·x|.
      expectWithin(y, expected, (i) => 2e-6 * Math.sqrt(cols) * magnitude[i]! + 1e-6);
      results.set(`${format}/${tokens}/${isa}/${threads}`, y);
    },
  );

  // gemm_f32's blocks: 131 rows are two chunks of 64 and 3 more (a partial panel), 600 columns a
  // block of 512 and 88 more (on AVX-512 5 transposed blocks of 16 and a tail of 8), 400 tokens a
  // block of 384 packed tokens and 16 more (groups of 6, the last with 4 tokens and 2 zeros).
  // AWQ's block outputs run every candidate this way.
  test('linear on F32 weights [131, 600] × 400 tokens (every block of the tiled product and its remainders) equals the float64 product', () => {
    const { rows, cols, tokens, bytes, x, expected, magnitude } = blockedF32Case();
    const y = new Float32Array(tokens * rows);
    addon.linear(NATIVE_FORMAT_CODES.F32!, bytes, rows, cols, x, tokens, y);
    expectWithin(y, expected, (i) => 2e-6 * Math.sqrt(cols) * magnitude[i]! + 1e-6);
    results.set(`F32-blocks/${isa}/${threads}`, y);
  });

  // From 24 tokens (8 for 16-bit rows) the formats without a tile product of their own are widened
  // to floats, 32 rows at a time, for gemm_f32 (ops.c, widens_to_f32) on every path that has one:
  // the activations stay floats, so the float64 product of the unquantized activations is the
  // reference, within rounding; the scalar path keeps its row dots on quantized activations.
  // 37 rows are a chunk of 32 and 5; 30 tokens groups of 6 or 8 and a remainder.
  const WIDENED = LINEAR_SHAPES.filter(([format]) => !['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_K'].includes(format));
  test.each(WIDENED)('linear on %s weights [%i, %i] × 30 tokens equals the float64 product (widened to floats past the scalar path)', (format, rows, cols) => {
    const tokens = 30;
    const { bytes, weights } = packedRandom(format, rows, cols, rows + cols + 1);
    const x = gaussian(tokens + 1, tokens * cols);
    const y = new Float32Array(tokens * rows);
    addon.linear(NATIVE_FORMAT_CODES[format]!, bytes, rows, cols, x, tokens, y);
    const activations = isa === 'scalar' ? quantizedActivations(format, x) : Float64Array.from(x);
    const { y: expected, magnitude } = referenceLinear(weights, rows, cols, activations, tokens);
    expectWithin(y, expected, (i) => 2e-6 * Math.sqrt(cols) * magnitude[i]! + 1e-6);
  });

  test.each([['Q8_0'], ['Q4_0'], ['Q4_K'], ['F16']] as const)('linearMany on three %s weights of 37, 8 and 21 rows equals each float64 product', (format) => {
    const cols = format === 'Q4_K' ? 512 : 96;
    const tokens = 5;
    const weights = [37, 8, 21].map((rows, i) => ({ rows, ...packedRandom(format, rows, cols, 100 + i) }));
    const x = gaussian(7, tokens * cols);
    const ys = weights.map(({ rows }) => new Float32Array(tokens * rows));
    addon.linearMany(
      NATIVE_FORMAT_CODES[format]!,
      weights.map((w) => w.bytes),
      weights.map((w) => w.rows),
      cols,
      x,
      tokens,
      ys,
    );
    weights.forEach(({ rows, weights: values }, i) => {
      const { y: expected, magnitude } = referenceLinear(values, rows, cols, quantizedActivations(format, x), tokens);
      expectWithin(ys[i]!, expected, (j) => 2e-6 * Math.sqrt(cols) * magnitude[j]! + 1e-6);
    });
  });

  // Repacked Q4_0, Q8_0, Q4_K, Q6_K, Q5_K and IQ4_XS (src/native/repack.h): 37 rows are two groups of 16 and 5 stored as they were; 16 one group alone.
  // 213 rows are, for one token, a chunk of 128 rows (src/native/ops.c) and one of 85: on the 256-bit
  // paths Q8_0 and Q4_0 read the first as four streams of two groups, the second as four of one
  // group, then a group alone and 5 stored rows.
  test.each(
    (['Q4_0', 'Q8_0', 'Q4_K', 'Q6_K', 'Q5_K', 'IQ4_XS'] as const).flatMap((format) =>
      [37, 16, 213].flatMap((rows) => LINEAR_TOKENS.map((tokens) => [format, rows, format === 'Q4_0' || format === 'Q8_0' ? 96 : 512, tokens] as const)),
    ),
  )('linear on %s [%i, %i] repacked into groups of 16 rows × %i token(s) equals the float64 product', (format, rows, cols, tokens) => {
    const { bytes, weights } = packedRandom(format, rows, cols, rows + cols);
    const repacked = bytes.slice();
    const code = addon.repackRows(NATIVE_FORMAT_CODES[format]!, repacked, rows, cols, true);
    expect(code).not.toBe(NATIVE_FORMAT_CODES[format]);
    expect(repacked).not.toEqual(bytes);
    const x = gaussian(tokens, tokens * cols);
    const y = new Float32Array(tokens * rows);
    addon.linear(code, repacked, rows, cols, x, tokens, y);
    const { y: expected, magnitude } = referenceLinear(weights, rows, cols, quantizedActivations(format, x), tokens);
    expectWithin(y, expected, (i) => 2e-6 * Math.sqrt(cols) * magnitude[i]! + 1e-6);
  });

  // Repacked blocks at their extremes against activations of ±127 (by token), where the AVX2 path
  // adds byte products in int16 lanes before widening them. Q4_0: every nibble 15 (q = 7) or 0
  // (q = −8) by alternate blocks, a block's eight sums at most 8 · 2 · 15 · 127 = 30,480. Q6_K:
  // every code 31 (all ql and qh bits set) under group scales of 127 and −128, two chunks' sums at
  // most 2 · 2 · 63 · 127 = 32,004 (adding four instead fails this test; the random weights do not).
  // Q5_K: every code 31 (all nibble and qh bits set), scales and minimums 63, four chunks' sums at
  // most 4 · 2 · 31 · 127 = 31,496 (eight overflow). IQ4_XS: every code 0 (level −127) under scales
  // of 31, each pmaddubsw lane 2 · 127 · 127 = 32,258 (two added in int16 overflow).
  const EXTREME_BLOCKS = {
    Q4_0: { cols: 96, blockBytes: 18, fill: (block: Uint8Array, view: DataView, index: number) => {
      block.fill(index % 2 ? 0x00 : 0xff, 2);
      view.setUint16(0, floatToHalf(0.01), true);
    } },
    Q6_K: { cols: 512, blockBytes: 210, fill: (block: Uint8Array, view: DataView) => {
      block.fill(0xff, 0, 192);
      for (let g = 0; g < 16; g++) view.setInt8(192 + g, g % 2 ? -128 : 127);
      view.setUint16(208, floatToHalf(0.01), true);
    } },
    Q5_K: { cols: 512, blockBytes: 176, fill: (block: Uint8Array, view: DataView) => {
      block.fill(0xff, 4);
      view.setUint16(0, floatToHalf(0.01), true);
      view.setUint16(2, floatToHalf(0.02), true);
    } },
    IQ4_XS: { cols: 512, blockBytes: 136, fill: (block: Uint8Array, view: DataView) => {
      block.fill(0x00, 8);
      block.fill(0xff, 2, 8); // ls = 63: scale 31
      view.setUint16(0, floatToHalf(0.01), true);
    } },
  } as const;
  test.each((['Q4_0', 'Q6_K', 'Q5_K', 'IQ4_XS'] as const).flatMap((format) => [1, 5].map((tokens) => [format, tokens] as const)))(
    'linear on repacked %s at its extreme codes × %i token(s) equals the float64 product',
    (format, tokens) => {
      const rows = 16;
      const { cols, blockBytes, fill } = EXTREME_BLOCKS[format];
      const bytes = new Uint8Array(((rows * cols) / (format === 'Q4_0' ? 32 : 256)) * blockBytes);
      for (let at = 0; at < bytes.length; at += blockBytes) fill(bytes.subarray(at, at + blockBytes), new DataView(bytes.buffer, at, blockBytes), at / blockBytes);
      const weights = dequantizeGgml(GgmlType[format], bytes, rows * cols);
      const repacked = bytes.slice();
      const code = addon.repackRows(NATIVE_FORMAT_CODES[format]!, repacked, rows, cols, true);
      const x = Float32Array.from({ length: tokens * cols }, (_, i) => (Math.floor(i / cols) % 2 ? -1 : 1));
      const y = new Float32Array(tokens * rows);
      addon.linear(code, repacked, rows, cols, x, tokens, y);
      const { y: expected, magnitude } = referenceLinear(weights, rows, cols, quantizedActivations(format, x), tokens);
      expectWithin(y, expected, (i) => 2e-6 * Math.sqrt(cols) * magnitude[i]! + 1e-6);
    },
  );

  test.each(LINEAR_SHAPES.map(([format, rows, cols]) => [format, rows, cols] as const))('embedding rows of %s [%i, %i] equal the dequantized rows', (format, rows, cols) => {
    const { bytes, weights } = packedRandom(format, rows, cols, rows + cols);
    const ids = Int32Array.from([3, 0, rows - 1, 3]);
    const out = new Float32Array(ids.length * cols);
    addon.embedding(NATIVE_FORMAT_CODES[format]!, bytes, rows, cols, ids, out);
    const expected = [...ids].flatMap((id) => [...weights.subarray(id * cols, (id + 1) * cols)]);
    // Dequantizing rounds once, in float32, as the formats layer does: the same floats.
    expect([...out]).toEqual(expected);
  });

  // [heads, kv heads, head dim, cached positions, new rows, spread of the queries]: a group of 3 heads
  // on 40 dims (two 16-column steps and an 8); groups of 6 (4 heads, then 2) on 36 dims (a
  // 4-column tail) with 34-37 positions (a remainder after every 8); the 1B shape's 8 groups of 4
  // on 64 dims at 297-300 positions (more than one part of an F16 cache's widened rows); one head a
  // group over 1 position; and queries 16 times wider, whose scores span more than exp's fast range.
  const ATTENTION_SHAPES = [
    [6, 2, 40, 3, 4, 1],
    [12, 2, 36, 33, 4, 1],
    [32, 8, 64, 296, 4, 1],
    [3, 3, 8, 0, 1, 1],
    [8, 2, 64, 60, 3, 16],
  ] as const;
  test.each((['f32', 'f16'] as const).flatMap((type) => ATTENTION_SHAPES.map((shape) => [type, ...shape] as const)))(
    'attention over an %s cache: %i heads on %i kv heads of %i, %i cached positions, then %i rows, queries ×%i',
    (type, heads, kvHeads, headDim, cached, rows, spread) => {
      const capacity = cached + rows + 2;
      const elements = kvHeads * capacity * headDim;
      const [keys, values] = [0, 1].map(() => (type === 'f16' ? new Uint16Array(elements) : new Float32Array(elements)));
      const step = (seed: number, start: number, count: number) => {
        const q = gaussian(seed, count * heads * headDim).map((x) => x * spread);
        const [k, v] = [gaussian(seed + 1, count * kvHeads * headDim), gaussian(seed + 2, count * kvHeads * headDim)];
        const out = new Float32Array(q.length);
        addon.attention(keys!, values!, kvHeads, headDim, capacity, q, k, v, out, start, heads);
        return { q, k, v, out };
      };
      const first = step(10, 0, cached);
      const second = step(20, cached, rows);
      // What the cache holds: the rows as written, rounded to half precision in an f16 cache.
      const stored = (x: Float32Array) => (type === 'f16' ? Float32Array.from(x, (value) => halfToFloat(floatToHalf(value))) : x);
      const allKeys = [...stored(first.k), ...stored(second.k)];
      const allValues = [...stored(first.v), ...stored(second.v)];
      const expected = new Float64Array(second.out.length);
      for (let t = 0; t < rows; t++) {
        for (let h = 0; h < heads; h++) {
          const g = Math.floor(h / (heads / kvHeads));
          const visible = cached + t + 1;
          const scores = Array.from({ length: visible }, (_, p) => {
            let dot = 0;
            for (let i = 0; i < headDim; i++) dot += second.q[(t * heads + h) * headDim + i]! * allKeys[(p * kvHeads + g) * headDim + i]!;
            return dot / Math.sqrt(headDim);
          });
          const top = Math.max(...scores);
          const weights = scores.map((s) => Math.exp(s - top));
          const total = weights.reduce((a, b) => a + b, 0);
          for (let i = 0; i < headDim; i++) {
            expected[(t * heads + h) * headDim + i] = weights.reduce((sum, w, p) => sum + (w / total) * allValues[(p * kvHeads + g) * headDim + i]!, 0);
          }
        }
      }
      // float32 scores carry a relative rounding of ~1e-7 of their size into every weight.
      expectWithin(second.out, expected, () => 1e-5 * spread);
    },
  );

  test('rmsnorm, RoPE, SwiGLU and add on 3 rows of 2 heads of 10', () => {
    const [rows, dim] = [3, 20];
    const [x, w, other] = [gaussian(1, rows * dim), gaussian(2, dim), gaussian(3, rows * dim)];
    const normed = new Float32Array(rows * dim);
    addon.rmsnorm(x, w, normed, dim, 1e-5);
    const expectedNorm = [...x].map((value, i) => {
      const row = x.subarray(Math.floor(i / dim) * dim, Math.floor(i / dim) * dim + dim);
      return (value / Math.sqrt(row.reduce((s, v) => s + v * v, 0) / dim + 1e-5)) * w[i % dim]!;
    });
    expectWithin(normed, expectedNorm, () => 1e-5);

    const [cos, sin] = [gaussian(4, rows * 10), gaussian(5, rows * 10)];
    const rotated = x.slice();
    addon.rope(rotated, cos, sin, 2, 10);
    const expectedRope = [...x].map((value, i) => {
      const [t, d] = [Math.floor(i / dim), i % 10];
      const partner = d < 5 ? -x[i + 5]! : x[i - 5]!;
      return value * cos[t * 10 + d]! + partner * sin[t * 10 + d]!;
    });
    expectWithin(rotated, expectedRope, () => 1e-5);

    const [gated, summed] = [new Float32Array(x.length), new Float32Array(x.length)];
    addon.swiglu(x, other, gated);
    addon.add(x, other, summed);
    expectWithin(gated, [...x].map((g, i) => (g / (1 + Math.exp(-g))) * other[i]!), () => 1e-5);
    expectWithin(summed, [...x].map((a, i) => a + other[i]!), () => 1e-6);
  });

  // A prompt's SwiGLU is shared out over the pool in chunks of 16,384 values: 40,000 are two
  // whole chunks and a part, each value computed as on one thread.
  test('SwiGLU over more values than one pool chunk', () => {
    const [gate, up] = [gaussian(7, 40_000), gaussian(8, 40_000)];
    const out = new Float32Array(gate.length);
    addon.swiglu(gate, up, out);
    expectWithin(out, [...gate].map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!), () => 1e-5);
  });

  // The vector paths' exp leaves its fast branch where 2^n under- or overflows (|g| past 126·ln 2):
  // silu is then g or 0, never NaN; relative tolerance, as the values span 14 orders of magnitude.
  test('SwiGLU at gates whose exp under- or overflows', () => {
    const gate = Float32Array.from([-1000, -150, -100, -88, -87, -40, -1e-3, 0, 1e-3, 40, 87, 88, 100, 150, 1000, 3.5, -3.5]);
    const up = Float32Array.from(gate, (_, i) => 0.5 + i / 8);
    const out = new Float32Array(gate.length);
    addon.swiglu(gate, up, out);
    const expected = [...gate].map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
    expectWithin(out, expected, (i) => 1e-6 * Math.abs(expected[i]!) + 1e-37);
  });
});

test('every path and thread count computes the same linear products (within float rounding of the scalar path)', () => {
  expect(runnable).toContain('scalar');
  for (const [key, y] of results) {
    const scalar = results.get(key.replace(/\/[^/]+\/\d+$/, '/scalar/1'))!;
    // Summation order differs between vector widths: float32 rounding of the largest product.
    const largest = Math.max(...scalar.map(Math.abs));
    expectWithin(y, scalar, () => 1e-5 * largest);
  }
  // Each format × token count (and the blocked F32 product) × path × 2 thread counts.
  expect(results.size).toBe((LINEAR_SHAPES.length * LINEAR_TOKENS.length + 1) * runnable.length * 2);
});

// The amx path's repacked Q8_0, Q4_0 and Q4_K products make the same integer sums as the avx512 path's
// vpdpbusd tiles and scale them in the same order: the same bits, for whole tiles of 16 tokens, the
// tokens after them, rows past the last group of 16, and 8,192 columns (down_proj's rows).
test('the amx path computes the avx512 path\'s bits for repacked Q8_0, Q4_0 and Q4_K (or says why it cannot run)', () => {
  if (!runnable.includes('amx')) {
    expect(addon.info().paths.amx ?? 'not an x86-64 build').toMatch(/lacks|not an x86-64 build/);
    return;
  }
  addon.startThreads(2);
  for (const [format, cols] of [['Q8_0', 96], ['Q4_0', 96], ['Q4_K', 512], ['Q8_0', 8192], ['Q4_0', 8192], ['Q4_K', 8192]] as const) {
    const rows = 37, tokens = 35;
    const repacked = packedRandom(format, rows, cols, 5).bytes.slice();
    const code = addon.repackRows(NATIVE_FORMAT_CODES[format]!, repacked, rows, cols, true);
    const x = gaussian(6, tokens * cols);
    const outputs = (['avx512', 'amx'] as const).map((isa) => {
      addon.choose(isa);
      const y = new Float32Array(tokens * rows);
      addon.linear(code, repacked, rows, cols, x, tokens, y);
      return y;
    });
    expect(outputs[1]).toEqual(outputs[0]);
  }
  addon.stopThreads();
});

test('a path this build does not have is refused with the reason', () => {
  expect(() => addon.choose('avx9000')).toThrow(/HERD_CPU_ISA=avx9000 cannot run here: unknown path/);
});

test('only Q4_0, Q8_0, Q4_K, Q6_K, Q5_K and IQ4_XS matrices of at least one whole group are repacked', () => {
  const f16 = packedRandom('F16', 37, 96, 1).bytes.slice();
  expect(addon.repackRows(NATIVE_FORMAT_CODES.F16!, f16, 37, 96, true)).toBe(NATIVE_FORMAT_CODES.F16);
  expect(f16).toEqual(packedRandom('F16', 37, 96, 1).bytes);
  const few = packedRandom('Q8_0', 15, 96, 2).bytes.slice();
  expect(addon.repackRows(NATIVE_FORMAT_CODES.Q8_0!, few, 15, 96, true)).toBe(NATIVE_FORMAT_CODES.Q8_0);
  expect(few).toEqual(packedRandom('Q8_0', 15, 96, 2).bytes);
});

// Q5_K and IQ4_XS have SIMD products on the repacked layout on x86 only: other paths keep them stored.
test.each([['Q5_K'], ['IQ4_XS']] as const)('%s is repacked for a linear weight on the x86 paths and kept stored on the scalar path', (format) => {
  const stored = packedRandom(format, 37, 512, 3).bytes;
  const codeOn = (isa: string) => {
    addon.choose(isa);
    const bytes = stored.slice();
    return { code: addon.repackRows(NATIVE_FORMAT_CODES[format]!, bytes, 37, 512, false), bytes };
  };
  const chosen = addon.info().isa;
  try {
    const scalar = codeOn('scalar');
    expect(scalar.code).toBe(NATIVE_FORMAT_CODES[format]);
    expect(scalar.bytes).toEqual(stored);
    for (const isa of runnable.filter((name) => ['avx2', 'avxvnni', 'avx512', 'amx'].includes(name))) expect(codeOn(isa).code).not.toBe(NATIVE_FORMAT_CODES[format]);
  } finally {
    addon.choose(chosen);
  }
});

test('adviseHugePages advises the whole pages under an array on Linux (none elsewhere), and the array then holds what is written', () => {
  const bytes = new Uint8Array(Buffer.allocUnsafeSlow(4 << 20).buffer);
  const advised = addon.adviseHugePages(bytes);
  if (process.platform === 'linux') {
    expect(advised).toBeGreaterThan(bytes.length - 2 * 65536); // less at most a partial page at each end (4 or 64 KiB pages)
    expect(advised).toBeLessThanOrEqual(bytes.length);
  } else {
    expect(advised).toBe(0);
  }
  bytes.forEach((_, i, a) => (a[i] = i % 251));
  expect(bytes.every((value, i) => value === i % 251)).toBe(true);
});

test('discardPages zeroes the whole pages inside an array and keeps the partial ones at its ends; the array stays usable', () => {
  const whole = new Float32Array(Buffer.allocUnsafeSlow(1 << 20).buffer);
  // A view that starts and ends inside pages: its first and last partial pages must keep their values.
  const array = whole.subarray(3, whole.length - 5);
  array.fill(7);
  const discarded = addon.discardPages(array);
  if (process.platform !== 'linux') {
    expect(discarded).toBe(0);
    return;
  }
  const zeroed = [...array.keys()].filter((i) => array[i] === 0);
  const [first, last] = [zeroed[0]!, zeroed.at(-1)!];
  // One run of whole pages (4 or 64 KiB), all of the bytes discarded, and less than a page kept at each end.
  expect(discarded % 4096).toBe(0);
  expect(zeroed.length * 4).toBe(discarded);
  expect(last - first + 1).toBe(zeroed.length);
  expect(first * 4).toBeLessThan(65536);
  expect((array.length - 1 - last) * 4).toBeLessThan(65536);
  expect(array.every((value, i) => value === (i >= first && i <= last ? 0 : 7))).toBe(true);
  array.fill(3);
  expect(array.every((value) => value === 3)).toBe(true);
});

// A tied output head is the embedding table, so a repacked table must still give its rows: in a group and in the stored tail.
test.each([
  ['Q4_0', 96],
  ['Q8_0', 96],
  ['Q4_K', 512],
  ['Q6_K', 512],
  ['Q5_K', 512],
  ['IQ4_XS', 512],
] as const)('embedding rows of a repacked %s table [37, %i] equal the dequantized rows', (format, cols) => {
  const rows = 37;
  const { bytes, weights } = packedRandom(format, rows, cols, 5);
  const table = bytes.slice();
  const code = addon.repackRows(NATIVE_FORMAT_CODES[format]!, table, rows, cols, true);
  const ids = Int32Array.of(0, 15, 16, 31, 32, 36);
  const out = new Float32Array(ids.length * cols);
  addon.embedding(code, table, rows, cols, ids, out);
  const expected = Float32Array.from({ length: out.length }, (_, i) => weights[ids[Math.floor(i / cols)]! * cols + (i % cols)]!);
  expectWithin(out, expected, () => 1e-6);
});
