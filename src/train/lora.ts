import * as tf from '@tensorflow/tfjs-core';
import { HerdError } from '../errors.js';
import type { LlamaConfig } from '../engine/config.js';
import type { KvCache, KvCacheShape, Ops, WeightSource } from '../engine/ops.js';
import type { RopeTables } from '../engine/rope.js';
import type { TfjsOps, TfjsWeight } from '../engine/backends/tfjs-ops.js';
import { seededRandom } from '../engine/sampling.js';
import { registerTrainingGradients } from './gradients.js';

/** The linear modules of a Llama decoder layer, by the names PEFT's target_modules uses. */
export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

export interface LoraSettings {
  r: number;
  alpha: number;
  dropout: number;
  targetModules: LoraTarget[];
}

/** Checks rank, alpha, dropout and module names, with one clear line for each mistake. */
export function validateLoraSettings(settings: { r: number; alpha: number; dropout: number; targetModules: readonly string[] }): LoraSettings {
  if (!Number.isInteger(settings.r) || settings.r < 1) throw new HerdError(`LoRA rank (--lora-r) must be a whole number of at least 1, got ${settings.r}`);
  if (!(settings.alpha > 0)) throw new HerdError(`--lora-alpha must be positive, got ${settings.alpha}`);
  if (!(settings.dropout >= 0 && settings.dropout < 1)) throw new HerdError(`--lora-dropout must be in [0, 1), got ${settings.dropout}`);
  if (settings.targetModules.length === 0) throw new HerdError('--lora-target-modules names no module');
  const unknown = settings.targetModules.filter((name) => !(LORA_TARGETS as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new HerdError(`target module ${unknown.join(', ')} does not exist in a Llama model; choose from ${LORA_TARGETS.join(', ')}`);
  }
  return { ...settings, targetModules: [...new Set(settings.targetModules)] as LoraTarget[] };
}

/** The module a checkpoint tensor belongs to: model.layers.3.self_attn.q_proj.weight → q_proj. */
export function moduleOf(tensorName: string): string | null {
  const match = /^model\.layers\.\d+\.(?:self_attn|mlp)\.(\w+)\.weight$/.exec(tensorName);
  return match ? match[1]! : null;
}

/** One adapted linear layer: ΔW = (alpha / r) · B · A, with A [r, in] and B [out, r]. */
export interface LoraPair {
  /** The base weight's name, e.g. model.layers.0.self_attn.q_proj.weight. */
  module: string;
  a: tf.Variable;
  b: tf.Variable;
}

export interface LoraWeight extends TfjsWeight {
  lora?: LoraPair;
}

/**
 * The tfjs ops with LoRA beneath the one model definition: `linearWeight` attaches trainable A and
 * B to each targeted module as the model loads, and `linear` adds (alpha / r) · dropout(x) · Aᵀ · Bᵀ.
 * A starts as PEFT's kaiming-uniform (a = √5, so U(±1/√in)) from the seed, B at zero, so the
 * adapted model starts equal to the base model.
 */
export class LoraOps implements Ops<tf.Tensor2D, LoraWeight> {
  readonly pairs: LoraPair[] = [];
  private readonly scale: number;
  private readonly initRandom: () => number;
  /** Set during training steps: a seeded source of dropout masks; null means no dropout (eval, inference). */
  private dropoutRandom: (() => number) | null = null;

  constructor(private readonly base: TfjsOps, readonly settings: LoraSettings, seed: number) {
    registerTrainingGradients();
    this.scale = settings.alpha / settings.r;
    this.initRandom = seededRandom(seed);
  }

  get name(): string {
    return this.base.name;
  }

  linearWeight(name: string, source: WeightSource): LoraWeight {
    const weight = this.base.linearWeight(name, source);
    const module = moduleOf(name);
    if (module === null || !(this.settings.targetModules as string[]).includes(module)) return weight;
    const [inFeatures, outFeatures] = weight.tensor.shape as [number, number];
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

  embeddingWeight(name: string, source: WeightSource): LoraWeight {
    return this.base.embeddingWeight(name, source);
  }

  vectorWeight(name: string, source: WeightSource): LoraWeight {
    return this.base.vectorWeight(name, source);
  }

  linear(x: tf.Tensor2D, weight: LoraWeight): tf.Tensor2D {
    const y = this.base.linear(x, weight);
    if (!weight.lora) return y;
    const down = tf.matMul(this.dropout(x), weight.lora.a, false, true);
    return tf.add(y, tf.mul(tf.matMul(down, weight.lora.b, false, true), this.scale));
  }

  /** Inverted dropout as torch's nn.Dropout: zero each input with probability p, scale the rest by 1/(1-p). */
  private dropout(x: tf.Tensor2D): tf.Tensor2D {
    const p = this.settings.dropout;
    if (this.dropoutRandom === null || p === 0) return x;
    const random = this.dropoutRandom;
    const keep = Float32Array.from({ length: x.size }, () => (random() < p ? 0 : 1 / (1 - p)));
    return tf.mul(x, tf.tensor2d(keep, x.shape));
  }

  /** Turns dropout on with masks drawn from `seed` (one seed per optimizer step keeps resumed runs identical), or off with null. */
  setDropoutSeed(seed: number | null): void {
    this.dropoutRandom = seed === null ? null : seededRandom(seed);
  }

  embedding(table: LoraWeight, ids: Int32Array): tf.Tensor2D {
    return this.base.embedding(table, ids);
  }

  rmsNorm(x: tf.Tensor2D, weight: LoraWeight, eps: number): tf.Tensor2D {
    return this.base.rmsNorm(x, weight, eps);
  }

  rope(x: tf.Tensor2D, heads: number, tables: RopeTables): tf.Tensor2D {
    return this.base.rope(x, heads, tables);
  }

  attention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, cache: KvCache, layer: number, start: number): tf.Tensor2D {
    return this.base.attention(q, k, v, cache, layer, start);
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

  read(x: tf.Tensor2D): Float32Array {
    return this.base.read(x);
  }

  createKvCache(shape: KvCacheShape): KvCache {
    return this.base.createKvCache(shape);
  }

  scope<R>(fn: () => R): R {
    return this.base.scope(fn);
  }

  disposeWeight(weight: LoraWeight): void {
    this.base.disposeWeight(weight);
    if (weight.lora) {
      weight.lora.a.dispose();
      weight.lora.b.dispose();
    }
  }

  storedBytes(weight: LoraWeight): number {
    const loraBytes = weight.lora ? (weight.lora.a.size + weight.lora.b.size) * 4 : 0;
    return this.base.storedBytes(weight) + loraBytes;
  }

  /** The variables in PEFT order (by module name, A before B), as the optimizer and adapter files see them. */
  variables(): tf.Variable[] {
    return this.pairs.flatMap((pair) => [pair.a, pair.b]);
  }

  /** Fails unless the model has at least one module to adapt (a target that matched nothing is a mistake). */
  checkTargetsFound(config: LlamaConfig): void {
    for (const target of this.settings.targetModules) {
      if (!this.pairs.some((pair) => moduleOf(pair.module) === target)) {
        throw new HerdError(`target module ${target} matched no weight of this model (${config.numHiddenLayers} layers)`);
      }
    }
  }
}
