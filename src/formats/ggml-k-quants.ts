import { HerdError } from '../errors.js';
import { halfToFloat } from './half.js';
import { QK_K, scaleMin } from './ggml-k-blocks.js';
// Used only when a block is decoded, so the import cycle with ggml-dequantize.ts (which registers these dequantizers) is harmless.
import { IQ4_NL_LEVELS } from './ggml-blocks.js';

/**
 * Readers of GGUF's other super-block types of 256 weights, exactly as ggml's reference
 * dequantizers compute them (`dequantize_row_q6_K`, `_q5_K`, `_q3_K`, `_q2_K`, `_iq4_xs` in
 * ggml-quants.c): every product and difference rounded to float32 in ggml's order, so the floats
 * equal ggml's bit for bit. Q4_K is in ggml-k-blocks.ts, which also writes it.
 *
 * Byte layouts of one super-block (f16 = little-endian IEEE half):
 *   Q6_K   210: ql[128] low 4 bits, qh[64] high 2 bits, scales[16] int8 (one per 16 weights), d f16
 *   Q5_K   176: d f16, dmin f16, scales[12] (Q4_K's eight 6-bit scales and mins), qh[32] 5th bits, qs[128] low 4 bits
 *   Q3_K   110: hmask[32] 3rd bits, qs[64] low 2 bits, scales[12] (sixteen 6-bit scales, offset 32), d f16
 *   Q2_K    84: scales[16] (low nibble scale, high nibble min), qs[64] 2-bit codes, d f16, dmin f16
 *   IQ4_XS 136: d f16, scales_h u16 (2 high bits per 32 weights), scales_l[4] (low nibbles), qs[128] 4-bit indexes into IQ4_NL_LEVELS
 */
export type KQuantType = 'Q6_K' | 'Q5_K' | 'Q3_K' | 'Q2_K' | 'IQ4_XS';

export const K_QUANT_BYTES: Record<KQuantType, number> = { Q6_K: 210, Q5_K: 176, Q3_K: 110, Q2_K: 84, IQ4_XS: 136 };

/** Writes the 256 floats of one super-block into `out`. */
type BlockDecoder = (block: Uint8Array, out: Float32Array) => void;

const DECODERS: Record<KQuantType, BlockDecoder> = { Q6_K: decodeQ6K, Q5_K: decodeQ5K, Q3_K: decodeQ3K, Q2_K: decodeQ2K, IQ4_XS: decodeIQ4XS };

/** `count` weights (whole super-blocks) stored in `type` at the start of `bytes`, as float32. */
export function dequantizeKQuant(type: KQuantType, bytes: Uint8Array, count: number): Float32Array {
  const blockBytes = K_QUANT_BYTES[type];
  if (count % QK_K !== 0) throw new HerdError(`${type}: ${count} weights are not whole super-blocks of ${QK_K}`);
  const blocks = count / QK_K;
  if (bytes.length < blocks * blockBytes) throw new HerdError(`${type}: ${count} weights need ${blocks * blockBytes} bytes, got ${bytes.length}`);
  const out = new Float32Array(count);
  const decode = DECODERS[type];
  for (let b = 0; b < blocks; b++) decode(bytes.subarray(b * blockBytes, (b + 1) * blockBytes), out.subarray(b * QK_K, (b + 1) * QK_K));
  return out;
}

const half = (block: Uint8Array, at: number) => halfToFloat(block[at]! | (block[at + 1]! << 8));
const f32 = Math.fround;

/**
 * Q6_K: each half of 128 weights takes 64 bytes of ql and 32 of qh. Weight 32·i + l of a half
 * (i = 0..3) has its low nibble in ql[l + 32·(i & 1)] (low nibble for i < 2, high for i ≥ 2) and
 * its top two bits at bits 2i..2i+1 of qh[l]; value = d·scale·(q − 32), one int8 scale per 16.
 */
function decodeQ6K(block: Uint8Array, out: Float32Array): void {
  const d = half(block, 208);
  for (let h = 0; h < 2; h++) {
    const ql = block.subarray(64 * h, 64 * h + 64);
    const qh = block.subarray(128 + 32 * h, 128 + 32 * h + 32);
    const scales = new Int8Array(block.buffer, block.byteOffset + 192 + 8 * h, 8);
    for (let i = 0; i < 4; i++) {
      for (let l = 0; l < 32; l++) {
        const byte = ql[l + 32 * (i & 1)]!;
        const low = i < 2 ? byte & 0xf : byte >> 4;
        const q = (low | (((qh[l]! >> (2 * i)) & 3) << 4)) - 32;
        out[128 * h + 32 * i + l] = f32(d * scales[2 * i + (l >> 4)]!) * q;
      }
    }
  }
}

/** Q5_K: Q4_K's codes (32 bytes per pair of sub-blocks) plus a 5th bit: bit j of qh[l] for weight l of sub-block j. */
function decodeQ5K(block: Uint8Array, out: Float32Array): void {
  const d = half(block, 0);
  const dmin = half(block, 2);
  const scales = block.subarray(4, 16);
  const qh = block.subarray(16, 48);
  const qs = block.subarray(48, 176);
  for (let j = 0; j < 8; j++) {
    const [sc, m] = scaleMin(j, scales);
    const scale = f32(d * sc);
    const min = f32(dmin * m);
    for (let l = 0; l < 32; l++) {
      const byte = qs[32 * (j >> 1) + l]!;
      const q = (j % 2 === 0 ? byte & 0xf : byte >> 4) + (((qh[l]! >> j) & 1) << 4);
      out[32 * j + l] = f32(scale * q) - min;
    }
  }
}

/** The sixteen 6-bit Q3_K scales, minus their offset of 32: low nibbles in bytes 0..7, top two bits in bytes 8..11. */
function q3kScale(scales: Uint8Array, j: number): number {
  const low = j < 8 ? scales[j]! & 0xf : scales[j - 8]! >> 4;
  const high = (scales[8 + (j % 4)]! >> (2 * Math.floor(j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

/**
 * Q3_K: weight 128·h + 32·i + l has two bits at bits 2i..2i+1 of qs[32·h + l] and its third bit
 * at bit 4h + i of hmask[l]; value = d·scale·(q − 4 if that bit is clear), a scale per 16 weights.
 */
function decodeQ3K(block: Uint8Array, out: Float32Array): void {
  const hmask = block.subarray(0, 32);
  const qs = block.subarray(32, 96);
  const scales = block.subarray(96, 108);
  const d = half(block, 108);
  for (let h = 0; h < 2; h++) {
    for (let i = 0; i < 4; i++) {
      for (let l = 0; l < 32; l++) {
        const low = (qs[32 * h + l]! >> (2 * i)) & 3;
        const q = low - ((hmask[l]! >> (4 * h + i)) & 1 ? 0 : 4);
        out[128 * h + 32 * i + l] = f32(d * q3kScale(scales, 8 * h + 2 * i + (l >> 4))) * q;
      }
    }
  }
}

/** Q2_K: codes laid out as Q3_K's low bits; each 16 weights' byte holds a 4-bit scale (low) and min (high). */
function decodeQ2K(block: Uint8Array, out: Float32Array): void {
  const scales = block.subarray(0, 16);
  const qs = block.subarray(16, 80);
  const d = half(block, 80);
  const dmin = half(block, 82);
  for (let h = 0; h < 2; h++) {
    for (let i = 0; i < 4; i++) {
      for (let l = 0; l < 32; l++) {
        const packed = scales[8 * h + 2 * i + (l >> 4)]!;
        const q = (qs[32 * h + l]! >> (2 * i)) & 3;
        out[128 * h + 32 * i + l] = f32(f32(d * (packed & 0xf)) * q) - f32(dmin * (packed >> 4));
      }
    }
  }
}

/** IQ4_XS: eight blocks of 32 like IQ4_NL (16 bytes: low nibbles weights 0..15, high 16..31) with 6-bit scales offset by 32. */
function decodeIQ4XS(block: Uint8Array, out: Float32Array): void {
  const d = half(block, 0);
  const scalesHigh = block[2]! | (block[3]! << 8);
  for (let b = 0; b < 8; b++) {
    const low = (block[4 + (b >> 1)]! >> (4 * (b & 1))) & 0xf;
    const scale = f32(d * ((low | (((scalesHigh >> (2 * b)) & 3) << 4)) - 32));
    const qs = block.subarray(8 + 16 * b, 24 + 16 * b);
    for (let j = 0; j < 16; j++) {
      out[32 * b + j] = scale * IQ4_NL_LEVELS[qs[j]! & 0xf]!;
      out[32 * b + 16 + j] = scale * IQ4_NL_LEVELS[qs[j]! >> 4]!;
    }
  }
}
