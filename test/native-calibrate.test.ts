import { seededRandom } from '../src/engine/sampling.js';
import { activateBackend } from '../src/backends/registry.js';
import type { LlamaConfig } from '../src/spec/llama-config.js';
import type { HostTensor } from '../src/formats/safetensors.js';
import { DEFAULT_GPTQ } from '../src/formats/gptq.js';
import { requireNativeAddon } from '../src/native/addon.js';
import type { Activations } from '../src/quant/awq.js';
import { awqLayer, scaledPseudoQuantized, searchAwqClip } from '../src/quant/awq-search.js';
import { hessian, quantizeGptq, upperCholeskyOfInverse } from '../src/quant/gptq.js';
import { DecoderLayerRunner, type LayerWeights } from '../src/quant/layer-runner.js';
import { layerRunnerBackend, nativeCalibration } from '../src/quant/native-calibration.js';
import { QUANT_BACKEND } from '../src/quant/scorecard.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { herd } from './herd-cli.js';
import { exactProducts } from './stored-weights.js';

/**
 * The native calibration loops (src/native/calibrate.c) against the TypeScript they replace, which
 * is the reference: the same bits, not a tolerance, on awkward shapes (widths that are no multiple
 * of a vector or tile, more rows than one chunk) and on 1 and 3 threads. The addon must be built:
 * this file fails (it does not skip) when it is missing.
 */
const addon = requireNativeAddon();
const native = nativeCalibration()!;

function randomActivations(seed: number, rows: number, cols: number, zeroEvery = 0): Activations {
  const draw = seededRandom(seed);
  // Heavy-tailed columns, as real activations have, and some exact zeros (the TypeScript skips them).
  const data = Float32Array.from({ length: rows * cols }, (_, i) => (zeroEvery && i % zeroEvery === 0 ? 0 : (draw() - 0.5) * (1 + ((i % cols) % 7 === 0 ? 20 : 0))));
  return { rows, cols, data };
}

function randomWeight(seed: number, rows: number, cols: number): HostTensor {
  const draw = seededRandom(seed);
  return { name: 'w', shape: [rows, cols], data: Float32Array.from({ length: rows * cols }, () => (draw() - 0.5) * 0.2) };
}

/**
 * Rows whose first group takes the vector loops' edge cases (calibrate.c leaves them to the
 * scalar code): all zeros, zeros of both signs among positives, and nothing below zero.
 */
function withAwkwardGroups(w: HostTensor, groupSize: number): HostTensor {
  const cols = w.shape[1]!;
  const group = (row: number) => w.data.subarray(row * cols, row * cols + groupSize);
  group(0).fill(0);
  group(1).forEach((v, c, values) => (values[c] = c % 3 === 0 ? (c % 2 ? -0 : 0) : Math.abs(v)));
  group(2).forEach((v, c, values) => (values[c] = Math.abs(v)));
  return w;
}

/** Bitwise equality of two float arrays (toEqual would let −0 equal 0 and says little about where they differ). */
function expectSameBits(actual: Float32Array | Float64Array, expected: Float32Array | Float64Array): void {
  expect(actual.length).toBe(expected.length);
  const a = new Uint8Array(actual.buffer, actual.byteOffset, actual.byteLength);
  const b = new Uint8Array(expected.buffer, expected.byteOffset, expected.byteLength);
  const first = a.findIndex((byte, i) => byte !== b[i]);
  expect(first === -1 ? 'identical' : `first difference at element ${Math.floor(first / actual.BYTES_PER_ELEMENT)}`).toBe('identical');
}

describe.each([1, 3])('on %i thread(s)', (threads) => {
  beforeAll(() => addon.startThreads(threads));

  test('the Hessian 2/n·XᵀX is the TypeScript one, bit for bit', () => {
    for (const [rows, cols] of [[37, 50], [300, 64], [5, 3]] as const) {
      const x = randomActivations(rows * cols, rows, cols, 11);
      expectSameBits(native.hessian(x), hessian(x));
    }
  });

  test("AWQ's candidates Q(W·diag(s))·diag(1/s) are the TypeScript's, bit for bit", () => {
    // 40 rows: two items of 16 and one of 8; groups of 32, 12 (no multiple of AVX-512's 8), 10 (nor of AVX2's 4) and 8 (rows of one group, too); scales far from 1 and tiny.
    for (const [rows, cols, groupSize] of [[40, 96, 32], [8, 8, 8], [24, 64, 8], [8, 48, 12], [8, 80, 10]] as const) {
      const w = withAwkwardGroups(randomWeight(rows * cols, rows, cols), groupSize);
      const draw = seededRandom(cols);
      const scales = Float32Array.from({ length: cols }, (_, c) => (c % 5 === 0 ? 1e-4 : 0.1 + draw() * 30));
      const candidate = native.scaledPseudoQuantized(w, scales, groupSize);
      expectSameBits(candidate.data, scaledPseudoQuantized(w, scales, groupSize).data);
      expect(candidate.shape).toEqual(w.shape);
      // Quantized: at most 16 values in each group (not a copy of the weights).
      expect(new Set(Array.from(candidate.data.subarray(0, groupSize), (v, c) => Math.fround(v * scales[c]!))).size).toBeLessThanOrEqual(16);
    }
  });

  test("AWQ's clipping bounds are the TypeScript search's, with and without token sampling", () => {
    // 300 tokens and 550 sampled of 1,100: no multiple of the 16-token blocks; groups of 32, of 12 and of 6 (no multiple of a vector's 8 or 4).
    for (const [rows, groupSize] of [[300, 32], [1100, 32], [300, 12], [300, 6]] as const) {
      const x = randomActivations(rows, rows, 96);
      const w = withAwkwardGroups(randomWeight(7, 24, 96), groupSize);
      const bounds = native.clipBounds(w, x, groupSize);
      expectSameBits(bounds, searchAwqClip(w, x, groupSize));
      // Some rows clip: the search is not a no-op on this data.
      const groups = 96 / groupSize;
      expect(bounds.some((bound, i) => bound < Math.max(...w.data.subarray(Math.floor(i / groups) * 96 + (i % groups) * groupSize, Math.floor(i / groups) * 96 + (i % groups) * groupSize + groupSize).map(Math.abs)))).toBe(true);
    }
  });

  test("GPTQ's factor U (H⁻¹ = UᵀU) is the TypeScript one, bit for bit, across panel and tile edges", () => {
    for (const [rows, n] of [[300, 150], [90, 70], [10, 3]] as const) {
      const h = hessian(randomActivations(n, rows, n));
      for (let i = 0; i < n; i++) h[i * n + i] = h[i * n + i]! + 0.01;
      expectSameBits(native.upperCholeskyOfInverse(h, n)!, upperCholeskyOfInverse(h, n, 'h'));
    }
  });

  test('a Hessian that is not positive definite fails the same way on both paths', () => {
    const x = randomActivations(9, 4, 16); // 4 rows: rank 4 < 16, and no dampening
    const options = { ...DEFAULT_GPTQ, groupSize: 16, dampPercent: 0 };
    const w = randomWeight(1, 8, 16);
    expect(native.upperCholeskyOfInverse(hessian(x), 16)).toBeNull();
    expect(() => quantizeGptq(w, x, options, null)).toThrow('w: the damped Hessian is not positive definite; raise --damp');
    expect(() => quantizeGptq(w, x, options, native)).toThrow('w: the damped Hessian is not positive definite; raise --damp');
  });

  test('GPTQ gives the same codes, scales, zeros and groups as the TypeScript path', () => {
    const w = randomWeight(3, 40, 96);
    const x = randomActivations(5, 200, 96, 13);
    for (const options of [
      { ...DEFAULT_GPTQ, groupSize: 32 },
      { ...DEFAULT_GPTQ, groupSize: 32, symmetric: false, actOrder: true, blockSize: 24 },
    ]) {
      const ours = quantizeGptq(w, x, options, native);
      const reference = quantizeGptq(w, x, options, null);
      expect(Buffer.from(ours.codes).equals(Buffer.from(reference.codes))).toBe(true);
      expect(Buffer.from(ours.zeros).equals(Buffer.from(reference.zeros))).toBe(true);
      expectSameBits(ours.scales, reference.scales);
      expect(ours.groupOfColumn).toEqual(reference.groupOfColumn);
    }
  });
});

/** The one-layer model of the tests below: grouped-query attention (so no v→o group), hidden 64, MLP 128. */
const config: LlamaConfig = {
  vocabSize: 8, hiddenSize: 64, intermediateSize: 128, numHiddenLayers: 1, numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 16,
  rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: null, tieWordEmbeddings: true, maxPositionEmbeddings: 64, bosTokenId: 1, eosTokenIds: [2],
  torchDtype: 'float32', attentionBias: false, mlpBias: false, hiddenAct: 'silu',
};
const SEQ_LEN = 16;

test.each(['native', QUANT_BACKEND])("the layer runner's X·Wᵀ (AWQ's lone-linear groups) on the %s backend is the float64 product within float32 rounding", async (backend) => {
  // 300 rows: parts of 128, 128 and 44; 200 columns and 37 outputs: no multiple of a vector, tile or panel.
  const [rows, cols, out] = [300, 200, 37];
  const x = randomActivations(21, rows, cols);
  const w = randomWeight(22, out, cols);
  const runner = new DecoderLayerRunner(await activateBackend({ backend, threads: 3 }), config, SEQ_LEN);
  const y = runner.runLinear(x, w);
  const { exact, magnitude } = exactProducts(w.data, x.data, out, cols);
  expect(y.length).toBe(rows * out);
  const worst = y.reduce((most, value, i) => Math.max(most, Math.abs(value - exact[i]!) / (2e-6 * Math.sqrt(cols) * magnitude[i]! + 1e-30)), 0);
  expect(worst).toBeLessThanOrEqual(1);
});

test("a whole AWQ layer (scale search, folding, clipping) on the native loops and backend ends with the TypeScript path's weights", async () => {
  addon.startThreads(3);
  const { hiddenSize, numAttentionHeads: heads, numKeyValueHeads: kvHeads, headDim, intermediateSize: intermediate } = config;
  const rows = 4 * SEQ_LEN;
  const layer = (): LayerWeights => new Map([
    ['self_attn.q_proj.weight', randomWeight(1, heads * headDim, hiddenSize)],
    ['self_attn.k_proj.weight', randomWeight(2, kvHeads * headDim, hiddenSize)],
    ['self_attn.v_proj.weight', randomWeight(3, kvHeads * headDim, hiddenSize)],
    ['self_attn.o_proj.weight', randomWeight(4, hiddenSize, heads * headDim)],
    ['mlp.gate_proj.weight', randomWeight(5, intermediate, hiddenSize)],
    ['mlp.up_proj.weight', randomWeight(6, intermediate, hiddenSize)],
    ['mlp.down_proj.weight', randomWeight(7, hiddenSize, intermediate)],
    ['input_layernorm.weight', { name: 'n', shape: [hiddenSize], data: new Float32Array(hiddenSize).fill(1) }],
    ['post_attention_layernorm.weight', { name: 'n', shape: [hiddenSize], data: new Float32Array(hiddenSize).fill(1) }],
  ]);
  const inputs = {
    hidden: randomActivations(11, rows, hiddenSize),
    attention: randomActivations(12, rows, hiddenSize),
    attentionOutput: randomActivations(13, rows, hiddenSize),
    mlp: randomActivations(14, rows, hiddenSize),
    down: randomActivations(15, rows, intermediate),
  };
  // As a quantize job runs it: block outputs on the native backend, against the TypeScript path's WASM kernels.
  expect(layerRunnerBackend()).toBe('native');
  const runner = async (backend: string) => new DecoderLayerRunner(await activateBackend({ backend }), config, SEQ_LEN);
  const ours = layer();
  const reference = layer();
  awqLayer(ours, inputs, await runner(layerRunnerBackend()), 32, native);
  awqLayer(reference, inputs, await runner(QUANT_BACKEND), 32, null);
  for (const [name, weight] of reference) expectSameBits(ours.get(name)!.data, weight.data);
  // The search changed the weights: the comparison is not of two untouched copies.
  expect(Buffer.from(reference.get('mlp.down_proj.weight')!.data.buffer).equals(Buffer.from(layer().get('mlp.down_proj.weight')!.data.buffer))).toBe(false);
});

// The calibration pass and AWQ's layer runs on the WASM kernels in both runs (--backend kernels),
// so that the inputs of the native loops and of the TypeScript's are the same bits.
test('herd quantize writes the same AWQ and GPTQ bytes with the addon switched off (HERD_NATIVE=0, the TypeScript path)', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-native-calibrate-'));
  try {
    const args = (dir: string) => ['quantize', '--format', 'awq,gptq', '--samples', '2', '--seq-len', '32', '--backend', 'kernels', '--out', path.join(out, dir), '--json'];
    for (const [dir, env] of [['native', {}], ['typescript', { HERD_NATIVE: '0' }]] as const) {
      const run = herd(args(dir), undefined, env);
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
    }
    for (const format of ['awq', 'gptq']) {
      const file = (dir: string) => fs.readFileSync(path.join(out, dir, `stories260K-${format}`, 'model.safetensors'));
      expect(file('native').equals(file('typescript'))).toBe(true);
    }
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
