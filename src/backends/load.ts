import { LlamaForCausalLM } from '../engine/model.js';
import { openModel, storedTensors, type LoadedModel, type LoadedWeights, type StoredTensor } from '../engine/load.js';
import type { KvCacheShape, Ops } from '../engine/ops.js';
import { AdaptedWeights, readPeftAdapter } from '../formats/peft.js';
import type { LlamaConfig } from '../spec/llama-config.js';
import type { BackendOptions } from './backend.js';
import { checkFitsInMemory, machineMemory, memoryNeed, type MachineMemory } from './memory-check.js';
import { chooseBackend, startBackend, type BackendChoice } from './registry.js';

/** Positions of KV cache the memory check counts when the caller names no context: a long chat's worth. */
export const CHECKED_CONTEXT_TOKENS = 4096;

export interface LoadOptions extends BackendOptions {
  /** A backend name, or "tfjs"; absent: chosen by the model's stored weight types (registry.ts). */
  backend?: string;
  /** Called once the backend is chosen, before any weight loads (--verbose prints it). */
  onBackendChosen?: (choice: BackendChoice) => void;
  /** Positions the KV cache will hold, for the memory check (default CHECKED_CONTEXT_TOKENS, at most the model's context). */
  contextTokens?: number;
  /** The memory the model must fit in (default: machineMemory()). */
  memory?: MachineMemory;
  /** Called as each tensor reaches the backend. */
  onProgress?: (loaded: number, total: number) => void;
  /** A PEFT LoRA adapter folder, merged into each adapted weight as it loads (any backend). */
  adapter?: string;
  /** Decorates the backend's ops before any weight loads (LoRA training attaches its parameters this way). */
  wrapOps?: (ops: Ops<unknown, unknown>, config: LlamaConfig) => Ops<unknown, unknown>;
  /** What a weight costs once wrapOps keeps it its own way (QLoRA's NF4 base), given what the backend would hold; for the memory check. */
  heldBytes?: (tensor: StoredTensor, backendBytes: number) => number;
  /** false: the caller runs token ids only; no tokenizer is built or kept (LoadedWeights). */
  tokenizer?: boolean;
}

/**
 * Loads a Hugging Face model folder or a GGUF file onto a backend chosen for all of its stored
 * weight types. Everything is validated, and the chosen backend's memory need checked against the
 * machine's, before the backend starts or receives a single tensor.
 */
export async function loadModel(dir: string, options: LoadOptions & { tokenizer: false }): Promise<LoadedWeights>;
export async function loadModel(dir: string, options?: LoadOptions): Promise<LoadedModel>;
export async function loadModel(dir: string, options: LoadOptions = {}): Promise<LoadedWeights | LoadedModel> {
  const started = performance.now();
  const { config, checkpoint, readTokenizer, readGeneration, skipTokenizer } = openModel(dir);
  try {
    // Llama 3's tokenizer holds about 6 MiB for the rest of the run (docs/performance.md, "Peak RSS").
    const tokenizer = options.tokenizer === false ? null : readTokenizer();
    if (!tokenizer) skipTokenizer();
    const generation = readGeneration();
    const tensors = storedTensors(checkpoint, config);
    const choice = await chooseBackend({ backend: options.backend, storedFormats: tensors.map((tensor) => tensor.format) });
    options.onBackendChosen?.(choice);
    checkMemory(choice, tensors, config, options);
    const backendOps = await startBackend(choice.backend, options);
    const ops = options.wrapOps ? options.wrapOps(backendOps, config) : backendOps;
    const source = options.adapter ? new AdaptedWeights(checkpoint, readPeftAdapter(options.adapter, config)) : checkpoint;
    const model = LlamaForCausalLM.load(config, source, ops, options.onProgress) as LlamaForCausalLM<unknown, unknown>;
    const loaded: LoadedWeights = { dir, config, generation, model, loadMs: performance.now() - started };
    return tokenizer ? { ...loaded, tokenizer } : loaded;
  } finally {
    checkpoint.close();
  }
}

function checkMemory({ backend }: BackendChoice, tensors: readonly StoredTensor[], config: LlamaConfig, options: LoadOptions): void {
  const capacity = Math.min(options.contextTokens ?? CHECKED_CONTEXT_TOKENS, config.maxPositionEmbeddings);
  const shape: KvCacheShape = { layers: config.numHiddenLayers, kvHeads: config.numKeyValueHeads, headDim: config.headDim, capacity };
  checkFitsInMemory(backend, memoryNeed(backend, tensors, { shape, type: options.kvCacheType }, options.heldBytes), options.memory ?? machineMemory());
}
