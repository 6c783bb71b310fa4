// Helpers and constants every kernel file shares.

// ---------------------------------------------------------------------------------------------
// Small helpers

@inline export function sum4(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

// IEEE half → float: shifting the 15 magnitude bits into a float's place and multiplying by
// 2^112 rebiases the exponent; subnormal halves come out exact too. (No Inf/NaN in weights.)
const HALF_TO_FLOAT_SCALE: f32 = reinterpret<f32>(0x77800000); // 2^112

@inline export function halfToFloat(h: u32): f32 {
  const magnitude = reinterpret<f32>((h & 0x7fff) << 13) * HALF_TO_FLOAT_SCALE;
  return reinterpret<f32>(reinterpret<u32>(magnitude) | ((h & 0x8000) << 16));
}

// get_scale_min_k4: scale (6 bits) and min (6 bits) of sub-block j of Q4_K's and Q5_K's 12 packed bytes.
@inline export function q4kScale(packed: usize, j: i32): u8 {
  if (j < 4) return load<u8>(packed + j) & 63;
  return (load<u8>(packed + j + 4) & 0xf) | ((load<u8>(packed + j - 4) >> 6) << 4);
}
@inline export function q4kMin(packed: usize, j: i32): u8 {
  if (j < 4) return load<u8>(packed + j + 4) & 63;
  return (load<u8>(packed + j + 4) >> 4) | ((load<u8>(packed + j) >> 6) << 4);
}

// Vector constants live in memory and are loaded where used: V8 rebuilds a v128 constant from
// immediates every time a loop uses it (several instructions each), which made a block of the
// quantized kernels about twice as expensive; a load is one instruction.
const CONSTANTS = memory.data(80, 16);
v128.store(CONSTANTS, i32x4.splat(0x8fffffff));
v128.store(CONSTANTS + 32, f32x4.splat(HALF_TO_FLOAT_SCALE));
v128.store(CONSTANTS + 48, i16x8.splat(1));
v128.store(CONSTANTS + 64, i8x16.splat(0x0f));
@inline export function halfBitsMask(): v128 { return v128.load(CONSTANTS); }
@inline export function halfToFloatScale(): v128 { return v128.load(CONSTANTS + 32); }
@inline export function ones16(): v128 { return v128.load(CONSTANTS + 48); }
@inline export function lowNibbles(): v128 { return v128.load(CONSTANTS + 64); }

// The high nibble of each byte. WASM has no 8-bit shift on x86 (V8 emulates i8x16.shr_u with
// several instructions); a 16-bit shift followed by the mask gives the same bytes in two.
@inline export function highNibbles(packed: v128): v128 {
  return v128.and(i16x8.shr_u(packed, 4), lowNibbles());
}

// Four halves (the low 64 bits of `packed`) → four floats. Sign-extending a half to 32 bits and
// shifting it left by 13 puts its magnitude bits where a float's go and copies of its sign in bits
// 28..31; clearing bits 28..30 leaves sign | magnitude, 2^−112 times the value (subnormal halves
// included), and one multiply rebiases the exponent.
@inline export function halvesToFloats(packed: v128): v128 {
  const bits = v128.and(i32x4.shl(i32x4.extend_low_i16x8_s(packed), 13), halfBitsMask());
  return f32x4.mul(bits, halfToFloatScale());
}

// Prefill takes tokens in tiles: a tile's activations stay in cache while every row of the
// weights streams past once, instead of once per token.
export const TOKEN_TILE: i32 = 32;

// Decode reads several rows at once, as memory streams at least this many bytes apart: out of
// cache, one stream of reads reaches about half the bandwidth that several do, and streams some
// 64 KiB apart suit the hardware prefetchers (measured on the project's machine).
export const STREAM_GAP: usize = 65536;
