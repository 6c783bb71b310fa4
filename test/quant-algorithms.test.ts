import { activateBackend } from '../src/backends/registry.js';
import { loadModel } from '../src/backends/load.js';
import { openModelFolder } from '../src/engine/load.js';
import type { HostTensor } from '../src/formats/safetensors.js';
import { quantizeAwq, type Activations } from '../src/quant/awq.js';
import { awqLayer } from '../src/quant/awq-search.js';
import { ActivationRecorder, calibrationWindows, DEFAULT_CALIBRATION_FILE, readCalibrationTexts, runCalibration } from '../src/quant/calibration.js';
import { quantizeGptq } from '../src/quant/gptq.js';
import { DEFAULT_GPTQ } from '../src/formats/gptq.js';
import { dequantizeInt4, quantizeInt4Rtn } from '../src/formats/int4.js';
import { DecoderLayerRunner, padColumns, padMlp, type LayerWeights } from '../src/quant/layer-runner.js';
import { QUANT_BACKEND } from '../src/quant/scorecard.js';
import { STORIES } from './fixtures.js';
import { exactProducts } from './stored-weights.js';

/** ‖A − B‖². */
function squaredError(a: Float32Array | Float64Array, b: Float32Array | Float64Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i]! - b[i]!) ** 2;
  return sum;
}

/** ‖X Wᵀ − X Ŵᵀ‖² (products in float64): the output error on calibration activations. */
function outputError(x: Activations, w: Float32Array, approx: Float32Array, out: number): number {
  return squaredError(exactProducts(w, x.data, out, x.cols).exact, exactProducts(approx, x.data, out, x.cols).exact);
}

// Real activations of stories260K (hidden 64, intermediate 172 padded to 192; groups of 32),
// recorded beneath the one model definition while it runs the shipped calibration text.
const GROUP = 32;
const SEQ_LEN = 128;
const LAYERS = [0, 2, 4];
const LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
const { config, checkpoint } = openModelFolder(STORIES);
const widths = new Map<string, number>();
for (const layer of LAYERS) {
  for (const linear of ['self_attn.q_proj', 'self_attn.o_proj', 'mlp.gate_proj']) widths.set(`model.layers.${layer}.${linear}.weight`, 64);
  widths.set(`model.layers.${layer}.mlp.down_proj.weight`, 172);
  widths.set(`model.layers.${layer}.input_layernorm.weight`, 64);
}
widths.set('model.layers.1.input_layernorm.weight', 64);
const recorder = new ActivationRecorder(widths);
const act = (layer: number, name: string): Activations => recorder.activations(`model.layers.${layer}.${name}`);
let runner: DecoderLayerRunner;
let runnerOps: Awaited<ReturnType<typeof activateBackend>>;

beforeAll(async () => {
  const loaded = await loadModel(STORIES, { backend: QUANT_BACKEND, wrapOps: (ops) => recorder.wrap(ops) });
  const windows = calibrationWindows(await readCalibrationTexts(DEFAULT_CALIBRATION_FILE), loaded.tokenizer, 1, { file: DEFAULT_CALIBRATION_FILE, samples: 4, seqLen: SEQ_LEN });
  runCalibration(loaded, windows);
  loaded.model.dispose();
  runnerOps = await activateBackend({ backend: QUANT_BACKEND });
  runner = new DecoderLayerRunner(runnerOps, config, SEQ_LEN);
});

afterAll(() => checkpoint.close());

test('the recorder captures every calibration token of each chosen linear and norm input', () => {
  expect(act(0, 'self_attn.q_proj.weight').rows).toBe(4 * SEQ_LEN);
  expect(act(0, 'mlp.down_proj.weight').cols).toBe(172);
  expect(act(2, 'input_layernorm.weight').rows).toBe(4 * SEQ_LEN);
});

test('GPTQ reduces the output error on calibration activations against round-to-nearest at the same bits and groups', () => {
  for (const layer of LAYERS) {
    for (const linear of ['self_attn.q_proj', 'self_attn.o_proj']) {
      const w = checkpoint.readFloat(`model.layers.${layer}.${linear}.weight`);
      const x = act(layer, `${linear}.weight`);
      for (const symmetric of [true, false]) {
        const rtn = outputError(x, w.data, dequantizeInt4(quantizeInt4Rtn(w, GROUP, symmetric, 1)), w.shape[0]!);
        for (const actOrder of [false, true]) {
          const gptq = outputError(x, w.data, dequantizeInt4(quantizeGptq(w, x, { ...DEFAULT_GPTQ, groupSize: GROUP, symmetric, actOrder })), w.shape[0]!);
          expect(gptq).toBeLessThan(rtn * 0.9);
        }
      }
    }
  }
});

test('the layer runner reproduces the full model: layer 1 input = layer 0 input + attention block + MLP block', () => {
  const hidden = act(0, 'input_layernorm.weight');
  const weights = layerWeights(0);
  const attention = runner.run(hidden, weights, 'self_attn.o_proj.weight');
  const mlp = runner.run(hidden, weights, 'mlp.down_proj.weight');
  const next = act(1, 'input_layernorm.weight').data;
  const rebuilt = hidden.data.map((v, i) => v + attention[i]! + mlp[i]!);
  expect(squaredError(rebuilt, next) / squaredError(next, new Float32Array(next.length))).toBeLessThan(1e-10);
});

test('the layer runner gives the same block outputs when the windows go through in several batched passes', () => {
  const hidden = act(0, 'input_layernorm.weight');
  const weights = layerWeights(0);
  const onePass = runner.run(hidden, weights, 'self_attn.o_proj.weight');
  // 4 windows of 128 in passes of 3 windows and 1.
  const inParts = new DecoderLayerRunner(runnerOps, config, SEQ_LEN, 3 * SEQ_LEN + 1).run(hidden, weights, 'self_attn.o_proj.weight');
  expect(inParts.length).toBe(onePass.length);
  expect(squaredError(inParts, onePass) / squaredError(onePass, new Float32Array(onePass.length))).toBeLessThan(1e-12);
});

test("the MLP block alone on the recorded gate/up input is the whole layer's MLP output (what AWQ's MLP group is measured on)", () => {
  const weights = layerWeights(0);
  const alone = runner.runMlp(act(0, 'mlp.gate_proj.weight'), weights);
  const inLayer = runner.run(act(0, 'input_layernorm.weight'), weights, 'mlp.down_proj.weight');
  // The recorded input came from the calibration pass, the layer's from a recomputed attention block: rounding apart.
  expect(alone.length).toBe(inLayer.length);
  expect(squaredError(alone, inLayer) / squaredError(inLayer, new Float32Array(inLayer.length))).toBeLessThan(1e-10);
});

/** The layer's float weights, MLP padded to 192. */
function layerWeights(layer: number): LayerWeights {
  const names = [...LINEARS.map((linear) => `${linear}.weight`), 'input_layernorm.weight', 'post_attention_layernorm.weight'];
  const weights: LayerWeights = new Map(names.map((name) => [name, checkpoint.readFloat(`model.layers.${layer}.${name}`)]));
  padMlp(weights, 192);
  return weights;
}

/** The same weights with every linear replaced by its dequantized 4-bit groups (min/max, AutoAWQ's pseudo-quantization). */
function quantized(weights: LayerWeights): LayerWeights {
  const result = new Map(weights);
  for (const linear of LINEARS) {
    const w = weights.get(`${linear}.weight`)!;
    result.set(`${linear}.weight`, { ...w, data: dequantizeInt4(quantizeAwq(w, GROUP)) } satisfies HostTensor);
  }
  return result;
}

test('AWQ (block-loss scale search, folded scales, clipping) reduces the attention and MLP block output error against round-to-nearest', () => {
  const errors = { rtnAttention: 0, awqAttention: 0, rtnMlp: 0, awqMlp: 0 };
  for (const layer of LAYERS) {
    const hidden = act(layer, 'input_layernorm.weight');
    const float = layerWeights(layer);
    const searched = layerWeights(layer);
    awqLayer(searched, {
      hidden,
      attention: act(layer, 'self_attn.q_proj.weight'),
      attentionOutput: act(layer, 'self_attn.o_proj.weight'),
      mlp: act(layer, 'mlp.gate_proj.weight'),
      down: padColumns(act(layer, 'mlp.down_proj.weight'), 192),
    }, runner, GROUP);
    const reference = { attention: runner.run(hidden, float, 'self_attn.o_proj.weight'), mlp: runner.run(hidden, float, 'mlp.down_proj.weight') };
    const rtn = quantized(float);
    const awq = quantized(searched);
    errors.rtnAttention += squaredError(runner.run(hidden, rtn, 'self_attn.o_proj.weight'), reference.attention);
    errors.awqAttention += squaredError(runner.run(hidden, awq, 'self_attn.o_proj.weight'), reference.attention);
    errors.rtnMlp += squaredError(runner.run(hidden, rtn, 'mlp.down_proj.weight'), reference.mlp);
    errors.awqMlp += squaredError(runner.run(hidden, awq, 'mlp.down_proj.weight'), reference.mlp);
  }
  expect(errors.awqAttention).toBeLessThan(errors.rtnAttention * 0.9);
  expect(errors.awqMlp).toBeLessThan(errors.rtnMlp * 0.9);
});
