import type { LlamaConfig } from '../spec/llama-config.js';
import { LlamaForCausalLM, type BatchedSequence } from '../engine/model.js';
import type { Ops } from '../engine/ops.js';
import type { WeightSource } from '../formats/weights.js';
import type { HostTensor } from '../formats/safetensors.js';
import type { Activations } from './awq.js';

/** The weights of one decoder layer, named as within a layer: `self_attn.q_proj.weight`, `input_layernorm.weight`, … */
export type LayerWeights = Map<string, HostTensor>;

/**
 * Runs one decoder layer of the engine's model definition on recorded inputs, with weights the
 * caller chooses: how AWQ measures the output of a whole attention or MLP block (AutoAWQ's
 * module2inspect) without a second forward pass. The layer is the only layer of a model whose
 * "embedding table" is the recorded residual inputs, one row per calibration token, so looking up
 * ids w·L .. w·L+L−1 feeds window w to the layer at positions 0..L−1 as in the full model.
 */
export class DecoderLayerRunner {
  constructor(
    private readonly ops: Ops<unknown, unknown>,
    private readonly config: LlamaConfig,
    private readonly windowLength: number,
    /** Calibration rows per batched pass of `run` (whole windows, at least one). */
    private readonly batchRows = BATCH_ROWS,
  ) {}

  /**
   * The output rows of `recorded` (a linear of the layer: `self_attn.o_proj.weight` is the
   * attention block's output, `mlp.down_proj.weight` the MLP's) for every token of `hidden`.
   */
  run(hidden: Activations, weights: LayerWeights, recorded: string): Float32Array {
    const outputs: Float32Array[] = [];
    const ops = recordOutputs(this.ops, `model.layers.0.${recorded}`, outputs);
    const layer = recorded.startsWith('self_attn.') ? withIdleMlp(weights, hidden.cols) : weights;
    const intermediate = layer.get('mlp.up_proj.weight')!.shape[0]!;
    const config: LlamaConfig = { ...this.config, numHiddenLayers: 1, tieWordEmbeddings: true, vocabSize: hidden.rows, intermediateSize: intermediate };
    const model = LlamaForCausalLM.load(config, layerSource(hidden, layer), ops);
    try {
      const length = this.windowLength;
      const rowsPerPass = Math.max(1, Math.floor(this.batchRows / length)) * length;
      for (let first = 0; first < hidden.rows; first += rowsPerPass) runWindows(model, first, Math.min(first + rowsPerPass, hidden.rows), length);
    } finally {
      model.dispose();
    }
    const result = new Float32Array(outputs.reduce((sum, part) => sum + part.length, 0));
    outputs.reduce((offset, part) => (result.set(part, offset), offset + part.length), 0);
    return result;
  }

  /** The MLP block's output (down_proj's) for every row of `input`, the recorded gate/up input (post_attention_layernorm's output). */
  runMlp(input: Activations, weights: LayerWeights): Float32Array {
    const intermediate = weights.get('mlp.up_proj.weight')!.shape[0]!;
    const config: LlamaConfig = { ...this.config, numHiddenLayers: 1, tieWordEmbeddings: true, vocabSize: input.rows, intermediateSize: intermediate };
    const model = LlamaForCausalLM.load(config, layerSource(input, weights), this.ops);
    try {
      return model.mlpOfRows(Int32Array.from({ length: input.rows }, (_, i) => i), 0, PART_TOKENS);
    } finally {
      model.dispose();
    }
  }

  /**
   * X·Wᵀ for the rows of `input` and W [out, in], on the runner's backend (its float32 product):
   * how AWQ measures a group whose module2inspect is its one linear (up→down, v→o), as the
   * blocks' outputs are measured. The rows enter as an embedding table, in parts of PART_TOKENS.
   */
  runLinear(input: Activations, weight: HostTensor): Float32Array {
    const source = layerSource(input, new Map([[LINEAR_NAME, weight]]));
    const table = this.ops.embeddingWeight('model.embed_tokens.weight', source);
    const linear = this.ops.linearWeight(LINEAR_NAME, source);
    const out = weight.shape[0]!;
    const result = new Float32Array(input.rows * out);
    try {
      for (let first = 0; first < input.rows; first += PART_TOKENS) {
        const ids = Int32Array.from({ length: Math.min(PART_TOKENS, input.rows - first) }, (_, i) => first + i);
        result.set(this.ops.scope(() => this.ops.read(this.ops.linear(this.ops.embedding(table, ids), linear))), first * out);
      }
    } finally {
      this.ops.disposeWeight(table);
      this.ops.disposeWeight(linear);
    }
    return result;
  }
}

/**
 * Rows per pass of runMlp and runLinear. Every grid ratio runs the MLP and the lone linears over
 * all calibration tokens, and a float32 product reads its weights once per pass: in parts of 384
 * (the native product's block of packed activations, ops.c F32_TOKEN_BLOCK) two threads did
 * 8,192 × 2,048 at 37 G products/s each, at 128 at 26. The MLP's intermediates of 384 rows are
 * 12 MiB each.
 */
const PART_TOKENS = 384;

/**
 * Calibration rows per batched pass of `run`: the windows' rows go through the layer as one
 * activation matrix (forwardBatch, each window attending to its own cache), so each product
 * reads its weights once for all of them (the 1B shape's attention block over 16 windows of 256,
 * one pass against one a window: 1,040 → 969 ms, the same bits), while a larger calibration set
 * does not hold all its activations at once.
 */
const BATCH_ROWS = 4096;

/** Rows first..end of the recorded input, one window of `length` positions after another, in one batched pass. */
function runWindows(model: LlamaForCausalLM<unknown, unknown>, first: number, end: number, length: number): void {
  const windows: BatchedSequence[] = [];
  try {
    for (let start = first; start < end; start += length) {
      windows.push({ ids: Int32Array.from({ length }, (_, i) => start + i), cache: model.createCache(length) });
    }
    model.forwardBatch(windows);
  } finally {
    windows.forEach(({ cache }) => cache.dispose());
  }
}

/** runLinear's one weight, as its source names it. */
const LINEAR_NAME = 'linear.weight';

/** MLP width of a layer whose MLP output nobody reads. */
const IDLE_MLP_WIDTH = 32;

/**
 * The layer with a narrow all-zero MLP: the attention block's output is computed before the MLP
 * runs and does not depend on it, so recording it needs none of the MLP's work (most of a
 * layer's: 3·hidden·intermediate of its weights).
 */
function withIdleMlp(weights: LayerWeights, hiddenSize: number): LayerWeights {
  const zeros = (name: string, shape: [number, number]): HostTensor => ({ name, shape, data: new Float32Array(shape[0] * shape[1]) });
  return new Map([
    ...weights,
    ['mlp.gate_proj.weight', zeros('mlp.gate_proj.weight', [IDLE_MLP_WIDTH, hiddenSize])],
    ['mlp.up_proj.weight', zeros('mlp.up_proj.weight', [IDLE_MLP_WIDTH, hiddenSize])],
    ['mlp.down_proj.weight', zeros('mlp.down_proj.weight', [hiddenSize, IDLE_MLP_WIDTH])],
  ]);
}

/** Weights of the one-layer model: the layer's, the recorded rows as the table, a unit final norm. */
function layerSource(hidden: Activations, weights: LayerWeights): WeightSource {
  return {
    readFloat(name: string): HostTensor {
      if (name === 'model.embed_tokens.weight') return { name, shape: [hidden.rows, hidden.cols], data: hidden.data };
      if (name === 'model.norm.weight') return { name, shape: [hidden.cols], data: new Float32Array(hidden.cols).fill(1) };
      const weight = weights.get(name.replace(/^model\.layers\.0\./, ''));
      if (!weight) throw new Error(`layer runner: no weight ${name}`);
      return weight;
    },
  };
}

/** Ops that copy the output of one named linear to `into` each time it runs. */
function recordOutputs<T, W>(ops: Ops<T, W>, name: string, into: Float32Array[]): Ops<T, W> {
  const recorded = new Set<W>();
  return Object.assign(Object.create(ops) as Ops<T, W>, {
    linearWeight(weightName: string, source: WeightSource): W {
      const weight = ops.linearWeight(weightName, source);
      if (weightName === name) recorded.add(weight);
      return weight;
    },
    // Every product through this wrapper's `linear`, not the wrapped backend's linearMany (inherited otherwise).
    linearMany: undefined,
    linear(x: T, weight: W): T {
      const y = ops.linear(x, weight);
      if (recorded.has(weight)) into.push(ops.read(y));
      return y;
    },
  });
}

/**
 * Pads gate/up with zero rows and down with zero columns up to `width` (silu(0)·0 = 0: the MLP
 * computes the same), so an intermediate size such as stories260K's 172 splits into groups.
 */
export function padMlp(weights: LayerWeights, width: number): void {
  for (const name of ['mlp.gate_proj.weight', 'mlp.up_proj.weight']) {
    const t = weights.get(name)!;
    if (t.shape[0] === width) continue;
    const data = new Float32Array(width * t.shape[1]!);
    data.set(t.data);
    weights.set(name, { name: t.name, shape: [width, t.shape[1]!], data });
  }
  const down = weights.get('mlp.down_proj.weight')!;
  if (down.shape[1] !== width) weights.set('mlp.down_proj.weight', { name: down.name, shape: [down.shape[0]!, width], data: padColumns({ rows: down.shape[0]!, cols: down.shape[1]!, data: down.data }, width).data });
}

/** Rows widened to `width` columns with zeros (0: unchanged), as the padded down_proj reads them. */
export function padColumns(x: Activations, width: number): Activations {
  if (width === 0 || width === x.cols) return x;
  const data = new Float32Array(x.rows * width);
  for (let r = 0; r < x.rows; r++) data.set(x.data.subarray(r * x.cols, (r + 1) * x.cols), r * width);
  return { rows: x.rows, cols: width, data };
}
