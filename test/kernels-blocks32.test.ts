import type { Ops } from '../src/engine/ops.js';
import { seededRandom } from '../src/engine/sampling.js';
import { floatToHalf } from '../src/formats/half.js';
import { dequantizeGgml } from '../src/formats/ggml-dequantize.js';
import { GgmlType } from '../src/formats/gguf.js';
import type { HostTensor } from '../src/formats/safetensors.js';
import { GGUF_BLOCK32_BYTES, type Block32Format, type PackedTensor, type WeightSource } from '../src/formats/weights.js';
import { KernelOps } from '../src/kernels/wasm-ops.js';

// The kernels of src/kernels/assembly/blocks32.ts against exact math on the same weights: each
// product is compared with float64 dequantize-then-matmul, where the dequantization is
// dequantizeGgml (held to ggml's block definitions by hand-built blocks in ggml-types.test.ts).

type AnyOps = Ops<unknown, unknown>;

const FORMATS: Block32Format[] = ['Q4_1', 'Q5_0', 'Q5_1', 'IQ4_NL'];
const TYPE: Record<Block32Format, GgmlType> = { Q4_1: GgmlType.Q4_1, Q5_0: GgmlType.Q5_0, Q5_1: GgmlType.Q5_1, IQ4_NL: GgmlType.IQ4_NL };
// Where a block's f16 min is (Q4_1, Q5_1); the other header bytes after d are qh or codes, any bits.
const MIN_AT: Partial<Record<Block32Format, number>> = { Q4_1: 2, Q5_1: 2 };

const random = seededRandom(32);

/** Random GGUF rows of `format`: random code and qh bytes, f16 scales (and mins) of either sign up to 0.05. */
function randomRows(format: Block32Format, rows: number, cols: number): Uint8Array {
  const blockBytes = GGUF_BLOCK32_BYTES[format];
  const bytes = Uint8Array.from({ length: (rows * cols * blockBytes) / 32 }, () => Math.floor(random() * 256));
  const view = new DataView(bytes.buffer);
  for (let at = 0; at < bytes.length; at += blockBytes) {
    view.setUint16(at, floatToHalf((random() - 0.5) * 0.1), true);
    if (MIN_AT[format] !== undefined) view.setUint16(at + MIN_AT[format]!, floatToHalf((random() - 0.5) * 0.1), true);
  }
  return bytes;
}

/** Tensors as stored bytes in a block format, or float32 (the inputs). */
class BlockSource implements WeightSource {
  private readonly tensors = new Map<string, { format: Block32Format | 'F32'; shape: [number, number]; bytes: Uint8Array }>();

  add(name: string, format: Block32Format | 'F32', shape: [number, number], bytes: Uint8Array): this {
    this.tensors.set(name, { format, shape, bytes });
    return this;
  }

  readFloat(name: string): HostTensor {
    const { format, shape, bytes } = this.tensors.get(name)!;
    const type = format === 'F32' ? GgmlType.F32 : TYPE[format];
    return { name, shape, data: dequantizeGgml(type, bytes, shape[0] * shape[1]) };
  }

  describePacked(name: string): PackedTensor {
    const { format, shape, bytes } = this.tensors.get(name)!;
    return { format, shape, byteLength: bytes.length };
  }

  readPackedInto(name: string, target: Uint8Array, byteOffset = 0): void {
    target.set(this.tensors.get(name)!.bytes.subarray(byteOffset, byteOffset + target.length));
  }
}

function gaussian(count: number): Float32Array {
  return Float32Array.from({ length: count }, () => (random() + random() + random() - 1.5) * 2);
}

/** The linear on the kernels: x enters as rows of an F32 embedding table. */
function kernelLinear(ops: AnyOps, source: BlockSource, x: Float32Array, cols: number): Float32Array {
  const tokens = x.length / cols;
  source.add('x', 'F32', [tokens, cols], new Uint8Array(x.buffer));
  const table = ops.embeddingWeight('x', source);
  const weight = ops.linearWeight('w', source);
  const y = ops.scope(() => ops.read(ops.linear(ops.embedding(table, Int32Array.from({ length: tokens }, (_, i) => i)), weight)));
  ops.disposeWeight(table);
  ops.disposeWeight(weight);
  return y;
}

/**
 * Checks y = x·Wᵀ against float64 sums over the dequantized weights: each output within
 * 2e-6 · Σ_k |w_k·x_k| (float32 rounding of products and partial sums in any order, √K-ish).
 */
function expectExactMath(y: Float32Array, w: Float32Array, x: Float32Array, rows: number, cols: number): void {
  const tokens = x.length / cols;
  expect(y).toHaveLength(rows * tokens);
  let worst = 0;
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) {
      let sum = 0, magnitude = 0;
      for (let k = 0; k < cols; k++) {
        const product = w[r * cols + k]! * x[t * cols + k]!;
        sum += product;
        magnitude += Math.abs(product);
      }
      worst = Math.max(worst, Math.abs(y[t * rows + r]! - sum) / (magnitude * 2e-6 + 1e-30));
    }
  }
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
      const source = new BlockSource().add('w', format, [rows, cols], randomRows(format, rows, cols));
      const w = source.readFloat('w').data;
      for (const tokens of tokenCounts) {
        const x = gaussian(tokens * cols);
        expectExactMath(kernelLinear(ops, source, x, cols), w, x, rows, cols);
      }
    });

    test('embedding rows are exactly the dequantized rows', () => {
      const [rows, cols] = [23, 96];
      const source = new BlockSource().add('table', format, [rows, cols], randomRows(format, rows, cols));
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
    const floats = new BlockSource().add('a', 'F32', [4, 32], new Uint8Array(512)).add('b', 'F32', [4, 32], new Uint8Array(512));
    // As GGUF's TQ2_0 is: only floats to offer, 66 bytes per 256 weights stored.
    const source: WeightSource = { readFloat: (name) => floats.readFloat(name), dequantizedAtLoad: () => ({ type: 'TQ2_0', bytesPerWeight: 66 / 256 }) };
    ops.linearWeight('a', source);
    ops.linearWeight('b', source);
    expect(notices).toEqual(['the CPU kernels do not compute on TQ2_0; its tensors are dequantized to float32 at load (4 bytes per weight instead of 0.258, 15.5× the memory)']);
  } finally {
    await ops.close();
  }
});
