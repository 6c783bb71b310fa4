// herd's CPU kernels, in AssemblyScript with WASM SIMD (built by `npm run build:kernels`).
//
// Every pointer is a byte offset into this instance's linear memory; the JavaScript side
// (src/kernels/wasm-ops.ts) owns the layout. Matrices are row-major. Linear weights keep the
// nn.Linear layout [out, in], so each output row is one contiguous dot product, and a call
// computes only the rows [rowStart, rowEnd): that is how work is split across threads.

// ---------------------------------------------------------------------------------------------
// Small helpers

@inline function sum4(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

// IEEE half → float: shifting the 15 magnitude bits into a float's place and multiplying by
// 2^112 rebiases the exponent; subnormal halves come out exact too. (No Inf/NaN in weights.)
const HALF_TO_FLOAT_SCALE: f32 = reinterpret<f32>(0x77800000); // 2^112

@inline function halfToFloat(h: u32): f32 {
  const magnitude = reinterpret<f32>((h & 0x7fff) << 13) * HALF_TO_FLOAT_SCALE;
  return reinterpret<f32>(reinterpret<u32>(magnitude) | ((h & 0x8000) << 16));
}

// Four halves (the low 64 bits of `packed`) → four floats.
@inline function halvesToFloats(packed: v128): v128 {
  const widened = i32x4.extend_low_i16x8_u(packed);
  const magnitude = f32x4.mul(i32x4.shl(v128.and(widened, i32x4.splat(0x7fff)), 13), f32x4.splat(HALF_TO_FLOAT_SCALE));
  return v128.or(magnitude, i32x4.shl(v128.and(widened, i32x4.splat(0x8000)), 16));
}

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

// dtype: 0 = F32, 1 = F16, 2 = BF16 (bytes per weight 4, 2, 2)
@inline function loadWeights(dtype: i32, w: usize, k: i32): v128 {
  return dtype == 0 ? loadF32(w, k) : dtype == 1 ? loadF16(w, k) : loadBF16(w, k);
}
@inline function scalarWeight(dtype: i32, w: usize, k: i32): f32 {
  return dtype == 0 ? scalarF32(w, k) : dtype == 1 ? scalarF16(w, k) : scalarBF16(w, k);
}

// Prefill takes tokens in tiles: a tile's activations stay in cache while every row of the
// weights streams past once, instead of once per token.
const TOKEN_TILE: i32 = 32;

export function linear_float(dtype: i32, w: usize, x: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32): void {
  const rowBytes = <usize>inDim << (dtype == 0 ? 2 : 1);
  const xRow = <usize>inDim << 2;
  for (let tile = 0; tile < tokens; tile += TOKEN_TILE) {
    const tileEnd = min(tokens, tile + TOKEN_TILE);
    for (let r = rowStart; r < rowEnd; r++) {
      const row = w + <usize>r * rowBytes;
      let t = tile;
      for (; t + 4 <= tileEnd; t += 4) rowTimesFourTokens(dtype, row, x + <usize>t * xRow, xRow, y + (<usize>t * outDim + r) * 4, <usize>outDim << 2, inDim);
      // Decode (one token) and a tile's last few tokens: one dot product each.
      for (; t < tileEnd; t++) store<f32>(y + (<usize>t * outDim + r) * 4, rowDot(dtype, row, x + <usize>t * xRow, inDim));
    }
  }
}

@inline function rowDot(dtype: i32, row: usize, x: usize, inDim: i32): f32 {
  // Two accumulators hide the latency of the adds.
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  const pairEnd = inDim & ~7;
  let k = 0;
  for (; k < pairEnd; k += 8) {
    a0 = f32x4.add(a0, f32x4.mul(loadWeights(dtype, row, k), v128.load(x + (<usize>k << 2))));
    a1 = f32x4.add(a1, f32x4.mul(loadWeights(dtype, row, k + 4), v128.load(x + (<usize>(k + 4) << 2))));
  }
  for (; k < (inDim & ~3); k += 4) a0 = f32x4.add(a0, f32x4.mul(loadWeights(dtype, row, k), v128.load(x + (<usize>k << 2))));
  let sum = sum4(f32x4.add(a0, a1));
  for (; k < inDim; k++) sum += scalarWeight(dtype, row, k) * load<f32>(x + (<usize>k << 2));
  return sum;
}

// Prefill: four tokens share each weight vector loaded.
@inline function rowTimesFourTokens(dtype: i32, row: usize, x0: usize, xRow: usize, out: usize, outRow: usize, inDim: i32): void {
  const x1 = x0 + xRow, x2 = x1 + xRow, x3 = x2 + xRow;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const vectorEnd = inDim & ~3;
  for (let k = 0; k < vectorEnd; k += 4) {
    const wv = loadWeights(dtype, row, k);
    const offset = <usize>k << 2;
    a0 = f32x4.add(a0, f32x4.mul(wv, v128.load(x0 + offset)));
    a1 = f32x4.add(a1, f32x4.mul(wv, v128.load(x1 + offset)));
    a2 = f32x4.add(a2, f32x4.mul(wv, v128.load(x2 + offset)));
    a3 = f32x4.add(a3, f32x4.mul(wv, v128.load(x3 + offset)));
  }
  let s0 = sum4(a0), s1 = sum4(a1), s2 = sum4(a2), s3 = sum4(a3);
  for (let k = vectorEnd; k < inDim; k++) {
    const wk = scalarWeight(dtype, row, k);
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

// Quantizes `tokens` rows of `inDim` floats into q (int8, same layout) and scales (one f32 per
// block of 32): scale = absmax / 127, q = round(x / scale), as llama.cpp's quantize_row_q8_0.
export function quantize_q8_rows(x: usize, q: usize, scales: usize, inDim: i32, tokens: i32): void {
  const blocks = (inDim / BLOCK) * tokens;
  for (let b = 0; b < blocks; b++) {
    const src = x + (<usize>b * BLOCK << 2);
    let maxAbs = f32x4.splat(0);
    for (let i = 0; i < BLOCK; i += 4) maxAbs = f32x4.max(maxAbs, f32x4.abs(v128.load(src + (<usize>i << 2))));
    const amax = max(max(f32x4.extract_lane(maxAbs, 0), f32x4.extract_lane(maxAbs, 1)), max(f32x4.extract_lane(maxAbs, 2), f32x4.extract_lane(maxAbs, 3)));
    const scale: f32 = amax / 127;
    const inverse = f32x4.splat(scale != 0 ? 1 / scale : 0);
    store<f32>(scales + (<usize>b << 2), scale);
    const dst = q + <usize>b * BLOCK;
    for (let i = 0; i < BLOCK; i += 16) {
      const at = src + (<usize>i << 2);
      const r0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(at), inverse)));
      const r1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(at + 16), inverse)));
      const r2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(at + 32), inverse)));
      const r3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(at + 48), inverse)));
      v128.store(dst + i, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(r0, r1), i16x8.narrow_i32x4_s(r2, r3)));
    }
  }
}

// Σ w[i]·x[i] over a block of 32 int8 weight codes (lo16: elements 0..15, hi16: 16..31) and the
// block's activation codes widened once to int16 (x0..x3, shared by every row), as four int32 lanes.
@inline function blockDotCodes(lo16: v128, hi16: v128, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const p0 = i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo16), x0);
  const p1 = i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo16), x1);
  const p2 = i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi16), x2);
  const p3 = i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi16), x3);
  return i32x4.add(i32x4.add(p0, p1), i32x4.add(p2, p3));
}

// Q8_0 block: f16 scale, 32 int8 (34 bytes). Q4_0 block: f16 scale, 16 bytes whose low nibbles are
// elements 0..15 and high nibbles 16..31, value = (nibble − 8) · scale (18 bytes).
@inline function blockDot(format: i32, block: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  if (format == 8) return blockDotCodes(v128.load(block + 2), v128.load(block + 18), x0, x1, x2, x3);
  const packed = v128.load(block + 2);
  const eight = i8x16.splat(8);
  return blockDotCodes(i8x16.sub(v128.and(packed, i8x16.splat(0x0f)), eight), i8x16.sub(i8x16.shr_u(packed, 4), eight), x0, x1, x2, x3);
}

// One block's contribution to a row's vector accumulator: integer dot × weight scale × activation scale.
@inline function accumulateBlock(acc: v128, format: i32, block: usize, x0: v128, x1: v128, x2: v128, x3: v128, xScale: f32): v128 {
  const scale = f32x4.splat(halfToFloat(<u32>load<u16>(block)) * xScale);
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(blockDot(format, block, x0, x1, x2, x3)), scale));
}

// format: 8 = Q8_0, 2 = Q4_0 (GGML type ids). xq/xScales come from quantize_q8_rows.
// Four rows at a time share each block of widened activations; sums stay in vector lanes until
// the row ends; tokens go in tiles as in linear_float.
export function linear_q(format: i32, w: usize, xq: usize, xScales: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32): void {
  const blockBytes: usize = format == 8 ? 34 : 18;
  const blocks = inDim / BLOCK;
  const rowBytes = <usize>blocks * blockBytes;
  for (let tile = 0; tile < tokens; tile += TOKEN_TILE) {
    const tileEnd = min(tokens, tile + TOKEN_TILE);
    let r = rowStart;
    for (; r + 4 <= rowEnd; r += 4) {
      for (let t = tile; t < tileEnd; t++) fourRowsQ(format, w + <usize>r * rowBytes, rowBytes, blocks, blockBytes, xq + <usize>t * inDim, xScales + (<usize>t * blocks << 2), y + ((<usize>t * outDim + r) << 2));
    }
    for (; r < rowEnd; r++) {
      for (let t = tile; t < tileEnd; t++) store<f32>(y + ((<usize>t * outDim + r) << 2), oneRowQ(format, w + <usize>r * rowBytes, blocks, blockBytes, xq + <usize>t * inDim, xScales + (<usize>t * blocks << 2)));
    }
  }
}

// Rows r..r+3 for one token: each block of widened activations serves four rows.
@inline function fourRowsQ(format: i32, row: usize, rowBytes: usize, blocks: i32, blockBytes: usize, xq: usize, scales: usize, out: usize): void {
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0), acc2 = f32x4.splat(0), acc3 = f32x4.splat(0);
  for (let b = 0; b < blocks; b++) {
    const first = v128.load(xq + <usize>b * BLOCK);
    const second = v128.load(xq + <usize>b * BLOCK + 16);
    const x0 = i16x8.extend_low_i8x16_s(first), x1 = i16x8.extend_high_i8x16_s(first);
    const x2 = i16x8.extend_low_i8x16_s(second), x3 = i16x8.extend_high_i8x16_s(second);
    const xScale = load<f32>(scales + (<usize>b << 2));
    const block = row + <usize>b * blockBytes;
    acc0 = accumulateBlock(acc0, format, block, x0, x1, x2, x3, xScale);
    acc1 = accumulateBlock(acc1, format, block + rowBytes, x0, x1, x2, x3, xScale);
    acc2 = accumulateBlock(acc2, format, block + 2 * rowBytes, x0, x1, x2, x3, xScale);
    acc3 = accumulateBlock(acc3, format, block + 3 * rowBytes, x0, x1, x2, x3, xScale);
  }
  store<f32>(out, sum4(acc0));
  store<f32>(out + 4, sum4(acc1));
  store<f32>(out + 8, sum4(acc2));
  store<f32>(out + 12, sum4(acc3));
}

@inline function oneRowQ(format: i32, row: usize, blocks: i32, blockBytes: usize, xq: usize, scales: usize): f32 {
  let acc = f32x4.splat(0);
  for (let b = 0; b < blocks; b++) {
    const first = v128.load(xq + <usize>b * BLOCK);
    const second = v128.load(xq + <usize>b * BLOCK + 16);
    const x0 = i16x8.extend_low_i8x16_s(first), x1 = i16x8.extend_high_i8x16_s(first);
    const x2 = i16x8.extend_low_i8x16_s(second), x3 = i16x8.extend_high_i8x16_s(second);
    acc = accumulateBlock(acc, format, row + <usize>b * blockBytes, x0, x1, x2, x3, load<f32>(scales + (<usize>b << 2)));
  }
  return sum4(acc);
}

// Q4_K super-blocks of 256 weights (144 bytes): f16 d, f16 dmin, 12 bytes packing eight 6-bit
// scales and eight 6-bit mins, then 128 bytes of 4-bit codes; the 32 bytes of chunk c hold
// sub-block 2c in their low nibbles and 2c + 1 in their high nibbles. Sub-block j of 32 weights
// decodes as d·scale_j·q − dmin·min_j, so with Q8_0 activations (scale s_b, codes x) its dot
// product is s_b·(d·scale_j·Σq·x − dmin·min_j·Σx): two integer sums per sub-block.
const Q4K_BYTES: usize = 144;

// get_scale_min_k4: scale (6 bits) and min (6 bits) of sub-block j.
@inline function q4kScale(packed: usize, j: i32): f32 {
  if (j < 4) return <f32>(load<u8>(packed + j) & 63);
  return <f32>((load<u8>(packed + j + 4) & 0xf) | ((load<u8>(packed + j - 4) >> 6) << 4));
}
@inline function q4kMin(packed: usize, j: i32): f32 {
  if (j < 4) return <f32>(load<u8>(packed + j + 4) & 63);
  return <f32>((load<u8>(packed + j + 4) >> 4) | ((load<u8>(packed + j) >> 6) << 4));
}

// One sub-block's contribution: codes (32 values 0..15 as two vectors of 16) against activation block xq.
@inline function accumulateQ4KSub(acc: v128, codesLow: v128, codesHigh: v128, xq: usize, xScale: f32, scale: f32, minimum: f32): v128 {
  const first = v128.load(xq);
  const second = v128.load(xq + 16);
  const x0 = i16x8.extend_low_i8x16_s(first), x1 = i16x8.extend_high_i8x16_s(first);
  const x2 = i16x8.extend_low_i8x16_s(second), x3 = i16x8.extend_high_i8x16_s(second);
  const products = blockDotCodes(codesLow, codesHigh, x0, x1, x2, x3);
  const sums = i32x4.dot_i16x8_s(i16x8.add(i16x8.add(x0, x1), i16x8.add(x2, x3)), i16x8.splat(1));
  const scaled = f32x4.mul(f32x4.convert_i32x4_s(products), f32x4.splat(scale * xScale));
  return f32x4.add(acc, f32x4.sub(scaled, f32x4.mul(f32x4.convert_i32x4_s(sums), f32x4.splat(minimum * xScale))));
}

@inline function rowDotQ4K(row: usize, superBlocks: i32, xq: usize, xScales: usize): f32 {
  let acc = f32x4.splat(0);
  for (let s = 0; s < superBlocks; s++) {
    const block = row + <usize>s * Q4K_BYTES;
    const d = halfToFloat(<u32>load<u16>(block));
    const dmin = halfToFloat(<u32>load<u16>(block + 2));
    const packed = block + 4;
    for (let c = 0; c < 4; c++) {
      const low = v128.load(block + 16 + (<usize>c << 5));
      const high = v128.load(block + 32 + (<usize>c << 5));
      const j = c << 1;
      const b = (s << 3) + j;
      const mask = i8x16.splat(0x0f);
      acc = accumulateQ4KSub(acc, v128.and(low, mask), v128.and(high, mask), xq + (<usize>b << 5), load<f32>(xScales + (<usize>b << 2)), d * q4kScale(packed, j), dmin * q4kMin(packed, j));
      acc = accumulateQ4KSub(acc, i8x16.shr_u(low, 4), i8x16.shr_u(high, 4), xq + (<usize>(b + 1) << 5), load<f32>(xScales + (<usize>(b + 1) << 2)), d * q4kScale(packed, j + 1), dmin * q4kMin(packed, j + 1));
    }
  }
  return sum4(acc);
}

// y[t, r] for Q4_K weights; xq/xScales from quantize_q8_rows. Token tiles as in linear_float.
export function linear_q4k(w: usize, xq: usize, xScales: usize, y: usize, inDim: i32, outDim: i32, tokens: i32, rowStart: i32, rowEnd: i32): void {
  const superBlocks = inDim >> 8;
  const rowBytes = <usize>superBlocks * Q4K_BYTES;
  for (let tile = 0; tile < tokens; tile += TOKEN_TILE) {
    const tileEnd = min(tokens, tile + TOKEN_TILE);
    for (let r = rowStart; r < rowEnd; r++) {
      for (let t = tile; t < tileEnd; t++) {
        store<f32>(y + ((<usize>t * outDim + r) << 2), rowDotQ4K(w + <usize>r * rowBytes, superBlocks, xq + <usize>t * inDim, xScales + (<usize>t * (inDim >> 5) << 2)));
      }
    }
  }
}

// Rows of a Q4_K table for each id, dequantized.
export function embedding_q4k(table: usize, ids: usize, out: usize, dim: i32, count: i32): void {
  const rowBytes = <usize>(dim >> 8) * Q4K_BYTES;
  for (let t = 0; t < count; t++) {
    const row = table + <usize>load<i32>(ids + (<usize>t << 2)) * rowBytes;
    const dst = out + (<usize>t * dim << 2);
    for (let s = 0; s < dim >> 8; s++) {
      const block = row + <usize>s * Q4K_BYTES;
      const d = halfToFloat(<u32>load<u16>(block));
      const dmin = halfToFloat(<u32>load<u16>(block + 2));
      for (let j = 0; j < 8; j++) {
        const scale = d * q4kScale(block + 4, j);
        const minimum = dmin * q4kMin(block + 4, j);
        for (let l = 0; l < 32; l++) {
          const byte = <i32>load<u8>(block + 16 + (<usize>(j >> 1) << 5) + l);
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
// cache (kvDtype as cache_write); `scores` is scratch for (start + rows) floats. Query head h
// reads kv head h / group.
export function attention(kvDtype: i32, q: usize, keys: usize, values: usize, out: usize, scores: usize, rows: i32, start: i32, heads: i32, kvHeads: i32, headDim: i32, capacity: i32): void {
  const group = heads / kvHeads;
  const scale: f32 = 1 / Mathf.sqrt(<f32>headDim);
  const headBytes = <usize>headDim << 2;
  const cacheRowBytes = <usize>headDim << (kvDtype == 0 ? 2 : 1);
  for (let t = 0; t < rows; t++) {
    const visible = start + t + 1;
    for (let h = 0; h < heads; h++) {
      const query = q + (<usize>t * heads + h) * headBytes;
      const g = h / group;
      const keyBase = keys + <usize>g * capacity * cacheRowBytes;
      const valueBase = values + <usize>g * capacity * cacheRowBytes;
      let maximum: f32 = -Infinity;
      for (let p = 0; p < visible; p++) {
        const score = rowDot(kvDtype, keyBase + <usize>p * cacheRowBytes, query, headDim) * scale;
        store<f32>(scores + (<usize>p << 2), score);
        maximum = max(maximum, score);
      }
      let total: f32 = 0;
      for (let p = 0; p < visible; p++) {
        const weight = Mathf.exp(load<f32>(scores + (<usize>p << 2)) - maximum);
        store<f32>(scores + (<usize>p << 2), weight);
        total += weight;
      }
      const result = out + (<usize>t * heads + h) * headBytes;
      memory.fill(result, 0, headBytes);
      const vectorEnd = headDim & ~3;
      for (let p = 0; p < visible; p++) {
        const weight = load<f32>(scores + (<usize>p << 2)) / total;
        const value = valueBase + <usize>p * cacheRowBytes;
        const w4 = f32x4.splat(weight);
        for (let i = 0; i < vectorEnd; i += 4) {
          const at = <usize>i << 2;
          v128.store(result + at, f32x4.add(v128.load(result + at), f32x4.mul(w4, loadWeights(kvDtype, value, i))));
        }
        for (let i = vectorEnd; i < headDim; i++) {
          const at = <usize>i << 2;
          store<f32>(result + at, load<f32>(result + at) + weight * scalarWeight(kvDtype, value, i));
        }
      }
    }
  }
}

// out = silu(gate) · up = gate / (1 + e^−gate) · up
export function swiglu(gate: usize, up: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const at = <usize>i << 2;
    const g = load<f32>(gate + at);
    store<f32>(out + at, (g / (1 + Mathf.exp(-g))) * load<f32>(up + at));
  }
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
  const rowBytes = <usize>dim << (dtype == 0 ? 2 : 1);
  for (let t = 0; t < count; t++) {
    const row = table + <usize>load<i32>(ids + (<usize>t << 2)) * rowBytes;
    const dst = out + (<usize>t * dim << 2);
    for (let k = 0; k < dim; k++) store<f32>(dst + (<usize>k << 2), scalarWeight(dtype, row, k));
  }
}

// Rows of a Q8_0 or Q4_0 table for each id, dequantized.
export function embedding_q(format: i32, table: usize, ids: usize, out: usize, dim: i32, count: i32): void {
  const blockBytes: usize = format == 8 ? 34 : 18;
  const rowBytes = <usize>(dim / BLOCK) * blockBytes;
  for (let t = 0; t < count; t++) {
    const row = table + <usize>load<i32>(ids + (<usize>t << 2)) * rowBytes;
    const dst = out + (<usize>t * dim << 2);
    for (let b = 0; b < dim / BLOCK; b++) {
      const block = row + <usize>b * blockBytes;
      const scale = halfToFloat(<u32>load<u16>(block));
      for (let i = 0; i < BLOCK; i++) {
        let value: i32;
        if (format == 8) value = <i32>load<i8>(block + 2 + i);
        else {
          const byte = <i32>load<u8>(block + 2 + (i & 15));
          value = (i < 16 ? byte & 15 : byte >> 4) - 8;
        }
        store<f32>(dst + ((<usize>b * BLOCK + i) << 2), <f32>value * scale);
      }
    }
  }
}

// Reads `bytes` bytes from `start` (a multiple of 64) as fast as loads go and returns a sum
// so the reads cannot be optimised away: the read-bandwidth probe of `herd bench --bandwidth`.
export function read_sum(start: usize, bytes: usize): f32 {
  let a = f32x4.splat(0), b = f32x4.splat(0), c = f32x4.splat(0), d = f32x4.splat(0);
  const end = start + bytes;
  for (let p = start; p < end; p += 64) {
    a = f32x4.add(a, v128.load(p));
    b = f32x4.add(b, v128.load(p + 16));
    c = f32x4.add(c, v128.load(p + 32));
    d = f32x4.add(d, v128.load(p + 48));
  }
  return sum4(f32x4.add(f32x4.add(a, b), f32x4.add(c, d)));
}
