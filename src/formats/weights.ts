import { HerdError } from '../errors.js';
import { K_QUANT_BYTES, type KQuantType } from './ggml-k-quants.js';
import type { HostTensor } from './safetensors.js';

/** Where a model's weights come from: a checkpoint folder, a GGUF file, a quantized layout. */
export interface WeightSource {
  /** The tensor as float32 in its stored layout ([out, in] for linear weights), dequantized if packed. */
  readFloat(name: string): HostTensor;
  /**
   * How the tensor is stored, when it is in a format kernels compute on directly (rows of
   * [out, in] for matrices); null when it must be read as float. Absent on sources that only
   * give floats.
   */
  describePacked?(name: string): PackedTensor | null;
  /**
   * Reads target.length of the stored bytes that describePacked described, from `byteOffset`
   * on, straight into `target` (a backend may read a tensor in row ranges).
   */
  readPackedInto?(name: string, target: Uint8Array, byteOffset?: number): void;
  /**
   * The quantized type a tensor is stored in when the kernels cannot compute on it, so readFloat
   * dequantizes it (and it takes float32's 4 bytes per weight); null otherwise.
   */
  dequantizedAtLoad?(name: string): { type: string; bytesPerWeight: number } | null;
}

/**
* Stored formats the CPU kernels compute on: floats, GGUF's Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and
 * IQ4_NL blocks of 32 (GGUF_BLOCK32_BYTES), Q4_K and the other K-quant super-blocks of 256
 * (src/formats/ggml-k-quants.ts), and INT4_G128, AWQ/GPTQ int4 with one scale and zero per 128
 * columns repacked row by row (src/quant/int4-rows.ts defines its bytes).
 */
export type PackedFormat = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'IQ4_NL' | 'Q4_K' | KQuantType | 'INT4_G128';

/** Bytes of one block of 32 weights of the GGUF block formats the kernels decode to floats (src/kernels/assembly/blocks32.ts). */
export const GGUF_BLOCK32_BYTES = { Q4_1: 20, Q5_0: 22, Q5_1: 24, IQ4_NL: 18 } as const;
export type Block32Format = keyof typeof GGUF_BLOCK32_BYTES;

/** Input columns per INT4_G128 group, and the bytes of one group: f16 scale, u8 zero, pad, 64 bytes of codes. */
export const INT4_GROUP_COLUMNS = 128;
export const INT4_GROUP_BYTES = 68;

/** Bytes of `rows` rows of `cols` weights stored in a format. */
export function packedBytes(format: PackedFormat, rows: number, cols: number): number {
  switch (format) {
    case 'F32':
      return rows * cols * 4;
    case 'F16':
    case 'BF16':
      return rows * cols * 2;
    case 'Q8_0':
      return rows * Math.ceil(cols / 32) * 34;
    case 'Q4_0':
      return rows * Math.ceil(cols / 32) * 18;
    case 'Q4_1':
    case 'Q5_0':
    case 'Q5_1':
    case 'IQ4_NL':
      return rows * Math.ceil(cols / 32) * GGUF_BLOCK32_BYTES[format];
    case 'Q4_K':
      return rows * Math.ceil(cols / 256) * 144;
    case 'Q6_K':
    case 'Q5_K':
    case 'Q3_K':
    case 'Q2_K':
    case 'IQ4_XS':
      return rows * Math.ceil(cols / 256) * K_QUANT_BYTES[format];
    case 'INT4_G128':
      // No partial groups: one scale per 128 columns is what AWQ and GPTQ checkpoints store.
      if (cols % INT4_GROUP_COLUMNS !== 0) throw new HerdError(`INT4_G128 weights need a multiple of ${INT4_GROUP_COLUMNS} input columns, not ${cols}`);
      return rows * (cols / INT4_GROUP_COLUMNS) * INT4_GROUP_BYTES;
  }
}

export interface PackedTensor {
  format: PackedFormat;
  shape: number[];
  byteLength: number;
}
