// Linear layers on AWQ/GPTQ int4 weights in INT4_G128 rows (src/formats/int4-rows.ts defines the
// bytes): row r is inDim / 128 groups of 68 bytes, each an f16 scale, a u8 zero, a pad byte and
// 64 bytes of codes, 16 per activation block of 32: byte j holds column j of the block in its
// low nibble and column 16 + j in its high nibble. w = (code − zero) · scale.
//
// The activations come quantized by quantize_activations (int8 codes x, a scale s_b and the code
// sum Σx per block of 32), so a group g of four blocks adds
//   scale_g · Σ_b s_b · (Σ code·x − zero_g · Σx)
// where both inner sums are exact integers.

import { halfToFloat, highNibbles, lowNibbles, ones16, STREAM_GAP, sum4, TOKEN_TILE } from './common';

const GROUP_BYTES: usize = 68;
const CODES: usize = 4;

// Σ code·x of one block as eight int16 lanes, from its first and last 16 codes (0..15): the
// unsigned 7-bit operand of relaxed_dot, the activations (−127..127) the signed one. Each lane is
// at most 2·15·127 per half and 4·15·127 = 7620 for both.
@inline function blockDot(low: v128, high: v128, x: usize): v128 {
  return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(x), low), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(x + 16), high));
}

@inline function lowCodes(packed: v128): v128 {
  return v128.and(packed, lowNibbles());
}

// [Σ a, Σ b, Σ c, Σ d] of four blocks' int16 lanes: two rounds of folding halves together in int16
// (lanes grow to 4 · 7620 = 30480, still under 2^15) before one widening dot, instead of widening
// each block and reducing int32 vectors.
@inline function blockSums(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i16x8.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
  const cd = i16x8.add(i32x4.shuffle(c, d, 0, 1, 4, 5), i32x4.shuffle(c, d, 2, 3, 6, 7));
  return i32x4.dot_i16x8_s(i16x8.add(i32x4.shuffle(ab, cd, 0, 2, 4, 6), i32x4.shuffle(ab, cd, 1, 3, 5, 7)), ones16());
}

// One group of one row for one token, one lane per activation block:
// scale · s_b · (Σ code·x − zero · Σx), from the group's codes unpacked (block b's first 16 codes
// in l_b, last 16 in h_b), its zero and scale splatted. `x` points at the group's 128 activation
// codes, `xScales4`/`xSums4` are its four blocks' scales and code sums.
@inline function groupTerm(l0: v128, h0: v128, l1: v128, h1: v128, l2: v128, h2: v128, l3: v128, h3: v128, zero: v128, scale: v128, x: usize, xScales4: v128, xSums4: v128): v128 {
  const dots = blockSums(blockDot(l0, h0, x), blockDot(l1, h1, x + 32), blockDot(l2, h2, x + 64), blockDot(l3, h3, x + 96));
  const centred = i32x4.sub(dots, i32x4.mul(zero, xSums4));
  return f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(centred), xScales4), scale);
}

// groupTerm of the group stored at `group`.
@inline function storedGroupTerm(group: usize, x: usize, xScales4: v128, xSums4: v128): v128 {
  const c0 = v128.load(group + CODES), c1 = v128.load(group + CODES + 16), c2 = v128.load(group + CODES + 32), c3 = v128.load(group + CODES + 48);
  return groupTerm(lowCodes(c0), highNibbles(c0), lowCodes(c1), highNibbles(c1), lowCodes(c2), highNibbles(c2), lowCodes(c3), highNibbles(c3),
    i32x4.splat(<i32>load<u8>(group + 2)), f32x4.splat(halfToFloat(<u32>load<u16>(group))), x, xScales4, xSums4);
}

// Decode: rows a, a + spacing, a + 2·spacing, a + 3·spacing for one token, as four streams.
@inline function fourRows(w: usize, rowBytes: usize, groups: i32, first: i32, spacing: i32, xq: usize, xScales: usize, xSums: usize, y: usize): void {
  const stride = <usize>spacing * rowBytes;
  const r0 = w + <usize>first * rowBytes, r1 = r0 + stride, r2 = r1 + stride, r3 = r2 + stride;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let g = 0; g < groups; g++) {
    const at = <usize>g * GROUP_BYTES;
    const x = xq + (<usize>g << 7);
    const scales4 = v128.load(xScales + (<usize>g << 4));
    const sums4 = v128.load(xSums + (<usize>g << 4));
    a0 = f32x4.add(a0, storedGroupTerm(r0 + at, x, scales4, sums4));
    a1 = f32x4.add(a1, storedGroupTerm(r1 + at, x, scales4, sums4));
    a2 = f32x4.add(a2, storedGroupTerm(r2 + at, x, scales4, sums4));
    a3 = f32x4.add(a3, storedGroupTerm(r3 + at, x, scales4, sums4));
  }
  const out = y + (<usize>first << 2), outStride = <usize>spacing << 2;
  store<f32>(out, sum4(a0));
  store<f32>(out + outStride, sum4(a1));
  store<f32>(out + 2 * outStride, sum4(a2));
  store<f32>(out + 3 * outStride, sum4(a3));
}

// One row for `count` (1..4) tokens: each group's codes are loaded and unpacked once for all of them.
@inline function rowTokens(row: usize, groups: i32, count: i32, xq: usize, xScales: usize, xSums: usize, y: usize, inDim: i32, outDim: i32): void {
  const blocks = inDim >> 5;
  const xStride = <usize>inDim, blockStride = <usize>blocks << 2, outStride = <usize>outDim << 2;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let g = 0; g < groups; g++) {
    const group = row + <usize>g * GROUP_BYTES;
    const c0 = v128.load(group + CODES), c1 = v128.load(group + CODES + 16), c2 = v128.load(group + CODES + 32), c3 = v128.load(group + CODES + 48);
    const l0 = lowCodes(c0), h0 = highNibbles(c0), l1 = lowCodes(c1), h1 = highNibbles(c1), l2 = lowCodes(c2), h2 = highNibbles(c2), l3 = lowCodes(c3), h3 = highNibbles(c3);
    const zero = i32x4.splat(<i32>load<u8>(group + 2)), scale = f32x4.splat(halfToFloat(<u32>load<u16>(group)));
    const x = xq + (<usize>g << 7);
    const s = xScales + (<usize>g << 4), n = xSums + (<usize>g << 4);
    a0 = f32x4.add(a0, groupTerm(l0, h0, l1, h1, l2, h2, l3, h3, zero, scale, x, v128.load(s), v128.load(n)));
    if (count > 1) a1 = f32x4.add(a1, groupTerm(l0, h0, l1, h1, l2, h2, l3, h3, zero, scale, x + xStride, v128.load(s + blockStride), v128.load(n + blockStride)));
    if (count > 2) a2 = f32x4.add(a2, groupTerm(l0, h0, l1, h1, l2, h2, l3, h3, zero, scale, x + 2 * xStride, v128.load(s + 2 * blockStride), v128.load(n + 2 * blockStride)));
    if (count > 3) a3 = f32x4.add(a3, groupTerm(l0, h0, l1, h1, l2, h2, l3, h3, zero, scale, x + 3 * xStride, v128.load(s + 3 * blockStride), v128.load(n + 3 * blockStride)));
  }
  store<f32>(y, sum4(a0));
  if (count > 1) store<f32>(y + outStride, sum4(a1));
  if (count > 2) store<f32>(y + 2 * outStride, sum4(a2));
  if (count > 3) store<f32>(y + 3 * outStride, sum4(a3));
}

// y[t · outDim + r] = Σ_c w[r, c] · x[t, c] for rows [rowStart, rowEnd) (any range) of INT4_G128
// weights at w (row r at w + r · rowBytes) and `tokens` rows of activations from
// quantize_activations. inDim must be a multiple of 128.
export function linear_int4(w: usize, xq: usize, xScales: usize, xSums: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32): void {
  const groups = inDim >> 7;
  const rowBytes = <usize>groups * GROUP_BYTES;
  let r = rowStart;
  if (tokens == 1) {
    const spacing = max(1, <i32>((STREAM_GAP + (rowBytes >> 1)) / rowBytes));
    for (; r + 4 * spacing <= rowEnd; r += 4 * spacing) {
      for (let i = 0; i < spacing; i++) fourRows(w, rowBytes, groups, r + i, spacing, xq, xScales, xSums, y);
    }
    for (; r + 4 <= rowEnd; r += 4) fourRows(w, rowBytes, groups, r, 1, xq, xScales, xSums, y);
  }
  const blocks = inDim >> 5;
  for (let tile = 0; tile < tokens; tile += TOKEN_TILE) {
    const tileEnd = min(tokens, tile + TOKEN_TILE);
    for (let row = r; row < rowEnd; row++) {
      for (let t = tile; t < tileEnd; t += 4) {
        rowTokens(w + <usize>row * rowBytes, groups, min(4, tileEnd - t), xq + <usize>t * inDim, xScales + (<usize>t * blocks << 2),
          xSums + (<usize>t * blocks << 2), y + ((<usize>t * outDim + row) << 2), inDim, outDim);
      }
    }
  }
}
