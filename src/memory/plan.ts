import { HerdError } from '../errors.js';
import type { ModelSpec } from './architecture.js';
import type { LlamaConfig } from '../spec/llama-config.js';
import { checkFit, type FitResult, type MemoryDemand } from './fit.js';
import type { Hardware } from './hardware.js';
import { KV_CACHE_BITS, kvBytesPerToken, type KvCacheDtype } from './kv-cache.js';
import { countParameters, type ParameterBreakdown } from './parameters.js';
import { estimateWeights, storedWeights, type PrecisionId, type RecipeOptions, type WeightEstimate } from './precision.js';
import { estimateTraining, type TrainingEstimate, type TrainingMethod, type TrainingOptions } from './training.js';

/** 'file' prices a GGUF input exactly as stored. */
export type PlanPrecision = PrecisionId | 'file';

export interface PlanRequest {
  model: ModelSpec;
  precisions: readonly PlanPrecision[];
  recipe: RecipeOptions;
  /** Context lengths in tokens, one inference row per precision and context. */
  contexts: readonly number[];
  batch: number;
  kvDtype: KvCacheDtype;
  trainingMethods: readonly TrainingMethod[];
  training: Omit<TrainingOptions, 'method'>;
  hardware?: Hardware;
}

export interface InferenceRow {
  precision: string;
  description: string;
  context: number;
  batch: number;
  weightsBytes: number;
  weightFormats: WeightEstimate['byFormat'];
  kvCacheBytes: number;
  workspaceBytes: number;
  totalBytes: number;
  fit?: FitResult;
}

export interface TrainingRow extends TrainingEstimate {
  seqLen: number;
  batch: number;
  fit?: FitResult;
}

export interface MemoryPlan {
  model: { name: string; source: string; architecture: LlamaConfig; parameters: ParameterBreakdown };
  kvCache: { dtype: KvCacheDtype; bytesPerToken: number; formula: string };
  inference: InferenceRow[];
  training: TrainingRow[];
  hardware?: Hardware;
}

export function buildPlan(request: PlanRequest): MemoryPlan {
  const { model, batch } = request;
  const arch = model.architecture;
  const perToken = kvBytesPerToken(arch, request.kvDtype);
  const workspace = inferenceWorkspaceBytes(arch, batch);
  const inference = request.precisions.flatMap((precision) => {
    const weights = weightsFor(model, precision, request.recipe);
    return request.contexts.map((context) => inferenceRow(weights, context, batch, perToken, workspace, request.hardware, arch.maxPositionEmbeddings));
  });
  const training = request.trainingMethods.map((method) => trainingRow(arch, { ...request.training, method }, request.hardware));
  return {
    model: { name: model.name, source: model.source, architecture: arch, parameters: parametersOf(model) },
    kvCache: {
      dtype: request.kvDtype,
      bytesPerToken: perToken,
      formula: `2 × ${arch.numHiddenLayers} layers × ${arch.numKeyValueHeads} kv heads × ${arch.headDim} head dim × ${KV_CACHE_BITS[request.kvDtype] / 8} bytes`,
    },
    inference,
    training,
    ...(request.hardware ? { hardware: request.hardware } : {}),
  };
}

/** A GGUF's tensor table is the exact count; everything else comes from the architecture. */
function parametersOf(model: ModelSpec): ParameterBreakdown {
  const breakdown = countParameters(model.architecture);
  if (!model.storedTensors) return breakdown;
  return { ...breakdown, total: model.storedTensors.reduce((sum, tensor) => sum + tensor.elements, 0) };
}

function weightsFor(model: ModelSpec, precision: PlanPrecision, recipe: RecipeOptions): WeightEstimate {
  if (precision !== 'file') return estimateWeights(model.architecture, precision, recipe);
  if (!model.storedTensors) throw new HerdError('precision "file" needs a GGUF model; for other inputs pick a precision such as bf16');
  return storedWeights(model.storedTensors);
}

/**
 * Runtime buffers beside weights and cache: prompt processing in chunks of 512 tokens (llama.cpp's
 * default micro-batch) holding the residual, the normed input and the SwiGLU gate and up outputs in
 * 16-bit, plus fp32 logits for each sequence's last position.
 */
export function inferenceWorkspaceBytes(arch: LlamaConfig, batch: number): number {
  const chunkTokens = 512;
  return batch * (chunkTokens * (2 * arch.hiddenSize + 2 * arch.intermediateSize) * 2 + 4 * arch.vocabSize);
}

function inferenceRow(
  weights: WeightEstimate,
  context: number,
  batch: number,
  kvPerToken: number,
  workspace: number,
  hardware: Hardware | undefined,
  maxContext: number,
): InferenceRow {
  const kvCacheBytes = kvPerToken * context * batch;
  const demand: MemoryDemand = { fixedShardedBytes: weights.bytes, perTokenShardedBytes: kvPerToken * batch, replicatedBytes: workspace, perTokenReplicatedBytes: 0 };
  return {
    precision: weights.precision,
    description: weights.description,
    context,
    batch,
    weightsBytes: weights.bytes,
    weightFormats: weights.byFormat,
    kvCacheBytes,
    workspaceBytes: workspace,
    totalBytes: weights.bytes + kvCacheBytes + workspace,
    ...(hardware ? { fit: checkFit(demand, hardware, context, maxContext) } : {}),
  };
}

function trainingRow(arch: LlamaConfig, options: TrainingOptions, hardware: Hardware | undefined): TrainingRow {
  const estimate = estimateTraining(arch, options);
  const demand: MemoryDemand = {
    fixedShardedBytes: estimate.shardableBytes,
    perTokenShardedBytes: 0,
    replicatedBytes: 0,
    perTokenReplicatedBytes: estimate.activationBytesPerToken * options.batch,
  };
  return {
    ...estimate,
    seqLen: options.seqLen,
    batch: options.batch,
    ...(hardware ? { fit: checkFit(demand, hardware, options.seqLen, arch.maxPositionEmbeddings) } : {}),
  };
}
