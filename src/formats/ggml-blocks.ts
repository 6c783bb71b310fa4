import { HerdError } from '../errors.js';
import { floatToHalf, halfToFloat } from './half.js';

/**
 * GGUF's Q8_0 and Q4_0 blocks of 32 weights, as llama.cpp's reference quantizers
 * (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref` in ggml-quants.c) write them:
 *
 * - Q8_0, 34 bytes: f16 scale d = max|x| / 127, then 32 int8 q = round(x / d); x ≈ q · d.
 * - Q4_0, 18 bytes: f16 scale d = m / −8 where m is the value of largest magnitude, then 16 bytes
 *   whose low nibbles hold elements 0..15 and high nibbles 16..31, q = min(15, ⌊x / d + 8.5⌋);
 *   x ≈ (q − 8) · d.
 *
 * A matrix is quantized row by row ([out, in], rows of in / 32 blocks).
 */

export const GGML_BLOCK = 32;
export type BlockFormat = 'Q8_0' | 'Q4_0';
export const BLOCK_BYTES: Record<BlockFormat, number> = { Q8_0: 34, Q4_0: 18 };

export function quantizeBlocks(format: BlockFormat, values: Float32Array): Uint8Array {
  if (values.length % GGML_BLOCK !== 0) throw new HerdError(`${format} needs rows that are a multiple of ${GGML_BLOCK} long`);
  const blocks = values.length / GGML_BLOCK;
  const out = new Uint8Array(blocks * BLOCK_BYTES[format]);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const block = values.subarray(b * GGML_BLOCK, (b + 1) * GGML_BLOCK);
    const at = b * BLOCK_BYTES[format];
    if (format === 'Q8_0') quantizeQ8_0Block(block, view, at);
    else quantizeQ4_0Block(block, view, at);
  }
  return out;
}

export function dequantizeBlocks(format: BlockFormat, bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < count / GGML_BLOCK; b++) {
    const at = b * BLOCK_BYTES[format];
    const scale = halfToFloat(view.getUint16(at, true));
    for (let i = 0; i < GGML_BLOCK; i++) {
      const q = format === 'Q8_0' ? view.getInt8(at + 2 + i) : nibble(view.getUint8(at + 2 + (i % 16)), i) - 8;
      out[b * GGML_BLOCK + i] = q * scale;
    }
  }
  return out;
}

function quantizeQ8_0Block(block: Float32Array, view: DataView, at: number): void {
  let amax = 0;
  for (const x of block) amax = Math.max(amax, Math.abs(x));
  // float32 like the C code: d, its inverse and each product are rounded to float.
  const d = Math.fround(amax / 127);
  const inverse = d ? Math.fround(1 / d) : 0;
  view.setUint16(at, floatToHalf(d), true);
  block.forEach((x, i) => view.setInt8(at + 2 + i, roundHalfAway(Math.fround(x * inverse))));
}

function quantizeQ4_0Block(block: Float32Array, view: DataView, at: number): void {
  let extreme = 0;
  for (const x of block) if (Math.abs(x) > Math.abs(extreme)) extreme = x;
  const d = Math.fround(extreme / -8);
  const inverse = d ? Math.fround(1 / d) : 0;
  view.setUint16(at, floatToHalf(d), true);
  const code = (x: number) => Math.min(15, Math.trunc(Math.fround(Math.fround(x * inverse) + 8.5)));
  for (let i = 0; i < 16; i++) view.setUint8(at + 2 + i, code(block[i]!) | (code(block[i + 16]!) << 4));
}

function nibble(byte: number, index: number): number {
  return index < 16 ? byte & 0x0f : byte >> 4;
}

/** C's roundf: halves away from zero. */
function roundHalfAway(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}

/** IQ4_NL's 16 non-linear levels (kvalues_iq4nl in ggml-common.h), shared by IQ4_NL and IQ4_XS. */
export const IQ4_NL_LEVELS: readonly number[] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
