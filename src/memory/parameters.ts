import type { LlamaConfig } from '../spec/llama-config.js';
import { LINEAR_MODULES, llamaTensors, type TensorRole } from '../spec/tensors.js';

/** What a weight tensor does; quantization recipes choose a format per module. */
export type ModuleKind = TensorRole;

export const LINEAR_PROJECTIONS: readonly ModuleKind[] = LINEAR_MODULES;
export const ATTENTION_PROJECTIONS: readonly ModuleKind[] = LINEAR_MODULES.slice(0, 4);
export const MLP_PROJECTIONS: readonly ModuleKind[] = LINEAR_MODULES.slice(4);

/** One weight tensor as a Hugging Face checkpoint stores it: `rows` outputs × `columns` inputs. */
export interface WeightTensor {
  name: string;
  module: ModuleKind;
  /** Decoder layer index; undefined for embeddings, the final norm and the head. */
  layer?: number;
  rows: number;
  columns: number;
}

export interface ParameterBreakdown {
  embeddings: number;
  attention: number;
  mlp: number;
  norms: number;
  /** Zero when tied: the head reuses the embedding matrix. */
  outputHead: number;
  total: number;
}

/** Every weight tensor of the model in checkpoint order, from the spec's tensor table (a tied head is the embedding). */
export function listWeightTensors(config: LlamaConfig): WeightTensor[] {
  return llamaTensors(config).map((tensor) => ({
    name: tensor.name,
    module: tensor.role,
    layer: tensor.layer,
    rows: tensor.shape.length === 2 ? tensor.shape[0]! : 1,
    columns: tensor.shape[tensor.shape.length - 1]!,
  }));
}

export function tensorElements(tensor: WeightTensor): number {
  return tensor.rows * tensor.columns;
}

/** Exact parameter count by component, from the architecture alone. */
export function countParameters(arch: LlamaConfig): ParameterBreakdown {
  const breakdown: ParameterBreakdown = { embeddings: 0, attention: 0, mlp: 0, norms: 0, outputHead: 0, total: 0 };
  for (const tensor of listWeightTensors(arch)) {
    const elements = tensorElements(tensor);
    breakdown[componentOf(tensor)] += elements;
    breakdown.total += elements;
  }
  return breakdown;
}

function componentOf(tensor: WeightTensor): Exclude<keyof ParameterBreakdown, 'total'> {
  if (tensor.module === 'embedding') return 'embeddings';
  if (tensor.module === 'lm_head') return 'outputHead';
  if (tensor.module === 'norm') return 'norms';
  if (tensor.module === 'bias') return tensor.name.includes('.mlp.') ? 'mlp' : 'attention';
  return MLP_PROJECTIONS.includes(tensor.module) ? 'mlp' : 'attention';
}
