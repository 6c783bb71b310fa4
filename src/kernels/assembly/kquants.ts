// Linear layers and embedding lookups on GGUF's K-quant super-blocks of 256 weights: Q6_K, Q5_K,
// Q3_K, Q2_K and IQ4_XS (byte layouts in src/formats/ggml-k-quants.ts), kept as GGUF stores them.
//
// These kernels decode the codes in SIMD lanes and multiply them, converted to float32, with
// the float32 activations: decode multiplies each chunk of 16 codes with its activations and
// applies the chunk's scale (and min) once; prefill and embedding lookups decode whole rows with
// the same float32 operations as ggml's reference dequantizers (scale · q − min), so bit for bit
// ggml's weights. Unlike the Q8_0/Q4_0/Q4_K kernels they do not quantize the activations to 8
// bits: the results are exact math on the dequantized weights up to float32 rounding, as the
// fixture's dequant_oracle computes, and one kernel serves five bit layouts whose codes (signed
// 6-bit, 3-bit with an offset, non-linear IQ4 levels) would each need their own integer dot
// product. The cost is arithmetic, not memory: see docs/performance.md.

import { halfToFloat, highNibbles, lowNibbles, q4kMin, q4kScale, STREAM_GAP, sum4, TOKEN_TILE } from './common';

// ggml type ids, as src/kernels/linear.ts passes them.
const Q2_K: i32 = 10;
const Q3_K: i32 = 11;
const Q5_K: i32 = 13;
const Q6_K: i32 = 14;
const IQ4_XS: i32 = 23;

// One decoded super-block: 256 floats.
const DECODED_BYTES: usize = 1024;

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

// Each type is a type parameter, so every kernel is compiled once per type with no type test
// inside its loops (as index.ts does with float dtypes): i8 = Q6_K, u8 = Q5_K, i16 = Q3_K,
// u16 = Q2_K, i32 = IQ4_XS.
@inline function isQ6K<T>(): bool { return sizeof<T>() == 1 && isSigned<T>(); }
@inline function isQ5K<T>(): bool { return sizeof<T>() == 1 && !isSigned<T>(); }
@inline function isQ3K<T>(): bool { return sizeof<T>() == 2 && isSigned<T>(); }
@inline function isQ2K<T>(): bool { return sizeof<T>() == 2 && !isSigned<T>(); }
// Q5_K and Q2_K subtract a min; the others centre their codes.
@inline function hasMin<T>(): bool { return isQ5K<T>() || isQ2K<T>(); }

@inline function superBlockBytesOf<T>(): usize {
  return isQ6K<T>() ? 210 : isQ5K<T>() ? 176 : isQ3K<T>() ? 110 : isQ2K<T>() ? 84 : 136;
}

// Every type splits a super-block into 16 chunks of 16 consecutive weights with one scale (and
// min) each: chunk c holds weights 16c..16c+15. For Q6_K, Q3_K and Q2_K, c = 8h + 2i + k where
// h is the 128-weight half, i the pair of bits (or nibble) within a code byte and k the 16 bytes.

// The super-block's f16 d and (types with mins) dmin.
@inline function superScale<T>(block: usize): f32 {
  return halfToFloat(<u32>load<u16>(block + (isQ6K<T>() ? 208 : isQ3K<T>() ? 108 : isQ2K<T>() ? 80 : 0)));
}
@inline function superMin<T>(block: usize): f32 {
  return hasMin<T>() ? halfToFloat(<u32>load<u16>(block + (isQ2K<T>() ? 82 : 2))) : 0;
}

// Q3_K's sixteen 6-bit scales (offset 32): low nibbles in bytes 0..7, top two bits in bytes 8..11.
@inline function q3kScale(scales: usize, j: i32): i32 {
  const low = j < 8 ? <i32>load<u8>(scales + j) & 0xf : <i32>load<u8>(scales + j - 8) >> 4;
  const high = (<i32>load<u8>(scales + 8 + (j & 3)) >> ((j >> 2) << 1)) & 3;
  return (low | (high << 4)) - 32;
}

// Scale of chunk c, given the super-block's d: Q6_K an int8 per chunk; Q5_K Q4_K's 6-bit scale
// per 32; Q3_K a 6-bit scale per chunk; Q2_K the low nibble of a byte per chunk; IQ4_XS a 6-bit
// scale per 32 (low 4 bits in scales_l, high 2 in scales_h), offset by 32.
@inline function chunkScale<T>(block: usize, c: i32, d: f32): f32 {
  if (isQ6K<T>()) return d * <f32>load<i8>(block + 192 + c);
  if (isQ5K<T>()) return d * <f32>q4kScale(block + 4, c >> 1);
  if (isQ3K<T>()) return d * <f32>q3kScale(block + 96, c);
  if (isQ2K<T>()) return d * <f32>(<i32>load<u8>(block + c) & 0xf);
  const b = c >> 1;
  const low = (<i32>load<u8>(block + 4 + (b >> 1)) >> ((b & 1) << 2)) & 0xf;
  const high = (<i32>load<u16>(block + 2) >> (b << 1)) & 3;
  return d * <f32>((low | (high << 4)) - 32);
}

// Min of chunk c (Q5_K, Q2_K), given dmin.
@inline function chunkMin<T>(block: usize, c: i32, dmin: f32): f32 {
  if (isQ5K<T>()) return dmin * <f32>q4kMin(block + 4, c >> 1);
  return dmin * <f32>(<i32>load<u8>(block + c) >> 4);
}

// The 16 codes of chunk c as signed bytes, offsets applied (value = scale · code − min):
//   Q6_K   low nibble of ql[64h + 32(i & 1) + 16k + l] (high nibble for i ≥ 2) | bits 2i of
//          qh[32h + 16k + l] << 4, minus 32
//   Q5_K   nibble (j & 1) of qs[32(j >> 1) + 16k + l] | bit j of qh[16k + l] << 4, j = c >> 1
//   Q3_K   bits 2i of qs[32h + 16k + l] | bit 4h + i of hmask[16k + l] << 2, minus 4
//   Q2_K   bits 2i of qs[32h + 16k + l]
//   IQ4_XS IQ4_NL level of nibble k of qs[16(c >> 1) + l]
@inline function chunkCodes<T>(block: usize, c: i32): v128 {
  const h = c >> 3, i = (c >> 1) & 3, k = <usize>(c & 1) << 4;
  if (isQ6K<T>()) {
    const packed = v128.load(block + (<usize>h << 6) + (<usize>(i & 1) << 5) + k);
    const low = i < 2 ? v128.and(packed, lowNibbles()) : highNibbles(packed);
    const high = shiftBytesLeft(bitPair(v128.load(block + 128 + (<usize>h << 5) + k), i << 1), 4);
    return i8x16.sub(v128.or(low, high), thirtyTwos());
  }
  if (isQ5K<T>()) {
    const j = c >> 1;
    const packed = v128.load(block + 48 + (<usize>(j >> 1) << 5) + k);
    const low = (j & 1) == 0 ? v128.and(packed, lowNibbles()) : highNibbles(packed);
    return v128.or(low, shiftBytesLeft(bitAt(v128.load(block + 16 + k), j), 4));
  }
  if (isQ3K<T>()) {
    const low = bitPair(v128.load(block + 32 + (<usize>h << 5) + k), i << 1);
    const third = bitAt(v128.load(block + k), (h << 2) + i);
    return i8x16.sub(v128.or(low, shiftBytesLeft(third, 2)), fours());
  }
  if (isQ2K<T>()) return bitPair(v128.load(block + 16 + (<usize>h << 5) + k), i << 1);
  const packed = v128.load(block + 8 + (<usize>(c >> 1) << 4));
  return i8x16.swizzle(iq4Levels(), k == 0 ? v128.and(packed, lowNibbles()) : highNibbles(packed));
}

// The 256 floats of one super-block at `out`, each scale · code − min rounded as ggml rounds it
// (`d * sc * q`: one rounding; `dl * q - ml`: two), so exactly ggml's dequantized weights.
@inline function decodeSuperBlock<T>(block: usize, out: usize): void {
  const d = superScale<T>(block), dmin = superMin<T>(block);
  for (let c = 0; c < 16; c++) {
    const at = out + (<usize>c << 6);
    if (hasMin<T>()) storeSixteen(at, chunkCodes<T>(block, c), chunkScale<T>(block, c, d), chunkMin<T>(block, c, dmin));
    else storeScaled(at, chunkCodes<T>(block, c), chunkScale<T>(block, c, d));
  }
}

// Decode: chunk c of one row against activations x0..x3 (its 16 floats; xSum = x0 + x1 + x2 + x3)
// as four lanes: scale · Σ code·x − min · Σ x. The codes are converted to floats and multiplied
// with x without storing the weights; the scale and min are applied once per 16.
@inline function chunkDot<T>(block: usize, c: i32, d: f32, dmin: f32, x0: v128, x1: v128, x2: v128, x3: v128, xSum: v128): v128 {
  const codes = chunkCodes<T>(block, c);
  const low = i16x8.extend_low_i8x16_s(codes), high = i16x8.extend_high_i8x16_s(codes);
  const p0 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(low)), x0);
  const p1 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(low)), x1);
  const p2 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(high)), x2);
  const p3 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(high)), x3);
  const scaled = f32x4.mul(f32x4.add(f32x4.add(p0, p1), f32x4.add(p2, p3)), f32x4.splat(chunkScale<T>(block, c, d)));
  return hasMin<T>() ? f32x4.sub(scaled, f32x4.mul(xSum, f32x4.splat(chunkMin<T>(block, c, dmin)))) : scaled;
}

// Decode: four rows `stride` bytes apart against one token, outputs `outStride` bytes apart.
// Four rows some 64 KiB apart are four memory streams (see linear_float); each chunk of
// activations is loaded once for the four.
@inline function fourRowsDot<T>(row: usize, stride: usize, superBlocks: i32, x: usize, out: usize, outStride: usize): void {
  const blockBytes = superBlockBytesOf<T>();
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let s = 0; s < superBlocks; s++) {
    const b0 = row + <usize>s * blockBytes, b1 = b0 + stride, b2 = b1 + stride, b3 = b2 + stride;
    const d0 = superScale<T>(b0), d1 = superScale<T>(b1), d2 = superScale<T>(b2), d3 = superScale<T>(b3);
    const m0 = superMin<T>(b0), m1 = superMin<T>(b1), m2 = superMin<T>(b2), m3 = superMin<T>(b3);
    const xs = x + <usize>s * DECODED_BYTES;
    for (let c = 0; c < 16; c++) {
      const at = xs + (<usize>c << 6);
      const x0 = v128.load(at), x1 = v128.load(at + 16), x2 = v128.load(at + 32), x3 = v128.load(at + 48);
      const xSum = hasMin<T>() ? f32x4.add(f32x4.add(x0, x1), f32x4.add(x2, x3)) : x0; // unused without a min
      a0 = f32x4.add(a0, chunkDot<T>(b0, c, d0, m0, x0, x1, x2, x3, xSum));
      a1 = f32x4.add(a1, chunkDot<T>(b1, c, d1, m1, x0, x1, x2, x3, xSum));
      a2 = f32x4.add(a2, chunkDot<T>(b2, c, d2, m2, x0, x1, x2, x3, xSum));
      a3 = f32x4.add(a3, chunkDot<T>(b3, c, d3, m3, x0, x1, x2, x3, xSum));
    }
  }
  store<f32>(out, sum4(a0));
  store<f32>(out + outStride, sum4(a1));
  store<f32>(out + 2 * outStride, sum4(a2));
  store<f32>(out + 3 * outStride, sum4(a3));
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
// `scratch` holds inDim floats.
export function linear_kquant(type: i32, w: usize, x: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32, scratch: usize): void {
  if (type == Q6_K) linearKQuant<i8>(w, x, y, inDim, outDim, tokens, rowStart, rowEnd, scratch);
  else if (type == Q5_K) linearKQuant<u8>(w, x, y, inDim, outDim, tokens, rowStart, rowEnd, scratch);
  else if (type == Q3_K) linearKQuant<i16>(w, x, y, inDim, outDim, tokens, rowStart, rowEnd, scratch);
  else if (type == Q2_K) linearKQuant<u16>(w, x, y, inDim, outDim, tokens, rowStart, rowEnd, scratch);
  else linearKQuant<i32>(w, x, y, inDim, outDim, tokens, rowStart, rowEnd, scratch);
}

// Decode multiplies codes with the activations chunk by chunk, four rows a pass (fourRowsDot).
// Prefill decodes each row to floats in `scratch` once per tile of tokens and runs the tile past
// it four tokens at a time, as linear_float does with float rows: the decoding is paid once for
// up to 32 tokens.
@inline function linearKQuant<T>(w: usize, x: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32, scratch: usize): void {
  const superBlocks = inDim >> 8;
  const blockBytes = superBlockBytesOf<T>();
  const rowBytes = <usize>superBlocks * blockBytes;
  const xRow = <usize>inDim << 2;
  let first = rowStart;
  if (tokens == 1) {
    const spacing = max(1, <i32>((STREAM_GAP + (rowBytes >> 1)) / rowBytes));
    for (; first + 4 * spacing <= rowEnd; first += 4 * spacing) {
      for (let i = 0; i < spacing; i++) {
        fourRowsDot<T>(w + <usize>(first + i) * rowBytes, <usize>spacing * rowBytes, superBlocks, x, y + (<usize>(first + i) << 2), <usize>spacing << 2);
      }
    }
    for (; first + 4 <= rowEnd; first += 4) fourRowsDot<T>(w + <usize>first * rowBytes, rowBytes, superBlocks, x, y + (<usize>first << 2), 4);
  }
  for (let tile = 0; tile < tokens; tile += TOKEN_TILE) {
    const tileEnd = min(tokens, tile + TOKEN_TILE);
    for (let r = first; r < rowEnd; r++) {
      const row = w + <usize>r * rowBytes;
      for (let s = 0; s < superBlocks; s++) decodeSuperBlock<T>(row + <usize>s * blockBytes, scratch + <usize>s * DECODED_BYTES);
      let t = tile;
      for (; t + 4 <= tileEnd; t += 4) decodedRowFourTokens(scratch, x + <usize>t * xRow, xRow, y + ((<usize>t * outDim + r) << 2), <usize>outDim << 2, inDim);
      for (; t < tileEnd; t++) store<f32>(y + ((<usize>t * outDim + r) << 2), decodedRowDot(scratch, x + <usize>t * xRow, inDim));
    }
  }
}

// Rows of a K-quant table (GGUF rows, `type` as linear_kquant) for each id, dequantized.
export function embedding_kquant(type: i32, table: usize, ids: usize, out: usize, dim: i32, count: i32): void {
  if (type == Q6_K) embeddingKQuant<i8>(table, ids, out, dim, count);
  else if (type == Q5_K) embeddingKQuant<u8>(table, ids, out, dim, count);
  else if (type == Q3_K) embeddingKQuant<i16>(table, ids, out, dim, count);
  else if (type == Q2_K) embeddingKQuant<u16>(table, ids, out, dim, count);
  else embeddingKQuant<i32>(table, ids, out, dim, count);
}

@inline function embeddingKQuant<T>(table: usize, ids: usize, out: usize, dim: i32, count: i32): void {
  const superBlocks = dim >> 8;
  const blockBytes = superBlockBytesOf<T>();
  for (let t = 0; t < count; t++) {
    const row = table + <usize>load<i32>(ids + (<usize>t << 2)) * superBlocks * blockBytes;
    const dst = out + (<usize>t * dim << 2);
    for (let s = 0; s < superBlocks; s++) decodeSuperBlock<T>(row + <usize>s * blockBytes, dst + <usize>s * DECODED_BYTES);
  }
}
