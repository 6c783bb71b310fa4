import { HerdError } from '../errors.js';
import type { LlamaConfig } from './llama-config.js';

/**
 * The one tensor table of a Llama checkpoint (llama.cpp keeps one such table in llama-arch.cpp):
 * each tensor's Hugging Face name, its GGUF name, its shape from the config, and whether
 * llama.cpp stores its rows permuted. The model loader, checkpoint validation, the memory
 * planner's parameter count, the GGUF writer and reader, and LoRA targets all read it.
 */

/** The linear layers of a decoder layer, in checkpoint order: LoRA targets and quantization recipes name them. */
export const LINEAR_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LinearModule = (typeof LINEAR_MODULES)[number];

/** What a tensor is. */
export type TensorRole = 'embedding' | LinearModule | 'norm' | 'bias' | 'lm_head';

export interface LlamaTensor {
  /** The Hugging Face state_dict name, e.g. model.layers.0.self_attn.q_proj.weight. */
  name: string;
  /** The name llama.cpp's convert_hf_to_gguf.py gives it, e.g. blk.0.attn_q.weight. */
  ggufName: string;
  role: TensorRole;
  /** Decoder layer; undefined for the embedding, the final norm and the head. */
  layer?: number;
  /** [out, in] for matrices (nn.Linear layout), [size] for vectors. */
  shape: number[];
}

type Dimension = (config: LlamaConfig) => number;
const hidden: Dimension = (c) => c.hiddenSize;
const intermediate: Dimension = (c) => c.intermediateSize;
const queryWidth: Dimension = (c) => c.numAttentionHeads * c.headDim;
const keyValueWidth: Dimension = (c) => c.numKeyValueHeads * c.headDim;

interface LayerTensor {
  /** Name inside model.layers.N. */
  hf: string;
  /** Name inside blk.N. */
  gguf: string;
  role: TensorRole;
  shape: Dimension[];
  /** Present only when the config says so. */
  when?: (config: LlamaConfig) => boolean;
}

const attentionBias = (c: LlamaConfig) => c.attentionBias;
const mlpBias = (c: LlamaConfig) => c.mlpBias;

/** One decoder layer, in checkpoint order. */
const LAYER_TENSORS: readonly LayerTensor[] = [
  { hf: 'input_layernorm.weight', gguf: 'attn_norm.weight', role: 'norm', shape: [hidden] },
  { hf: 'self_attn.q_proj.weight', gguf: 'attn_q.weight', role: 'q_proj', shape: [queryWidth, hidden] },
  { hf: 'self_attn.k_proj.weight', gguf: 'attn_k.weight', role: 'k_proj', shape: [keyValueWidth, hidden] },
  { hf: 'self_attn.v_proj.weight', gguf: 'attn_v.weight', role: 'v_proj', shape: [keyValueWidth, hidden] },
  { hf: 'self_attn.o_proj.weight', gguf: 'attn_output.weight', role: 'o_proj', shape: [hidden, queryWidth] },
  { hf: 'post_attention_layernorm.weight', gguf: 'ffn_norm.weight', role: 'norm', shape: [hidden] },
  { hf: 'mlp.gate_proj.weight', gguf: 'ffn_gate.weight', role: 'gate_proj', shape: [intermediate, hidden] },
  { hf: 'mlp.up_proj.weight', gguf: 'ffn_up.weight', role: 'up_proj', shape: [intermediate, hidden] },
  { hf: 'mlp.down_proj.weight', gguf: 'ffn_down.weight', role: 'down_proj', shape: [hidden, intermediate] },
  { hf: 'self_attn.q_proj.bias', gguf: 'attn_q.bias', role: 'bias', shape: [queryWidth], when: attentionBias },
  { hf: 'self_attn.k_proj.bias', gguf: 'attn_k.bias', role: 'bias', shape: [keyValueWidth], when: attentionBias },
  { hf: 'self_attn.v_proj.bias', gguf: 'attn_v.bias', role: 'bias', shape: [keyValueWidth], when: attentionBias },
  { hf: 'self_attn.o_proj.bias', gguf: 'attn_output.bias', role: 'bias', shape: [hidden], when: attentionBias },
  { hf: 'mlp.gate_proj.bias', gguf: 'ffn_gate.bias', role: 'bias', shape: [intermediate], when: mlpBias },
  { hf: 'mlp.up_proj.bias', gguf: 'ffn_up.bias', role: 'bias', shape: [intermediate], when: mlpBias },
  { hf: 'mlp.down_proj.bias', gguf: 'ffn_down.bias', role: 'bias', shape: [hidden], when: mlpBias },
];

const EMBEDDING = { name: 'model.embed_tokens.weight', ggufName: 'token_embd.weight', role: 'embedding' } as const;
const FINAL_NORM = { name: 'model.norm.weight', ggufName: 'output_norm.weight', role: 'norm' } as const;
const HEAD = { name: 'lm_head.weight', ggufName: 'output.weight', role: 'lm_head' } as const;

/** Every tensor LlamaForCausalLM has under this config, in checkpoint order (a tied head is the embedding, not listed). */
export function llamaTensors(config: LlamaConfig): LlamaTensor[] {
  const tensors: LlamaTensor[] = [{ ...EMBEDDING, shape: [config.vocabSize, config.hiddenSize] }];
  for (let layer = 0; layer < config.numHiddenLayers; layer++) {
    for (const entry of LAYER_TENSORS) {
      if (entry.when && !entry.when(config)) continue;
      tensors.push({
        name: `model.layers.${layer}.${entry.hf}`,
        ggufName: `blk.${layer}.${entry.gguf}`,
        role: entry.role,
        layer,
        shape: entry.shape.map((dimension) => dimension(config)),
      });
    }
  }
  tensors.push({ ...FINAL_NORM, shape: [config.hiddenSize] });
  if (!config.tieWordEmbeddings) tensors.push({ ...HEAD, shape: [config.vocabSize, config.hiddenSize] });
  return tensors;
}

/** Names and shapes of every tensor, for checking a checkpoint against its config. */
export function tensorShapes(config: LlamaConfig): Map<string, number[]> {
  return new Map(llamaTensors(config).map((tensor) => [tensor.name, tensor.shape]));
}

/** Exact parameter count: the sum over the tensor table. */
export function parameterCount(config: LlamaConfig): number {
  return llamaTensors(config).reduce((sum, tensor) => sum + tensor.shape.reduce((a, b) => a * b, 1), 0);
}

/** The GGUF name of a Hugging Face tensor name. */
export function ggufNameOf(name: string): string {
  for (const fixed of [EMBEDDING, FINAL_NORM, HEAD]) if (fixed.name === name) return fixed.ggufName;
  const match = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  const entry = match && LAYER_TENSORS.find((candidate) => candidate.hf === match[2]);
  if (!match || !entry) throw new HerdError(`no GGUF name for tensor ${name}`);
  return `blk.${match[1]}.${entry.gguf}`;
}

/** The linear module a tensor belongs to (model.layers.3.self_attn.q_proj.weight → q_proj), or null. */
export function linearModuleOf(name: string): LinearModule | null {
  const match = /^model\.layers\.\d+\.(.+)$/.exec(name);
  const role = match ? LAYER_TENSORS.find((entry) => entry.hf === match[1])?.role : undefined;
  return role !== undefined && (LINEAR_MODULES as readonly string[]).includes(role) ? (role as LinearModule) : null;
}

/**
 * Heads whose rows llama.cpp stores interleaved for its RoPE (which pairs adjacent elements,
 * where HF's rotate_half pairs the two halves of each head): q's query heads, k's key/value heads.
 */
export function permutedHeadsOf(name: string, config: LlamaConfig): number | null {
  const module = linearModuleOf(name);
  if (module === 'q_proj' && name.endsWith('.weight')) return config.numAttentionHeads;
  if (module === 'k_proj' && name.endsWith('.weight')) return config.numKeyValueHeads;
  return null;
}
