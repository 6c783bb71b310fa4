import * as tf from '@tensorflow/tfjs-core';
import { HerdError } from '../errors.js';
import type { LlamaConfig } from '../spec/llama-config.js';
import type { AttentionSlice, KvCache, KvCacheShape, Ops } from '../engine/ops.js';
import type { WeightSource } from '../formats/weights.js';
import type { RopeTables } from '../engine/rope.js';
import type { TfjsOps, TfjsWeight } from '../backends/tfjs-ops.js';
import { seededRandom } from '../engine/sampling.js';
import { registerTrainingGradients } from './gradients.js';
import type { LoraSettings } from '../formats/peft.js';
import { linearModuleOf } from '../spec/tensors.js';
import { isNf4Weight, nf4Linear, nf4StoredBytes, packNf4Weight, type Nf4Weight } from './qlora.js';

/** One adapted linear layer: ΔW = (alpha / r) · B · A, with A [r, in] and B [out, r]. */
export interface LoraPair {
  /** The base weight's name, e.g. model.layers.0.self_attn.q_proj.weight. */
  module: string;
  a: tf.Variable;
  b: tf.Variable;
}

/** How training trades compute for memory (TRL's gradient_checkpointing, bitsandbytes' load_in_4bit). */
export interface TrainingMemory {
  /** Keep only each decoder layer's input and recompute the layer in the backward pass. */
  gradientCheckpointing: boolean;
  /** QLoRA: hold the decoder layers' frozen linear weights in NF4, dequantized on the fly. */
  loadIn4bit: boolean;
}

/** A frozen weight (float on tfjs, or NF4 for QLoRA), with the LoRA pair of an adapted module. */
export type LoraWeight = (TfjsWeight | Nf4Weight) & { lora?: LoraPair };

/** A seed for the index-th stream drawn from `seed` (dropout masks per update, per call). */
export function mixSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + Math.imul(index, 0x85ebca6b)) >>> 0;
}

/**
 * The tfjs ops with LoRA beneath the one model definition: `linearWeight` attaches trainable A and
 * B to each targeted module as the model loads, and `linear` adds (alpha / r) · dropout(x) · Aᵀ · Bᵀ.
 * A starts as PEFT's kaiming-uniform (a = √5, so U(±1/√in)) from the seed, B at zero, so the
 * adapted model starts equal to the base model.
 *
 * With gradient checkpointing, each decoder layer runs as one custom-gradient op over its input
 * and its layer's LoRA matrices: the forward keeps only the input, and the backward recomputes
 * the layer under a tape of its own (same dropout masks, same KV cache positions) to get the
 * input's and the matrices' gradients, which tfjs then passes on as for any other op.
 */
export class LoraOps implements Ops<tf.Tensor2D, LoraWeight> {
  readonly pairs: LoraPair[] = [];
  private readonly scale: number;
  private readonly initRandom: () => number;
  /** Set during training steps: the seed of this update's dropout masks; null means no dropout (eval, inference). */
  private dropoutSeed: number | null = null;
  /** Dropout masks drawn since the seed was set: mask k comes from mixSeed(seed, k), so a recomputed layer can draw its masks again. */
  private dropoutCalls = 0;
  /** The decoder layer the next runLayer call runs (the model runs them in order after the embedding). */
  private nextLayer = 0;
  /** The LoRA pairs a checkpointed layer's forward used, to check they are the ones it declared. */
  private usedPairs: Set<LoraPair> | null = null;
  private readonly memory: TrainingMemory;
  /** Off inside withAdapterDisabled: the model is then the frozen base (DPO's reference model). */
  private adapterEnabled = true;

  constructor(private readonly base: TfjsOps, readonly settings: LoraSettings, seed: number, memory: Partial<TrainingMemory> = {}) {
    registerTrainingGradients();
    this.memory = { gradientCheckpointing: false, loadIn4bit: false, ...memory };
    this.scale = settings.alpha / settings.r;
    this.initRandom = seededRandom(seed);
  }

  get name(): string {
    return this.base.name;
  }

  linearWeight(name: string, source: WeightSource): LoraWeight {
    const module = linearModuleOf(name);
    // As bitsandbytes, QLoRA quantizes the decoder layers' projections; embeddings and head stay float.
    const weight = this.memory.loadIn4bit && module !== null ? packNf4Weight(source.readFloat(name)) : this.base.linearWeight(name, source);
    if (module === null || !(this.settings.targetModules as string[]).includes(module)) return weight;
    const [outFeatures, inFeatures] = outInShape(weight);
    const bound = 1 / Math.sqrt(inFeatures);
    const a = Float32Array.from({ length: this.settings.r * inFeatures }, () => (2 * this.initRandom() - 1) * bound);
    const pair: LoraPair = {
      module: name,
      a: tf.variable(tf.tensor2d(a, [this.settings.r, inFeatures]), true),
      b: tf.variable(tf.zeros([outFeatures, this.settings.r]), true),
    };
    this.pairs.push(pair);
    return { ...weight, lora: pair };
  }

  embeddingWeight(name: string, source: WeightSource): TfjsWeight {
    return this.base.embeddingWeight(name, source);
  }

  vectorWeight(name: string, source: WeightSource): TfjsWeight {
    return this.base.vectorWeight(name, source);
  }

  linear(x: tf.Tensor2D, weight: LoraWeight): tf.Tensor2D {
    const y = isNf4Weight(weight) ? nf4Linear(x, weight) : this.base.linear(x, weight);
    if (!weight.lora || !this.adapterEnabled) return y;
    this.usedPairs?.add(weight.lora);
    const down = tf.matMul(this.dropout(x), weight.lora.a, false, true);
    return tf.add(y, tf.mul(tf.matMul(down, weight.lora.b, false, true), this.scale));
  }

  /** Inverted dropout as torch's nn.Dropout: zero each input with probability p, scale the rest by 1/(1-p). */
  private dropout(x: tf.Tensor2D): tf.Tensor2D {
    const p = this.settings.dropout;
    if (this.dropoutSeed === null || p === 0) return x;
    const random = seededRandom(mixSeed(this.dropoutSeed, this.dropoutCalls++));
    const keep = Float32Array.from({ length: x.size }, () => (random() < p ? 0 : 1 / (1 - p)));
    return tf.mul(x, tf.tensor2d(keep, x.shape));
  }

  /** Turns dropout on with masks drawn from `seed` (one seed per optimizer step keeps resumed runs identical), or off with null. */
  setDropoutSeed(seed: number | null): void {
    this.dropoutSeed = seed;
    this.dropoutCalls = 0;
  }

  embedding(table: LoraWeight, ids: Int32Array): tf.Tensor2D {
    // Every forward pass starts here, so the decoder layers that follow count from 0.
    this.nextLayer = 0;
    return this.base.embedding(floatWeight(table), ids);
  }

  rmsNorm(x: tf.Tensor2D, weight: LoraWeight, eps: number): tf.Tensor2D {
    return this.base.rmsNorm(x, floatWeight(weight), eps);
  }

  /**
   * Runs `fn` on the base model alone, as PEFT's disable_adapter(): every linear skips its LoRA
   * term, so the same weights serve as the reference model with no second copy of them.
   */
  withAdapterDisabled<R>(fn: () => R): R {
    const was = this.adapterEnabled;
    this.adapterEnabled = false;
    try {
      return fn();
    } finally {
      this.adapterEnabled = was;
    }
  }

  runLayer(input: tf.Tensor2D, run: (input: tf.Tensor2D) => tf.Tensor2D): tf.Tensor2D {
    // Without the adapter a layer has no LoRA matrices to recompute gradients for.
    if (!this.memory.gradientCheckpointing || !this.adapterEnabled) return run(input);
    const layer = this.nextLayer++;
    const pairs = this.pairs.filter((pair) => pair.module.startsWith(`model.layers.${layer}.`));
    const variables = pairs.flatMap((pair) => [pair.a, pair.b]);
    const firstDropoutCall = this.dropoutCalls;
    const replay = (x: tf.Tensor2D): tf.Tensor2D => {
      const after = this.dropoutCalls;
      this.dropoutCalls = firstDropoutCall;
      try {
        return run(x);
      } finally {
        this.dropoutCalls = after;
      }
    };
    const checkpointed = tf.customGrad((...args) => {
      const x = args[0] as tf.Tensor2D;
      const save = args[args.length - 1] as tf.GradSaveFunc;
      save([x]);
      return {
        value: this.runCheckingPairs(layer, pairs, () => run(x)),
        gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => recomputeGradients(replay, saved as tf.Tensor2D, variables, dy),
      };
    });
    return checkpointed(input, ...variables) as tf.Tensor2D;
  }

  /** Runs a layer's forward and fails if it used LoRA pairs other than its own (its gradients would be lost). */
  private runCheckingPairs(layer: number, pairs: LoraPair[], forward: () => tf.Tensor2D): tf.Tensor2D {
    this.usedPairs = new Set();
    try {
      const output = forward();
      const used = [...this.usedPairs];
      if (used.length !== pairs.length || used.some((pair) => !pairs.includes(pair))) {
        throw new Error(`gradient checkpointing: decoder layer ${layer} used LoRA matrices of ${used.map((pair) => pair.module).join(', ')}`);
      }
      return output;
    } finally {
      this.usedPairs = null;
    }
  }

  rope(x: tf.Tensor2D, heads: number, tables: RopeTables): tf.Tensor2D {
    return this.base.rope(x, heads, tables);
  }

  attention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, layer: number, slices: readonly AttentionSlice[]): tf.Tensor2D {
    return this.base.attention(q, k, v, layer, slices);
  }

  swiglu(gate: tf.Tensor2D, up: tf.Tensor2D): tf.Tensor2D {
    return this.base.swiglu(gate, up);
  }

  add(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
    return this.base.add(a, b);
  }

  lastRows(x: tf.Tensor2D, count: number): tf.Tensor2D {
    return this.base.lastRows(x, count);
  }

  pickRows(x: tf.Tensor2D, rows: readonly number[]): tf.Tensor2D {
    return this.base.pickRows(x, rows);
  }

  read(x: tf.Tensor2D, into?: Float32Array): Float32Array {
    return this.base.read(x, into);
  }

  createKvCache(shape: KvCacheShape): KvCache {
    return this.base.createKvCache(shape);
  }

  copyKvCache(from: KvCache, to: KvCache, positions: number): void {
    this.base.copyKvCache(from, to, positions);
  }

  scope<R>(fn: () => R): R {
    return this.base.scope(fn);
  }

  disposeWeight(weight: LoraWeight): void {
    if (!isNf4Weight(weight)) this.base.disposeWeight(weight);
    if (weight.lora) {
      weight.lora.a.dispose();
      weight.lora.b.dispose();
    }
  }

  storedBytes(weight: LoraWeight): number {
    const loraBytes = weight.lora ? (weight.lora.a.size + weight.lora.b.size) * 4 : 0;
    return (isNf4Weight(weight) ? nf4StoredBytes(weight) : this.base.storedBytes(weight)) + loraBytes;
  }

  close(): Promise<void> {
    return this.base.close();
  }

  /** The variables in PEFT order (by module name, A before B), as the optimizer and adapter files see them. */
  variables(): tf.Variable[] {
    return this.pairs.flatMap((pair) => [pair.a, pair.b]);
  }

  /** Fails unless the model has at least one module to adapt (a target that matched nothing is a mistake). */
  checkTargetsFound(config: LlamaConfig): void {
    for (const target of this.settings.targetModules) {
      if (!this.pairs.some((pair) => linearModuleOf(pair.module) === target)) {
        throw new HerdError(`target module ${target} matched no weight of this model (${config.numHiddenLayers} layers)`);
      }
    }
  }
}

/** A weight's [out, in] shape, whichever way it is stored. */
function outInShape(weight: TfjsWeight | Nf4Weight): [number, number] {
  if (isNf4Weight(weight)) return weight.shape;
  const [rows, cols] = weight.tensor.shape as [number, number];
  return weight.layout === 'in-out' ? [cols, rows] : [rows, cols];
}

/** Embeddings and norm scales are never quantized; this narrows the type for the float ops. */
function floatWeight(weight: LoraWeight): TfjsWeight {
  if (isNf4Weight(weight)) throw new Error('an NF4 weight reached an op that takes float weights');
  return weight;
}

/**
 * The backward pass of a checkpointed layer: runs the layer again on its saved input under a
 * gradient tape of its own and returns the gradients of dy · layer(x) for x and each variable.
 * The outer backward pass is still walking its own tape; tfjs keeps one active tape, which a
 * nested gradient computation started at depth 0 replaces and then clears, so the outer tape is
 * put back afterwards (its saved tensors are freed when the outer pass ends).
 */
function recomputeGradients(run: (x: tf.Tensor2D) => tf.Tensor2D, x: tf.Tensor2D, variables: tf.Variable[], dy: tf.Tensor): tf.Tensor[] {
  const state = tf.engine().state;
  const outerTape = state.activeTape;
  try {
    return tf.tidy(() => tf.grads((input: tf.Tensor) => run(input as tf.Tensor2D))([x, ...variables], dy));
  } finally {
    state.activeTape = outerTape;
  }
}
