// Linear layers and embedding lookups on GGUF's other blocks of 32 weights, computed on the rows
// as GGUF stores them (no repacking). Each block holds an f16 scale d and 16 code bytes, element j
// in the low nibble of byte j and element 16 + j in its high nibble (ggml-common.h):
//   Q4_1   (20 bytes) d, f16 min m, codes                 x = q·d + m
//   Q5_0   (22 bytes) d, u32 qh (bit j = 5th bit of q_j), codes     x = (q − 16)·d
//   Q5_1   (24 bytes) d, m, qh, codes                     x = q·d + m
//   IQ4_NL (18 bytes) d, codes                            x = d·level[q]  (kvalues_iq4nl)
//
// A block's codes are decoded to small signed integers in SIMD lanes, widened to floats and
// multiplied with float32 activations: no activation rounding, so the products are exact math on
// the dequantized weights up to float32 summation. The min of Q4_1/Q5_1 adds m·Σx per block,
// from the activations' block sums (activation_block_sums) instead of once per weight.
//
// The formats are ggml type ids: Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, IQ4_NL = 20.

import { halfToFloat, highNibbles, lowNibbles, STREAM_GAP, sum4, TOKEN_TILE } from './common';

const Q4_1: i32 = 3;
const Q5_0: i32 = 6;
const Q5_1: i32 = 7;
const IQ4_NL: i32 = 20;

@inline function blockBytesOf(format: i32): usize {
  return format == Q4_1 ? 20 : format == Q5_0 ? 22 : format == Q5_1 ? 24 : 18;
}
@inline function codesOffset(format: i32): usize {
  return format == Q4_1 ? 4 : format == Q5_0 ? 6 : format == Q5_1 ? 8 : 2;
}
@inline function qhOffset(format: i32): usize {
  return format == Q5_0 ? 2 : 4;
}
@inline function hasMin(format: i32): bool {
  return format == Q4_1 || format == Q5_1;
}

// Vector tables, loaded where used (see common.ts on why constants live in memory).
const IQ4_LEVELS = memory.data<i8>([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], 16);
// Which qh byte holds each element's fifth bit: elements 0..15 in bytes 0 and 1, 16..31 in 2 and 3.
const QH_BYTES_LOW = memory.data<u8>([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1], 16);
const QH_BYTES_HIGH = memory.data<u8>([2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3], 16);
const BIT_OF_LANE = memory.data<u8>([1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128], 16);
const SIXTEENS = memory.data<u8>([16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16], 16);

// 16 for each of the 16 elements (of the low or high half) whose fifth bit is set in qh.
@inline function fifthBits(qh: usize, high: bool): v128 {
  const spread = i8x16.swizzle(v128.load32_splat(qh), v128.load(high ? QH_BYTES_HIGH : QH_BYTES_LOW));
  return v128.and(i8x16.ne(v128.and(spread, v128.load(BIT_OF_LANE)), i8x16.splat(0)), v128.load(SIXTEENS));
}

// The integer weights of elements 0..15 (high = false) or 16..31 of the block at `block`, as 16
// int8 lanes: q (0..31) for Q4_1/Q5_1, q − 16 for Q5_0, the level (−127..113) for IQ4_NL.
@inline function blockCodes(format: i32, block: usize, high: bool): v128 {
  const packed = v128.load(block + codesOffset(format));
  let codes = high ? highNibbles(packed) : v128.and(packed, lowNibbles());
  if (format == IQ4_NL) return i8x16.swizzle(v128.load(IQ4_LEVELS), codes);
  if (format == Q5_0 || format == Q5_1) codes = v128.or(codes, fifthBits(block + qhOffset(format), high));
  if (format == Q5_0) codes = i8x16.sub(codes, v128.load(SIXTEENS));
  return codes;
}

// Lanes 4·part .. 4·part + 3 of 16 int8 codes as floats.
@inline function codeFloats(codes: v128, part: i32): v128 {
  const half = part < 2 ? i16x8.extend_low_i8x16_s(codes) : i16x8.extend_high_i8x16_s(codes);
  return f32x4.convert_i32x4_s((part & 1) == 0 ? i32x4.extend_low_i16x8_s(half) : i32x4.extend_high_i16x8_s(half));
}

@inline function scaleOf(block: usize): f32 {
  return halfToFloat(<u32>load<u16>(block));
}
@inline function minOf(block: usize): f32 {
  return halfToFloat(<u32>load<u16>(block + 2));
}

// Σ code·x over one block, as four float lanes (x: the block's 32 activations).
@inline function blockDot(format: i32, block: usize, x: usize): v128 {
  const low = blockCodes(format, block, false), high = blockCodes(format, block, true);
  let a = f32x4.mul(codeFloats(low, 0), v128.load(x));
  a = f32x4.add(a, f32x4.mul(codeFloats(low, 1), v128.load(x + 16)));
  a = f32x4.add(a, f32x4.mul(codeFloats(low, 2), v128.load(x + 32)));
  a = f32x4.add(a, f32x4.mul(codeFloats(low, 3), v128.load(x + 48)));
  a = f32x4.add(a, f32x4.mul(codeFloats(high, 0), v128.load(x + 64)));
  a = f32x4.add(a, f32x4.mul(codeFloats(high, 1), v128.load(x + 80)));
  a = f32x4.add(a, f32x4.mul(codeFloats(high, 2), v128.load(x + 96)));
  return f32x4.add(a, f32x4.mul(codeFloats(high, 3), v128.load(x + 112)));
}

// Σ w·x over a block already decoded to floats w0..w7.
@inline function floatsDot(w0: v128, w1: v128, w2: v128, w3: v128, w4: v128, w5: v128, w6: v128, w7: v128, x: usize): v128 {
  let a = f32x4.mul(w0, v128.load(x));
  a = f32x4.add(a, f32x4.mul(w1, v128.load(x + 16)));
  a = f32x4.add(a, f32x4.mul(w2, v128.load(x + 32)));
  a = f32x4.add(a, f32x4.mul(w3, v128.load(x + 48)));
  a = f32x4.add(a, f32x4.mul(w4, v128.load(x + 64)));
  a = f32x4.add(a, f32x4.mul(w5, v128.load(x + 80)));
  a = f32x4.add(a, f32x4.mul(w6, v128.load(x + 96)));
  return f32x4.add(a, f32x4.mul(w7, v128.load(x + 112)));
}

// Σx of each block of 32 activations (`tokens` rows of inDim floats), one float per block: the
// min term of Q4_1 and Q5_1.
export function activation_block_sums(x: usize, sums: usize, inDim: i32, tokens: i32): void {
  const blocks = (inDim >> 5) * tokens;
  for (let b = 0; b < blocks; b++) {
    const at = x + (<usize>b << 7);
    let s = f32x4.add(f32x4.add(v128.load(at), v128.load(at + 16)), f32x4.add(v128.load(at + 32), v128.load(at + 48)));
    s = f32x4.add(s, f32x4.add(f32x4.add(v128.load(at + 64), v128.load(at + 80)), f32x4.add(v128.load(at + 96), v128.load(at + 112))));
    store<f32>(sums + (<usize>b << 2), sum4(s));
  }
}

// Decode: rows first, first + spacing, first + 2·spacing, first + 3·spacing for one token, as four
// memory streams (see STREAM_GAP).
@inline function fourRows(format: i32, w: usize, rowBytes: usize, blocks: i32, first: i32, spacing: i32, x: usize, sums: usize, y: usize): void {
  const stride = <usize>spacing * rowBytes;
  const r0 = w + <usize>first * rowBytes, r1 = r0 + stride, r2 = r1 + stride, r3 = r2 + stride;
  const blockBytes = blockBytesOf(format);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let m0: f32 = 0, m1: f32 = 0, m2: f32 = 0, m3: f32 = 0;
  for (let b = 0; b < blocks; b++) {
    const at = <usize>b * blockBytes;
    const xb = x + (<usize>b << 7);
    a0 = f32x4.add(a0, f32x4.mul(blockDot(format, r0 + at, xb), f32x4.splat(scaleOf(r0 + at))));
    a1 = f32x4.add(a1, f32x4.mul(blockDot(format, r1 + at, xb), f32x4.splat(scaleOf(r1 + at))));
    a2 = f32x4.add(a2, f32x4.mul(blockDot(format, r2 + at, xb), f32x4.splat(scaleOf(r2 + at))));
    a3 = f32x4.add(a3, f32x4.mul(blockDot(format, r3 + at, xb), f32x4.splat(scaleOf(r3 + at))));
    if (hasMin(format)) {
      const s = load<f32>(sums + (<usize>b << 2));
      m0 += minOf(r0 + at) * s;
      m1 += minOf(r1 + at) * s;
      m2 += minOf(r2 + at) * s;
      m3 += minOf(r3 + at) * s;
    }
  }
  const out = y + (<usize>first << 2), outStride = <usize>spacing << 2;
  store<f32>(out, sum4(a0) + m0);
  store<f32>(out + outStride, sum4(a1) + m1);
  store<f32>(out + 2 * outStride, sum4(a2) + m2);
  store<f32>(out + 3 * outStride, sum4(a3) + m3);
}

// Prefill (and the rows decode leaves): one row for `count` (1..4) tokens; each block is decoded to
// floats once for all of them. x: the first token's activations, sums its block sums; outputs
// `outStride` bytes apart.
@inline function rowTokens(format: i32, row: usize, blocks: i32, count: i32, x: usize, sums: usize, inDim: i32, y: usize, outStride: usize): void {
  const blockBytes = blockBytesOf(format);
  const xStride = <usize>inDim << 2, sumStride = <usize>blocks << 2;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let m0: f32 = 0, m1: f32 = 0, m2: f32 = 0, m3: f32 = 0;
  for (let b = 0; b < blocks; b++) {
    const block = row + <usize>b * blockBytes;
    const low = blockCodes(format, block, false), high = blockCodes(format, block, true);
    const d = f32x4.splat(scaleOf(block));
    const w0 = f32x4.mul(codeFloats(low, 0), d), w1 = f32x4.mul(codeFloats(low, 1), d), w2 = f32x4.mul(codeFloats(low, 2), d), w3 = f32x4.mul(codeFloats(low, 3), d);
    const w4 = f32x4.mul(codeFloats(high, 0), d), w5 = f32x4.mul(codeFloats(high, 1), d), w6 = f32x4.mul(codeFloats(high, 2), d), w7 = f32x4.mul(codeFloats(high, 3), d);
    const xb = x + (<usize>b << 7), sb = sums + (<usize>b << 2);
    a0 = f32x4.add(a0, floatsDot(w0, w1, w2, w3, w4, w5, w6, w7, xb));
    if (count > 1) a1 = f32x4.add(a1, floatsDot(w0, w1, w2, w3, w4, w5, w6, w7, xb + xStride));
    if (count > 2) a2 = f32x4.add(a2, floatsDot(w0, w1, w2, w3, w4, w5, w6, w7, xb + 2 * xStride));
    if (count > 3) a3 = f32x4.add(a3, floatsDot(w0, w1, w2, w3, w4, w5, w6, w7, xb + 3 * xStride));
    if (hasMin(format)) {
      const m = minOf(block);
      m0 += m * load<f32>(sb);
      if (count > 1) m1 += m * load<f32>(sb + sumStride);
      if (count > 2) m2 += m * load<f32>(sb + 2 * sumStride);
      if (count > 3) m3 += m * load<f32>(sb + 3 * sumStride);
    }
  }
  store<f32>(y, sum4(a0) + m0);
  if (count > 1) store<f32>(y + outStride, sum4(a1) + m1);
  if (count > 2) store<f32>(y + 2 * outStride, sum4(a2) + m2);
  if (count > 3) store<f32>(y + 3 * outStride, sum4(a3) + m3);
}

@inline function linearBlocks(format: i32, w: usize, x: usize, sums: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32): void {
  const blocks = inDim >> 5;
  const rowBytes = <usize>blocks * blockBytesOf(format);
  let r = rowStart;
  if (tokens == 1) {
    const spacing = max(1, <i32>((STREAM_GAP + (rowBytes >> 1)) / rowBytes));
    for (; r + 4 * spacing <= rowEnd; r += 4 * spacing) {
      for (let i = 0; i < spacing; i++) fourRows(format, w, rowBytes, blocks, r + i, spacing, x, sums, y);
    }
    for (; r + 4 <= rowEnd; r += 4) fourRows(format, w, rowBytes, blocks, r, 1, x, sums, y);
  }
  for (let tile = 0; tile < tokens; tile += TOKEN_TILE) {
    const tileEnd = min(tokens, tile + TOKEN_TILE);
    for (let row = r; row < rowEnd; row++) {
      for (let t = tile; t < tileEnd; t += 4) {
        rowTokens(format, w + <usize>row * rowBytes, blocks, min(4, tileEnd - t), x + (<usize>t * inDim << 2), sums + (<usize>t * blocks << 2), inDim,
          y + ((<usize>t * outDim + row) << 2), <usize>outDim << 2);
      }
    }
  }
}

// y[t · outDim + r] = Σ_c w[r, c] · x[t, c] for rows [rowStart, rowEnd) (any range) of weights in
// `format` at w (row r at w + r · rowBytes, as GGUF stores it) and `tokens` rows of float32
// activations x; `sums` holds their block sums (activation_block_sums) for Q4_1 and Q5_1 and is
// not read for the others. inDim must be a multiple of 32.
export function linear_blocks32(format: i32, w: usize, x: usize, sums: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32): void {
  // One copy of the loops per format, so no format test runs inside them.
  if (format == Q4_1) linearBlocks(Q4_1, w, x, sums, y, inDim, outDim, tokens, rowStart, rowEnd);
  else if (format == Q5_0) linearBlocks(Q5_0, w, x, sums, y, inDim, outDim, tokens, rowStart, rowEnd);
  else if (format == Q5_1) linearBlocks(Q5_1, w, x, sums, y, inDim, outDim, tokens, rowStart, rowEnd);
  else linearBlocks(IQ4_NL, w, x, sums, y, inDim, outDim, tokens, rowStart, rowEnd);
}

// Rows of a table in `format` for each id (int32 at ids), dequantized to float32 at out exactly as
// ggml's dequantize_row_* does: q·d (+ m), each product exact and the sum rounded once.
export function embedding_blocks32(format: i32, table: usize, ids: usize, out: usize, dim: i32, count: i32): void {
  if (format == Q4_1) embeddingBlocks(Q4_1, table, ids, out, dim, count);
  else if (format == Q5_0) embeddingBlocks(Q5_0, table, ids, out, dim, count);
  else if (format == Q5_1) embeddingBlocks(Q5_1, table, ids, out, dim, count);
  else embeddingBlocks(IQ4_NL, table, ids, out, dim, count);
}

@inline function embeddingBlocks(format: i32, table: usize, ids: usize, out: usize, dim: i32, count: i32): void {
  const blocks = dim >> 5;
  const blockBytes = blockBytesOf(format);
  const rowBytes = <usize>blocks * blockBytes;
  for (let t = 0; t < count; t++) {
    const row = table + <usize>load<i32>(ids + (<usize>t << 2)) * rowBytes;
    const dst = out + (<usize>t * dim << 2);
    for (let b = 0; b < blocks; b++) {
      const block = row + <usize>b * blockBytes;
      const d = f32x4.splat(scaleOf(block));
      const m = f32x4.splat(hasMin(format) ? minOf(block) : 0);
      const at = dst + (<usize>b << 7);
      for (let half = 0; half < 2; half++) {
        const codes = blockCodes(format, block, half == 1);
        for (let part = 0; part < 4; part++) {
          const scaled = f32x4.mul(codeFloats(codes, part), d);
          v128.store(at + (<usize>(half * 4 + part) << 4), hasMin(format) ? f32x4.add(scaled, m) : scaled);
        }
      }
    }
  }
}
