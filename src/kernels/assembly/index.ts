// herd's CPU kernels, in AssemblyScript with WASM SIMD (built by `npm run build:kernels`).
//
// Every pointer is a byte offset into this instance's linear memory; the JavaScript side
// (src/kernels/wasm-ops.ts) owns the layout. Matrices are row-major. Linear weights keep the
// nn.Linear layout [out, in], so each output row is one contiguous dot product, and a call
// computes only the rows [rowStart, rowEnd): that is how work is split across threads.

import { halfToFloat, halvesToFloats, highNibbles, lowNibbles, ones16, q4kMin, q4kScale, STREAM_GAP, sum4, TOKEN_TILE } from './common';

// ---------------------------------------------------------------------------------------------
// Linear layers on float weights: y[t, r] = Σ_k W[r, k] · x[t, k]
//
// Tokens are taken four at a time so each weight vector loaded serves four dot products
// (prefill); decode is the same loop with one token.

// Loads four weights starting at element k as a float vector, for each stored dtype.
@inline function loadF32(w: usize, k: i32): v128 {
  return v128.load(w + (<usize>k << 2));
}
@inline function loadF16(w: usize, k: i32): v128 {
  return halvesToFloats(v128.load64_zero(w + (<usize>k << 1)));
}
@inline function loadBF16(w: usize, k: i32): v128 {
  return i32x4.shl(i32x4.extend_low_i16x8_u(v128.load64_zero(w + (<usize>k << 1))), 16);
}
@inline function scalarF32(w: usize, k: i32): f32 {
  return load<f32>(w + (<usize>k << 2));
}
@inline function scalarF16(w: usize, k: i32): f32 {
  return halfToFloat(<u32>load<u16>(w + (<usize>k << 1)));
}
@inline function scalarBF16(w: usize, k: i32): f32 {
  return reinterpret<f32>((<u32>load<u16>(w + (<usize>k << 1))) << 16);
}

// The stored type as a type parameter, so each is compiled into its own loops (V8 would test a
// runtime dtype at every load): f32 = F32, u16 = F16, i16 = BF16. The exports take
// dtype 0 = F32, 1 = F16, 2 = BF16 (bytes per weight 4, 2, 2).
@inline function loadWeights<T>(w: usize, k: i32): v128 {
  return isFloat<T>() ? loadF32(w, k) : isSigned<T>() ? loadBF16(w, k) : loadF16(w, k);
}
@inline function scalarWeight<T>(w: usize, k: i32): f32 {
  return isFloat<T>() ? scalarF32(w, k) : isSigned<T>() ? scalarBF16(w, k) : scalarF16(w, k);
}

export function linear_float(dtype: i32, w: usize, x: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32): void {
  if (dtype == 0) linearFloat<f32>(w, x, y, inDim, outDim, tokens, rowStart, rowEnd);
  else if (dtype == 1) linearFloat<u16>(w, x, y, inDim, outDim, tokens, rowStart, rowEnd);
  else linearFloat<i16>(w, x, y, inDim, outDim, tokens, rowStart, rowEnd);
}

@inline function linearFloat<T>(w: usize, x: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32): void {
  const rowBytes = <usize>inDim * sizeof<T>();
  const xRow = <usize>inDim << 2;
  let first = rowStart;
  if (tokens == 1) {
    // Decode: four rows at a time, as four memory streams some 64 KiB apart (see decodeGroups).
    const spacing = max(1, <i32>((STREAM_GAP + (rowBytes >> 1)) / rowBytes));
    for (; first + 4 * spacing <= rowEnd; first += 4 * spacing) {
      for (let i = 0; i < spacing; i++) fourRowsDot<T>(w + <usize>(first + i) * rowBytes, <usize>spacing * rowBytes, x, inDim, y + (<usize>(first + i) << 2), <usize>spacing << 2);
    }
  }
  for (let tile = 0; tile < tokens; tile += TOKEN_TILE) {
    const tileEnd = min(tokens, tile + TOKEN_TILE);
    for (let r = first; r < rowEnd; r++) {
      const row = w + <usize>r * rowBytes;
      let t = tile;
      for (; t + 4 <= tileEnd; t += 4) rowTimesFourTokens<T>(row, x + <usize>t * xRow, xRow, y + (<usize>t * outDim + r) * 4, <usize>outDim << 2, inDim);
      // Decode (one token) and a tile's last few tokens: one dot product each.
      for (; t < tileEnd; t++) store<f32>(y + (<usize>t * outDim + r) * 4, rowDot<T>(row, x + <usize>t * xRow, inDim));
    }
  }
}

@inline function rowDot<T>(row: usize, x: usize, inDim: i32): f32 {
  // Two accumulators hide the latency of the adds.
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  const pairEnd = inDim & ~7;
  let k = 0;
  for (; k < pairEnd; k += 8) {
    a0 = f32x4.add(a0, f32x4.mul(loadWeights<T>(row, k), v128.load(x + (<usize>k << 2))));
    a1 = f32x4.add(a1, f32x4.mul(loadWeights<T>(row, k + 4), v128.load(x + (<usize>(k + 4) << 2))));
  }
  for (; k < (inDim & ~3); k += 4) a0 = f32x4.add(a0, f32x4.mul(loadWeights<T>(row, k), v128.load(x + (<usize>k << 2))));
  let sum = sum4(f32x4.add(a0, a1));
  for (; k < inDim; k++) sum += scalarWeight<T>(row, k) * load<f32>(x + (<usize>k << 2));
  return sum;
}

// Decode: rows row, row + stride, row + 2·stride, row + 3·stride against one token, each in its
// own vector accumulator (which also hides the adds' latency); outputs `outStride` bytes apart.
@inline function fourRowsDot<T>(row: usize, stride: usize, x: usize, inDim: i32, out: usize, outStride: usize): void {
  const r1 = row + stride, r2 = r1 + stride, r3 = r2 + stride;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const vectorEnd = inDim & ~3;
  for (let k = 0; k < vectorEnd; k += 4) {
    const xv = v128.load(x + (<usize>k << 2));
    a0 = f32x4.add(a0, f32x4.mul(loadWeights<T>(row, k), xv));
    a1 = f32x4.add(a1, f32x4.mul(loadWeights<T>(r1, k), xv));
    a2 = f32x4.add(a2, f32x4.mul(loadWeights<T>(r2, k), xv));
    a3 = f32x4.add(a3, f32x4.mul(loadWeights<T>(r3, k), xv));
  }
  let s0 = sum4(a0), s1 = sum4(a1), s2 = sum4(a2), s3 = sum4(a3);
  for (let k = vectorEnd; k < inDim; k++) {
    const xk = load<f32>(x + (<usize>k << 2));
    s0 += scalarWeight<T>(row, k) * xk;
    s1 += scalarWeight<T>(r1, k) * xk;
    s2 += scalarWeight<T>(r2, k) * xk;
    s3 += scalarWeight<T>(r3, k) * xk;
  }
  store<f32>(out, s0);
  store<f32>(out + outStride, s1);
  store<f32>(out + 2 * outStride, s2);
  store<f32>(out + 3 * outStride, s3);
}

// Prefill: four tokens share each weight vector loaded.
@inline function rowTimesFourTokens<T>(row: usize, x0: usize, xRow: usize, out: usize, outRow: usize, inDim: i32): void {
  const x1 = x0 + xRow, x2 = x1 + xRow, x3 = x2 + xRow;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const vectorEnd = inDim & ~3;
  for (let k = 0; k < vectorEnd; k += 4) {
    const wv = loadWeights<T>(row, k);
    const offset = <usize>k << 2;
    a0 = f32x4.add(a0, f32x4.mul(wv, v128.load(x0 + offset)));
    a1 = f32x4.add(a1, f32x4.mul(wv, v128.load(x1 + offset)));
    a2 = f32x4.add(a2, f32x4.mul(wv, v128.load(x2 + offset)));
    a3 = f32x4.add(a3, f32x4.mul(wv, v128.load(x3 + offset)));
  }
  let s0 = sum4(a0), s1 = sum4(a1), s2 = sum4(a2), s3 = sum4(a3);
  for (let k = vectorEnd; k < inDim; k++) {
    const wk = scalarWeight<T>(row, k);
    const offset = <usize>k << 2;
    s0 += wk * load<f32>(x0 + offset);
    s1 += wk * load<f32>(x1 + offset);
    s2 += wk * load<f32>(x2 + offset);
    s3 += wk * load<f32>(x3 + offset);
  }
  store<f32>(out, s0);
  store<f32>(out + outRow, s1);
  store<f32>(out + 2 * outRow, s2);
  store<f32>(out + 3 * outRow, s3);
}

// ---------------------------------------------------------------------------------------------
// Quantized linear layers in GGUF block layouts, as llama.cpp computes them: the activations are
// quantized to Q8_0 blocks (one float scale and 32 int8 per block), and each block's dot product
// is an exact integer sum scaled once by both block scales.

const BLOCK: i32 = 32;

// Quantizes `tokens` rows of `inDim` floats in Q8_0 blocks of 32, as llama.cpp's quantize_row_q8_0
// (scale = absmax / 127, q = round(x / scale)), and writes every form the weight kernels read:
//   q       int8 codes, same layout as x;
//   scales  one f32 per block;
//   sums    one i32 per block, Σ codes (the zero-point and min terms of 4-bit formats need it);
//   split   per block 32 bytes max(q, 0) then 32 bytes max(−q, 0): both halves fit the unsigned
//           7-bit operand of relaxed_dot, so a signed weight · signed activation product is
//           dot(w, positive part) − dot(w, negative part). Only Q8_0 reads it: 0 skips it.
export function quantize_activations(x: usize, q: usize, scales: usize, sums: usize, split: usize, inDim: i32, tokens: i32): void {
  const blocks = (inDim / BLOCK) * tokens;
  const zero = i8x16.splat(0);
  for (let b = 0; b < blocks; b++) {
    const src = x + (<usize>b * BLOCK << 2);
    let maxAbs = f32x4.splat(0);
    for (let i = 0; i < BLOCK; i += 4) maxAbs = f32x4.max(maxAbs, f32x4.abs(v128.load(src + (<usize>i << 2))));
    const amax = max(max(f32x4.extract_lane(maxAbs, 0), f32x4.extract_lane(maxAbs, 1)), max(f32x4.extract_lane(maxAbs, 2), f32x4.extract_lane(maxAbs, 3)));
    const scale: f32 = amax / 127;
    const inverse = f32x4.splat(scale != 0 ? 1 / scale : 0);
    store<f32>(scales + (<usize>b << 2), scale);
    const dst = q + <usize>b * BLOCK;
    const halves = split + (<usize>b << 6);
    let total = i32x4.splat(0);
    for (let i = 0; i < BLOCK; i += 16) {
      const at = src + (<usize>i << 2);
      const r0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(at), inverse)));
      const r1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(at + 16), inverse)));
      const r2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(at + 32), inverse)));
      const r3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(at + 48), inverse)));
      total = i32x4.add(total, i32x4.add(i32x4.add(r0, r1), i32x4.add(r2, r3)));
      const codes = i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(r0, r1), i16x8.narrow_i32x4_s(r2, r3));
      v128.store(dst + i, codes);
      if (split == 0) continue;
      v128.store(halves + i, i8x16.max_s(codes, zero));
      v128.store(halves + 32 + i, i8x16.max_s(i8x16.neg(codes), zero));
    }
    store<i32>(sums + (<usize>b << 2), i32x4.extract_lane(total, 0) + i32x4.extract_lane(total, 1) + i32x4.extract_lane(total, 2) + i32x4.extract_lane(total, 3));
  }
}

// Q8_0 and Q4_0 weights are kept in row groups: four output rows interleaved block by block, so
// one pass over a group computes four outputs from one sequential stream, and the four block
// scales come in one load. A group of `blocks` blocks holds
//   [blocks][4] f16 scales, then [blocks][4][codes of one block]
// (codes: 32 int8 for Q8_0; for Q4_0 16 bytes whose low nibbles are elements 0..15 and high nibbles
// 16..31, value = nibble − 8), which is exactly the bytes of the four GGUF rows it replaces: the
// same packed weights, reordered at load (repack_rows). A last group short of four rows is padded
// with zero rows.

const Q8_0: i32 = 8;
const Q4_0: i32 = 2;

@inline function blockBytesOf(format: i32): usize {
  return format == Q8_0 ? 34 : 18;
}
@inline function codeBytesOf(format: i32): usize {
  return format == Q8_0 ? 32 : 16;
}

// Reorders `groups` × 4 GGUF rows at src (contiguous, zero-filled past the last real row) into
// row groups at dst.
export function repack_rows(format: i32, src: usize, dst: usize, groups: i32, blocks: i32): void {
  const blockBytes = blockBytesOf(format);
  const codeBytes = codeBytesOf(format);
  const rowBytes = <usize>blocks * blockBytes;
  for (let g = 0; g < groups; g++) {
    const rows = src + <usize>g * 4 * rowBytes;
    const group = dst + <usize>g * 4 * rowBytes;
    const codes = group + (<usize>blocks << 3);
    for (let b = 0; b < blocks; b++) {
      for (let j = 0; j < 4; j++) {
        const block = rows + <usize>j * rowBytes + <usize>b * blockBytes;
        store<u16>(group + (<usize>b << 3) + (<usize>j << 1), load<u16>(block));
        memory.copy(codes + (<usize>b * 4 + j) * codeBytes, block + 2, codeBytes);
      }
    }
  }
}

// [Σ s0, Σ s1, Σ s2, Σ s3]: the lane sums of four rows' vectors, as one vector.
@inline function rowSums(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const u0 = i32x4.add(i32x4.shuffle(s0, s1, 0, 1, 4, 5), i32x4.shuffle(s0, s1, 2, 3, 6, 7));
  const u1 = i32x4.add(i32x4.shuffle(s2, s3, 0, 1, 4, 5), i32x4.shuffle(s2, s3, 2, 3, 6, 7));
  return i32x4.add(i32x4.shuffle(u0, u1, 0, 2, 4, 6), i32x4.shuffle(u0, u1, 1, 3, 5, 7));
}

// 16 int8 weights · 16 int8 activations given as their positive and negative parts (see
// quantize_activations), as eight int16 pair sums. Each dot's pairs are at most 2·127·127 in size
// and so is their exact difference, so the wrapping subtraction is exact.
@inline function signedDot(w: v128, positive: v128, negative: v128): v128 {
  return i16x8.sub(i16x8.relaxed_dot_i8x16_i7x16_s(w, positive), i16x8.relaxed_dot_i8x16_i7x16_s(w, negative));
}

// Σ w·x over one Q8_0 block of one row, as four int32 lanes: `first`/`second` are its 32 codes,
// p/n the block's activations split into positive and negative parts.
@inline function q8BlockDot(first: v128, second: v128, p0: v128, p1: v128, n0: v128, n1: v128): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(signedDot(first, p0, n0), ones16()), i32x4.dot_i16x8_s(signedDot(second, p1, n1), ones16()));
}

// Σ nibble·x over one Q4_0 block of one row (the −8 is applied per block from the activation sum):
// `low`/`high` are its 32 codes unpacked, the unsigned operand; pair sums are at most 2·15·127,
// two of them fit int16.
@inline function q4BlockDot(low: v128, high: v128, x0: v128, x1: v128): v128 {
  return i32x4.dot_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, low), i16x8.relaxed_dot_i8x16_i7x16_s(x1, high)), ones16());
}

// Block b of a row group for one token: the four rows' sums scaled by `weightScales` (the rows'
// block scales as floats) and the token's activation scale. c0..c7 are the rows' codes as
// vectors: for Q8_0 each row's two halves, for Q4_0 each row's low and high nibbles, unpacked
// once for every token that uses them. (q, scales, sums, split: the token's activations as
// quantize_activations wrote them.)
@inline function blockTerm<Codes>(c0: v128, c1: v128, c2: v128, c3: v128, c4: v128, c5: v128, c6: v128, c7: v128, weightScales: v128, b: i32, q: usize, scales: usize, sums: usize, split: usize): v128 {
  let dots: v128;
  if (isSigned<Codes>()) {
    const x = split + (<usize>b << 6);
    const p0 = v128.load(x), p1 = v128.load(x + 16), n0 = v128.load(x + 32), n1 = v128.load(x + 48);
    dots = rowSums(q8BlockDot(c0, c1, p0, p1, n0, n1), q8BlockDot(c2, c3, p0, p1, n0, n1), q8BlockDot(c4, c5, p0, p1, n0, n1), q8BlockDot(c6, c7, p0, p1, n0, n1));
  } else {
    const x0 = v128.load(q + (<usize>b << 5)), x1 = v128.load(q + (<usize>b << 5) + 16);
    const nibbles = rowSums(q4BlockDot(c0, c1, x0, x1), q4BlockDot(c2, c3, x0, x1), q4BlockDot(c4, c5, x0, x1), q4BlockDot(c6, c7, x0, x1));
    dots = i32x4.sub(nibbles, i32x4.splat(load<i32>(sums + (<usize>b << 2)) << 3));
  }
  return f32x4.mul(f32x4.convert_i32x4_s(dots), f32x4.mul(weightScales, f32x4.splat(load<f32>(scales + (<usize>b << 2)))));
}

// Code vector i (0..7) of block b of a row group whose codes start at `codes` (see blockTerm).
@inline function codeVector<Codes>(codes: usize, b: i32, i: i32): v128 {
  if (isSigned<Codes>()) return v128.load(codes + (<usize>b << 7) + (<usize>i << 4));
  const packed = v128.load(codes + (<usize>b << 6) + (<usize>(i >> 1) << 4));
  return (i & 1) == 0 ? v128.and(packed, lowNibbles()) : highNibbles(packed);
}

@inline function weightScalesOf(group: usize, b: i32): v128 {
  return halvesToFloats(v128.load64_zero(group + (<usize>b << 3)));
}

// One block of one row group for one token.
@inline function groupBlock<Codes>(group: usize, codes: usize, b: i32, q: usize, scales: usize, sums: usize, split: usize): v128 {
  return blockTerm<Codes>(codeVector<Codes>(codes, b, 0), codeVector<Codes>(codes, b, 1), codeVector<Codes>(codes, b, 2), codeVector<Codes>(codes, b, 3),
    codeVector<Codes>(codes, b, 4), codeVector<Codes>(codes, b, 5), codeVector<Codes>(codes, b, 6), codeVector<Codes>(codes, b, 7), weightScalesOf(group, b), b, q, scales, sums, split);
}

// Prefill: the four outputs of row group `group` for `count` (1..4) tokens from token pointer
// xq.. on, written at `out` with `outStride` bytes per token; each block's codes are loaded,
// unpacked and scaled once for all of them.
@inline function groupTokens<Codes>(group: usize, blocks: i32, count: i32, rows: i32, xq: usize, xScales: usize, xSums: usize, xSplit: usize, inDim: i32, out: usize, outStride: usize): void {
  const codes = group + (<usize>blocks << 3);
  const qStride = <usize>inDim, blockStride = <usize>blocks << 2, splitStride = <usize>blocks << 6;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let b = 0; b < blocks; b++) {
    const c0 = codeVector<Codes>(codes, b, 0), c1 = codeVector<Codes>(codes, b, 1), c2 = codeVector<Codes>(codes, b, 2), c3 = codeVector<Codes>(codes, b, 3);
    const c4 = codeVector<Codes>(codes, b, 4), c5 = codeVector<Codes>(codes, b, 5), c6 = codeVector<Codes>(codes, b, 6), c7 = codeVector<Codes>(codes, b, 7);
    const w = weightScalesOf(group, b);
    a0 = f32x4.add(a0, blockTerm<Codes>(c0, c1, c2, c3, c4, c5, c6, c7, w, b, xq, xScales, xSums, xSplit));
    if (count > 1) a1 = f32x4.add(a1, blockTerm<Codes>(c0, c1, c2, c3, c4, c5, c6, c7, w, b, xq + qStride, xScales + blockStride, xSums + blockStride, xSplit + splitStride));
    if (count > 2) a2 = f32x4.add(a2, blockTerm<Codes>(c0, c1, c2, c3, c4, c5, c6, c7, w, b, xq + 2 * qStride, xScales + 2 * blockStride, xSums + 2 * blockStride, xSplit + 2 * splitStride));
    if (count > 3) a3 = f32x4.add(a3, blockTerm<Codes>(c0, c1, c2, c3, c4, c5, c6, c7, w, b, xq + 3 * qStride, xScales + 3 * blockStride, xSums + 3 * blockStride, xSplit + 3 * splitStride));
  }
  storeLanes(out, a0, rows);
  if (count > 1) storeLanes(out + outStride, a1, rows);
  if (count > 2) storeLanes(out + 2 * outStride, a2, rows);
  if (count > 3) storeLanes(out + 3 * outStride, a3, rows);
}

// 32 outputs for one token: eight groups `spacing` groups apart (rows r, r + 4·spacing, …).
// Eight streams at once keep enough memory reads in flight to exceed what one stream reads (one
// stream reaches about half of it), and streams some 64 KiB apart suit the prefetchers best (measured).
@inline function eightGroupsDot<Codes>(group: usize, groupBytes: usize, spacing: i32, blocks: i32, xq: usize, xScales: usize, xSums: usize, xSplit: usize, out: usize): void {
  const codes = <usize>blocks << 3;
  const stride = <usize>spacing * groupBytes;
  const g1 = group + stride, g2 = g1 + stride, g3 = g2 + stride, g4 = g3 + stride, g5 = g4 + stride, g6 = g5 + stride, g7 = g6 + stride;
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0), acc2 = f32x4.splat(0), acc3 = f32x4.splat(0);
  let acc4 = f32x4.splat(0), acc5 = f32x4.splat(0), acc6 = f32x4.splat(0), acc7 = f32x4.splat(0);
  for (let b = 0; b < blocks; b++) {
    acc0 = f32x4.add(acc0, groupBlock<Codes>(group, group + codes, b, xq, xScales, xSums, xSplit));
    acc1 = f32x4.add(acc1, groupBlock<Codes>(g1, g1 + codes, b, xq, xScales, xSums, xSplit));
    acc2 = f32x4.add(acc2, groupBlock<Codes>(g2, g2 + codes, b, xq, xScales, xSums, xSplit));
    acc3 = f32x4.add(acc3, groupBlock<Codes>(g3, g3 + codes, b, xq, xScales, xSums, xSplit));
    acc4 = f32x4.add(acc4, groupBlock<Codes>(g4, g4 + codes, b, xq, xScales, xSums, xSplit));
    acc5 = f32x4.add(acc5, groupBlock<Codes>(g5, g5 + codes, b, xq, xScales, xSums, xSplit));
    acc6 = f32x4.add(acc6, groupBlock<Codes>(g6, g6 + codes, b, xq, xScales, xSums, xSplit));
    acc7 = f32x4.add(acc7, groupBlock<Codes>(g7, g7 + codes, b, xq, xScales, xSums, xSplit));
  }
  const outStride = <usize>spacing << 4;
  v128.store(out, acc0);
  v128.store(out + outStride, acc1);
  v128.store(out + 2 * outStride, acc2);
  v128.store(out + 3 * outStride, acc3);
  v128.store(out + 4 * outStride, acc4);
  v128.store(out + 5 * outStride, acc5);
  v128.store(out + 6 * outStride, acc6);
  v128.store(out + 7 * outStride, acc7);
}

// Decode: rows from rowStart in passes of 32 · spacing rows, then of 32; returns the first row left.
// Decoding: 32 rows a pass (eight groups, `spacing` apart) for each of `tokens` tokens (a batch
// of sequences decoding together, at most DECODE_BATCH). The first token streams the eight
// groups' weights from memory; the others find them still in the cache, so each weight is read
// from memory once per step whatever the batch, and every token's sums run in the same order as
// a lone token's (batching does not change its logits).
@inline function decodeGroups<Codes>(w: usize, groupBytes: usize, blocks: i32, inDim: i32, outDim: i32, tokens: i32, xq: usize, xScales: usize, xSums: usize, xSplit: usize, y: usize, rowStart: i32, rowEnd: i32): i32 {
  const spacing = max(1, <i32>((STREAM_GAP + (groupBytes >> 1)) / groupBytes));
  let r = rowStart;
  for (; r + 32 * spacing <= rowEnd; r += 32 * spacing) {
    for (let i = 0; i < spacing; i++) decodeEightGroups<Codes>(w, groupBytes, spacing, blocks, inDim, outDim, tokens, xq, xScales, xSums, xSplit, y, r + 4 * i);
  }
  for (; r + 32 <= rowEnd; r += 32) decodeEightGroups<Codes>(w, groupBytes, 1, blocks, inDim, outDim, tokens, xq, xScales, xSums, xSplit, y, r);
  return r;
}

// eightGroupsDot from row `first` for each token, the token's activations and outputs at their strides.
@inline function decodeEightGroups<Codes>(w: usize, groupBytes: usize, spacing: i32, blocks: i32, inDim: i32, outDim: i32, tokens: i32, xq: usize, xScales: usize, xSums: usize, xSplit: usize, y: usize, first: i32): void {
  const group = w + <usize>(first >> 2) * groupBytes;
  for (let t = 0; t < tokens; t++) {
    eightGroupsDot<Codes>(group, groupBytes, spacing, blocks, xq + <usize>t * inDim, xScales + (<usize>t * blocks << 2), xSums + (<usize>t * blocks << 2),
      xSplit + (<usize>t * blocks << 6), y + ((<usize>t * outDim + first) << 2));
  }
}

// Stores the first `count` lanes of v at out.
@inline function storeLanes(out: usize, v: v128, count: i32): void {
  if (count == 4) {
    v128.store(out, v);
    return;
  }
  store<f32>(out, f32x4.extract_lane(v, 0));
  if (count > 1) store<f32>(out + 4, f32x4.extract_lane(v, 1));
  if (count > 2) store<f32>(out + 8, f32x4.extract_lane(v, 2));
}

// Most tokens a linear layer runs the decoding way (decodeGroups): the sequences of a batch that
// decode together (the serving scheduler's continuous batching) rather than one prompt's tokens.
const DECODE_BATCH = 8;

// y[t, r] for Q8_0 (format 8) or Q4_0 (format 2) weights in row groups, rows [rowStart, rowEnd)
// with rowStart a multiple of 4; the activations come from quantize_activations. Decode (up to
// DECODE_BATCH tokens) takes 32 rows a pass (decodeGroups); prefill takes a group at a time and
// runs every token of a tile past it four at a time, while its weights are in the L1 cache.
export function linear_q(format: i32, w: usize, xq: usize, xScales: usize, xSums: usize, xSplit: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32): void {
  // One copy of the loops per format (Codes: i8 for Q8_0, u8 for Q4_0's nibbles), compiled
  // separately, so no format test runs inside them.
  if (format == Q8_0) rowsQ<i8>(w, xq, xScales, xSums, xSplit, y, inDim, outDim, tokens, rowStart, rowEnd);
  else rowsQ<u8>(w, xq, xScales, xSums, xSplit, y, inDim, outDim, tokens, rowStart, rowEnd);
}

@inline function rowsQ<Codes>(w: usize, xq: usize, xScales: usize, xSums: usize, xSplit: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32): void {
  const blocks = inDim >> 5;
  const groupBytes = <usize>blocks * 4 * blockBytesOf(isSigned<Codes>() ? Q8_0 : Q4_0);
  let r = rowStart;
  if (tokens <= DECODE_BATCH) r = decodeGroups<Codes>(w, groupBytes, blocks, inDim, outDim, tokens, xq, xScales, xSums, xSplit, y, rowStart, rowEnd);
  for (let tile = 0; tile < tokens; tile += TOKEN_TILE) {
    const tileEnd = min(tokens, tile + TOKEN_TILE);
    for (let row = r; row < rowEnd; row += 4) {
      const group = w + <usize>(row >> 2) * groupBytes;
      for (let t = tile; t < tileEnd; t += 4) {
        groupTokens<Codes>(group, blocks, min(4, tileEnd - t), min(4, rowEnd - row), xq + <usize>t * inDim, xScales + (<usize>t * blocks << 2),
          xSums + (<usize>t * blocks << 2), xSplit + (<usize>t * blocks << 6), inDim, y + ((<usize>t * outDim + row) << 2), <usize>outDim << 2);
      }
    }
  }
}

// Q4_K super-blocks of 256 weights (144 bytes): f16 d, f16 dmin, 12 bytes packing eight 6-bit
// scales and eight 6-bit mins, then 128 bytes of 4-bit codes; the 32 bytes of chunk c hold
// sub-block 2c in their low nibbles and 2c + 1 in their high nibbles. Sub-block j of 32 weights
// decodes as d·scale_j·q − dmin·min_j, so with Q8_0 activations (scale s_b, codes x) its dot
// product is s_b·(d·scale_j·Σq·x − dmin·min_j·Σx): two integer sums per sub-block.
//
// As for Q8_0, rows are kept in groups of four, and each group's super-block s is stored as
//   header (80 bytes): d[4] f16, dmin[4] f16, scale[8 sub-blocks][4 rows] u8, min[8][4] u8
//   codes (512 bytes): [4 chunks][4 rows][32 bytes], the rows' chunks as GGUF stores them
// so the four rows' scales of a sub-block come in one 4-byte load instead of twelve bit-field
// extractions per row. The 6-bit fields are unpacked at load, which costs 16 bytes per four
// super-blocks (+2.8 %).
const Q4K_BYTES: usize = 144;
const Q4K_GROUP_BYTES: usize = 592;
const Q4K_HEADER_BYTES: usize = 80;

// Reorders `groups` × 4 GGUF Q4_K rows at src into row groups at dst.
export function repack_q4k(src: usize, dst: usize, groups: i32, superBlocks: i32): void {
  const rowBytes = <usize>superBlocks * Q4K_BYTES;
  for (let g = 0; g < groups; g++) {
    for (let s = 0; s < superBlocks; s++) {
      const out = dst + (<usize>g * superBlocks + s) * Q4K_GROUP_BYTES;
      for (let r = 0; r < 4; r++) {
        const block = src + (<usize>g * 4 + r) * rowBytes + <usize>s * Q4K_BYTES;
        store<u16>(out + (<usize>r << 1), load<u16>(block));
        store<u16>(out + 8 + (<usize>r << 1), load<u16>(block + 2));
        for (let j = 0; j < 8; j++) {
          store<u8>(out + 16 + (<usize>j << 2) + r, q4kScale(block + 4, j));
          store<u8>(out + 48 + (<usize>j << 2) + r, q4kMin(block + 4, j));
        }
        for (let c = 0; c < 4; c++) memory.copy(out + Q4K_HEADER_BYTES + ((<usize>c * 4 + r) << 5), block + 16 + (<usize>c << 5), 32);
      }
    }
  }
}

// Four unsigned bytes → four floats.
@inline function bytesToFloats(at: usize): v128 {
  return f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(v128.load32_zero(at))));
}

// One super-block of a row group for one token: the four rows' contributions as a float vector.
@inline function q4kGroupSuperBlock(block: usize, s: i32, xq: usize, xScales: usize, xSums: usize): v128 {
  const codes = block + Q4K_HEADER_BYTES;
  let scaled = f32x4.splat(0), mins = f32x4.splat(0);
  for (let c = 0; c < 4; c++) {
    const b = (s << 3) + (c << 1); // activation block of sub-block 2c; 2c + 1 follows
    const x = xq + (<usize>b << 5);
    const xa0 = v128.load(x), xa1 = v128.load(x + 16), xb0 = v128.load(x + 32), xb1 = v128.load(x + 48);
    const chunk = codes + (<usize>c << 7);
    const l0 = v128.load(chunk), h0 = v128.load(chunk + 16), l1 = v128.load(chunk + 32), h1 = v128.load(chunk + 48);
    const l2 = v128.load(chunk + 64), h2 = v128.load(chunk + 80), l3 = v128.load(chunk + 96), h3 = v128.load(chunk + 112);
    const mask = lowNibbles();
    const even = rowSums(q4BlockDot(v128.and(l0, mask), v128.and(h0, mask), xa0, xa1), q4BlockDot(v128.and(l1, mask), v128.and(h1, mask), xa0, xa1),
      q4BlockDot(v128.and(l2, mask), v128.and(h2, mask), xa0, xa1), q4BlockDot(v128.and(l3, mask), v128.and(h3, mask), xa0, xa1));
    const odd = rowSums(q4BlockDot(highNibbles(l0), highNibbles(h0), xb0, xb1), q4BlockDot(highNibbles(l1), highNibbles(h1), xb0, xb1),
      q4BlockDot(highNibbles(l2), highNibbles(h2), xb0, xb1), q4BlockDot(highNibbles(l3), highNibbles(h3), xb0, xb1));
    const xScaleA = load<f32>(xScales + (<usize>b << 2)), xScaleB = load<f32>(xScales + (<usize>b << 2) + 4);
    const j = c << 1;
    scaled = f32x4.add(scaled, f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(even), bytesToFloats(block + 16 + (<usize>j << 2))), f32x4.splat(xScaleA)));
    scaled = f32x4.add(scaled, f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(odd), bytesToFloats(block + 20 + (<usize>j << 2))), f32x4.splat(xScaleB)));
    mins = f32x4.add(mins, f32x4.mul(bytesToFloats(block + 48 + (<usize>j << 2)), f32x4.splat(<f32>load<i32>(xSums + (<usize>b << 2)) * xScaleA)));
    mins = f32x4.add(mins, f32x4.mul(bytesToFloats(block + 52 + (<usize>j << 2)), f32x4.splat(<f32>load<i32>(xSums + (<usize>b << 2) + 4) * xScaleB)));
  }
  return f32x4.sub(f32x4.mul(halvesToFloats(v128.load64_zero(block)), scaled), f32x4.mul(halvesToFloats(v128.load64_zero(block + 8)), mins));
}

// Sixteen outputs for one token from four groups `spacing` groups apart, from row `first` on.
@inline function fourGroupsQ4K(w: usize, first: i32, groupBytes: usize, spacing: i32, superBlocks: i32, xq: usize, xScales: usize, xSums: usize, y: usize): void {
  const stride = <usize>spacing * groupBytes;
  const g0 = w + <usize>(first >> 2) * groupBytes, g1 = g0 + stride, g2 = g1 + stride, g3 = g2 + stride;
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0), acc2 = f32x4.splat(0), acc3 = f32x4.splat(0);
  for (let s = 0; s < superBlocks; s++) {
    const at = <usize>s * Q4K_GROUP_BYTES;
    acc0 = f32x4.add(acc0, q4kGroupSuperBlock(g0 + at, s, xq, xScales, xSums));
    acc1 = f32x4.add(acc1, q4kGroupSuperBlock(g1 + at, s, xq, xScales, xSums));
    acc2 = f32x4.add(acc2, q4kGroupSuperBlock(g2 + at, s, xq, xScales, xSums));
    acc3 = f32x4.add(acc3, q4kGroupSuperBlock(g3 + at, s, xq, xScales, xSums));
  }
  const out = y + (<usize>first << 2), outStride = <usize>spacing << 4;
  v128.store(out, acc0);
  v128.store(out + outStride, acc1);
  v128.store(out + 2 * outStride, acc2);
  v128.store(out + 3 * outStride, acc3);
}

// y[t, r] for Q4_K weights in row groups, rows [rowStart, rowEnd) with rowStart a multiple of 4;
// activations from quantize_activations. Decode takes four groups at once, `spacing` groups
// apart, as four memory streams (see eightGroupsDot).
export function linear_q4k(w: usize, xq: usize, xScales: usize, xSums: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32): void {
  const superBlocks = inDim >> 8;
  const groupBytes = <usize>superBlocks * Q4K_GROUP_BYTES;
  let r = rowStart;
  if (tokens == 1) {
    const spacing = max(1, <i32>((STREAM_GAP + (groupBytes >> 1)) / groupBytes));
    for (; r + 16 * spacing <= rowEnd; r += 16 * spacing) {
      for (let i = 0; i < spacing; i++) fourGroupsQ4K(w, r + 4 * i, groupBytes, spacing, superBlocks, xq, xScales, xSums, y);
    }
    for (; r + 16 <= rowEnd; r += 16) fourGroupsQ4K(w, r, groupBytes, 1, superBlocks, xq, xScales, xSums, y);
  }
  for (; r < rowEnd; r += 4) {
    const group = w + <usize>(r >> 2) * groupBytes;
    for (let t = 0; t < tokens; t++) {
      const blocks = inDim >> 5;
      let acc = f32x4.splat(0);
      for (let s = 0; s < superBlocks; s++) {
        acc = f32x4.add(acc, q4kGroupSuperBlock(group + <usize>s * Q4K_GROUP_BYTES, s, xq + <usize>t * inDim, xScales + (<usize>t * blocks << 2), xSums + (<usize>t * blocks << 2)));
      }
      storeLanes(y + ((<usize>t * outDim + r) << 2), acc, min(4, rowEnd - r));
    }
  }
}

// Rows of a Q4_K table in row groups for each id, dequantized.
export function embedding_q4k(table: usize, ids: usize, out: usize, dim: i32, count: i32): void {
  const superBlocks = dim >> 8;
  for (let t = 0; t < count; t++) {
    const id = load<i32>(ids + (<usize>t << 2));
    const lane = <usize>(id & 3);
    const group = table + <usize>(id >> 2) * superBlocks * Q4K_GROUP_BYTES;
    const dst = out + (<usize>t * dim << 2);
    for (let s = 0; s < superBlocks; s++) {
      const block = group + <usize>s * Q4K_GROUP_BYTES;
      const d = halfToFloat(<u32>load<u16>(block + (lane << 1)));
      const dmin = halfToFloat(<u32>load<u16>(block + 8 + (lane << 1)));
      for (let j = 0; j < 8; j++) {
        const scale = d * <f32>load<u8>(block + 16 + (<usize>j << 2) + lane);
        const minimum = dmin * <f32>load<u8>(block + 48 + (<usize>j << 2) + lane);
        const chunk = block + Q4K_HEADER_BYTES + ((<usize>(j >> 1) * 4 + lane) << 5);
        for (let l = 0; l < 32; l++) {
          const byte = <i32>load<u8>(chunk + l);
          const q = (j & 1) == 0 ? byte & 15 : byte >> 4;
          store<f32>(dst + ((<usize>(s << 8) + (j << 5) + l) << 2), scale * <f32>q - minimum);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The rest of a Llama layer, in float32.

// y = x / sqrt(mean(x²) + eps) · w, per row.
export function rmsnorm(x: usize, w: usize, y: usize, dim: i32, rows: i32, eps: f32): void {
  const vectorEnd = dim & ~3;
  for (let t = 0; t < rows; t++) {
    const row = x + (<usize>t * dim << 2);
    const out = y + (<usize>t * dim << 2);
    let squares = f32x4.splat(0);
    for (let k = 0; k < vectorEnd; k += 4) {
      const v = v128.load(row + (<usize>k << 2));
      squares = f32x4.add(squares, f32x4.mul(v, v));
    }
    let total = sum4(squares);
    for (let k = vectorEnd; k < dim; k++) total += load<f32>(row + (<usize>k << 2)) * load<f32>(row + (<usize>k << 2));
    const inverse = f32x4.splat(1 / Mathf.sqrt(total / <f32>dim + eps));
    for (let k = 0; k < vectorEnd; k += 4) {
      const offset = <usize>k << 2;
      v128.store(out + offset, f32x4.mul(f32x4.mul(v128.load(row + offset), inverse), v128.load(w + offset)));
    }
    for (let k = vectorEnd; k < dim; k++) {
      const offset = <usize>k << 2;
      store<f32>(out + offset, load<f32>(row + offset) * f32x4.extract_lane(inverse, 0) * load<f32>(w + offset));
    }
  }
}

// In place on x [rows, heads · headDim]: rotate_half RoPE with one cos/sin row per row of x.
export function rope(x: usize, cos: usize, sin: usize, rows: i32, heads: i32, headDim: i32): void {
  const half = headDim >> 1;
  for (let t = 0; t < rows; t++) {
    const c = cos + (<usize>t * headDim << 2);
    const s = sin + (<usize>t * headDim << 2);
    for (let h = 0; h < heads; h++) {
      const head = x + ((<usize>t * heads + h) * headDim << 2);
      for (let i = 0; i < half; i++) {
        const first = load<f32>(head + (<usize>i << 2));
        const second = load<f32>(head + (<usize>(i + half) << 2));
        store<f32>(head + (<usize>i << 2), first * load<f32>(c + (<usize>i << 2)) - second * load<f32>(s + (<usize>i << 2)));
        store<f32>(head + (<usize>(i + half) << 2), second * load<f32>(c + (<usize>(i + half) << 2)) + first * load<f32>(s + (<usize>(i + half) << 2)));
      }
    }
  }
}

// float → IEEE half, rounding to nearest even (for the F16 KV cache).
@inline function floatToHalf(value: f32): u32 {
  const bits = reinterpret<u32>(value);
  const sign = (bits >> 16) & 0x8000;
  const exponent = <i32>((bits >> 23) & 0xff) - 112; // rebias 127 → 15
  let mantissa = bits & 0x7fffff;
  if (exponent >= 31) return sign | 0x7c00;
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    mantissa |= 0x800000;
    return sign | roundShift(mantissa, <u32>(14 - exponent));
  }
  // A carry out of the mantissa correctly bumps the exponent.
  return sign | ((<u32>exponent << 10) + roundShift(mantissa, 13));
}

@inline function roundShift(value: u32, shift: u32): u32 {
  const half: u32 = 1 << (shift - 1);
  const remainder = value & ((1 << shift) - 1);
  let result = value >> shift;
  if (remainder > half || (remainder == half && (result & 1) != 0)) result++;
  return result;
}

// Copies k or v rows [rows, kvHeads · headDim] (float32) into the cache [kvHeads, capacity, headDim]
// at positions start.., stored as F32 (kvDtype 0) or F16 (kvDtype 1).
export function cache_write(kvDtype: i32, src: usize, cache: usize, rows: i32, start: i32, kvHeads: i32, headDim: i32, capacity: i32): void {
  const rowBytes = <usize>headDim << (kvDtype == 0 ? 2 : 1);
  for (let t = 0; t < rows; t++) {
    for (let g = 0; g < kvHeads; g++) {
      const from = src + ((<usize>t * kvHeads + g) * headDim << 2);
      const to = cache + (<usize>g * capacity + start + t) * rowBytes;
      if (kvDtype == 0) memory.copy(to, from, rowBytes);
      else for (let i = 0; i < headDim; i++) store<u16>(to + (<usize>i << 1), <u16>floatToHalf(load<f32>(from + (<usize>i << 2))));
    }
  }
}

// Causal grouped-query attention of q [rows, heads · headDim] at positions start.. over the
// cache (kvDtype as cache_write); `scores` is scratch for (heads / kvHeads) · (start + rows)
// floats. The query heads that share a kv head (h / group) are taken together, so each cached
// key and value row is read from memory once per group instead of once per head.
export function attention(kvDtype: i32, q: usize, keys: usize, values: usize, out: usize, scores: usize, rows: i32, start: i32, heads: i32, kvHeads: i32, headDim: i32, capacity: i32): void {
  if (kvDtype == 0) attentionOver<f32>(q, keys, values, out, scores, rows, start, heads, kvHeads, headDim, capacity);
  else attentionOver<u16>(q, keys, values, out, scores, rows, start, heads, kvHeads, headDim, capacity);
}

// attention on a cache stored as T (f32 or u16 = F16).
@inline function attentionOver<T>(q: usize, keys: usize, values: usize, out: usize, scores: usize, rows: i32, start: i32, heads: i32, kvHeads: i32, headDim: i32, capacity: i32): void {
  const group = heads / kvHeads;
  const scale: f32 = 1 / Mathf.sqrt(<f32>headDim);
  const headBytes = <usize>headDim << 2;
  const cacheRowBytes = <usize>headDim * sizeof<T>();
  for (let t = 0; t < rows; t++) {
    const visible = start + t + 1;
    const headScores = <usize>visible << 2;
    for (let g = 0; g < kvHeads; g++) {
      const firstHead = g * group;
      const keyBase = keys + <usize>g * capacity * cacheRowBytes;
      const valueBase = values + <usize>g * capacity * cacheRowBytes;
      for (let i = 0; i < group; i++) {
        const query = q + (<usize>t * heads + firstHead + i) * headBytes;
        const weights = scores + <usize>i * headScores;
        // Four keys at a time share one reduction (fourRowsDot); the group's keys stay in cache for its next head.
        let p = 0;
        for (; p + 4 <= visible; p += 4) fourRowsDot<T>(keyBase + <usize>p * cacheRowBytes, cacheRowBytes, query, headDim, weights + (<usize>p << 2), 4);
        for (; p < visible; p++) store<f32>(weights + (<usize>p << 2), rowDot<T>(keyBase + <usize>p * cacheRowBytes, query, headDim));
        softmaxInPlace(weights, visible, scale);
        weightedValues<T>(out + (<usize>t * heads + firstHead + i) * headBytes, valueBase, cacheRowBytes, weights, visible, headDim);
      }
    }
  }
}

// Softmax of `count` floats at x times `scale`, in place, four at a time (exp4).
@inline function softmaxInPlace(x: usize, count: i32, scale: f32): void {
  const vectorEnd = count & ~3;
  let maximum: f32 = -Infinity;
  for (let p = 0; p < count; p++) maximum = max(maximum, load<f32>(x + (<usize>p << 2)));
  const shift = f32x4.splat(maximum);
  const scales = f32x4.splat(scale);
  let totals = f32x4.splat(0);
  for (let p = 0; p < vectorEnd; p += 4) {
    const at = x + (<usize>p << 2);
    const weights = exp4(f32x4.mul(f32x4.sub(v128.load(at), shift), scales));
    v128.store(at, weights);
    totals = f32x4.add(totals, weights);
  }
  let total = sum4(totals);
  for (let p = vectorEnd; p < count; p++) {
    const weight = Mathf.exp((load<f32>(x + (<usize>p << 2)) - maximum) * scale);
    store<f32>(x + (<usize>p << 2), weight);
    total += weight;
  }
  const inverse = f32x4.splat(1 / total);
  for (let p = 0; p < vectorEnd; p += 4) v128.store(x + (<usize>p << 2), f32x4.mul(v128.load(x + (<usize>p << 2)), inverse));
  for (let p = vectorEnd; p < count; p++) store<f32>(x + (<usize>p << 2), load<f32>(x + (<usize>p << 2)) * f32x4.extract_lane(inverse, 0));
}

// result[0..headDim) = Σ_p weights[p] · row p of the values (rows stored as T, `rowBytes` apart),
// 32 dimensions at a time in eight vector accumulators; what is left of headDim one row at a time.
@inline function weightedValues<T>(result: usize, values: usize, rowBytes: usize, weights: usize, count: i32, headDim: i32): void {
  let d = 0;
  for (; d + 32 <= headDim; d += 32) {
    let v0 = f32x4.splat(0), v1 = f32x4.splat(0), v2 = f32x4.splat(0), v3 = f32x4.splat(0);
    let v4 = f32x4.splat(0), v5 = f32x4.splat(0), v6 = f32x4.splat(0), v7 = f32x4.splat(0);
    for (let p = 0; p < count; p++) {
      const w = v128.load32_splat(weights + (<usize>p << 2));
      const row = values + <usize>p * rowBytes;
      v0 = f32x4.add(v0, f32x4.mul(w, loadWeights<T>(row, d)));
      v1 = f32x4.add(v1, f32x4.mul(w, loadWeights<T>(row, d + 4)));
      v2 = f32x4.add(v2, f32x4.mul(w, loadWeights<T>(row, d + 8)));
      v3 = f32x4.add(v3, f32x4.mul(w, loadWeights<T>(row, d + 12)));
      v4 = f32x4.add(v4, f32x4.mul(w, loadWeights<T>(row, d + 16)));
      v5 = f32x4.add(v5, f32x4.mul(w, loadWeights<T>(row, d + 20)));
      v6 = f32x4.add(v6, f32x4.mul(w, loadWeights<T>(row, d + 24)));
      v7 = f32x4.add(v7, f32x4.mul(w, loadWeights<T>(row, d + 28)));
    }
    const at = result + (<usize>d << 2);
    v128.store(at, v0);
    v128.store(at + 16, v1);
    v128.store(at + 32, v2);
    v128.store(at + 48, v3);
    v128.store(at + 64, v4);
    v128.store(at + 80, v5);
    v128.store(at + 96, v6);
    v128.store(at + 112, v7);
  }
  if (d == headDim) return;
  memory.fill(result + (<usize>d << 2), 0, <usize>(headDim - d) << 2);
  for (let p = 0; p < count; p++) {
    const weight = load<f32>(weights + (<usize>p << 2));
    const row = values + <usize>p * rowBytes;
    for (let k = d; k < headDim; k++) {
      const at = result + (<usize>k << 2);
      store<f32>(at, load<f32>(at) + weight * scalarWeight<T>(row, k));
    }
  }
}

// out = silu(gate) · up = gate / (1 + e^−gate) · up, four at a time (a scalar exp per element
// cost more than the rest of a decoded layer's non-matrix work together).
export function swiglu(gate: usize, up: usize, out: usize, n: i32): void {
  const vectorEnd = n & ~3;
  for (let i = 0; i < vectorEnd; i += 4) {
    const at = <usize>i << 2;
    const g = v128.load(gate + at);
    const silu = f32x4.div(g, f32x4.add(f32x4.splat(1), exp4(f32x4.neg(g))));
    v128.store(out + at, f32x4.mul(silu, v128.load(up + at)));
  }
  for (let i = vectorEnd; i < n; i++) {
    const at = <usize>i << 2;
    const g = load<f32>(gate + at);
    store<f32>(out + at, (g / (1 + Mathf.exp(-g))) * load<f32>(up + at));
  }
}

// e^x for four floats, as Cephes' expf: x = n·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 in two parts for
// an exact reduction), e^r by its degree-7 Taylor-like polynomial, then 2^n through the exponent
// bits. Within 2 ulp of e^x; x is clamped to 88.3, where float32 e^x ends, and results under the
// smallest normal float are 0.
const EXP_CONSTANTS = memory.data(48, 16);
store<f32>(EXP_CONSTANTS, 1.9875691500e-4);
store<f32>(EXP_CONSTANTS + 4, 1.3981999507e-3);
store<f32>(EXP_CONSTANTS + 8, 8.3334519073e-3);
store<f32>(EXP_CONSTANTS + 12, 4.1665795894e-2);
store<f32>(EXP_CONSTANTS + 16, 1.6666665459e-1);
store<f32>(EXP_CONSTANTS + 20, 5.0000001201e-1);
store<f32>(EXP_CONSTANTS + 24, 1.44269504088896341); // log2 e
store<f32>(EXP_CONSTANTS + 28, 0.693359375); // ln 2, high part
store<f32>(EXP_CONSTANTS + 32, -2.12194440e-4); // ln 2, low part
store<f32>(EXP_CONSTANTS + 36, 88.3762626647949);
store<f32>(EXP_CONSTANTS + 40, -87.3365447505531); // ln of the smallest normal float
@inline function expConstant(i: i32): v128 {
  return v128.load32_splat(EXP_CONSTANTS + (<usize>i << 2));
}

@inline function exp4(value: v128): v128 {
  const limit = expConstant(9);
  const x = f32x4.max(f32x4.min(value, limit), f32x4.neg(limit));
  const n = f32x4.nearest(f32x4.mul(x, expConstant(6)));
  const r = f32x4.sub(f32x4.sub(x, f32x4.mul(n, expConstant(7))), f32x4.mul(n, expConstant(8)));
  let p = expConstant(0);
  for (let i = 1; i < 6; i++) p = f32x4.add(f32x4.mul(p, r), expConstant(i));
  const er = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), f32x4.splat(1));
  // 2^n: n + 127 in the exponent field. At n = 128 (x near 88.7 after rounding) split in two halves.
  const ni = i32x4.trunc_sat_f32x4_s(n);
  const half = i32x4.shr_s(ni, 1);
  const twoHalf = i32x4.shl(i32x4.add(half, i32x4.splat(127)), 23);
  const twoRest = i32x4.shl(i32x4.add(i32x4.sub(ni, half), i32x4.splat(127)), 23);
  // Below the smallest normal float the result is 0, not a subnormal: x86 takes a microcode
  // assist of about a hundred cycles for each subnormal operand, and a softmax over a long
  // context feeds thousands of such weights into its weighted sum (measured: 10× slower attention).
  const tiny = f32x4.lt(value, expConstant(10));
  return v128.andnot(f32x4.mul(f32x4.mul(er, twoHalf), twoRest), tiny);
}

export function add(a: usize, b: usize, out: usize, n: i32): void {
  const vectorEnd = n & ~3;
  for (let i = 0; i < vectorEnd; i += 4) {
    const at = <usize>i << 2;
    v128.store(out + at, f32x4.add(v128.load(a + at), v128.load(b + at)));
  }
  for (let i = vectorEnd; i < n; i++) {
    const at = <usize>i << 2;
    store<f32>(out + at, load<f32>(a + at) + load<f32>(b + at));
  }
}

// Rows of a float table (dtype as linear_float) for each id, as float32.
export function embedding_float(dtype: i32, table: usize, ids: usize, out: usize, dim: i32, count: i32): void {
  if (dtype == 0) embeddingFloat<f32>(table, ids, out, dim, count);
  else if (dtype == 1) embeddingFloat<u16>(table, ids, out, dim, count);
  else embeddingFloat<i16>(table, ids, out, dim, count);
}

@inline function embeddingFloat<T>(table: usize, ids: usize, out: usize, dim: i32, count: i32): void {
  const rowBytes = <usize>dim * sizeof<T>();
  for (let t = 0; t < count; t++) {
    const row = table + <usize>load<i32>(ids + (<usize>t << 2)) * rowBytes;
    const dst = out + (<usize>t * dim << 2);
    for (let k = 0; k < dim; k++) store<f32>(dst + (<usize>k << 2), scalarWeight<T>(row, k));
  }
}

// Rows of a Q8_0 or Q4_0 table in row groups (see repack_rows) for each id, dequantized.
export function embedding_q(format: i32, table: usize, ids: usize, out: usize, dim: i32, count: i32): void {
  const blocks = dim / BLOCK;
  const codeBytes = codeBytesOf(format);
  const groupBytes = <usize>blocks * 4 * blockBytesOf(format);
  for (let t = 0; t < count; t++) {
    const id = load<i32>(ids + (<usize>t << 2));
    const group = table + <usize>(id >> 2) * groupBytes;
    const lane = <usize>(id & 3);
    const dst = out + (<usize>t * dim << 2);
    for (let b = 0; b < blocks; b++) {
      const scale = halfToFloat(<u32>load<u16>(group + (<usize>b << 3) + (lane << 1)));
      const codes = group + (<usize>blocks << 3) + (<usize>b * 4 + lane) * codeBytes;
      for (let i = 0; i < BLOCK; i++) {
        let value: i32;
        if (format == Q8_0) value = <i32>load<i8>(codes + i);
        else {
          const byte = <i32>load<u8>(codes + (i & 15));
          value = (i < 16 ? byte & 15 : byte >> 4) - 8;
        }
        store<f32>(dst + ((<usize>b * BLOCK + i) << 2), <f32>value * scale);
      }
    }
  }
}

// Reads `bytes` bytes from `start` (a multiple of 512) as fast as loads go, as eight streams, the
// way the decode kernels read weights, and returns a sum so the reads cannot be optimised away:
// the read-bandwidth probe of `herd bench --bandwidth`.
export function read_sum(start: usize, bytes: usize): f32 {
  let a = f32x4.splat(0), b = f32x4.splat(0), c = f32x4.splat(0), d = f32x4.splat(0);
  const part = bytes >> 3;
  const end = start + part;
  for (let p = start; p < end; p += 32) {
    a = f32x4.add(a, f32x4.add(v128.load(p), v128.load(p + 16)));
    b = f32x4.add(b, f32x4.add(v128.load(p + part), v128.load(p + part + 16)));
    c = f32x4.add(c, f32x4.add(v128.load(p + 2 * part), v128.load(p + 2 * part + 16)));
    d = f32x4.add(d, f32x4.add(v128.load(p + 3 * part), v128.load(p + 3 * part + 16)));
    a = f32x4.add(a, f32x4.add(v128.load(p + 4 * part), v128.load(p + 4 * part + 16)));
    b = f32x4.add(b, f32x4.add(v128.load(p + 5 * part), v128.load(p + 5 * part + 16)));
    c = f32x4.add(c, f32x4.add(v128.load(p + 6 * part), v128.load(p + 6 * part + 16)));
    d = f32x4.add(d, f32x4.add(v128.load(p + 7 * part), v128.load(p + 7 * part + 16)));
  }
  return sum4(f32x4.add(f32x4.add(a, b), f32x4.add(c, d)));
}

export * from './int4';
export * from './blocks32';
export * from './kquants';
