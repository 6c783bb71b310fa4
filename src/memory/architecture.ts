import type { LlamaConfig } from '../spec/llama-config.js';

/** A model whose memory herd plans: a name, where it came from, and its config (src/spec). */
export interface ModelSpec {
  name: string;
  /** "preset", a config.json path, or a GGUF path. */
  source: string;
  architecture: LlamaConfig;
  /** The precision the model is published in when it is not 16-bit (a preset's int8 release); the default to price. */
  publishedPrecision?: 'int8';
  /** Present for GGUF input: the tensors as stored, so the file's own precision can be priced exactly. */
  storedTensors?: StoredTensor[];
}

export interface StoredTensor {
  name: string;
  elements: number;
  /** Bits per weight of the stored type, block scales included. */
  bitsPerWeight: number;
  typeName: string;
}
