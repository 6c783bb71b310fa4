// Linear layers and embedding lookups on GGUF's K-quant super-blocks of 256 weights: Q6_K, Q5_K,
// Q3_K, Q2_K and IQ4_XS (byte layouts in src/formats/ggml-k-quants.ts), kept as GGUF stores them.
//
// These kernels decode each super-block's codes to floats in SIMD lanes (scale · q − min, the
// same float32 operations as ggml's reference dequantizers, so bit for bit the same weights) and
// multiply them with the float32 activations. Unlike the Q8_0/Q4_0/Q4_K kernels they do not
// quantize the activations to 8 bits: the results are exact math on the dequantized weights, as
// the fixture's dequant_oracle computes, for one kernel shared by five bit layouts whose codes
// (signed 6-bit, 3-bit with an offset, non-linear IQ4 levels) would each need their own integer
// dot product. The cost is arithmetic, not memory: see docs/performance.md.

import { halfToFloat, highNibbles, lowNibbles, q4kMin, q4kScale, STREAM_GAP, sum4, TOKEN_TILE } from './common';

// ggml type ids, as src/kernels/linear.ts passes them.
const Q2_K: i32 = 10;
const Q3_K: i32 = 11;
const Q5_K: i32 = 13;
const Q6_K: i32 = 14;
const IQ4_XS: i32 = 23;

// One decoded super-block: 256 floats.
const DECODED_BYTES: usize = 1024;

@inline function superBlockBytes(type: i32): usize {
  if (type == Q6_K) return 210;
  if (type == Q5_K) return 176;
  if (type == Q3_K) return 110;
  if (type == Q2_K) return 84;
  return 136; // IQ4_XS
}

// Byte constants, loaded where used (see common.ts on why not immediates): 3s, 1s, 32s, 4s, and
// the 16 IQ4_NL levels (kvalues_iq4nl) as int8 for i8x16.swizzle.
const CONSTANTS = memory.data(80, 16);
v128.store(CONSTANTS, i8x16.splat(3));
v128.store(CONSTANTS + 16, i8x16.splat(1));
v128.store(CONSTANTS + 32, i8x16.splat(32));
v128.store(CONSTANTS + 48, i8x16.splat(4));
v128.store(CONSTANTS + 64, i8x16(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113));
@inline function threes(): v128 { return v128.load(CONSTANTS); }
@inline function ones8(): v128 { return v128.load(CONSTANTS + 16); }
@inline function thirtyTwos(): v128 { return v128.load(CONSTANTS + 32); }
@inline function fours(): v128 { return v128.load(CONSTANTS + 48); }
@inline function iq4Levels(): v128 { return v128.load(CONSTANTS + 64); }

// The two bits at `shift` of each byte. i8x16 has no shift in V8 on x86 (emulated), so shift
// 16-bit lanes and mask: bits that cross from the high byte are masked away.
@inline function bitPair(bytes: v128, shift: i32): v128 {
  return v128.and(i16x8.shr_u(bytes, shift), threes());
}
@inline function bitAt(bytes: v128, shift: i32): v128 {
  return v128.and(i16x8.shr_u(bytes, shift), ones8());
}
// Each byte (0..15) times 2^shift; no carry crosses bytes while the result stays under 256.
@inline function shiftBytesLeft(bytes: v128, shift: i32): v128 {
  return i16x8.shl(bytes, shift);
}

// out[0..16) = scale · codes − min, codes 16 signed bytes; two float32 roundings, as ggml's
// `dl * q - ml`.
@inline function storeSixteen(out: usize, codes: v128, scale: f32, min: f32): void {
  const s = f32x4.splat(scale), m = f32x4.splat(min);
  const low = i16x8.extend_low_i8x16_s(codes), high = i16x8.extend_high_i8x16_s(codes);
  v128.store(out, f32x4.sub(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(low)), s), m));
  v128.store(out + 16, f32x4.sub(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(low)), s), m));
  v128.store(out + 32, f32x4.sub(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(high)), s), m));
  v128.store(out + 48, f32x4.sub(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(high)), s), m));
}

// out[0..16) = scale · codes (types without a min: one rounding, as ggml's `d * sc * q`).
@inline function storeScaled(out: usize, codes: v128, scale: f32): void {
  const s = f32x4.splat(scale);
  const low = i16x8.extend_low_i8x16_s(codes), high = i16x8.extend_high_i8x16_s(codes);
  v128.store(out, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(low)), s));
  v128.store(out + 16, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(low)), s));
  v128.store(out + 32, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(high)), s));
  v128.store(out + 48, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(high)), s));
}

// Q6_K: weight 128·h + 32·i + 16·k + l takes its low nibble from ql[64·h + 32·(i & 1) + 16·k + l]
// (low nibble for i < 2, high for i ≥ 2) and its top two bits from bits 2i of qh[32·h + 16·k + l];
// value = d · scale[8·h + 2·i + k] · (q − 32).
@inline function decodeQ6K(block: usize, out: usize): void {
  const d = halfToFloat(<u32>load<u16>(block + 208));
  for (let h = 0; h < 2; h++) {
    const ql = block + (<usize>h << 6), qh = block + 128 + (<usize>h << 5), scales = block + 192 + (<usize>h << 3);
    for (let i = 0; i < 4; i++) {
      for (let k = 0; k < 2; k++) {
        const packed = v128.load(ql + (<usize>(i & 1) << 5) + (<usize>k << 4));
        const low = i < 2 ? v128.and(packed, lowNibbles()) : highNibbles(packed);
        const high = shiftBytesLeft(bitPair(v128.load(qh + (<usize>k << 4)), i << 1), 4);
        const codes = i8x16.sub(v128.or(low, high), thirtyTwos());
        storeScaled(out + ((<usize>(h << 7) + (i << 5) + (k << 4)) << 2), codes, d * <f32>load<i8>(scales + (i << 1) + k));
      }
    }
  }
}

// Q5_K: Q4_K's layout plus a fifth bit per weight: bit j of qh[l] for weight l of sub-block j.
@inline function decodeQ5K(block: usize, out: usize): void {
  const d = halfToFloat(<u32>load<u16>(block)), dmin = halfToFloat(<u32>load<u16>(block + 2));
  const packedScales = block + 4, qh = block + 16, qs = block + 48;
  for (let j = 0; j < 8; j++) {
    const scale = d * <f32>q4kScale(packedScales, j), min = dmin * <f32>q4kMin(packedScales, j);
    for (let k = 0; k < 2; k++) {
      const packed = v128.load(qs + (<usize>(j >> 1) << 5) + (<usize>k << 4));
      const low = (j & 1) == 0 ? v128.and(packed, lowNibbles()) : highNibbles(packed);
      const codes = v128.or(low, shiftBytesLeft(bitAt(v128.load(qh + (<usize>k << 4)), j), 4));
      storeSixteen(out + ((<usize>(j << 5) + (k << 4)) << 2), codes, scale, min);
    }
  }
}

// Q3_K's sixteen 6-bit scales (offset 32): low nibbles in bytes 0..7, top two bits in bytes 8..11.
@inline function q3kScale(scales: usize, j: i32): i32 {
  const low = j < 8 ? <i32>load<u8>(scales + j) & 0xf : <i32>load<u8>(scales + j - 8) >> 4;
  const high = (<i32>load<u8>(scales + 8 + (j & 3)) >> ((j >> 2) << 1)) & 3;
  return (low | (high << 4)) - 32;
}

// Q3_K: weight 128·h + 32·i + 16·k + l has two bits at 2i of qs[32·h + 16·k + l] and a third at
// bit 4h + i of hmask[16·k + l]; value = d · scale · (q − 4 where the third bit is clear).
@inline function decodeQ3K(block: usize, out: usize): void {
  const hmask = block, qs = block + 32, scales = block + 96;
  const d = halfToFloat(<u32>load<u16>(block + 108));
  for (let h = 0; h < 2; h++) {
    for (let i = 0; i < 4; i++) {
      for (let k = 0; k < 2; k++) {
        const low = bitPair(v128.load(qs + (<usize>h << 5) + (<usize>k << 4)), i << 1);
        const third = bitAt(v128.load(hmask + (<usize>k << 4)), (h << 2) + i);
        const codes = i8x16.sub(v128.or(low, shiftBytesLeft(third, 2)), fours());
        storeScaled(out + ((<usize>(h << 7) + (i << 5) + (k << 4)) << 2), codes, d * <f32>q3kScale(scales, (h << 3) + (i << 1) + k));
      }
    }
  }
}

// Q2_K: codes laid out as Q3_K's two low bits; a byte per 16 weights holds a 4-bit scale (low
// nibble) and a 4-bit min (high nibble).
@inline function decodeQ2K(block: usize, out: usize): void {
  const scales = block, qs = block + 16;
  const d = halfToFloat(<u32>load<u16>(block + 80)), dmin = halfToFloat(<u32>load<u16>(block + 82));
  for (let h = 0; h < 2; h++) {
    for (let i = 0; i < 4; i++) {
      for (let k = 0; k < 2; k++) {
        const packed = <i32>load<u8>(scales + (h << 3) + (i << 1) + k);
        const codes = bitPair(v128.load(qs + (<usize>h << 5) + (<usize>k << 4)), i << 1);
        storeSixteen(out + ((<usize>(h << 7) + (i << 5) + (k << 4)) << 2), codes, d * <f32>(packed & 0xf), dmin * <f32>(packed >> 4));
      }
    }
  }
}

// IQ4_XS: eight blocks of 32, each 16 bytes of 4-bit indexes into the IQ4_NL levels (low nibbles
// weights 0..15, high nibbles 16..31) and a 6-bit scale offset by 32 (low 4 bits in scales_l,
// high 2 bits in scales_h).
@inline function decodeIQ4XS(block: usize, out: usize): void {
  const d = halfToFloat(<u32>load<u16>(block));
  const scalesHigh = <i32>load<u16>(block + 2);
  for (let b = 0; b < 8; b++) {
    const low = (<i32>load<u8>(block + 4 + (b >> 1)) >> ((b & 1) << 2)) & 0xf;
    const scale = d * <f32>((low | (((scalesHigh >> (b << 1)) & 3) << 4)) - 32);
    const packed = v128.load(block + 8 + (<usize>b << 4));
    const at = out + (<usize>b << 7);
    storeScaled(at, i8x16.swizzle(iq4Levels(), v128.and(packed, lowNibbles())), scale);
    storeScaled(at + 64, i8x16.swizzle(iq4Levels(), highNibbles(packed)), scale);
  }
}

// The 256 floats of one super-block of `type` at `block`, written at `out`.
@inline function decodeSuperBlock(type: i32, block: usize, out: usize): void {
  if (type == Q6_K) decodeQ6K(block, out);
  else if (type == Q5_K) decodeQ5K(block, out);
  else if (type == Q3_K) decodeQ3K(block, out);
  else if (type == Q2_K) decodeQ2K(block, out);
  else decodeIQ4XS(block, out);
}

// Σ w·x over 256 decoded weights at `w` and activations at `x`, as four lanes.
@inline function dot256(w: usize, x: usize): v128 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let k: usize = 0; k < DECODED_BYTES; k += 64) {
    a0 = f32x4.add(a0, f32x4.mul(v128.load(w + k), v128.load(x + k)));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(w + k + 16), v128.load(x + k + 16)));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(w + k + 32), v128.load(x + k + 32)));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(w + k + 48), v128.load(x + k + 48)));
  }
  return f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3));
}

// Decode: four rows `stride` bytes apart against one token, super-block by super-block, each
// decoded into the 1 KiB at `decoded` (it stays in L1) and multiplied at once; outputs
// `outStride` bytes apart. Four rows some 64 KiB apart are four memory streams (see linear_float).
@inline function fourRowsDecoded(type: i32, row: usize, stride: usize, superBlocks: i32, x: usize, decoded: usize, out: usize, outStride: usize): void {
  const blockBytes = superBlockBytes(type);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let s = 0; s < superBlocks; s++) {
    const at = <usize>s * blockBytes, xs = x + <usize>s * DECODED_BYTES;
    decodeSuperBlock(type, row + at, decoded);
    a0 = f32x4.add(a0, dot256(decoded, xs));
    decodeSuperBlock(type, row + stride + at, decoded);
    a1 = f32x4.add(a1, dot256(decoded, xs));
    decodeSuperBlock(type, row + 2 * stride + at, decoded);
    a2 = f32x4.add(a2, dot256(decoded, xs));
    decodeSuperBlock(type, row + 3 * stride + at, decoded);
    a3 = f32x4.add(a3, dot256(decoded, xs));
  }
  store<f32>(out, sum4(a0));
  store<f32>(out + outStride, sum4(a1));
  store<f32>(out + 2 * outStride, sum4(a2));
  store<f32>(out + 3 * outStride, sum4(a3));
}

// One decoded row (inDim floats at w) against four tokens `xRow` bytes apart; outputs `outRow` apart.
@inline function decodedRowFourTokens(w: usize, x0: usize, xRow: usize, out: usize, outRow: usize, inDim: i32): void {
  const x1 = x0 + xRow, x2 = x1 + xRow, x3 = x2 + xRow;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const end = <usize>inDim << 2;
  for (let k: usize = 0; k < end; k += 16) {
    const wv = v128.load(w + k);
    a0 = f32x4.add(a0, f32x4.mul(wv, v128.load(x0 + k)));
    a1 = f32x4.add(a1, f32x4.mul(wv, v128.load(x1 + k)));
    a2 = f32x4.add(a2, f32x4.mul(wv, v128.load(x2 + k)));
    a3 = f32x4.add(a3, f32x4.mul(wv, v128.load(x3 + k)));
  }
  store<f32>(out, sum4(a0));
  store<f32>(out + outRow, sum4(a1));
  store<f32>(out + 2 * outRow, sum4(a2));
  store<f32>(out + 3 * outRow, sum4(a3));
}

// One decoded row against one token.
@inline function decodedRowDot(w: usize, x: usize, inDim: i32): f32 {
  let acc = f32x4.splat(0);
  for (let s = 0; s < inDim >> 8; s++) acc = f32x4.add(acc, dot256(w + <usize>s * DECODED_BYTES, x + <usize>s * DECODED_BYTES));
  return sum4(acc);
}

// y[t, r] = Σ_k W[r, k] · x[t, k] for rows [rowStart, rowEnd) of K-quant weights of ggml type
// `type` (10 Q2_K, 11 Q3_K, 13 Q5_K, 14 Q6_K, 23 IQ4_XS) stored as GGUF rows; x in float32.
// `scratch` holds inDim floats (at least 256). Decode decodes a super-block of four rows at a
// time; prefill decodes each row once per tile of tokens and runs the tile past it four tokens
// at a time, as linear_float does with float rows.
export function linear_kquant(type: i32, w: usize, x: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32, scratch: usize): void {
  const superBlocks = inDim >> 8;
  const rowBytes = <usize>superBlocks * superBlockBytes(type);
  const xRow = <usize>inDim << 2;
  let first = rowStart;
  if (tokens == 1) {
    const spacing = max(1, <i32>((STREAM_GAP + (rowBytes >> 1)) / rowBytes));
    for (; first + 4 * spacing <= rowEnd; first += 4 * spacing) {
      for (let i = 0; i < spacing; i++) {
        fourRowsDecoded(type, w + <usize>(first + i) * rowBytes, <usize>spacing * rowBytes, superBlocks, x, scratch, y + (<usize>(first + i) << 2), <usize>spacing << 2);
      }
    }
  }
  for (let tile = 0; tile < tokens; tile += TOKEN_TILE) {
    const tileEnd = min(tokens, tile + TOKEN_TILE);
    for (let r = first; r < rowEnd; r++) {
      const row = w + <usize>r * rowBytes;
      for (let s = 0; s < superBlocks; s++) decodeSuperBlock(type, row + <usize>s * superBlockBytes(type), scratch + <usize>s * DECODED_BYTES);
      let t = tile;
      for (; t + 4 <= tileEnd; t += 4) decodedRowFourTokens(scratch, x + <usize>t * xRow, xRow, y + ((<usize>t * outDim + r) << 2), <usize>outDim << 2, inDim);
      for (; t < tileEnd; t++) store<f32>(y + ((<usize>t * outDim + r) << 2), decodedRowDot(scratch, x + <usize>t * xRow, inDim));
    }
  }
}

// Rows of a K-quant table (GGUF rows, `type` as linear_kquant) for each id, dequantized.
export function embedding_kquant(type: i32, table: usize, ids: usize, out: usize, dim: i32, count: i32): void {
  const superBlocks = dim >> 8;
  const blockBytes = superBlockBytes(type);
  for (let t = 0; t < count; t++) {
    const row = table + <usize>load<i32>(ids + (<usize>t << 2)) * superBlocks * blockBytes;
    const dst = out + (<usize>t * dim << 2);
    for (let s = 0; s < superBlocks; s++) decodeSuperBlock(type, row + <usize>s * blockBytes, dst + <usize>s * DECODED_BYTES);
  }
}
