import { HerdError } from '../errors.js';
import type { LlamaConfig } from '../spec/llama-config.js';
import { countParameters, LINEAR_PROJECTIONS, listWeightTensors, type ModuleKind } from './parameters.js';
import { DEFAULT_RECIPE_OPTIONS, estimateWeights } from './precision.js';

export const TRAINING_METHODS = ['full', 'lora', 'qlora'] as const;
export type TrainingMethod = (typeof TRAINING_METHODS)[number];

/** Bytes of optimizer state per trainable parameter: AdamW keeps two moments (m and v). */
export const OPTIMIZER_STATE_BYTES = { adamw: 8, 'adamw-bf16': 4, 'adamw-8bit': 2 } as const;
export type OptimizerId = keyof typeof OPTIMIZER_STATE_BYTES;
export const OPTIMIZER_IDS = Object.keys(OPTIMIZER_STATE_BYTES) as OptimizerId[];

export interface TrainingOptions {
  method: TrainingMethod;
  batch: number;
  seqLen: number;
  loraRank: number;
  loraTargets: readonly ModuleKind[];
  optimizer: OptimizerId;
  /** Mixed precision: an fp32 master copy of every trainable weight beside the bf16 one. */
  masterWeights: boolean;
  gradientCheckpointing: boolean;
  /** The post's table leaves activations out (it gives no batch or sequence length). */
  includeActivations: boolean;
}

export const DEFAULT_TRAINING_OPTIONS: Omit<TrainingOptions, 'method'> = {
  batch: 1,
  seqLen: 2048,
  loraRank: 16,
  loraTargets: LINEAR_PROJECTIONS,
  optimizer: 'adamw',
  masterWeights: true,
  gradientCheckpointing: true,
  includeActivations: true,
};

/** One line of an estimate: what it is, its size, and the formula that produced it. */
export interface MemoryTerm {
  name: string;
  bytes: number;
  formula: string;
}

export interface TrainingEstimate {
  method: TrainingMethod;
  trainableParameters: number;
  terms: MemoryTerm[];
  totalBytes: number;
  /** Weights, gradients and optimizer states: what FSDP / ZeRO-3 divides across devices. */
  shardableBytes: number;
  /** Activation bytes per token of batch × sequence with the chosen checkpointing (0 when excluded). */
  activationBytesPerToken: number;
  activations: { checkpointedBytes: number; fullBytes: number };
}

export function parseLoraTargets(text: string): ModuleKind[] {
  const names = text.split(',').map((name) => name.trim().replace(/_proj$/, '') + '_proj');
  const unknown = names.filter((name) => !(LINEAR_PROJECTIONS as readonly string[]).includes(name));
  if (unknown.length > 0 || names.length === 0) {
    throw new HerdError(`unknown LoRA target "${unknown.join(', ') || text}"; choose from q, k, v, o, gate, up, down (comma-separated)`);
  }
  return [...new Set(names)] as ModuleKind[];
}

/** LoRA adds r × (inputs + outputs) parameters (matrices A and B) to each targeted projection. */
export function loraParameters(arch: LlamaConfig, rank: number, targets: readonly ModuleKind[]): number {
  return listWeightTensors(arch)
    .filter((tensor) => targets.includes(tensor.module))
    .reduce((sum, tensor) => sum + rank * (tensor.rows + tensor.columns), 0);
}

export function estimateTraining(arch: LlamaConfig, options: TrainingOptions): TrainingEstimate {
  const total = countParameters(arch).total;
  const trainable = options.method === 'full' ? total : loraParameters(arch, options.loraRank, options.loraTargets);
  const terms = [...baseWeightTerms(arch, options, total), ...trainableStateTerms(trainable, options)];
  const shardableBytes = terms.reduce((sum, term) => sum + term.bytes, 0);
  const activations = activationBytes(arch, options);
  const activationTotal = options.gradientCheckpointing ? activations.checkpointedBytes : activations.fullBytes;
  if (options.includeActivations) {
    const mode = options.gradientCheckpointing ? 'with gradient checkpointing' : 'without gradient checkpointing';
    terms.push({ name: `activations (${mode})`, bytes: activationTotal, formula: activationFormula(options) });
  }
  const tokens = options.batch * options.seqLen;
  return {
    method: options.method,
    trainableParameters: trainable,
    terms,
    totalBytes: shardableBytes + (options.includeActivations ? activationTotal : 0),
    shardableBytes,
    activationBytesPerToken: options.includeActivations ? activationTotal / tokens : 0,
    activations,
  };
}

const count = (value: number): string => value.toLocaleString('en-US');

function baseWeightTerms(arch: LlamaConfig, options: TrainingOptions, total: number): MemoryTerm[] {
  if (options.method === 'full') {
    return [
      { name: 'weights (bf16)', bytes: 2 * total, formula: `${count(total)} params × 2 bytes` },
      { name: 'gradients (bf16)', bytes: 2 * total, formula: `${count(total)} params × 2 bytes` },
    ];
  }
  if (options.method === 'lora') {
    return [{ name: 'frozen base (bf16)', bytes: 2 * total, formula: `${count(total)} params × 2 bytes` }];
  }
  // QLoRA: bitsandbytes quantizes the linear layers only; embeddings, head and norms stay 16-bit.
  const base = estimateWeights(arch, 'nf4', { ...DEFAULT_RECIPE_OPTIONS, keep16BitEmbeddings: true });
  const parts = base.byFormat.map((share) => `${count(share.parameters)} params ${share.format}`).join(' + ');
  return [{ name: 'frozen base (nf4, embeddings and head bf16)', bytes: base.bytes, formula: parts }];
}

function trainableStateTerms(trainable: number, options: TrainingOptions): MemoryTerm[] {
  const label = options.method === 'full' ? 'params' : 'adapter params';
  const terms: MemoryTerm[] = [];
  if (options.method !== 'full') {
    terms.push(
      { name: 'adapter weights (bf16)', bytes: 2 * trainable, formula: `${count(trainable)} ${label} × 2 bytes` },
      { name: 'adapter gradients (bf16)', bytes: 2 * trainable, formula: `${count(trainable)} ${label} × 2 bytes` },
    );
  }
  if (options.masterWeights) {
    terms.push({ name: 'fp32 master weights', bytes: 4 * trainable, formula: `${count(trainable)} ${label} × 4 bytes` });
  }
  const stateBytes = OPTIMIZER_STATE_BYTES[options.optimizer];
  terms.push({
    name: `optimizer states (${options.optimizer}: m and v)`,
    bytes: stateBytes * trainable,
    formula: `${count(trainable)} ${label} × ${stateBytes} bytes`,
  });
  return terms;
}

/**
 * Activations kept for the backward pass, in bf16, per token of batch × sequence, assuming a fused
 * (flash / SDPA) attention that stores no seq × seq score matrix. Per layer: the two norm inputs and
 * the two normed inputs (4h), Q and the attention output (2 × heads × head_dim), K and V
 * (2 × kv_heads × head_dim), and the SwiGLU gate, up and product (3 × intermediate). With checkpointing
 * only each layer's input (h) is kept and one layer is recomputed at a time. The loss adds fp32 logits
 * and their gradient (8 bytes × vocab).
 */
export function activationBytes(arch: LlamaConfig, options: Pick<TrainingOptions, 'batch' | 'seqLen'>): TrainingEstimate['activations'] {
  const tokens = options.batch * options.seqLen;
  const perLayer = 2 * layerActivationElements(arch);
  const logits = 8 * arch.vocabSize;
  return {
    fullBytes: tokens * (arch.numHiddenLayers * perLayer + logits),
    checkpointedBytes: tokens * (arch.numHiddenLayers * 2 * arch.hiddenSize + perLayer + logits),
  };
}

function layerActivationElements(arch: LlamaConfig): number {
  const qWidth = arch.numAttentionHeads * arch.headDim;
  const kvWidth = arch.numKeyValueHeads * arch.headDim;
  return 4 * arch.hiddenSize + 2 * qWidth + 2 * kvWidth + 3 * arch.intermediateSize;
}

function activationFormula(options: TrainingOptions): string {
  const per = options.gradientCheckpointing ? '(layers × 2h + one layer + 8 × vocab)' : '(layers × one layer + 8 × vocab)';
  return `batch ${options.batch} × seq ${count(options.seqLen)} × ${per} bytes`;
}
