import type { TensorToWrite } from './safetensors.js';
import type { Int4Matrix } from './int4.js';
import type { StoredTensors } from './stored-tensors.js';

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
  /** For int4 group layouts (AWQ, GPTQ): their codes as stored, which the CPU kernels compute on without dequantizing. */
  readonly int4?: Int4Access;
}

/** Read access to the 4-bit codes and group parameters of an AWQ or GPTQ weight [out, in]. */
export interface Int4Access {
  readonly groupSize: number;
  /** The group of each input column, read without unpacking the codes (GPTQ's g_idx; in order for AWQ). */
  groupOfColumns(name: string, shape: number[], stored: StoredTensors): Int32Array;
  /** Codes, scales and zeros of the whole weight (one byte a code: no float copy). */
  unpack(name: string, shape: number[], stored: StoredTensors): Int4Matrix;
}

/** What a format writes in place of one float weight. */
export type QuantizedTensors = TensorToWrite[];
