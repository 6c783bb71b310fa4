import { HerdError } from '../errors.js';
import { floatToHalf } from './half.js';
import { GGML_BLOCK } from './ggml-blocks.js';
import { clamp } from './ggml-k-blocks.js';

/**
 * Writers of GGUF's Q4_1, Q5_0 and Q5_1 blocks of 32 weights, as llama.cpp's reference quantizers
 * (`quantize_row_q4_1_ref`, `quantize_row_q5_0_ref`, `quantize_row_q5_1_ref` in ggml-quants.c) write
 * them, in float32 like the C code (Math.fround wherever C rounds to float). Q8_0 and Q4_0 are in
 * ggml-blocks.ts. Codes: element j of the block in the low nibble of qs[j], element j + 16 in the
 * high nibble of qs[j]; Q5's 5th bit of element i is bit i of the little-endian u32 qh.
 *
 *   Q4_1 20 bytes: f16 d = (max − min) / 15, f16 m = min, qs[16]; x ≈ q·d + m, q in 0..15.
 *   Q5_0 22 bytes: f16 d = v / −16 (v the value of largest magnitude), qh, qs[16]; x ≈ (q − 16)·d.
 *   Q5_1 24 bytes: f16 d = (max − min) / 31, f16 m = min, qh, qs[16]; x ≈ q·d + m, q in 0..31.
 */

export type LegacyBlockType = 'Q4_1' | 'Q5_0' | 'Q5_1';
export const LEGACY_BLOCK_BYTES: Record<LegacyBlockType, number> = { Q4_1: 20, Q5_0: 22, Q5_1: 24 };

const f = Math.fround;

/** Fills one block's bytes from its 32 values. */
type BlockWriter = (block: Float32Array, view: DataView, at: number) => void;

const WRITERS: Record<LegacyBlockType, BlockWriter> = { Q4_1: writeQ4_1, Q5_0: writeQ5_0, Q5_1: writeQ5_1 };

/** A row-major matrix whose rows are whole blocks of 32, as `type` blocks. */
export function quantizeLegacyBlocks(type: LegacyBlockType, values: Float32Array): Uint8Array {
  if (values.length % GGML_BLOCK !== 0) throw new HerdError(`${type} needs rows that are a multiple of ${GGML_BLOCK} long`);
  const blockBytes = LEGACY_BLOCK_BYTES[type];
  const blocks = values.length / GGML_BLOCK;
  const out = new Uint8Array(blocks * blockBytes);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) WRITERS[type](values.subarray(b * GGML_BLOCK, (b + 1) * GGML_BLOCK), view, b * blockBytes);
  return out;
}

function writeQ4_1(block: Float32Array, view: DataView, at: number): void {
  const { min, d, inverse } = rangeScale(block, 15);
  view.setUint16(at, floatToHalf(d), true);
  view.setUint16(at + 2, floatToHalf(min), true);
  // C: MIN(15, (int8_t)(x0 + 0.5f)), truncation toward zero of a non-negative float.
  const code = (x: number) => clamp(Math.trunc(f(f(f(x - min) * inverse) + 0.5)), 0, 15);
  writeNibbles(block, code, view, at + 4);
}

function writeQ5_0(block: Float32Array, view: DataView, at: number): void {
  let extreme = 0;
  for (const x of block) if (Math.abs(x) > Math.abs(extreme)) extreme = x;
  const d = f(extreme / -16);
  const inverse = d ? f(1 / d) : 0;
  view.setUint16(at, floatToHalf(d), true);
  const code = (x: number) => clamp(Math.trunc(f(f(x * inverse) + 16.5)), 0, 31);
  view.setUint32(at + 2, fifthBits(block, code), true);
  writeNibbles(block, code, view, at + 6);
}

function writeQ5_1(block: Float32Array, view: DataView, at: number): void {
  const { min, d, inverse } = rangeScale(block, 31);
  view.setUint16(at, floatToHalf(d), true);
  view.setUint16(at + 2, floatToHalf(min), true);
  // C: (uint8_t)(x0 + 0.5f) with no clamp; x0 ≤ 31 up to rounding.
  const code = (x: number) => Math.trunc(f(f(f(x - min) * inverse) + 0.5));
  view.setUint32(at + 4, fifthBits(block, code), true);
  writeNibbles(block, code, view, at + 8);
}

/** The block's min and the step d = (max − min) / levels with its float inverse (0 for a constant block). */
function rangeScale(block: Float32Array, levels: number): { min: number; d: number; inverse: number } {
  let min = block[0]!;
  let max = block[0]!;
  for (const x of block) {
    if (x < min) min = x;
    if (x > max) max = x;
  }
  const d = f(f(max - min) / levels);
  return { min, d, inverse: d ? f(1 / d) : 0 };
}

function writeNibbles(block: Float32Array, code: (x: number) => number, view: DataView, at: number): void {
  for (let j = 0; j < 16; j++) view.setUint8(at + j, (code(block[j]!) & 0xf) | ((code(block[j + 16]!) & 0xf) << 4));
}

/** Bit i of the result is bit 4 of element i's code. */
function fifthBits(block: Float32Array, code: (x: number) => number): number {
  let qh = 0;
  block.forEach((x, i) => (qh |= ((code(x) >> 4) & 1) << i));
  return qh >>> 0;
}
