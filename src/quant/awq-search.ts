import type { HostTensor } from '../formats/safetensors.js';
import { awqGroupParams, divideRows, quantizeAwq, scaleColumns, type Activations } from './awq.js';
import { dequantizeInt4, dequantizeCode, quantizeCode } from '../formats/int4.js';
import type { DecoderLayerRunner, LayerWeights } from './layer-runner.js';
import { nativeCalibration, type NativeCalibration } from './native-calibration.js';

/**
 * AWQ's activation-aware search, following AutoAWQ (awq/quantize/quantizer.py `AwqQuantizer`):
 * per-channel scales chosen on the output of the whole module group, folded into the preceding
 * norm or projection (`apply_scale`), then a per-group clipping search (`auto_clip`). The
 * candidates' pseudo-quantization and the clipping search run on the native addon's threads when
 * it loads (the same bits; this file's TypeScript is the reference).
 */

/** AutoAWQ's grid: ratios 0, 1/20, …, 19/20. */
const SCALE_GRID = 20;
/** auto_clip: n_grid 20, max_shrink 0.5 (shrinks 0 … 9/20 of the group maximum), n_sample_token 512. */
const CLIP_GRID = 20;
const CLIP_MAX_SHRINK = 0.5;
const CLIP_SAMPLE_TOKENS = 512;

/** The calibration inputs of one decoder layer. */
export interface AwqLayerInputs {
  /** The layer's residual input (what input_layernorm normalises). */
  hidden: Activations;
  /** Inputs of q/k/v, o, gate/up and down ([tokens, in] each, down padded as the weights are). */
  attention: Activations;
  attentionOutput: Activations;
  mlp: Activations;
  down: Activations;
}

/** One of AutoAWQ's llama scaling groups: the linears sharing an input and the op before them. */
interface ScalingGroup {
  previous: string;
  linears: string[];
  input: Activations;
  /**
   * The block whose output the loss is measured on (module2inspect), or none: the one linear's
   * own output. The attention block runs on the layer's residual input; the MLP and the lone
   * linear on the group's own recorded input (AutoAWQ feeds module2inspect the input recorded for
   * the group's linears). All run on the layer runner's backend in float32, as AutoAWQ runs
   * module2inspect in the model's dtype.
   */
  block: 'attention' | 'mlp' | null;
}

/**
 * Searches the scales of every group on the float weights (AutoAWQ searches all before applying
 * any), folds them in, then clips every linear except q and k. `weights` (the layer's linears and
 * norms) are changed in place; quantize them with `quantizeAwq` afterwards. `native`: the native
 * loops, or null for the TypeScript ones.
 */
export function awqLayer(
  weights: LayerWeights, inputs: AwqLayerInputs, runner: DecoderLayerRunner, groupSize: number, native: NativeCalibration | null = nativeCalibration(),
): void {
  const weight = (name: string): HostTensor => weights.get(name)!;
  const groups: ScalingGroup[] = [
    { previous: 'input_layernorm.weight', linears: ['self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight'], input: inputs.attention, block: 'attention' },
    { previous: 'post_attention_layernorm.weight', linears: ['mlp.gate_proj.weight', 'mlp.up_proj.weight'], input: inputs.mlp, block: 'mlp' },
    { previous: 'mlp.up_proj.weight', linears: ['mlp.down_proj.weight'], input: inputs.down, block: null },
  ];
  // v → o only when the shapes agree (no grouped-query attention), as AutoAWQ's llama model does.
  if (sameShape(weight('self_attn.v_proj.weight'), weight('self_attn.o_proj.weight'))) {
    groups.push({ previous: 'self_attn.v_proj.weight', linears: ['self_attn.o_proj.weight'], input: inputs.attentionOutput, block: null });
  }
  const scales = groups.map((group) => searchGroupScales(group, weights, inputs.hidden, runner, groupSize, native));
  const clipInputs = new Map<string, Activations>([
    ['self_attn.v_proj.weight', inputs.attention],
    ['self_attn.o_proj.weight', inputs.attentionOutput],
    ['mlp.gate_proj.weight', inputs.mlp],
    ['mlp.up_proj.weight', inputs.mlp],
    ['mlp.down_proj.weight', inputs.down],
  ]);
  groups.forEach((group, i) => {
    const s = scales[i]!;
    divideRows(weight(group.previous), s);
    for (const name of group.linears) {
      scaleColumns(weight(name), s);
      // apply_scale divides the recorded inputs too, so the clipping search sees what the scaled weights will.
      if (clipInputs.has(name)) clipInputs.set(name, divideColumns(clipInputs.get(name)!, s));
    }
  });
  for (const [name, input] of clipInputs) {
    const bounds = native ? native.clipBounds(weight(name), input, groupSize) : searchAwqClip(weight(name), input, groupSize);
    clipWeight(weight(name), bounds, groupSize);
  }
}

function searchGroupScales(
  group: ScalingGroup, weights: LayerWeights, hidden: Activations, runner: DecoderLayerRunner, groupSize: number, native: NativeCalibration | null,
): Float32Array {
  const linears = group.linears.map((name) => weights.get(name)!);
  if (group.block === null) {
    const reference = runner.runLinear(group.input, linears[0]!);
    return searchAwqScales(linears, group.input, groupSize, ([candidate]) => squaredError(runner.runLinear(group.input, candidate!), reference), native);
  }
  const blockOutput = (layer: LayerWeights): Float32Array => (group.block === 'mlp' ? runner.runMlp(group.input, layer) : runner.run(hidden, layer, 'self_attn.o_proj.weight'));
  const reference = blockOutput(weights);
  return searchAwqScales(linears, group.input, groupSize, (candidates) => {
    const trial = new Map(weights);
    group.linears.forEach((name, i) => trial.set(name, candidates[i]!));
    return squaredError(blockOutput(trial), reference);
  }, native);
}

/**
 * AutoAWQ `_search_best_scale` / `_compute_best_scale` (duo_scaling, its default): for each
 * ratio α of the grid, s = mean|x|^α / (mean ŵ^(1−α) + 1e-4) per input channel (ŵ = |w| over its
 * group's maximum, averaged over the linears' rows), clamped to ≥ 1e-4 and divided by
 * √(max s · min s); the linears become Q(W·diag(s))·diag(1/s) and `blockError` measures the
 * output they give. The α with the smallest error wins. Channels no activation reaches (zero
 * padding of the MLP) keep s = 1 and stay out of the normalisation. `native`: the candidates on
 * the addon's threads (the same bits), or null for the TypeScript.
 */
export function searchAwqScales(
  weights: HostTensor[], x: Activations, groupSize: number, blockError: (candidates: HostTensor[]) => number, native: NativeCalibration | null = null,
): Float32Array {
  const xMean = columnMeanAbs(x);
  const wMean = normalisedWeightMean(weights, groupSize, x.cols);
  let best = { error: Infinity, scales: new Float32Array(x.cols).fill(1) };
  for (let step = 0; step < SCALE_GRID; step++) {
    const ratio = step / SCALE_GRID;
    const scales = new Float32Array(x.cols).fill(1);
    let low = Infinity;
    let high = 0;
    for (let c = 0; c < x.cols; c++) {
      if (xMean[c] === 0) continue;
      scales[c] = Math.max(xMean[c]! ** ratio / (wMean[c]! ** (1 - ratio) + 1e-4), 1e-4);
      low = Math.min(low, scales[c]!);
      high = Math.max(high, scales[c]!);
    }
    const norm = Math.sqrt(low * high);
    for (let c = 0; c < x.cols; c++) if (xMean[c] !== 0) scales[c] = scales[c]! / norm;
    const error = blockError(weights.map((w) => (native ? native.scaledPseudoQuantized(w, scales, groupSize) : scaledPseudoQuantized(w, scales, groupSize))));
    if (error < best.error) best = { error, scales };
  }
  return best.scales;
}

/** Q(W·diag(s))·diag(1/s): what the linear computes once its scaled weights are quantized. */
export function scaledPseudoQuantized(weight: HostTensor, scales: Float32Array, groupSize: number): HostTensor {
  const scaled: HostTensor = { name: weight.name, shape: weight.shape, data: Float32Array.from(weight.data) };
  scaleColumns(scaled, scales);
  const cols = weight.shape[1]!;
  const data = dequantizeInt4(quantizeAwq(scaled, groupSize)).map((v, i) => v / scales[i % cols]!);
  return { name: weight.name, shape: weight.shape, data };
}

/**
 * AutoAWQ `_compute_best_clip`: for every output row and group, the largest |w| allowed is the
 * group's maximum shrunk by 0, 1/20, …, 9/20; the one whose quantized group gives the smallest
 * mean squared error of the group's partial dot products over (up to) 512 sampled tokens wins.
 * Returns the bound of each [row, group].
 */
export function searchAwqClip(weight: HostTensor, x: Activations, groupSize: number): Float32Array {
  const [out, cols] = weight.shape as [number, number];
  const groups = cols / groupSize;
  const step = Math.max(1, Math.floor(x.rows / CLIP_SAMPLE_TOKENS));
  const tokens = Math.ceil(x.rows / step);
  const bounds = new Float32Array(out * groups);
  const original = new Float64Array(tokens);
  const clipped = new Float32Array(groupSize);
  for (let g = 0; g < groups; g++) {
    const inputs = sampledGroupInputs(x, step, tokens, g * groupSize, groupSize);
    for (let o = 0; o < out; o++) {
      const w = weight.data.subarray(o * cols + g * groupSize, o * cols + (g + 1) * groupSize);
      const groupMax = w.reduce((max, v) => Math.max(max, Math.abs(v)), 0);
      groupDots(inputs, w, original);
      let best = { error: 1e9, bound: groupMax };
      for (let shrink = 0; shrink < CLIP_MAX_SHRINK * CLIP_GRID; shrink++) {
        const bound = groupMax * (1 - shrink / CLIP_GRID);
        for (let c = 0; c < groupSize; c++) clipped[c] = Math.min(bound, Math.max(-bound, w[c]!));
        const params = awqGroupParams(clipped);
        for (let c = 0; c < groupSize; c++) clipped[c] = dequantizeCode(quantizeCode(clipped[c]!, params), params);
        const error = meanSquaredDotError(inputs, clipped, original);
        if (error < best.error) best = { error, bound };
      }
      bounds[o * groups + g] = best.bound;
    }
  }
  return bounds;
}

/** Every `step`-th token's inputs of one group of columns, [tokens, groupSize]. */
function sampledGroupInputs(x: Activations, step: number, tokens: number, from: number, groupSize: number): Float32Array {
  const inputs = new Float32Array(tokens * groupSize);
  for (let k = 0; k < tokens; k++) inputs.set(x.data.subarray(k * step * x.cols + from, k * step * x.cols + from + groupSize), k * groupSize);
  return inputs;
}

function groupDots(inputs: Float32Array, w: Float32Array, into: Float64Array): void {
  const size = w.length;
  for (let k = 0; k < into.length; k++) {
    let sum = 0;
    for (let c = 0; c < size; c++) sum += inputs[k * size + c]! * w[c]!;
    into[k] = sum;
  }
}

function meanSquaredDotError(inputs: Float32Array, w: Float32Array, original: Float64Array): number {
  const size = w.length;
  let error = 0;
  for (let k = 0; k < original.length; k++) {
    let sum = 0;
    for (let c = 0; c < size; c++) sum += inputs[k * size + c]! * w[c]!;
    error += (sum - original[k]!) ** 2;
  }
  return error / original.length;
}

/** AutoAWQ `apply_clip`: clamps every group of the weight to ±its bound, in place. */
export function clipWeight(weight: HostTensor, bounds: Float32Array, groupSize: number): void {
  const cols = weight.shape[1]!;
  const groups = cols / groupSize;
  for (let i = 0; i < weight.data.length; i++) {
    const bound = bounds[Math.floor(i / cols) * groups + Math.floor((i % cols) / groupSize)]!;
    weight.data[i] = Math.min(bound, Math.max(-bound, weight.data[i]!));
  }
}

function squaredError(a: Float32Array, b: Float32Array): number {
  let error = 0;
  for (let i = 0; i < a.length; i++) error += (a[i]! - b[i]!) ** 2;
  return error;
}

function divideColumns(x: Activations, scales: Float32Array): Activations {
  return { rows: x.rows, cols: x.cols, data: x.data.map((v, i) => v / scales[i % x.cols]!) };
}

function sameShape(a: HostTensor, b: HostTensor): boolean {
  return a.shape.length === b.shape.length && a.shape.every((size, i) => size === b.shape[i]);
}

function columnMeanAbs(x: Activations): Float32Array {
  const mean = new Float32Array(x.cols);
  for (let r = 0; r < x.rows; r++) for (let c = 0; c < x.cols; c++) mean[c] = mean[c]! + Math.abs(x.data[r * x.cols + c]!);
  return mean.map((sum) => sum / x.rows);
}

/** Mean over the linears' rows of |w| / (group max + 1e-6) per input column; all-zero rows (padding) are left out. */
function normalisedWeightMean(weights: HostTensor[], groupSize: number, cols: number): Float32Array {
  const mean = new Float32Array(cols);
  let rows = 0;
  for (const w of weights) {
    for (let r = 0; r < w.shape[0]!; r++) {
      const row = w.data.subarray(r * cols, (r + 1) * cols);
      if (row.every((v) => v === 0)) continue;
      rows++;
      for (let g = 0; g < cols; g += groupSize) {
        let groupMax = 0;
        for (let c = g; c < g + groupSize; c++) groupMax = Math.max(groupMax, Math.abs(row[c]!));
        for (let c = g; c < g + groupSize; c++) mean[c] = mean[c]! + Math.abs(row[c]!) / (groupMax + 1e-6);
      }
    }
  }
  return mean.map((sum) => sum / Math.max(rows, 1));
}
