import type { LlamaArchitecture } from './architecture.js';

/** What a weight tensor does; quantization recipes choose a format per module. */
export type ModuleKind =
  | 'embedding'
  | 'q_proj'
  | 'k_proj'
  | 'v_proj'
  | 'o_proj'
  | 'gate_proj'
  | 'up_proj'
  | 'down_proj'
  | 'norm'
  | 'bias'
  | 'lm_head';

export const ATTENTION_PROJECTIONS: readonly ModuleKind[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
export const MLP_PROJECTIONS: readonly ModuleKind[] = ['gate_proj', 'up_proj', 'down_proj'];
export const LINEAR_PROJECTIONS: readonly ModuleKind[] = [...ATTENTION_PROJECTIONS, ...MLP_PROJECTIONS];

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

/** Every weight tensor of the model in checkpoint order (tied heads omitted: they are the embedding). */
export function listWeightTensors(arch: LlamaArchitecture): WeightTensor[] {
  const tensors: WeightTensor[] = [
    { name: 'model.embed_tokens.weight', module: 'embedding', rows: arch.vocabSize, columns: arch.hiddenSize },
  ];
  for (let layer = 0; layer < arch.numLayers; layer++) tensors.push(...layerTensors(arch, layer));
  tensors.push({ name: 'model.norm.weight', module: 'norm', rows: 1, columns: arch.hiddenSize });
  if (!arch.tieWordEmbeddings) {
    tensors.push({ name: 'lm_head.weight', module: 'lm_head', rows: arch.vocabSize, columns: arch.hiddenSize });
  }
  return tensors;
}

function layerTensors(arch: LlamaArchitecture, layer: number): WeightTensor[] {
  const h = arch.hiddenSize;
  const qWidth = arch.numAttentionHeads * arch.headDim;
  const kvWidth = arch.numKeyValueHeads * arch.headDim;
  const prefix = `model.layers.${layer}`;
  const linear = (module: ModuleKind, path: string, rows: number, columns: number): WeightTensor => ({
    name: `${prefix}.${path}.weight`,
    module,
    layer,
    rows,
    columns,
  });
  const bias = (path: string, size: number): WeightTensor => ({ name: `${prefix}.${path}.bias`, module: 'bias', layer, rows: 1, columns: size });
  const tensors = [
    { name: `${prefix}.input_layernorm.weight`, module: 'norm' as const, layer, rows: 1, columns: h },
    linear('q_proj', 'self_attn.q_proj', qWidth, h),
    linear('k_proj', 'self_attn.k_proj', kvWidth, h),
    linear('v_proj', 'self_attn.v_proj', kvWidth, h),
    linear('o_proj', 'self_attn.o_proj', h, qWidth),
    { name: `${prefix}.post_attention_layernorm.weight`, module: 'norm' as const, layer, rows: 1, columns: h },
    linear('gate_proj', 'mlp.gate_proj', arch.intermediateSize, h),
    linear('up_proj', 'mlp.up_proj', arch.intermediateSize, h),
    linear('down_proj', 'mlp.down_proj', h, arch.intermediateSize),
  ];
  if (arch.attentionBias) {
    tensors.push(bias('self_attn.q_proj', qWidth), bias('self_attn.k_proj', kvWidth), bias('self_attn.v_proj', kvWidth), bias('self_attn.o_proj', h));
  }
  if (arch.mlpBias) {
    tensors.push(bias('mlp.gate_proj', arch.intermediateSize), bias('mlp.up_proj', arch.intermediateSize), bias('mlp.down_proj', h));
  }
  return tensors;
}

export function tensorElements(tensor: WeightTensor): number {
  return tensor.rows * tensor.columns;
}

/** Exact parameter count by component, from the architecture alone. */
export function countParameters(arch: LlamaArchitecture): ParameterBreakdown {
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
