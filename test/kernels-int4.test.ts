import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { activateBackend } from '../src/backends/registry.js';
import { Checkpoint } from '../src/formats/checkpoint.js';
import { tensorShapes } from '../src/spec/tensors.js';
import type { LlamaConfig } from '../src/spec/llama-config.js';
import { floatToHalf, halfToFloat } from '../src/formats/half.js';
import { LlamaForCausalLM } from '../src/engine/model.js';
import { type Ops } from '../src/engine/ops.js';
import { packedBytes } from '../src/formats/weights.js';
import { writeSafetensors, type HostTensor, type TensorToWrite } from '../src/formats/safetensors.js';
import { seededRandom } from '../src/engine/sampling.js';
import { HerdError } from '../src/errors.js';
import { KernelInstance } from '../src/kernels/wasm-memory.js';
import { KernelOps } from '../src/kernels/wasm-ops.js';
import { quantizeAwq } from '../src/quant/awq.js';
import { awqLayout, packAwq } from '../src/formats/awq.js';
import { quantizeGptq } from '../src/quant/gptq.js';
import { gptqLayout, packGptq, DEFAULT_GPTQ } from '../src/formats/gptq.js';
import { quantizeInt4Rtn } from '../src/formats/int4.js';
import type { QuantizedLayout } from '../src/formats/quantized-layout.js';
import { f32Tensor, moduleOf } from '../src/formats/stored-tensors.js';

/**
 * INT4_G128 rows (AWQ/GPTQ int4 repacked by output row) and the linear_int4 kernel on them.
 * References come from first principles: a decoder written from the layout's definition, the
 * checkpoints' own float path (readFloat), and float64 matrix products.
 */

// Every input width a multiple of 128; row counts as AWQ/GPTQ allow (multiples of 8).
const config: LlamaConfig = {
  vocabSize: 40, hiddenSize: 256, intermediateSize: 384, numHiddenLayers: 1, numAttentionHeads: 4, numKeyValueHeads: 1, headDim: 64,
  rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: null, tieWordEmbeddings: false, maxPositionEmbeddings: 16, bosTokenId: null, eosTokenIds: [], torchDtype: null,
  attentionBias: false, mlpBias: false, hiddenAct: 'silu',
};
const shapes = tensorShapes(config);
const linearNames = [...shapes.keys()].filter((name) => name.startsWith('model.layers.') && shapes.get(name)!.length === 2);

function gaussian(count: number, seed: number, std = 0.05): Float32Array {
  const random = seededRandom(seed);
  return Float32Array.from({ length: count }, () => std * Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random()));
}

function floatWeight(name: string, seed: number): HostTensor {
  const shape = shapes.get(name)!;
  return { name, shape, data: gaussian(shape.reduce((a, b) => a * b), seed) };
}

/** A one-layer checkpoint whose linear weights `quantize` packs; the rest stays F32. */
function writeCheckpoint(dir: string, quantize: (weight: HostTensor, index: number) => TensorToWrite[]): void {
  const tensors: TensorToWrite[] = [];
  [...shapes.keys()].forEach((name, index) => {
    const weight = floatWeight(name, 100 + index);
    const linear = linearNames.indexOf(name);
    tensors.push(...(linear >= 0 ? quantize(weight, linear) : [f32Tensor(name, weight.shape, weight.data)]));
  });
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
}

/** Runs fn on the checkpoint in `dir`, validated against the config, and closes it. */
function withCheckpoint(dir: string, layout: QuantizedLayout, fn: (checkpoint: Checkpoint) => void): void {
  const checkpoint = Checkpoint.open(dir, layout);
  try {
    checkpoint.validateAgainst(config);
    fn(checkpoint);
  } finally {
    checkpoint.close();
  }
}

/** The float weight [rows, cols] INT4_G128 bytes stand for, decoded from the layout's definition. */
function decodeInt4Rows(bytes: Uint8Array, rows: number, cols: number): Float32Array {
  const rowBytes = (cols / 128) * 68;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols / 128; g++) {
      const base = r * rowBytes + g * 68;
      const scale = halfToFloat(bytes[base]! | (bytes[base + 1]! << 8));
      const zero = bytes[base + 2]!;
      for (let c = 0; c < 128; c++) {
        const byte = bytes[base + 4 + 16 * (c >> 5) + (c & 15)]!;
        const code = (c & 31) < 16 ? byte & 15 : byte >> 4;
        out[r * cols + g * 128 + c] = (code - zero) * scale;
      }
    }
  }
  return out;
}

/** Reads a whole INT4_G128 weight in row ranges of `rowsPerRead`, as a backend sharding it would. */
function readRows(checkpoint: Checkpoint, name: string, rowsPerRead: number): Uint8Array {
  const [rows, cols] = shapes.get(name)! as [number, number];
  const rowBytes = packedBytes('INT4_G128', 1, cols);
  const bytes = new Uint8Array(rows * rowBytes);
  for (let r = 0; r < rows; r += rowsPerRead) {
    const count = Math.min(rowsPerRead, rows - r);
    checkpoint.readPackedInto(name, bytes.subarray(r * rowBytes, (r + count) * rowBytes), r * rowBytes);
  }
  return bytes;
}

function countDifferences(a: Float32Array, b: Float32Array): number {
  let differences = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) differences++;
  return differences;
}

const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-int4-'));
afterAll(() => fs.rmSync(temp, { recursive: true, force: true }));

const awqDir = path.join(temp, 'awq');
writeCheckpoint(awqDir, (weight) => packAwq(moduleOf(weight.name), quantizeAwq(weight, 128)));

// GPTQ: q_proj by GPTQ (symmetric), k_proj by GPTQ with act-order (scattered groups), v_proj with
// whole spans of groups permuted (static groups) and zero-points of 16 (what v1's zero − 1 = 15
// reads as), the rest round-to-nearest asymmetric.
const gptqDir = path.join(temp, 'gptq');
const calibration = (cols: number) => ({ rows: 48, cols, data: gaussian(48 * cols, 9, 1) });
writeCheckpoint(gptqDir, (weight, index) => {
  const prefix = moduleOf(weight.name);
  const cols = weight.shape[1]!;
  if (weight.name.endsWith('q_proj.weight')) return packGptq(prefix, quantizeGptq(weight, calibration(cols), DEFAULT_GPTQ));
  if (weight.name.endsWith('k_proj.weight')) return packGptq(prefix, quantizeGptq(weight, calibration(cols), { ...DEFAULT_GPTQ, symmetric: false, actOrder: true }));
  const m = quantizeInt4Rtn(weight, 128, false, 1);
  if (weight.name.endsWith('v_proj.weight')) {
    const groups = cols / 128;
    m.groupOfColumn.forEach((_, c) => (m.groupOfColumn[c] = groups - 1 - Math.floor(c / 128)));
    for (let i = index; i < m.zeros.length; i += 7) m.zeros[i] = 16;
  }
  return packGptq(prefix, m);
});

describe('INT4_G128 rows from AWQ and GPTQ checkpoints', () => {
  test('a row is 68 bytes per group of 128 columns; other widths are a clear error', () => {
    expect(packedBytes('INT4_G128', 131, 384)).toBe(131 * 3 * 68);
    expect(() => packedBytes('INT4_G128', 1, 192)).toThrow(HerdError);
  });

  test.each([
    ['AWQ', awqDir, awqLayout(128), linearNames],
    ['GPTQ', gptqDir, gptqLayout(128), linearNames.filter((name) => !name.endsWith('k_proj.weight'))],
  ])('%s: every packed linear decodes to exactly the values readFloat gives', (_method, dir, layout, packed) => {
    withCheckpoint(dir, layout, (checkpoint) => {
      for (const name of packed) {
        const [rows, cols] = shapes.get(name)! as [number, number];
        expect(checkpoint.describePacked(name)).toEqual({ format: 'INT4_G128', shape: [rows, cols], byteLength: rows * (cols / 128) * 68 });
        // Odd row ranges (3 rows a read, the last one short) as shards would ask for them.
        const decoded = decodeInt4Rows(readRows(checkpoint, name, 3), rows, cols);
        expect(countDifferences(decoded, checkpoint.readFloat(name).data)).toBe(0);
      }
      expect(checkpoint.describePacked('model.embed_tokens.weight')?.format).toBe('F32');
    });
  });

  test('GPTQ with act-order (groups scattered over columns) stays on the float path; whole spans of permuted groups do not', () => {
    withCheckpoint(gptqDir, gptqLayout(128), (checkpoint) => {
      expect(checkpoint.describePacked('model.layers.0.self_attn.k_proj.weight')).toBeNull();
      expect(checkpoint.readFloat('model.layers.0.self_attn.k_proj.weight').data).toHaveLength(64 * 256);
      expect(checkpoint.describePacked('model.layers.0.self_attn.v_proj.weight')?.format).toBe('INT4_G128');
    });
  });

  test('reads must be whole rows; a group size other than 128 stays on the float path', () => {
    withCheckpoint(awqDir, awqLayout(128), (checkpoint) => {
      const name = 'model.layers.0.mlp.down_proj.weight';
      expect(() => checkpoint.readPackedInto(name, new Uint8Array(100), 0)).toThrow(HerdError);
      expect(() => checkpoint.readPackedInto(name, new Uint8Array(204), 102)).toThrow(HerdError);
    });
    const dir = path.join(temp, 'awq-64');
    writeCheckpoint(dir, (weight) => packAwq(moduleOf(weight.name), quantizeAwq(weight, 64)));
    withCheckpoint(dir, awqLayout(64), (grouped64) => {
      expect(grouped64.describePacked('model.layers.0.mlp.up_proj.weight')).toBeNull();
    });
  });
});

describe('linear_int4 kernel', () => {
  const instance = new KernelInstance();

  interface KernelRun {
    y: Float32Array;
    /** The activations as the kernel saw them: int8 codes, and a scale per block of 32. */
    codes: Int8Array;
    blockScales: Float32Array;
  }

  /** y [tokens, rows] for rows [rowStart, rowEnd); rows outside the range keep NaN. */
  function runKernel(weight: Uint8Array, rows: number, cols: number, x: Float32Array, tokens: number, rowStart: number, rowEnd: number): KernelRun {
    const k = instance.kernels;
    const w = instance.allocate(weight.length);
    try {
      instance.bytes(w, weight.length).set(weight);
      return instance.scope(() => {
        const blocks = (cols / 32) * tokens;
        const xAt = instance.scratch(x.length * 4);
        const q = instance.scratch(tokens * cols);
        const scales = instance.scratch(blocks * 4);
        const sums = instance.scratch(blocks * 4);
        const split = instance.scratch(blocks * 64);
        const y = instance.scratch(tokens * rows * 4);
        instance.floats(xAt, x.length).set(x);
        instance.floats(y, tokens * rows).fill(NaN);
        k.quantize_activations(xAt, q, scales, sums, split, cols, tokens);
        k.linear_int4(w, q, scales, sums, y, cols, rows, tokens, rowStart, rowEnd);
        return {
          y: instance.floats(y, tokens * rows).slice(),
          codes: new Int8Array(instance.bytes(q, tokens * cols).slice().buffer),
          blockScales: instance.floats(scales, blocks).slice(),
        };
      });
    } finally {
      instance.free(w, weight.length);
    }
  }

  /**
   * Checks every output against float64 dequantize-then-matmul. Quantizing activations to int8 per
   * block of 32 (scale s = absmax / 127) moves each by at most s/2 (a hair more for the rounding
   * of x · (1/s)), so |error| ≤ Σ_c |w[r, c]| · s(c) · 0.5001, plus float32 rounding of the
   * kernel's sums (≤ 1e-5 of Σ |w · x|). Against the activations as quantized, the product is
   * exact integer arithmetic up to that float32 rounding alone.
   */
  function expectMatches(run: KernelRun, w: Float32Array, x: Float32Array, rows: number, cols: number, tokens: number, rowStart: number, rowEnd: number): void {
    let failures = 0;
    for (let t = 0; t < tokens; t++) {
      for (let r = 0; r < rows; r++) {
        const got = run.y[t * rows + r]!;
        if (r < rowStart || r >= rowEnd) {
          if (!Number.isNaN(got)) failures++;
          continue;
        }
        let exact = 0, quantized = 0, bound = 0, magnitude = 0;
        for (let c = 0; c < cols; c++) {
          const wc = w[r * cols + c]!;
          const s = run.blockScales[(t * cols + c) >> 5]!;
          exact += wc * x[t * cols + c]!;
          quantized += wc * run.codes[t * cols + c]! * s;
          bound += Math.abs(wc) * s * 0.5001;
          magnitude += Math.abs(wc * x[t * cols + c]!);
        }
        const rounding = 1e-5 * magnitude + 1e-12;
        if (!(Math.abs(got - exact) <= bound + rounding) || !(Math.abs(got - quantized) <= rounding)) failures++;
      }
    }
    expect(failures).toBe(0);
  }

  const checkpointCases: Array<[string, string, QuantizedLayout]> = [['AWQ', awqDir, awqLayout(128)], ['GPTQ', gptqDir, gptqLayout(128)]];
  test.each(checkpointCases)('%s checkpoint weights: 1 and 5 tokens, whole and partial row ranges', (_method, dir, layout) => {
    withCheckpoint(dir, layout, (checkpoint) => {
      for (const name of ['model.layers.0.mlp.gate_proj.weight', 'model.layers.0.mlp.down_proj.weight', 'model.layers.0.self_attn.v_proj.weight']) {
        const [rows, cols] = shapes.get(name)! as [number, number];
        const bytes = readRows(checkpoint, name, rows);
        const w = checkpoint.readFloat(name).data;
        for (const tokens of [1, 5]) {
          const x = gaussian(tokens * cols, rows + tokens, 1);
          for (const [start, end] of [[0, rows], [3, rows - 5]] as const) {
            expectMatches(runKernel(bytes, rows, cols, x, tokens, start, end), w, x, rows, cols, tokens, start, end);
          }
        }
      }
    });
  });

  // Random rows of every code, zero (0..16) and sign of scale, wide and tall enough that decode
  // takes its four spaced streams (rows 65536 / 272 = 241 apart), then four adjacent rows, then single rows.
  test('1031 × 512 random INT4_G128 rows: 1, 5, 6 and 7 tokens, sub-ranges at odd rows', () => {
    const rows = 1031, cols = 512;
    const random = seededRandom(5);
    const bytes = Uint8Array.from({ length: packedBytes('INT4_G128', rows, cols) }, () => Math.floor(random() * 256));
    for (let at = 0; at < bytes.length; at += 68) {
      const half = floatToHalf((random() - 0.5) * 0.02);
      bytes[at] = half & 0xff;
      bytes[at + 1] = half >> 8;
      bytes[at + 2] = Math.floor(random() * 17);
      bytes[at + 3] = 0;
    }
    const w = decodeInt4Rows(bytes, rows, cols);
    // 5, 6 and 7 tokens: the last pass over a row takes 1, 2 and 3 tokens.
    for (const tokens of [1, 5, 6, 7]) {
      const x = gaussian(tokens * cols, 77 + tokens, 1);
      const ranges = tokens === 1 ? [[0, rows], [1, 966], [966, 1031], [7, 8]] : [[0, rows], [7, 8]];
      for (const [start, end] of ranges as Array<[number, number]>) {
        expectMatches(runKernel(bytes, rows, cols, x, tokens, start, end), w, x, rows, cols, tokens, start, end);
      }
    }
  });
});

// The whole model on the kernels, its linear layers on INT4_G128 rows split across threads, against
// tfjs on the same checkpoint dequantized to float32. The kernels quantize activations to 8 bits
// per block of 32, which moves each logit of this small model by under 1e-3 (its logits are about
// 0.1 in size); a wrong code, zero or row shard moves them by as much as the logits themselves.
describe('AWQ and GPTQ models on the kernels', () => {
  const ids = Int32Array.of(3, 17, 29, 5, 11);
  let reference: Ops<unknown, unknown>;
  beforeAll(async () => {
    reference = await activateBackend({ backend: 'wasm' });
  });

  function logitsOn(ops: Ops<unknown, unknown>, dir: string, layout: QuantizedLayout): Float32Array {
    let logits: Float32Array<ArrayBufferLike> = new Float32Array(0);
    withCheckpoint(dir, layout, (checkpoint) => {
      const model = LlamaForCausalLM.load(config, checkpoint, ops);
      const cache = model.createCache(8);
      logits = model.forward(ids, cache, { allPositions: true });
      cache.dispose();
      model.dispose();
    });
    return logits;
  }

  test.each([
    ['AWQ', 1, awqDir, awqLayout(128)],
    ['AWQ', 3, awqDir, awqLayout(128)],
    ['GPTQ', 3, gptqDir, gptqLayout(128)],
  ] as const)('%s on %i thread(s): the logits of tfjs on the dequantized weights', async (_, threads, dir, layout) => {
    const kernels = (await KernelOps.create({ threads })) as unknown as Ops<unknown, unknown>;
    try {
      const expected = logitsOn(reference, dir, layout);
      const actual = logitsOn(kernels, dir, layout);
      expect(actual.length).toBe(expected.length);
      let worst = 0;
      actual.forEach((value, i) => (worst = Math.max(worst, Math.abs(value - expected[i]!))));
      expect(worst).toBeLessThan(3e-3);
      expect(Math.max(...Array.from(expected, Math.abs))).toBeGreaterThan(5e-2);
    } finally {
      await (kernels as unknown as KernelOps).close();
    }
  });
});
