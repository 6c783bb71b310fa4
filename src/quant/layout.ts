import type { TensorToWrite } from '../engine/safetensors.js';
import type { StoredTensors } from './tensors.js';

/**
 * How one quantized safetensors format stores the float weight of a linear module, so the
 * engine can validate it and rebuild float32 at load (Checkpoint.readFloat).
 */
export interface QuantizedLayout {
  /** quant_method in config.json's quantization_config. */
  readonly method: string;
  /** The stored tensors that carry weight `name`, or null when this checkpoint keeps it as a float. */
  partsOf(name: string, stored: StoredTensors): string[] | null;
  /** Checks dtypes and shapes of the parts against the float shape [out, in]; one clear HerdError if wrong. */
  check(name: string, shape: number[], stored: StoredTensors): void;
  /** The float32 weight [out, in], row-major. */
  dequantize(name: string, shape: number[], stored: StoredTensors): Float32Array;
}

/** What a format writes in place of one float weight. */
export type QuantizedTensors = TensorToWrite[];
