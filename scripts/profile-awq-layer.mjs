#!/usr/bin/env node
/*
 * Where one AWQ decoder layer of the Llama-3.2-1B shape spends its time (docs/performance.md,
 * "AWQ and GPTQ calibration on the native threads"), and the whole model's estimate from it.
 * Times each piece of awqLayer once (src/quant/awq-search.ts) and multiplies by how often a layer
 * runs it: the block outputs of the attention group (o_proj) and the MLP group (the MLP alone) and
 * the down group's X·Wᵀ (its module2inspect, down_proj alone) once per grid ratio plus the reference
 * (21), all on the backend's float32 linear (DecoderLayerRunner); the candidates' pseudo-
 * quantization once per ratio (20), the clipping searches once. Random weights and activations
 * (speed does not depend on the values); `--windows` of 256 tokens (herd's default calibration is
 * 16) with the products scaled to 16 (the linears are linear in tokens, attention in windows).
 * CPU time is process.cpuUsage (every thread); wall clock is what a shared machine gives.
 *
 *   npm run build && node scripts/profile-awq-layer.mjs [--windows 4] [--threads 2]
 *
 * `--write-model DIR [--layers 2]` instead writes a model folder of this shape with random F32
 * weights (stories260K's tokenizer and its 512-token vocabulary), to time the estimate end to
 * end: `/usr/bin/time -v ./bin/run.js quantize --format awq -m DIR -o OUT`.
 */
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { activateBackend } from '../dist/backends/registry.js';
import { DecoderLayerRunner } from '../dist/quant/layer-runner.js';
import { nativeCalibration } from '../dist/quant/native-calibration.js';
import { seededRandom } from '../dist/engine/sampling.js';
import { writeSafetensors } from '../dist/formats/safetensors.js';
import { f32Tensor } from '../dist/formats/stored-tensors.js';

const { values: options } = parseArgs({
  options: { windows: { type: 'string', default: '4' }, threads: { type: 'string', default: '2' }, 'write-model': { type: 'string' }, layers: { type: 'string', default: '2' } },
});
const windows = Number(options.windows), threads = Number(options.threads);
const DEFAULT_WINDOWS = 16, WINDOW = 256, LAYERS = 16, RATIOS = 20, GROUP = 128;
const hidden = 2048, heads = 32, kvHeads = 8, headDim = 64, intermediate = 8192;
const config = {
  vocabSize: 8, hiddenSize: hidden, intermediateSize: intermediate, numHiddenLayers: 1, numAttentionHeads: heads, numKeyValueHeads: kvHeads, headDim,
  rmsNormEps: 1e-5, ropeTheta: 500000, ropeScaling: null, tieWordEmbeddings: true, maxPositionEmbeddings: 4096, bosTokenId: 1, eosTokenIds: [2],
  torchDtype: 'float32', attentionBias: false, mlpBias: false, hiddenAct: 'silu',
};

const draw = seededRandom(1);
const random = (count, scale) => Float32Array.from({ length: count }, () => (draw() - 0.5) * scale);
const weight = (name, rows, cols) => ({ name, shape: [rows, cols], data: random(rows * cols, 0.05) });
const weights = new Map([
  ['self_attn.q_proj.weight', weight('q', heads * headDim, hidden)],
  ['self_attn.k_proj.weight', weight('k', kvHeads * headDim, hidden)],
  ['self_attn.v_proj.weight', weight('v', kvHeads * headDim, hidden)],
  ['self_attn.o_proj.weight', weight('o', hidden, heads * headDim)],
  ['mlp.gate_proj.weight', weight('gate', intermediate, hidden)],
  ['mlp.up_proj.weight', weight('up', intermediate, hidden)],
  ['mlp.down_proj.weight', weight('down', hidden, intermediate)],
  ['input_layernorm.weight', { name: 'n', shape: [hidden], data: new Float32Array(hidden).fill(1) }],
  ['post_attention_layernorm.weight', { name: 'n', shape: [hidden], data: new Float32Array(hidden).fill(1) }],
]);
if (options['write-model']) {
  writeModel(options['write-model'], Number(options.layers));
  process.exit(0);
}

/** A model folder of this shape: `layers` layers of random weights (unit norms), stories260K's tokenizer files. */
function writeModel(dir, layers) {
  const tokenizerDir = new URL('../models/stories260K/', import.meta.url).pathname;
  fs.mkdirSync(dir, { recursive: true });
  for (const file of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) fs.copyFileSync(tokenizerDir + file, `${dir}/${file}`);
  const base = JSON.parse(fs.readFileSync(tokenizerDir + 'config.json', 'utf8'));
  const vocab = base.vocab_size;
  fs.writeFileSync(`${dir}/config.json`, JSON.stringify({
    ...base, hidden_size: hidden, intermediate_size: intermediate, num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: headDim,
    num_hidden_layers: layers, max_position_embeddings: config.maxPositionEmbeddings, rope_theta: config.ropeTheta,
  }, null, 2));
  const tensors = [f32Tensor('model.embed_tokens.weight', [vocab, hidden], random(vocab * hidden, 2)), f32Tensor('model.norm.weight', [hidden], new Float32Array(hidden).fill(1))];
  for (let layer = 0; layer < layers; layer++) {
    for (const [name, { shape, data }] of weights) tensors.push(f32Tensor(`model.layers.${layer}.${name}`, shape, data));
  }
  writeSafetensors(`${dir}/model.safetensors`, tensors);
  console.log(`${dir}: ${layers} layers of the 1B shape, vocabulary ${vocab}`);
}

const tokens = windows * WINDOW;
const activations = (cols) => ({ rows: tokens, cols, data: random(tokens * cols, 2) });
const inputs = { hidden: activations(hidden), attention: activations(hidden), mlp: activations(hidden), down: activations(intermediate) };

const native = nativeCalibration();
if (!native) throw new Error('the native addon did not load: npm run build:native');
const runner = new DecoderLayerRunner(await activateBackend({ backend: 'native', threads }), config, WINDOW);

const rows = [];
/** Times fn once; `perLayer`: how many times a layer of the default calibration runs it. */
function measure(label, perLayer, fn, scalesWithTokens = true) {
  const cpu = process.cpuUsage(), start = performance.now();
  fn();
  const { user, system } = process.cpuUsage(cpu);
  const factor = perLayer * (scalesWithTokens ? DEFAULT_WINDOWS / windows : 1);
  rows.push({ label, perLayer, cpu: (user + system) / 1e6, wall: (performance.now() - start) / 1e3, factor });
}

measure('attention block output (q, k, v, attention, o)', RATIOS + 1, () => runner.run(inputs.hidden, weights, 'self_attn.o_proj.weight'));
measure('MLP block output on its recorded input (gate, up, down)', RATIOS + 1, () => runner.runMlp(inputs.mlp, weights));
measure('down group X·Wᵀ (the backend\'s float32 linear)', RATIOS + 1, () => runner.runLinear(inputs.down, weights.get('mlp.down_proj.weight')));
const scales = new Float32Array(hidden).fill(1.01), downScales = new Float32Array(intermediate).fill(1.01);
measure('pseudo-quantized candidates (q, k, v, gate, up, down)', RATIOS, () => {
  for (const name of ['self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight', 'mlp.gate_proj.weight', 'mlp.up_proj.weight'])
    native.scaledPseudoQuantized(weights.get(name), scales, GROUP);
  native.scaledPseudoQuantized(weights.get('mlp.down_proj.weight'), downScales, GROUP);
}, false);
// The clipping search samples at most 512 tokens, whatever the calibration's size.
measure('clipping searches (v, o, gate, up, down)', 1, () => {
  for (const name of ['self_attn.v_proj.weight', 'self_attn.o_proj.weight', 'mlp.gate_proj.weight', 'mlp.up_proj.weight'])
    native.clipBounds(weights.get(name), inputs.attention, GROUP);
  native.clipBounds(weights.get('mlp.down_proj.weight'), inputs.down, GROUP);
}, false);

const load = os.loadavg()[0].toFixed(1);
console.log(`1B-shape AWQ layer, ${windows} × ${WINDOW} tokens measured, scaled to ${DEFAULT_WINDOWS} × ${WINDOW}; ${threads} threads; load average ${load} on ${os.availableParallelism()} cores`);
console.log('piece | measured CPU s | wall s | runs a layer | layer CPU s | layer wall s');
let cpuTotal = 0, wallTotal = 0;
for (const { label, perLayer, cpu, wall, factor } of rows) {
  cpuTotal += cpu * factor;
  wallTotal += wall * factor;
  console.log(`${label} | ${cpu.toFixed(2)} | ${wall.toFixed(2)} | ${perLayer} | ${(cpu * factor).toFixed(0)} | ${(wall * factor).toFixed(0)}`);
}
console.log(`one layer: ${cpuTotal.toFixed(0)} s CPU, ${wallTotal.toFixed(0)} s wall; ${LAYERS} layers: ${((cpuTotal * LAYERS) / 60).toFixed(1)} min CPU, ${((wallTotal * LAYERS) / 60).toFixed(1)} min wall`);
process.exit(0);
