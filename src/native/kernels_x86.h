/*
 * The x86 SIMD kernels, included by one file per instruction-set path (kernels_avx2.c,
 * kernels_avxvnni.c, kernels_avx512.c), each of which defines HERD_PATH first. The paths differ
 * only in their target, the byte dot product (dot_u8_i8: eight int32 lanes, each the sum of four
 * unsigned×signed byte products) and whether float products take 16 lanes at a time.
 */
#if defined(__x86_64__)
#define HERD_AVX2 1
#define HERD_AVXVNNI 2
#define HERD_AVX512 3
#if HERD_PATH == HERD_AVX2
#pragma GCC target("avx2,fma,f16c")
#define HERD_PATH_NAME "avx2"
#define HERD_TABLE herd_kernels_avx2
#elif HERD_PATH == HERD_AVXVNNI
#ifdef HERD_EMULATE_AVXVNNI
#pragma GCC target("avx2,fma,f16c") /* npm run test:avxvnni: its two VNNI instructions emulated below */
#else
#pragma GCC target("avx2,fma,f16c,avxvnni")
#endif
#define HERD_PATH_NAME "avxvnni"
#define HERD_TABLE herd_kernels_avxvnni
#else
#ifdef HERD_EMULATE_AVX512
#pragma GCC target("avx2,fma,f16c") /* npm run test:avx512: its AVX-512 intrinsics emulated by SIMDe below */
#else
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#endif
#define HERD_PATH_NAME "avx512"
#define HERD_TABLE herd_kernels_avx512
#endif
#include <immintrin.h>
#if HERD_PATH == HERD_AVX512 && defined(HERD_EMULATE_AVX512)
/*
 * npm run test:avx512 builds the addon with this defined, so that the AVX-512 path runs (and its
 * tests run on it) on a CPU without AVX-512: SIMDe's portable AVX-512 (Debian's libsimde-dev), on
 * AVX2, takes the place of every _mm512_ and AVX-512VL intrinsic. SIMDe 0.7 has two of them under
 * its own names only, and lacks seven, written here from their definitions in two 256-bit halves.
 */
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
static inline __m512 emulated_join_ps(__m256 low, __m256 high) { return _mm512_insertf32x8(_mm512_castps256_ps512(low), high, 1); }
static inline __m512i emulated_join_si(__m256i low, __m256i high) { return _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1); }
static inline __m256i emulated_high_si(__m512i v) { return _mm512_extracti64x4_epi64(v, 1); }
static inline __m512 emulated_cvtph_ps(__m256i h) {
  return emulated_join_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
}
static inline __m512i emulated_cvtepu16_epi32(__m256i h) {
  return emulated_join_si(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), _mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)));
}
static inline __m512 emulated_cvtepi32_ps(__m512i v) {
  return emulated_join_ps(_mm256_cvtepi32_ps(_mm512_castsi512_si256(v)), _mm256_cvtepi32_ps(emulated_high_si(v)));
}
static inline __m512i emulated_srai_epi32(__m512i v, int count) {
  return emulated_join_si(_mm256_srai_epi32(_mm512_castsi512_si256(v), count), _mm256_srai_epi32(emulated_high_si(v), count));
}
static inline __m512i emulated_zextsi256_si512(__m256i v) { return emulated_join_si(v, _mm256_setzero_si256()); }
/* GCC's order: the 256-bit halves, then the 128-bit halves, then within one. */
static inline float emulated_reduce_add_ps(__m512 v) {
  const __m256 half = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castsi256_ps(emulated_high_si(_mm512_castps_si512(v))));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#define _mm512_shuffle_i64x2 simde_mm512_shuffle_i64x2
#define _mm512_shuffle_f32x4 simde_mm512_shuffle_f32x4
#define _mm512_cvtph_ps emulated_cvtph_ps
#define _mm512_cvtepu16_epi32 emulated_cvtepu16_epi32
#define _mm512_cvtepi32_ps emulated_cvtepi32_ps
#define _mm512_srai_epi32 emulated_srai_epi32
#define _mm512_zextsi256_si512 emulated_zextsi256_si512
#define _mm512_reduce_add_ps emulated_reduce_add_ps
#define _mm512_mask_srli_epi16(src, k, a, imm) _mm512_mask_mov_epi16((src), (k), _mm512_srli_epi16((a), (imm)))
#endif
#include <math.h>
#include <string.h>
#include "herd_native.h"
#include "kquants.h"
#include "repack.h"

#if HERD_PATH == HERD_AVX2
/* pmaddubsw pairs to int16 (no overflow: |w| ≤ 128, |x| ≤ 127), then pmaddwd to int32. */
static inline __m256i dot_u8_i8(__m256i u, __m256i s) { return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)); }
#elif HERD_PATH == HERD_AVXVNNI
#ifdef HERD_EMULATE_AVXVNNI
/*
 * npm run test:avxvnni builds the addon with this defined, so that the AVX-VNNI path runs (and its
 * tests run on it) on a CPU without AVX-VNNI: vpdpbusd and vpdpwssd in exact AVX2 arithmetic
 * (bytes widened to int16, so no pair saturates), everything else as the path compiles it.
 */
static inline __m256i vex_dpbusd(__m256i acc, __m256i u, __m256i s) {
  const __m256i even_u = _mm256_and_si256(u, _mm256_set1_epi16(0xff)), odd_u = _mm256_srli_epi16(u, 8);
  const __m256i even_s = _mm256_srai_epi16(_mm256_slli_epi16(s, 8), 8), odd_s = _mm256_srai_epi16(s, 8);
  return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(even_u, even_s), _mm256_madd_epi16(odd_u, odd_s)));
}
static inline __m256i vex_dpwssd(__m256i acc, __m256i a, __m256i b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
#else
#define vex_dpbusd _mm256_dpbusd_avx_epi32
#define vex_dpwssd _mm256_dpwssd_avx_epi32
#endif
/* VEX vpdpbusd (Alder Lake and later without AVX-512). */
static inline __m256i dot_u8_i8(__m256i u, __m256i s) { return vex_dpbusd(_mm256_setzero_si256(), u, s); }
#else
/* EVEX vpdpbusd on 256-bit vectors: a Q8_0 block is 32 bytes, so wider vectors would only pair blocks. */
static inline __m256i dot_u8_i8(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }
#endif

static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline float half_scale(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

/* Σ x·y of 32 signed bytes as eight float lanes: |x| times y with x's sign, so the unsigned×signed product applies. */
static inline __m256 signed_pairs_float(__m256i x, __m256i y) {
  return _mm256_cvtepi32_ps(dot_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x)));
}

static float dot_f32(const float *a, const float *b, int n) {
  int i = 0;
  float total = 0;
#if HERD_PATH == HERD_AVX512
  __m512 w0 = _mm512_setzero_ps(), w1 = _mm512_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    w0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), w0);
    w1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), w1);
  }
  total = _mm512_reduce_add_ps(_mm512_add_ps(w0, w1));
  if (i == n) return total; /* attention's rows of 64 or 128: no 256-bit sum of nothing */
#endif
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  total += hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; i++) total += a[i] * b[i];
  return total;
}

static void f16_to_f32(const uint16_t *src, float *dst, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
  for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

static void bf16_to_f32(const uint16_t *src, float *dst, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
  }
  for (; i < n; i++) {
    uint32_t bits = (uint32_t)src[i] << 16;
    memcpy(&dst[i], &bits, 4);
  }
}

/* Eight or sixteen weights of a 16-bit row as floats. */
static inline __m256 f16x8(const uint16_t *w) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w)); }
static inline __m256 bf16x8(const uint16_t *w) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w)), 16)); }
#if HERD_PATH == HERD_AVX512
static inline __m512 f16x16(const uint16_t *w) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w)); }
static inline __m512 bf16x16(const uint16_t *w) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)w)), 16)); }
/* 32 weights a step in two 512-bit sums, before the 256-bit loop takes what is left. */
#define WIDE_STEPS(wide)                                                      \
  {                                                                           \
    __m512 w0 = _mm512_setzero_ps(), w1 = _mm512_setzero_ps();                \
    for (; i + 32 <= n; i += 32) {                                            \
      w0 = _mm512_fmadd_ps(wide(w + i), _mm512_loadu_ps(x + i), w0);           \
      w1 = _mm512_fmadd_ps(wide(w + i + 16), _mm512_loadu_ps(x + i + 16), w1); \
    }                                                                         \
    total = _mm512_reduce_add_ps(_mm512_add_ps(w0, w1));                      \
  }
#else
#define WIDE_STEPS(wide)
#endif
/* Σ w·x over a 16-bit row, each weight converted to float on its way into the FMA. */
#define DOT_16BIT(wide, narrow, scalar)                                                     \
  int i = 0;                                                                               \
  float total = 0;                                                                         \
  WIDE_STEPS(wide)                                                                         \
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();                               \
  for (; i + 16 <= n; i += 16) {                                                           \
    s0 = _mm256_fmadd_ps(narrow(w + i), _mm256_loadu_ps(x + i), s0);                        \
    s1 = _mm256_fmadd_ps(narrow(w + i + 8), _mm256_loadu_ps(x + i + 8), s1);                \
  }                                                                                        \
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(narrow(w + i), _mm256_loadu_ps(x + i), s0); \
  total += hsum8(_mm256_add_ps(s0, s1));                                                   \
  for (; i < n; i++) total += scalar(w[i]) * x[i];                                         \
  return total;
static inline float bf16_scalar(uint16_t h) {
  const uint32_t bits = (uint32_t)h << 16;
  float value;
  memcpy(&value, &bits, 4);
  return value;
}
static float dot_f16(const uint16_t *w, const float *x, int n) { DOT_16BIT(f16x16, f16x8, _cvtsh_ss) }
static float dot_bf16(const uint16_t *w, const float *x, int n) { DOT_16BIT(bf16x16, bf16x8, bf16_scalar) }

static float dot_q8_0(const uint8_t *w, const int8_t *x, const float *xd, int nb) {
  __m256 acc = _mm256_setzero_ps();
  for (int b = 0; b < nb; b++, w += Q8_0_BYTES, x += QK) {
    __m256i q = _mm256_loadu_si256((const __m256i *)(w + 2));
    __m256i y = _mm256_loadu_si256((const __m256i *)x);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_scale(w) * xd[b]), signed_pairs_float(q, y), acc);
  }
  return hsum8(acc);
}

/* The 32 codes of a Q4_0 or Q4_K half: low nibbles of 16 bytes, then their high nibbles. */
static inline __m256i nibbles32(const uint8_t *q) {
  __m128i bytes = _mm_loadu_si128((const __m128i *)q);
  __m256i both = _mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes);
  return _mm256_and_si256(both, _mm256_set1_epi8(0xf));
}

static float dot_q4_0(const uint8_t *w, const int8_t *x, const float *xd, int nb) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i eight = _mm256_set1_epi8(8);
  for (int b = 0; b < nb; b++, w += Q4_0_BYTES, x += QK) {
    __m256i q = _mm256_sub_epi8(nibbles32(w + 2), eight);
    __m256i y = _mm256_loadu_si256((const __m256i *)x);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_scale(w) * xd[b]), signed_pairs_float(q, y), acc);
  }
  return hsum8(acc);
}

/* Q4_K: per super-block, each sub-block's unsigned codes times the int8 activations, scaled by its 6-bit scale. */
static float dot_q4_k(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  __m256 acc = _mm256_setzero_ps();
  float mins_total = 0;
  const __m256i low = _mm256_set1_epi8(0xf);
  for (int b = 0; b < nb; b++, w += Q4_K_BYTES, x += QK_K) {
    uint8_t sc[8], m[8];
    int32_t mins = 0;
    for (int j = 0; j < 8; j++) {
      herd_q4k_scale_min(j, w + 4, &sc[j], &m[j]);
      mins += m[j] * xs[b * 8 + j];
    }
    __m256i sums = _mm256_setzero_si256();
    for (int pair = 0; pair < 4; pair++) {
      __m256i codes = _mm256_loadu_si256((const __m256i *)(w + 16 + 32 * pair));
      __m256i first = _mm256_and_si256(codes, low), second = _mm256_and_si256(_mm256_srli_epi16(codes, 4), low);
      __m256i p0 = dot_u8_i8(first, _mm256_loadu_si256((const __m256i *)(x + 64 * pair)));
      __m256i p1 = dot_u8_i8(second, _mm256_loadu_si256((const __m256i *)(x + 64 * pair + 32)));
      sums = _mm256_add_epi32(sums, _mm256_mullo_epi32(p0, _mm256_set1_epi32(sc[2 * pair])));
      sums = _mm256_add_epi32(sums, _mm256_mullo_epi32(p1, _mm256_set1_epi32(sc[2 * pair + 1])));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_scale(w) * xd[b]), _mm256_cvtepi32_ps(sums), acc);
    mins_total += half_scale(w + 2) * xd[b] * (float)mins;
  }
  return hsum8(acc) - mins_total;
}

#include "kquants_x86.h"
#include "blocks32_x86.h"
/*
 * Tiled products of many rows and tokens. A vector step covers two blocks of 32 (512 bits) on the
 * AVX-512 path and one (256 bits) on the others. Weight codes enter the byte products unsigned:
 * Q4_0's nibbles as they are (0..15, offset 8) and, where vpdpbusd cannot saturate, Q8_0's codes
 * with their sign bit flipped (offset 128); the offset times the activation block's code sum is
 * the accumulator's starting value. AVX2's vpmaddubsw would saturate on 255·127 pairs, so Q8_0
 * keeps the |w|, sign(x, w) form there.
 */
#if HERD_PATH == HERD_AVX512
typedef __m512i ivec;
typedef __m512 fvec;
#define STEP_BLOCKS 2
#define VEC(op) _mm512_##op
#define TILE_T 4 /* 16 float accumulators of 32 registers */
static inline ivec dpbusd(ivec acc, ivec u, ivec s) { return _mm512_dpbusd_epi32(acc, u, s); }
static inline ivec dpwssd(ivec acc, ivec a, ivec b) { return _mm512_dpwssd_epi32(acc, a, b); }
static inline ivec low_nibbles(ivec v) { return _mm512_and_si512(v, _mm512_set1_epi8(0xf)); }
static inline float fsum(fvec v) { return _mm512_reduce_add_ps(v); }
/* One int32 per block in the block's first lane (every lane of a block ends up in the same sum). */
static inline ivec block_ints(int32_t a, int32_t b) { return _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(0x0001, a), 0x0100, b); }
static inline ivec izero(void) { return _mm512_setzero_si512(); }
/* Lane 0 of p over the first block's eight lanes, lane 1 over the second's. */
static inline fvec spread_pair(__m128 p) { return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), _mm512_castps128_ps512(p)); }
/* 64 activation codes (two blocks), or 32 with zeros above when only one block is left. */
static inline ivec load_codes(const int8_t *x, int pair) {
  return pair ? _mm512_loadu_si512(x) : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)x));
}
static inline ivec q8_0_codes(const uint8_t *w, int pair) {
  __m256i first = _mm256_loadu_si256((const __m256i *)(w + 2));
  ivec both = pair ? _mm512_inserti64x4(_mm512_castsi256_si512(first), _mm256_loadu_si256((const __m256i *)(w + 2 + Q8_0_BYTES)), 1) : _mm512_zextsi256_si512(first);
  return _mm512_xor_si512(both, _mm512_set1_epi8((char)0x80));
}
/* Two Q4_0 blocks' nibbles in activation order: [low of block 1, high of block 1, low of block 2, high of block 2]. */
static inline ivec q4_0_codes(const uint8_t *w, int pair) {
  __m128i first = _mm_loadu_si128((const __m128i *)(w + 2));
  __m256i bytes = pair ? _mm256_inserti128_si256(_mm256_castsi128_si256(first), _mm_loadu_si128((const __m128i *)(w + 2 + Q4_0_BYTES)), 1) : _mm256_zextsi128_si256(first);
  ivec nibbles = low_nibbles(_mm512_inserti64x4(_mm512_castsi256_si512(bytes), _mm256_srli_epi16(bytes, 4), 1));
  return _mm512_shuffle_i64x2(nibbles, nibbles, _MM_SHUFFLE(3, 1, 2, 0));
}
#define Q8_0_OFFSET 128
#define Q4K_STEPS 4
/* Step s of a Q4_K super-block: sub-blocks 2s (low nibbles of 32 bytes) and 2s + 1 (their high nibbles). */
static inline ivec q4k_codes(const uint8_t *qs, int s) {
  const ivec bytes = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * s)));
  return low_nibbles(_mm512_mask_srli_epi16(bytes, 0xffff0000u, bytes, 4));
}
/* The eight sub-blocks' scales as int16 lanes 0..7; step s takes 2s over its first 16 lanes and 2s + 1 over the rest. */
static inline __m128i q4k_scale_lanes(const uint8_t *scales) { return _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)scales)); }
static inline ivec q4k_scales(__m128i lanes, int s) {
  const short a = (short)(2 * s), b = (short)(2 * s + 1);
  const ivec pick = _mm512_set_epi16(b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a);
  return _mm512_permutexvar_epi16(pick, _mm512_castsi128_si512(lanes));
}
#else
typedef __m256i ivec;
typedef __m256 fvec;
#define STEP_BLOCKS 1
#define VEC(op) _mm256_##op
#define TILE_T 2 /* 8 float accumulators of 16 registers */
#if HERD_PATH == HERD_AVXVNNI
static inline ivec dpbusd(ivec acc, ivec u, ivec s) { return vex_dpbusd(acc, u, s); }
#else
static inline ivec dpbusd(ivec acc, ivec u, ivec s) { return _mm256_add_epi32(acc, dot_u8_i8(u, s)); }
#endif
#if HERD_PATH == HERD_AVXVNNI
static inline ivec dpwssd(ivec acc, ivec a, ivec b) { return vex_dpwssd(acc, a, b); }
#else
static inline ivec dpwssd(ivec acc, ivec a, ivec b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
#endif
static inline ivec low_nibbles(ivec v) { return _mm256_and_si256(v, _mm256_set1_epi8(0xf)); }
static inline float fsum(fvec v) { return hsum8(v); }
static inline ivec block_ints(int32_t a, int32_t b) { (void)b; return _mm256_setr_epi32(a, 0, 0, 0, 0, 0, 0, 0); }
static inline ivec izero(void) { return _mm256_setzero_si256(); }
static inline fvec spread_pair(__m128 p) { return _mm256_broadcastss_ps(p); }
static inline ivec load_codes(const int8_t *x, int pair) { (void)pair; return _mm256_loadu_si256((const __m256i *)x); }
#if HERD_PATH == HERD_AVXVNNI
#define Q8_0_OFFSET 128
static inline ivec q8_0_codes(const uint8_t *w, int pair) { (void)pair; return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w + 2)), _mm256_set1_epi8((char)0x80)); }
#else
#define Q8_0_OFFSET 0
static inline ivec q8_0_codes(const uint8_t *w, int pair) { (void)pair; return _mm256_loadu_si256((const __m256i *)(w + 2)); }
#endif
static inline ivec q4_0_codes(const uint8_t *w, int pair) { (void)pair; return nibbles32(w + 2); }
#define Q4K_STEPS 8
/* Step s of a Q4_K super-block: sub-block s, the low (even s) or high (odd s) nibbles of 32 bytes. */
static inline ivec q4k_codes(const uint8_t *qs, int s) {
  __m256i bytes = _mm256_loadu_si256((const __m256i *)(qs + 32 * (s / 2)));
  return low_nibbles(s & 1 ? _mm256_srli_epi16(bytes, 4) : bytes);
}
static inline __m128i q4k_scale_lanes(const uint8_t *scales) { return _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)scales)); }
/* Int16 lane s everywhere (bytes 2s and 2s + 1 picked from each 128-bit half). */
static inline ivec q4k_scales(__m128i lanes, int s) { return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(lanes), _mm256_set1_epi16((short)(2 * s | (2 * s + 1) << 8))); }
#endif
/* The operations spelled alike at both widths. */
static inline ivec maddubs(ivec u, ivec s) { return VEC(maddubs_epi16)(u, s); }
static inline fvec fmadd(fvec a, fvec b, fvec c) { return VEC(fmadd_ps)(a, b, c); }
static inline fvec fzero(void) { return VEC(setzero_ps)(); }
static inline fvec to_float(ivec v) { return VEC(cvtepi32_ps)(v); }
static inline fvec fbroadcast(float a) { return VEC(set1_ps)(a); }
#define TILE_R 4
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* Weight codes times activation codes for one step, the offset of unsigned weight codes taken off through the starting value. */
static ALWAYS_INLINE ivec q0_product(ivec start, ivec w, ivec x, int format) {
#if Q8_0_OFFSET == 0
  if (format == FMT_Q8_0) return _mm256_add_epi32(start, dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)));
#else
  (void)format;
#endif
  return dpbusd(start, w, x);
}

/* Weight scale × activation scale of a step's blocks: lanes 0 and 1 of an SSE vector. */
static inline __m128 half_pair(const uint8_t *block, int block_bytes, int pair) {
  uint16_t first, second = 0;
  memcpy(&first, block, 2);
  if (pair) memcpy(&second, block + block_bytes, 2);
  return _mm_cvtph_ps(_mm_cvtsi32_si128((int)(first | (uint32_t)second << 16)));
}
static inline __m128 float_pair(const float *scales, int pair) { return pair ? _mm_castpd_ps(_mm_load_sd((const double *)scales)) : _mm_load_ss(scales); }

/* One step (STEP_BLOCKS blocks, or one at an odd end) of an R × T tile of Q8_0 or Q4_0. */
static ALWAYS_INLINE void q0_step(fvec acc[TILE_R][TILE_T], int format, const uint8_t *w, size_t row_bytes, const quantized_row *x, int cols, int b,
                                  const int R, const int T, const int pair) {
  const int nb = cols / QK, block_bytes = format == FMT_Q8_0 ? Q8_0_BYTES : Q4_0_BYTES, offset = format == FMT_Q8_0 ? Q8_0_OFFSET : 8;
  ivec codes[TILE_R];
  fvec scales[TILE_R];
  for (int r = 0; r < R; r++) {
    const uint8_t *block = w + r * row_bytes + (size_t)b * block_bytes;
    /* The same blocks of the next tile's rows: four rows at once are four streams, which the hardware prefetcher follows less well than one. */
    const char *ahead = (const char *)block + TILE_R * row_bytes;
    _mm_prefetch(ahead, _MM_HINT_T0);
    if (format == FMT_Q8_0) _mm_prefetch(ahead + STEP_BLOCKS * Q8_0_BYTES - 1, _MM_HINT_T0);
    codes[r] = format == FMT_Q8_0 ? q8_0_codes(block, pair) : q4_0_codes(block, pair);
    scales[r] = spread_pair(half_pair(block, block_bytes, pair));
  }
  for (int t = 0; t < T; t++) {
    const size_t at = (size_t)t * nb + b;
    const ivec xv = load_codes(x->codes + (size_t)t * cols + (size_t)b * QK, pair);
    const fvec xd = spread_pair(float_pair(x->scales + at, pair));
    const ivec start = offset ? block_ints(-offset * x->sums[at], pair ? -offset * x->sums[at + 1] : 0) : izero();
    for (int r = 0; r < R; r++) acc[r][t] = fmadd(to_float(q0_product(start, codes[r], xv, format)), VEC(mul_ps)(scales[r], xd), acc[r][t]);
  }
}

/* R rows × T tokens of Q8_0 or Q4_0 (R, T compile-time after inlining, so the accumulators stay in registers). */
static ALWAYS_INLINE void tile_q0(int format, const uint8_t *w, size_t row_bytes, const quantized_row *x, int cols, float *y, int y_stride, const int R, const int T) {
  const int nb = cols / QK;
  fvec acc[TILE_R][TILE_T];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < T; t++) acc[r][t] = fzero();
  int b = 0;
  for (; b + STEP_BLOCKS <= nb; b += STEP_BLOCKS) q0_step(acc, format, w, row_bytes, x, cols, b, R, T, STEP_BLOCKS == 2);
  if (b < nb) q0_step(acc, format, w, row_bytes, x, cols, b, R, T, 0);
  for (int r = 0; r < R; r++)
    for (int t = 0; t < T; t++) y[(size_t)t * y_stride + r] = fsum(acc[r][t]);
}

/* R rows × T tokens of Q4_K: per super-block, code × activation pairs (vpmaddubsw) times each sub-block's scale (vpdpwssd). */
static ALWAYS_INLINE void tile_q4_k(const uint8_t *w, size_t row_bytes, const quantized_row *x, int cols, float *y, int y_stride, const int R, const int T) {
  const int nb = cols / QK_K;
  fvec acc[TILE_R][TILE_T];
  __m128 mins_acc[TILE_R][TILE_T];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < T; t++) acc[r][t] = fzero(), mins_acc[r][t] = _mm_setzero_ps();
  for (int b = 0; b < nb; b++) {
    uint8_t scales[TILE_R][8], mins[TILE_R][8];
    __m128i mins16[TILE_R], scales16[TILE_R];
    float d[TILE_R], dmin[TILE_R];
    for (int r = 0; r < R; r++) {
      const uint8_t *block = w + r * row_bytes + (size_t)b * Q4_K_BYTES;
      for (int line = 0; line < Q4_K_BYTES; line += 64) _mm_prefetch((const char *)block + TILE_R * row_bytes + line, _MM_HINT_T0);
      herd_q4k_scales_mins(block + 4, scales[r], mins[r]);
      mins16[r] = q4k_scale_lanes(mins[r]);
      scales16[r] = q4k_scale_lanes(scales[r]);
      d[r] = half_scale(block);
      dmin[r] = half_scale(block + 2);
    }
    ivec sums[TILE_R][TILE_T];
    for (int r = 0; r < R; r++)
      for (int t = 0; t < T; t++) sums[r][t] = izero();
    for (int s = 0; s < Q4K_STEPS; s++) {
      ivec codes[TILE_R], sc[TILE_R];
      for (int r = 0; r < R; r++) {
        codes[r] = q4k_codes(w + r * row_bytes + (size_t)b * Q4_K_BYTES + 16, s);
        sc[r] = q4k_scales(scales16[r], s);
      }
      for (int t = 0; t < T; t++) {
        const ivec xv = load_codes(x->codes + (size_t)t * cols + (size_t)b * QK_K + (size_t)s * (QK_K / Q4K_STEPS), 1);
        for (int r = 0; r < R; r++) sums[r][t] = dpwssd(sums[r][t], maddubs(codes[r], xv), sc[r]);
      }
    }
    for (int t = 0; t < T; t++) {
      const float xd = x->scales[(size_t)t * nb + b];
      const int32_t *xs = x->sums + (size_t)t * (cols / QK) + (size_t)b * 8;
      const __m128i xs16 = _mm_packs_epi32(_mm_loadu_si128((const __m128i *)xs), _mm_loadu_si128((const __m128i *)(xs + 4)));
      for (int r = 0; r < R; r++) {
        acc[r][t] = fmadd(to_float(sums[r][t]), fbroadcast(d[r] * xd), acc[r][t]);
        mins_acc[r][t] = _mm_fmadd_ps(_mm_cvtepi32_ps(_mm_madd_epi16(mins16[r], xs16)), _mm_set1_ps(dmin[r] * xd), mins_acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < T; t++) {
      __m128 m = mins_acc[r][t];
      m = _mm_add_ps(m, _mm_movehl_ps(m, m));
      m = _mm_add_ss(m, _mm_movehdup_ps(m));
      y[(size_t)t * y_stride + r] = fsum(acc[r][t]) - _mm_cvtss_f32(m);
    }
}

/* Calls TILE(R, T) with R and T as constants for every tile size up to TILE_R × TILE_T. */
#if TILE_T == 4
#define MORE_TOKEN_CASES(TILE, R) \
  case R * 8 + 3: TILE(R, 3); break; \
  case R * 8 + 4: TILE(R, 4); break;
#else
#define MORE_TOKEN_CASES(TILE, R)
#endif
#define ROW_CASES(TILE, R)          \
  case R * 8 + 1: TILE(R, 1); break; \
  case R * 8 + 2: TILE(R, 2); break; \
  MORE_TOKEN_CASES(TILE, R)
#define EVERY_TILE(TILE, rn, tn)                                                                \
  switch ((rn) * 8 + (tn)) {                                                                    \
    ROW_CASES(TILE, 1) ROW_CASES(TILE, 2) ROW_CASES(TILE, 3) ROW_CASES(TILE, 4) default: break; \
  }

/* Tokens in tiles of TILE_T, rows in tiles of TILE_R within them: the rows of a call stay in cache across the token tiles. */
#define GEMM_LOOPS(TILE)                                                         \
  for (int t0 = 0; t0 < tokens; t0 += TILE_T) {                                 \
    const int tn = tokens - t0 < TILE_T ? tokens - t0 : TILE_T;                  \
    const quantized_row xt = {.codes = x->codes + (size_t)t0 * cols,             \
                              .scales = x->scales + (size_t)t0 * (cols / scale_block), \
                              .sums = x->sums + (size_t)t0 * (cols / QK)};       \
    for (int r0 = 0; r0 < rows; r0 += TILE_R) {                                 \
      const int rn = rows - r0 < TILE_R ? rows - r0 : TILE_R;                    \
      const uint8_t *wr = w + (size_t)r0 * row_bytes;                            \
      float *yr = y + (size_t)t0 * y_stride + r0;                                \
      EVERY_TILE(TILE, rn, tn)                                                   \
    }                                                                            \
  }

static void gemm_q8_0(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  const int scale_block = QK;
#define TILE(R, T) tile_q0(FMT_Q8_0, wr, row_bytes, &xt, cols, yr, y_stride, R, T)
  GEMM_LOOPS(TILE)
#undef TILE
}

static void gemm_q4_0(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  const int scale_block = QK;
#define TILE(R, T) tile_q0(FMT_Q4_0, wr, row_bytes, &xt, cols, yr, y_stride, R, T)
  GEMM_LOOPS(TILE)
#undef TILE
}

static void gemm_q4_k(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  const int scale_block = QK_K;
#define TILE(R, T) tile_q4_k(wr, row_bytes, &xt, cols, yr, y_stride, R, T)
  GEMM_LOOPS(TILE)
#undef TILE
}

/*
 * F32 rows × many tokens (prefill on float checkpoints; AWQ's block outputs, which run every
 * grid ratio's candidate weights at float32), BLIS-style outer products on both widths. Each
 * group of F32_GROUP_ROWS weight rows is packed, F32_KC columns at a time, into panels of one
 * vector's rows, [panel][column][lanes] (lanes × lanes blocks transposed in registers), and every
 * group of F32_NR tokens runs over the packed block: each column is F32_PANELS weight vectors and
 * F32_NR broadcast activations into F32_PANELS × F32_NR accumulators, so there is no horizontal
 * sum, a tile's outputs for a token are whole vectors of y, and the packed block stays in L1/L2
 * while all the tokens pass. The activations come packed too, once per call for all rows (ops.c,
 * herd_kernels.f32_tokens): a group's F32_NR tokens interleaved column by column, so a tile reads
 * one contiguous stream instead of F32_NR rows a whole row apart, which at 4,096 tokens fell out
 * of the caches and halved the speed. Packing the weights is one pass over them per call,
 * amortised over its tokens (ops.c calls this with 64 rows and a block of tokens). AVX-512: 4
 * panels of 16 × 6 tokens (24 of 32 registers; 2 panels × 12 tokens measured 10–20 % slower when
 * the activations were read unpacked; 3 × 8 spills registers), over 512 columns (a 128 KB
 * block in L2: two threads on a Sapphire Rapids host, 384 tokens of 8,192 × 2,048 and of
 * 2,048 × 8,192, 34–43 → 40–53 G products/s a thread against 128 columns (a block in L1, but y
 * read and written back 4 times as often), 256 in between, 1,024 no better). 256-bit paths: 2
 * panels of 8 × 6 tokens (12 accumulators, 2 weight vectors and a broadcast of 16 registers),
 * BLIS's Haswell kernel shape, over 512 columns too (a 32 KB packed block; 128 and 256 measured
 * slower with 8,192-column rows); the dot-product tiles they had (4 rows × 3 tokens, a
 * horizontal sum each) read 7 vectors per 12 FMAs from L2 and reached about 40 % of the FMA
 * pipes on Zen 3.
 */
#if HERD_PATH == HERD_AVX512
enum { F32_PANEL = 16, F32_PANELS = 4 };
#else
enum { F32_PANEL = 8, F32_PANELS = 2 };
#endif
enum { F32_KC = 512 };
enum { F32_GROUP_ROWS = F32_PANEL * F32_PANELS, F32_NR = 6 };

#if HERD_PATH == HERD_AVX512
/* 16 rows of 16 floats transposed in registers: r[i] lane j becomes r[j] lane i. */
static inline void transpose_panel(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]), c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 4; j++) {
      t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
      t[8 * i + 4 + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
    }
  for (int j = 0; j < 8; j++) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
  }
}
#else
/* 8 rows of 8 floats transposed in registers: r[i] lane j becomes r[j] lane i. */
static inline void transpose_panel(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; i++) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int j = 0; j < 4; j++) {
    r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}
#endif

/* packed[p][c][lanes] = w[lanes·p + i][c0 + c] for the group's rows (zeros past `rows`), c < kc. */
static void f32_pack(const float *w, int rows, int cols, int c0, int kc, float *packed) {
  for (int p = 0; p < F32_PANELS; p++) {
    const int first = p * F32_PANEL;
    float *out = packed + (size_t)p * kc * F32_PANEL;
    int c = 0;
    if (first + F32_PANEL <= rows) {
      for (; c + F32_PANEL <= kc; c += F32_PANEL) {
        fvec r[F32_PANEL];
        for (int i = 0; i < F32_PANEL; i++) r[i] = VEC(loadu_ps)(w + (size_t)(first + i) * cols + c0 + c);
        transpose_panel(r);
        for (int j = 0; j < F32_PANEL; j++) VEC(storeu_ps)(out + (size_t)(c + j) * F32_PANEL, r[j]);
      }
    }
    for (; c < kc; c++)
      for (int i = 0; i < F32_PANEL; i++) out[(size_t)c * F32_PANEL + i] = first + i < rows ? w[(size_t)(first + i) * cols + c0 + c] : 0;
  }
}

/*
 * y[t·y_stride + r] (+)= Σ_{c<kc} packed[r][c]·x[c][t] for r < rows ≤ F32_GROUP_ROWS, t < tokens ≤ F32_NR,
 * x a group's packed activations from the block's first column on ([column][F32_NR]).
 */
static void f32_micro(const float *packed, int kc, const float *x, int tokens, float *y, int y_stride, int rows, int accumulate) {
  fvec acc[F32_PANELS][F32_NR];
  for (int a = 0; a < F32_PANELS; a++)
    for (int b = 0; b < F32_NR; b++) acc[a][b] = fzero();
  for (int c = 0; c < kc; c++) {
    fvec wv[F32_PANELS];
    for (int a = 0; a < F32_PANELS; a++) wv[a] = VEC(loadu_ps)(packed + ((size_t)a * kc + c) * F32_PANEL);
    for (int b = 0; b < F32_NR; b++) {
      const fvec xb = fbroadcast(x[(size_t)c * F32_NR + b]);
      for (int a = 0; a < F32_PANELS; a++) acc[a][b] = fmadd(wv[a], xb, acc[a][b]);
    }
  }
  for (int a = 0; a < F32_PANELS; a++) {
    const int panel_rows = rows - a * F32_PANEL;
    if (panel_rows <= 0) break;
    for (int b = 0; b < tokens; b++) {
      float *out = y + (size_t)b * y_stride + a * F32_PANEL;
      if (panel_rows >= F32_PANEL) {
        VEC(storeu_ps)(out, accumulate ? VEC(add_ps)(acc[a][b], VEC(loadu_ps)(out)) : acc[a][b]);
        continue;
      }
      /* A last, partial panel: only its rows are y's. */
      float lanes[F32_PANEL];
      VEC(storeu_ps)(lanes, acc[a][b]);
      for (int i = 0; i < panel_rows; i++) out[i] = accumulate ? out[i] + lanes[i] : lanes[i];
    }
  }
}

/*
 * Rows packed at a time: ops.c's chunks (F32_ROW_CHUNK), one group on AVX-512 and four on the
 * 256-bit paths, where each group of tokens then runs over all four while its packed activations
 * (12 KB) stay in L1, instead of the whole block of tokens streaming past each group from L3 (a
 * Zen 3 core has 512 KB of L2). One Zen 3 core, the same sums: 384 tokens of 8,192 × 2,048
 * 42.9 → 44.8 G products/s, 1,536 tokens of 2,048 × 8,192 40.3 → 42.4 (two threads 40.8 → 42.7 a
 * thread), about 90 % of the FMA pipes' 50 G lanes/s.
 */
enum { F32_BLOCK_ROWS = 64 };

/* x: the tokens packed in groups of F32_NR (herd_kernels.gemm_f32), each group cols × F32_NR floats. */
static void gemm_f32(const float *w, int rows, const float *x, int tokens, int cols, float *y, int y_stride) {
  float packed[F32_BLOCK_ROWS * F32_KC];
  for (int r0 = 0; r0 < rows; r0 += F32_BLOCK_ROWS) {
    const int block_rows = rows - r0 < F32_BLOCK_ROWS ? rows - r0 : F32_BLOCK_ROWS;
    for (int c0 = 0; c0 < cols; c0 += F32_KC) {
      const int kc = cols - c0 < F32_KC ? cols - c0 : F32_KC;
      for (int g = 0; g < block_rows; g += F32_GROUP_ROWS)
        f32_pack(w + (size_t)(r0 + g) * cols, block_rows - g < F32_GROUP_ROWS ? block_rows - g : F32_GROUP_ROWS, cols, c0, kc, packed + (size_t)g * kc);
      for (int t0 = 0; t0 < tokens; t0 += F32_NR) {
        const float *xt = x + (size_t)t0 * cols + (size_t)c0 * F32_NR;
        const int group_tokens = tokens - t0 < F32_NR ? tokens - t0 : F32_NR;
        for (int g = 0; g < block_rows; g += F32_GROUP_ROWS)
          f32_micro(packed + (size_t)g * kc, kc, xt, group_tokens, y + (size_t)t0 * y_stride + r0 + g, y_stride, block_rows - g < F32_GROUP_ROWS ? block_rows - g : F32_GROUP_ROWS, c0 > 0);
      }
    }
  }
}

/*
 * Repacked Q4_0 (repack.h): per group of 16 rows, one int32 lane per row. A 512-bit vector holds
 * the 16 rows (R16_HALVES = 1); 256-bit paths take the group as two halves of 8 rows.
 */
#if HERD_PATH == HERD_AVX512
#define R16_HALVES 1
#define R16_TOKENS 8 /* 8 float accumulators and 8 unpacked code vectors of 32 registers */
#define R16_DECODE_STREAMS 1
static inline ivec r16_bytes(const uint8_t *p) { return _mm512_loadu_si512(p); }
static inline fvec r16_scales(const uint8_t *block, int half) { (void)half; return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)block)); }
static inline void r16_store(float *y, fvec v) { _mm512_storeu_ps(y, v); }
#else
#define R16_HALVES 2
#define R16_TOKENS 4 /* of 16 registers */
#define R16_DECODE_STREAMS 4
static inline ivec r16_bytes(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline fvec r16_scales(const uint8_t *block, int half) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(block + 16 * half))); }
static inline void r16_store(float *y, fvec v) { _mm256_storeu_ps(y, v); }
#endif
#define R16_LANES (REPACK_ROWS / R16_HALVES)
/*
 * Decode's one token is bound by memory, and how the reads are issued matters more than the
 * arithmetic. R16_DECODE_STREAMS: how many groups a one-token Q8_0 or Q4_0 tile reads at once,
 * each from its own part of the thread's rows (separate streams from memory), without software
 * prefetch. On Zen 4's AVX-512 path the hardware prefetcher followed one stream best (software
 * prefetch 2, 4 or 8 blocks ahead measured 10–30 % slower), so that path reads a thread's groups
 * one after another. On Zen 3's AVX2 path four streams read faster than one stream with software
 * prefetch: 2-thread 1B decode, alternating builds, Q8_0 25.8–31.7 against 22.0–27.6 tok/s, Q4_0
 * 41.1–45.6 against 35.5–43.0 (docs/performance.md); two streams were no better than one.
 */
/* Four activation codes in every int32 lane. */
static inline ivec broadcast4(const int8_t *x) {
  int32_t four;
  memcpy(&four, x, 4);
  return VEC(set1_epi32)(four);
}

/* S groups' accumulators into y (group s stream_rows rows after group s − 1): token t's lanes of half first_half + h. */
#define STORE_STREAMS(acc, S, H, T, stream_rows)                                    \
  for (int s = 0; s < S; s++)                                                       \
    for (int h = 0; h < H; h++)                                                     \
      for (int t = 0; t < T; t++)                                                   \
        r16_store(y + (size_t)s * (stream_rows) + (size_t)t * y_stride + R16_LANES * (first_half + h), acc[s][h][t])
/* One group's: acc[h][t] as the only stream. */
#define STORE_HALVES(acc, H, T) STORE_STREAMS((&acc), 1, H, T, 0)

/*
 * S groups × H halves of each from first_half on × T tokens: each block's codes unpacked once for
 * the tile, each token's block summed in int32 lanes, then scaled. One token takes both halves of a
 * 256-bit path in one pass (H = 2), so that every cache line is used whole as it arrives from
 * memory, and S groups at once (R16_DECODE_STREAMS), group s stream_rows rows after group s − 1.
 */
static ALWAYS_INLINE void tile_r16(const uint8_t *group, int first_half, const int H, const quantized_row *x, int cols, float *y, int y_stride, const int T,
                                   const int S, int stream_rows, size_t row_bytes) {
  const int nb = cols / QK;
  fvec acc[R16_DECODE_STREAMS][R16_HALVES][R16_TOKENS];
  for (int s = 0; s < S; s++)
    for (int h = 0; h < H; h++)
      for (int t = 0; t < T; t++) acc[s][h][t] = fzero();
  for (int b = 0; b < nb; b++)
    for (int s = 0; s < S; s++) {
      const uint8_t *block = group + (size_t)s * stream_rows * row_bytes + (size_t)b * R16_BLOCK_BYTES;
      /* One stream: the block four ahead (its 288 bytes are five cache lines), as decode reads the weights once, from memory. */
      if (S == 1)
        for (int line = 0; line < 5; line++) _mm_prefetch((const char *)block + 4 * R16_BLOCK_BYTES + 64 * line, _MM_HINT_T0);
      for (int h = 0; h < H; h++) {
        const int half = first_half + h;
        const fvec d = r16_scales(block, half);
        ivec low[4], high[4];
        for (int j = 0; j < 4; j++) {
          const ivec bytes = r16_bytes(block + R16_CHUNK(j, 0) + 32 * half);
          low[j] = low_nibbles(bytes);
          high[j] = low_nibbles(VEC(srli_epi16)(bytes, 4));
        }
        for (int t = 0; t < T; t++) {
          const size_t at = (size_t)t * nb + b;
          const int8_t *codes = x->codes + (size_t)t * cols + (size_t)b * QK;
          /* Codes stored as q + 8 (unsigned, for the u8 × s8 product): 8 · Σx comes off through the start. */
          ivec sum = VEC(set1_epi32)(-8 * x->sums[at]);
#if HERD_PATH == HERD_AVX2
          /*
           * Without vpdpbusd, the block's eight vpmaddubsw add up in int16 (each lane at most 8 · 2 ·
           * 15 · 127 = 30,480) before one vpmaddwd widens them: 17 integer operations a token per
           * block instead of 24.
           */
          ivec pairs = _mm256_setzero_si256();
          for (int j = 0; j < 4; j++) {
            pairs = _mm256_add_epi16(pairs, maddubs(low[j], broadcast4(codes + 4 * j)));
            pairs = _mm256_add_epi16(pairs, maddubs(high[j], broadcast4(codes + 16 + 4 * j)));
          }
          sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
#else
          for (int j = 0; j < 4; j++) {
            sum = dpbusd(sum, low[j], broadcast4(codes + 4 * j));
            sum = dpbusd(sum, high[j], broadcast4(codes + 16 + 4 * j));
          }
#endif
          acc[s][h][t] = fmadd(to_float(sum), VEC(mul_ps)(d, fbroadcast(x->scales[at])), acc[s][h][t]);
        }
      }
    }
  STORE_STREAMS(acc, S, H, T, stream_rows);
}

/*
 * Tokens in tiles of up to TOKENS, each group of rows in halves as the vector width takes it; one
 * token takes all halves at once, and STREAMS groups at once, each from its own part of the rows
 * (the groups left over, fewer than STREAMS, one at a time). TILE(HALF, H, T, S, stream_rows):
 * H, T and S compile-time constants.
 */
#define GROUP_LOOPS(TILE, TOKENS, scale_block, sum_group, STREAMS)                                                                       \
  const int grouped = rows / REPACK_ROWS * REPACK_ROWS;                                                                          \
  const int streamed = tokens == 1 ? rows / (STREAMS * REPACK_ROWS) * (STREAMS * REPACK_ROWS) : 0;                               \
  for (int g = 0; g < streamed / STREAMS; g += REPACK_ROWS) {                                                                    \
    const uint8_t *group = w + (size_t)g * row_bytes;                                                                            \
    const quantized_row xt = *x;                                                                                                 \
    float *yt = y + g;                                                                                                           \
    TILE(0, R16_HALVES, 1, STREAMS, streamed / STREAMS);                                                                         \
  }                                                                                                                              \
  for (int g = streamed; g < grouped; g += REPACK_ROWS) {                                                                        \
    const uint8_t *group = w + (size_t)g * row_bytes;                                                                            \
    for (int t0 = 0; t0 < tokens; t0 += TOKENS) {                                                                                \
      const int tn = tokens - t0 < TOKENS ? tokens - t0 : TOKENS;                                                                \
      const quantized_row xt = {.codes = x->codes + (size_t)t0 * cols, .scales = x->scales + (size_t)t0 * (cols / scale_block), \
                                .sums = x->sums + (size_t)t0 * (cols / sum_group)};                                              \
      float *yt = y + (size_t)t0 * y_stride + g;                                                                                 \
      if (tn == 1) {                                                                                                             \
        TILE(0, R16_HALVES, 1, 1, 0);                                                                                            \
        continue;                                                                                                                \
      }                                                                                                                          \
      for (int half = 0; half < R16_HALVES; half++) {                                                                            \
        switch (tn) {                                                                                                            \
          case 2: TILE(half, 1, 2 < TOKENS ? 2 : TOKENS, 1, 0); break;                                                           \
          case 3: TILE(half, 1, 3 < TOKENS ? 3 : TOKENS, 1, 0); break;                                                           \
          case 4: TILE(half, 1, 4 < TOKENS ? 4 : TOKENS, 1, 0); break;                                                           \
          case 5: TILE(half, 1, 5 < TOKENS ? 5 : TOKENS, 1, 0); break;                                                           \
          case 6: TILE(half, 1, 6 < TOKENS ? 6 : TOKENS, 1, 0); break;                                                           \
          case 7: TILE(half, 1, 7 < TOKENS ? 7 : TOKENS, 1, 0); break;                                                           \
          default: TILE(half, 1, TOKENS, 1, 0); break;                                                                           \
        }                                                                                                                        \
      }                                                                                                                          \
    }                                                                                                                            \
  }

/* The rows past the last whole group of a repacked K-quant or IQ4_XS matrix: the path's row dot per row and token (activation sums every sum_group codes). */
static void stored_super_block_rows(float (*dot)(const uint8_t *, const int8_t *, const float *, const int32_t *, int), const uint8_t *w, size_t row_bytes,
                                    int first, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride, int sum_group) {
  for (int r = first; r < rows; r++)
    for (int t = 0; t < tokens; t++)
      y[(size_t)t * y_stride + r] = dot(w + (size_t)r * row_bytes, x->codes + (size_t)t * cols, x->scales + (size_t)t * (cols / QK_K),
                                        x->sums + (size_t)t * (cols / sum_group), cols / QK_K);
}

static void gemm_q4_0_r16(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
#define TILE(HALF, H, T, S, stream_rows) tile_r16(group, HALF, H, &xt, cols, yt, y_stride, T, S, stream_rows, row_bytes)
  GROUP_LOOPS(TILE, R16_TOKENS, QK, QK, R16_DECODE_STREAMS)
#undef TILE
  /* Rows past the last whole group are stored as they were. */
  if (grouped < rows) gemm_q4_0(w + (size_t)grouped * row_bytes, row_bytes, rows - grouped, x, tokens, cols, y + grouped, y_stride);
}

/* Repacked Q4_K: tokens a tile (each super-block's float sums kept per token, its scales in memory operands). */
#if HERD_PATH == HERD_AVX512
#define K16_TOKENS 8
static inline fvec k16_halves(const uint8_t *p, int half) { (void)half; return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
#else
#define K16_TOKENS 4 /* 1.1–1.4× the prefill products of 2 tokens a tile for Q4_K and Q6_K on Zen 3's AVX2 path */
static inline fvec k16_halves(const uint8_t *p, int half) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 16 * half))); }
#endif
static inline ivec iset1(int32_t v) { return VEC(set1_epi32)(v); }
#if HERD_PATH == HERD_AVX512
static inline ivec iand(ivec a, ivec b) { return _mm512_and_si512(a, b); }
static inline ivec ior(ivec a, ivec b) { return _mm512_or_si512(a, b); }
#else
static inline ivec iand(ivec a, ivec b) { return _mm256_and_si256(a, b); }
static inline ivec ior(ivec a, ivec b) { return _mm256_or_si256(a, b); }
#endif
#if HERD_PATH == HERD_AVX512
static inline ivec ixor(ivec a, ivec b) { return _mm512_xor_si512(a, b); }
#else
static inline ivec ixor(ivec a, ivec b) { return _mm256_xor_si256(a, b); }
#endif
/* Two int16 values in every int32 lane (the activation sums a pair of minimums multiplies). */
static inline ivec broadcast_pair(int32_t low, int32_t high) { return iset1((int32_t)((uint32_t)(uint16_t)low | (uint32_t)high << 16)); }

/* herd_q4k_scales_mins on every lane at once: the sub-blocks' scales (bytes of sc[0..1]) and minimums (m[0..1]) of a half's rows. */
static inline void k16_scales_mins(const uint8_t *block, int half, ivec sc[2], ivec m[2]) {
  const ivec u0 = r16_bytes(block + K16_SCALES(0, 0) + 32 * half), u1 = r16_bytes(block + K16_SCALES(1, 0) + 32 * half),
             u2 = r16_bytes(block + K16_SCALES(2, 0) + 32 * half);
  const ivec six = iset1(0x3f3f3f3f), four = iset1(0x0f0f0f0f), two = iset1(0x03030303);
  sc[0] = iand(u0, six);
  sc[1] = ior(iand(u2, four), VEC(slli_epi32)(iand(VEC(srli_epi32)(u0, 6), two), 4));
  m[0] = iand(u1, six);
  m[1] = ior(iand(VEC(srli_epi32)(u2, 4), four), VEC(slli_epi32)(iand(VEC(srli_epi32)(u1, 6), two), 4));
}

/* Bit j of every byte of a qh chunk as 16, the fifth bit of Q5_K sub-block j's codes: one mask and one shift within each byte. */
static inline ivec fifth_bits(ivec qh, int j) {
  const ivec bit = iand(qh, VEC(set1_epi8)((char)(1 << j)));
  return j < 4 ? VEC(slli_epi16)(bit, 4 - j) : VEC(srli_epi16)(bit, j - 4);
}

/*
 * Repacked Q4_K, or Q5_K where q5 (a compile-time constant): Q5_K's layout is Q4_K's with the qh
 * chunks between the scales and the nibbles, each code or'ed with its fifth bit (bit j of its qh
 * chunk for sub-block j). Codes reach 31 there, so on AVX2 a sub-block's pmaddubsw add in int16
 * four at a time (at most 4 · 2 · 31 · 127 = 31,496 a lane) before each pmaddwd by the scale,
 * where Q4_K's eight add before one. Q5_K's activations are Q8_K with sums of 16, as its row dots
 * take them for the rows past a whole group: a sub-block's minimum meets the sum of its two.
 */
static ALWAYS_INLINE void tile_k16(const uint8_t *group, int first_half, const int H, const quantized_row *x, int cols, float *y, int y_stride, const int T,
                                   const int q5) {
  const int nb = cols / QK_K;
  const size_t block_bytes = q5 ? Q5R_BLOCK_BYTES : K16_BLOCK_BYTES;
  const int nibbles_at = q5 ? Q5R_CHUNK(0, 0, 0) : K16_CHUNK(0, 0, 0);
  fvec acc[R16_HALVES][K16_TOKENS];
  for (int h = 0; h < H; h++)
    for (int t = 0; t < T; t++) acc[h][t] = fzero();
  for (int b = 0; b < nb; b++) {
    const uint8_t *block = group + (size_t)b * block_bytes;
    for (int h = 0; h < H; h++) {
      const int half = first_half + h;
      const fvec d = k16_halves(block + K16_D, half), dmin = k16_halves(block + K16_DMIN, half);
      ivec sc[2], m[2], qh[8];
      k16_scales_mins(block, half, sc, m);
      if (q5)
        for (int c = 0; c < 8; c++) qh[c] = r16_bytes(block + Q5R_QH(c, 0) + 32 * half);
#if HERD_PATH == HERD_AVX2
      ivec blocks[K16_TOKENS];
      for (int t = 0; t < T; t++) blocks[t] = izero();
#else
      fvec dsc[8];
      for (int j = 0; j < 8; j++) dsc[j] = VEC(mul_ps)(d, to_float(iand(VEC(srli_epi32)(sc[j / 4], 8 * (j % 4)), iset1(0xff))));
      fvec blocks[K16_TOKENS];
      for (int t = 0; t < T; t++) blocks[t] = fzero();
#endif
      /* Minimums as int16 pairs (m0, m2), (m1, m3), (m4, m6), (m5, m7) for the pmaddwd with the activation sums. */
      const ivec mins[4] = {iand(m[0], iset1(0x00ff00ff)), iand(VEC(srli_epi32)(m[0], 8), iset1(0x00ff00ff)),
                            iand(m[1], iset1(0x00ff00ff)), iand(VEC(srli_epi32)(m[1], 8), iset1(0x00ff00ff))};
      for (int j = 0; j < 8; j++) {
        /* A super-block of 16 rows is 36 cache lines (Q5_K 44): the one after next comes in five (six) lines per sub-block (decode reads weights once, from memory). */
        const int lines = q5 ? 6 : 5;
        if (h == 0)
          for (int line = lines * j; line < lines * (j + 1); line++) _mm_prefetch((const char *)block + 2 * block_bytes + 64 * line, _MM_HINT_T0);
        ivec codes[8];
        for (int c = 0; c < 8; c++) {
          const ivec bytes = r16_bytes(block + nibbles_at + 64 * (8 * (j / 2) + c) + 32 * half);
          codes[c] = low_nibbles(j & 1 ? VEC(srli_epi16)(bytes, 4) : bytes);
          if (q5) codes[c] = ior(codes[c], fifth_bits(qh[c], j));
        }
#if HERD_PATH == HERD_AVX2
        /*
         * Without vpdpbusd, the sub-block's eight pmaddubsw stay int16 (each lane at most 8 · 2 ·
         * 15 · 127 = 30,480; Q5_K's four at a time) and one pmaddwd applies the sub-block's scale
         * (≤ 63, in both int16 halves of the row's lane): the super-block sums in int32, so a token
         * costs 17 integer operations a sub-block instead of 24 and a float conversion.
         */
        const ivec scale = iand(VEC(srli_epi32)(sc[j / 4], 8 * (j % 4)), iset1(0xff)), scale16 = ior(scale, VEC(slli_epi32)(scale, 16));
        for (int t = 0; t < T; t++) {
          const int8_t *xc = x->codes + (size_t)t * cols + (size_t)b * QK_K + 32 * j;
          ivec low = maddubs(codes[0], broadcast4(xc)), high = maddubs(codes[4], broadcast4(xc + 16));
          for (int c = 1; c < 4; c++) {
            low = _mm256_add_epi16(low, maddubs(codes[c], broadcast4(xc + 4 * c)));
            high = _mm256_add_epi16(high, maddubs(codes[c + 4], broadcast4(xc + 16 + 4 * c)));
          }
          const ivec products = q5 ? _mm256_add_epi32(_mm256_madd_epi16(low, scale16), _mm256_madd_epi16(high, scale16))
                                   : _mm256_madd_epi16(_mm256_add_epi16(low, high), scale16);
          blocks[t] = _mm256_add_epi32(blocks[t], products);
        }
#else
        for (int t = 0; t < T; t++) {
          const int8_t *xc = x->codes + (size_t)t * cols + (size_t)b * QK_K + 32 * j;
          ivec sum = izero();
          for (int c = 0; c < 8; c++) sum = dpbusd(sum, codes[c], broadcast4(xc + 4 * c));
          blocks[t] = fmadd(to_float(sum), dsc[j], blocks[t]);
        }
#endif
      }
      for (int t = 0; t < T; t++) {
        /* The activations' sum of each sub-block of 32: Q4_K's as quantized, Q5_K's from its two sums of 16. */
        int32_t pairs[8];
        const int32_t *xs = x->sums + (size_t)t * (cols / QK) + (size_t)b * 8;
        if (q5) {
          const int32_t *xs16 = x->sums + (size_t)t * (cols / KQ_GROUP) + (size_t)b * (QK_K / KQ_GROUP);
          for (int j = 0; j < 8; j++) pairs[j] = xs16[2 * j] + xs16[2 * j + 1];
          xs = pairs;
        }
        ivec minsum = izero();
        for (int k = 0; k < 2; k++) {
          minsum = dpwssd(minsum, mins[2 * k], broadcast_pair(xs[4 * k], xs[4 * k + 2]));
          minsum = dpwssd(minsum, mins[2 * k + 1], broadcast_pair(xs[4 * k + 1], xs[4 * k + 3]));
        }
        const fvec xd = fbroadcast(x->scales[(size_t)t * nb + b]);
#if HERD_PATH == HERD_AVX2
        acc[h][t] = fmadd(to_float(blocks[t]), VEC(mul_ps)(d, xd), acc[h][t]);
#else
        acc[h][t] = fmadd(blocks[t], xd, acc[h][t]);
#endif
        acc[h][t] = VEC(fnmadd_ps)(to_float(minsum), VEC(mul_ps)(dmin, xd), acc[h][t]);
      }
    }
  }
  STORE_HALVES(acc, H, T);
}

static void gemm_q4_k_r16(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
#define TILE(HALF, H, T, S, stream_rows) tile_k16(group, HALF, H, &xt, cols, yt, y_stride, T, 0)
  GROUP_LOOPS(TILE, K16_TOKENS, QK_K, QK, 1)
#undef TILE
  if (grouped < rows) gemm_q4_k(w + (size_t)grouped * row_bytes, row_bytes, rows - grouped, x, tokens, cols, y + grouped, y_stride);
}

static void gemm_q5_k_r16(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
#define TILE(HALF, H, T, S, stream_rows) tile_k16(group, HALF, H, &xt, cols, yt, y_stride, T, 1)
  GROUP_LOOPS(TILE, K16_TOKENS, QK_K, KQ_GROUP, 1)
#undef TILE
  stored_super_block_rows(dot_q5_k, w, row_bytes, grouped, rows, x, tokens, cols, y, y_stride, KQ_GROUP);
}

/*
 * Repacked IQ4_XS (repack.h): per sub-block of 32 the codes become their levels through one
 * vpshufb on a table of the 16 (each 128-bit lane holds it), eight vectors of four levels of each
 * row; per token one int32 sum per row, times the row's 6-bit scale (ls − 32) in integers, and
 * the super-block's sums times d and the activation scale once. The VNNI paths make the levels
 * unsigned (+128) for vpdpbusd and take 128 · Σx back; AVX2 multiplies |level| by x with the
 * level's sign (vpmaddubsw would saturate on 241 · 127 pairs), one vpmaddwd per vector as the row dots do.
 */
#if HERD_PATH == HERD_AVX512
static inline ivec iq4_table(void) { return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)herd_iq4_levels)); }
static inline ivec i4r_scales_h(const uint8_t *block, int half) { (void)half; return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(block + I4R_SCALES_H(0)))); }
#else
static inline ivec iq4_table(void) { return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)herd_iq4_levels)); }
static inline ivec i4r_scales_h(const uint8_t *block, int half) { return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(block + I4R_SCALES_H(0) + 16 * half))); }
#endif

static ALWAYS_INLINE void tile_i4r(const uint8_t *group, int first_half, const int H, const quantized_row *x, int cols, float *y, int y_stride, const int T) {
  const int nb = cols / QK_K;
  const ivec table = iq4_table();
  fvec acc[R16_HALVES][K16_TOKENS];
  for (int h = 0; h < H; h++)
    for (int t = 0; t < T; t++) acc[h][t] = fzero();
  for (int b = 0; b < nb; b++) {
    const uint8_t *block = group + (size_t)b * I4R_BLOCK_BYTES;
    for (int h = 0; h < H; h++) {
      const int half = first_half + h;
      const fvec d = k16_halves(block + I4R_D, half);
      const ivec low_scales = r16_bytes(block + I4R_SCALES_L(0) + 32 * half), high_scales = i4r_scales_h(block, half);
      ivec blocks[K16_TOKENS];
      for (int t = 0; t < T; t++) blocks[t] = izero();
      for (int j = 0; j < QK_K / QK; j++) {
        /* A super-block of 16 rows is 34 cache lines: the one after next comes in five lines per sub-block. */
        if (h == 0)
          for (int line = 5 * j; line < 5 * j + 5; line++) _mm_prefetch((const char *)block + 2 * I4R_BLOCK_BYTES + 64 * line, _MM_HINT_T0);
        const ivec scale = VEC(sub_epi32)(ior(iand(VEC(srli_epi32)(low_scales, 4 * j), iset1(0xf)),
                                              VEC(slli_epi32)(iand(VEC(srli_epi32)(high_scales, 2 * j), iset1(3)), 4)),
                                          iset1(32));
        /* levels[c]: codes 4c..4c+3 of each row (low nibbles of chunk c), levels[4 + c]: 16 further (its high nibbles). */
        ivec levels[8], weights[8];
        for (int c = 0; c < 4; c++) {
          const ivec bytes = r16_bytes(block + I4R_CHUNK(j, c, 0) + 32 * half);
          levels[c] = VEC(shuffle_epi8)(table, low_nibbles(bytes));
          levels[c + 4] = VEC(shuffle_epi8)(table, low_nibbles(VEC(srli_epi16)(bytes, 4)));
        }
        for (int k = 0; k < 8; k++)
#if HERD_PATH == HERD_AVX2
          weights[k] = _mm256_sign_epi8(levels[k], levels[k]);
#else
          weights[k] = ixor(levels[k], VEC(set1_epi8)((char)0x80));
#endif
#if HERD_PATH == HERD_AVX2
        /* The scale (−32..31) in both int16 halves of each row's lane: the pmaddwd that widens each pmaddubsw applies it, with no 32-bit multiply a token. */
        const ivec scale16 = _mm256_blend_epi16(scale, _mm256_slli_epi32(scale, 16), 0xaa);
#endif
        for (int t = 0; t < T; t++) {
          const int8_t *xc = x->codes + (size_t)t * cols + (size_t)b * QK_K + 32 * j;
#if HERD_PATH == HERD_AVX2
          for (int k = 0; k < 8; k++) {
            const ivec xk = broadcast4(xc + 4 * (k % 4) + 16 * (k / 4));
            blocks[t] = _mm256_add_epi32(blocks[t], _mm256_madd_epi16(maddubs(weights[k], _mm256_sign_epi8(xk, levels[k])), scale16));
          }
#else
          ivec sum = izero();
          for (int k = 0; k < 8; k++) sum = dpbusd(sum, weights[k], broadcast4(xc + 4 * (k % 4) + 16 * (k / 4)));
          sum = VEC(sub_epi32)(sum, iset1(128 * x->sums[(size_t)t * (cols / QK) + (size_t)b * (QK_K / QK) + j]));
          blocks[t] = VEC(add_epi32)(blocks[t], VEC(mullo_epi32)(sum, scale));
#endif
        }
      }
      for (int t = 0; t < T; t++) acc[h][t] = fmadd(to_float(blocks[t]), VEC(mul_ps)(d, fbroadcast(x->scales[(size_t)t * nb + b])), acc[h][t]);
    }
  }
  STORE_HALVES(acc, H, T);
}

static void gemm_iq4_xs_r16(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
#define TILE(HALF, H, T, S, stream_rows) tile_i4r(group, HALF, H, &xt, cols, yt, y_stride, T)
  GROUP_LOOPS(TILE, K16_TOKENS, QK_K, QK, 1)
#undef TILE
  stored_super_block_rows(dot_iq4_xs, w, row_bytes, grouped, rows, x, tokens, cols, y, y_stride, QK);
}

/*
 * Repacked Q6_K (repack.h): per super-block and token one int32 sum per row, Σ_g scale_g · (codes
 * · x)_g with the codes unsigned (q + 32), less 32 · Σ_g scale_g · Σx_g (int16 pairs of scales and
 * of the activation sums of 16, in vpdpwssd); the scales multiply in integers, exactly as the
 * scalar path's. Codes 32i + l of a half of 128: a mask of byte A, B or C for i < 3, and for i = 3
 * the top bit pairs of all three.
 */
static inline ivec q6r_codes(const uint8_t *block, int n, int i, int c, int half) {
  const ivec top = VEC(set1_epi8)((char)0xc0);
  if (i < 3) return iand(r16_bytes(block + Q6R_CODES(n, i, c, 0) + 32 * half), VEC(set1_epi8)(0x3f));
  /* Masked before shifting, so no bit crosses into the byte below. */
  const ivec a = iand(r16_bytes(block + Q6R_CODES(n, 0, c, 0) + 32 * half), top), b = iand(r16_bytes(block + Q6R_CODES(n, 1, c, 0) + 32 * half), top),
             cc = iand(r16_bytes(block + Q6R_CODES(n, 2, c, 0) + 32 * half), top);
  return ior(ior(VEC(srli_epi16)(a, 6), VEC(srli_epi16)(b, 4)), VEC(srli_epi16)(cc, 2));
}

#if HERD_PATH == HERD_AVX2
/* vpshufb indices putting byte e of each int32 lane into the high byte of both its int16 halves (zeros below, for the arithmetic shift). */
static inline ivec scale16_index(int e) {
  const ivec byte_e = _mm256_set1_epi32((int)(0x80u | (uint32_t)e << 8 | 0x80u << 16 | (uint32_t)e << 24));
  return _mm256_add_epi8(byte_e, _mm256_setr_epi32(0, 0x04000400, 0x08000800, 0x0c000c00, 0, 0x04000400, 0x08000800, 0x0c000c00));
}
#endif

static ALWAYS_INLINE void tile_q6r(const uint8_t *group, int first_half, const int H, const quantized_row *x, int cols, float *y, int y_stride, const int T) {
  const int nb = cols / QK_K;
  fvec acc[R16_HALVES][K16_TOKENS];
  for (int h = 0; h < H; h++)
    for (int t = 0; t < T; t++) acc[h][t] = fzero();
  for (int b = 0; b < nb; b++) {
    const uint8_t *block = group + (size_t)b * Q6R_BLOCK_BYTES;
    for (int hh = 0; hh < H; hh++) {
      const int half = first_half + hh;
      const fvec d = k16_halves(block + Q6R_D, half);
      /* AVX2: each scale in both int16 halves of its row's lane, for the pmaddwd that widens the codes' products; else int32. */
      ivec scale[16], pairs[8];
      for (int k = 0; k < 4; k++) {
        const ivec four = r16_bytes(block + Q6R_SCALES(k, 0) + 32 * half);
        for (int e = 0; e < 4; e++)
#if HERD_PATH == HERD_AVX2
          scale[4 * k + e] = VEC(srai_epi16)(VEC(shuffle_epi8)(four, scale16_index(e)), 8);
#else
          scale[4 * k + e] = VEC(srai_epi32)(VEC(slli_epi32)(four, 24 - 8 * e), 24);
#endif
        /* int16 lanes (scale 4k, scale 4k + 2) and (4k + 1, 4k + 3). */
        pairs[2 * k] = VEC(srai_epi16)(VEC(slli_epi16)(four, 8), 8);
        pairs[2 * k + 1] = VEC(srai_epi16)(four, 8);
      }
      ivec sums[K16_TOKENS];
      for (int t = 0; t < T; t++) {
        const int32_t *xs = x->sums + (size_t)t * (cols / KQ_GROUP) + (size_t)b * (QK_K / KQ_GROUP);
        ivec offsets = izero();
        for (int k = 0; k < 4; k++) {
          offsets = dpwssd(offsets, pairs[2 * k], broadcast_pair(xs[4 * k], xs[4 * k + 2]));
          offsets = dpwssd(offsets, pairs[2 * k + 1], broadcast_pair(xs[4 * k + 1], xs[4 * k + 3]));
        }
        sums[t] = VEC(mullo_epi32)(offsets, iset1(-32));
      }
      for (int n = 0; n < 2; n++) {
        /*
         * Passes over 16 codes (one group, one scale) of each row: four code vectors live, not
         * eight (GCC kept eight on the stack). Each of the first seven passes of a half prefetches
         * four lines of the next block's same half (3,360 bytes, 52.5 lines in all): one block
         * ahead measured faster from memory than two or four, and spread over the passes faster
         * than all 26 lines before them (docs/performance.md).
         */
        for (int i = 0; i < 4; i++)
          for (int q = 0; q < 2; q++) {
            const int step = 2 * i + q;
            if (hh == 0 && step < 7)
              for (int line = 0; line < 4; line++) _mm_prefetch((const char *)block + Q6R_BLOCK_BYTES + 64 * (26 * n + 4 * step + line), _MM_HINT_T0);
            ivec codes[4];
            for (int c = 0; c < 4; c++) codes[c] = q6r_codes(block, n, i, 4 * q + c, half);
            const ivec group_scale = scale[8 * n + 2 * i + q];
            for (int t = 0; t < T; t++) {
              const int8_t *xc = x->codes + (size_t)t * cols + (size_t)b * QK_K + 128 * n + 32 * i + 16 * q;
#if HERD_PATH == HERD_AVX2
              /*
               * Without vpdpbusd, two chunks' vpmaddubsw add up in int16 (each lane at most 2 · 2 ·
               * 63 · 127 = 32,004) before one vpmaddwd by the scale widens them (at most 2 · 32,004
               * · 128 a lane): ten integer operations a token per 16 weights.
               */
              const ivec low = _mm256_add_epi16(maddubs(codes[0], broadcast4(xc)), maddubs(codes[1], broadcast4(xc + 4)));
              const ivec high = _mm256_add_epi16(maddubs(codes[2], broadcast4(xc + 8)), maddubs(codes[3], broadcast4(xc + 12)));
              sums[t] = _mm256_add_epi32(sums[t], _mm256_add_epi32(_mm256_madd_epi16(low, group_scale), _mm256_madd_epi16(high, group_scale)));
#else
              ivec sum = izero();
              for (int c = 0; c < 4; c++) sum = dpbusd(sum, codes[c], broadcast4(xc + 4 * c));
              sums[t] = VEC(add_epi32)(sums[t], VEC(mullo_epi32)(sum, group_scale));
#endif
            }
          }
      }
      for (int t = 0; t < T; t++) acc[hh][t] = fmadd(to_float(sums[t]), VEC(mul_ps)(d, fbroadcast(x->scales[(size_t)t * nb + b])), acc[hh][t]);
    }
  }
  STORE_HALVES(acc, H, T);
}

static void gemm_q6_k_r16(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
#define TILE(HALF, H, T, S, stream_rows) tile_q6r(group, HALF, H, &xt, cols, yt, y_stride, T)
  GROUP_LOOPS(TILE, K16_TOKENS, QK_K, KQ_GROUP, 1)
#undef TILE
  stored_super_block_rows(dot_q6_k, w, row_bytes, grouped, rows, x, tokens, cols, y, y_stride, KQ_GROUP);
}

/*
 * Repacked Q8_0 (repack.h): per block, eight vectors of four codes of each row (signed codes made
 * unsigned, q + Q8_0_OFFSET, where vpdpbusd takes them; AVX2 keeps the |w|, sign(x, w) form of
 * q0_product), each serving the tile's tokens; one int32 lane per row, as for Q4_0. A one-token
 * tile of one stream prefetches prefetch_blocks ahead: two on Zen 3's AVX2 path, where it made
 * decode's products 1.3× faster, before it read four streams (R16_DECODE_STREAMS); none on the
 * AVX-512 path (docs/performance.md).
 */
#if HERD_PATH == HERD_AVX512
#define Q8R_PREFETCH_BLOCKS 0
#else
#define Q8R_PREFETCH_BLOCKS 2
#endif
static inline ivec q8r_codes(const uint8_t *p) {
#if Q8_0_OFFSET
  return ixor(r16_bytes(p), VEC(set1_epi8)((char)0x80));
#else
  return r16_bytes(p);
#endif
}

/* As tile_r16: S groups × H halves × T tokens. */
static ALWAYS_INLINE void tile_q8r(const uint8_t *group, int first_half, const int H, const quantized_row *x, int cols, float *y, int y_stride, const int T,
                                   const int prefetch_blocks, const int S, int stream_rows, size_t row_bytes) {
  const int nb = cols / QK;
  fvec acc[R16_DECODE_STREAMS][R16_HALVES][R16_TOKENS];
  for (int s = 0; s < S; s++)
    for (int h = 0; h < H; h++)
      for (int t = 0; t < T; t++) acc[s][h][t] = fzero();
  for (int b = 0; b < nb; b++) {
    for (int s = 0; s < S; s++) {
      const uint8_t *block = group + (size_t)s * stream_rows * row_bytes + (size_t)b * Q8R_BLOCK_BYTES;
      if (prefetch_blocks && S == 1)
        for (int line = 0; line < 9; line++) _mm_prefetch((const char *)block + prefetch_blocks * Q8R_BLOCK_BYTES + 64 * line, _MM_HINT_T0);
      for (int h = 0; h < H; h++) {
        const int half = first_half + h;
        const fvec d = r16_scales(block, half);
        ivec codes[8];
        for (int j = 0; j < 8; j++) codes[j] = q8r_codes(block + R16_CHUNK(j, 0) + 32 * half);
        for (int t = 0; t < T; t++) {
          const size_t at = (size_t)t * nb + b;
          const int8_t *xc = x->codes + (size_t)t * cols + (size_t)b * QK;
          ivec sum = iset1(-Q8_0_OFFSET * x->sums[at]);
          for (int j = 0; j < 8; j++) sum = q0_product(sum, codes[j], broadcast4(xc + 4 * j), FMT_Q8_0);
          acc[s][h][t] = fmadd(to_float(sum), VEC(mul_ps)(d, fbroadcast(x->scales[at])), acc[s][h][t]);
        }
      }
    }
  }
  STORE_STREAMS(acc, S, H, T, stream_rows);
}

static void gemm_q8_0_r16(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
#define TILE(HALF, H, T, S, stream_rows) tile_q8r(group, HALF, H, &xt, cols, yt, y_stride, T, Q8R_PREFETCH_BLOCKS, S, stream_rows, row_bytes)
  GROUP_LOOPS(TILE, R16_TOKENS, QK, QK, R16_DECODE_STREAMS)
#undef TILE
  if (grouped < rows) gemm_q8_0(w + (size_t)grouped * row_bytes, row_bytes, rows - grouped, x, tokens, cols, y + grouped, y_stride);
}

/* Lane r of the result is the sum of v[r]'s eight lanes: eight horizontal sums as one transpose-add. */
static inline __m256 sum_lanes8(const __m256 v[8]) {
  const __m256 low = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const __m256 high = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  /* low holds v[0..3]'s lanes 0-3 summed in its lower half and lanes 4-7 in its upper half; high the same for v[4..7]. */
  return _mm256_add_ps(_mm256_permute2f128_ps(low, high, 0x20), _mm256_permute2f128_ps(low, high, 0x31));
}

/*
 * Cached rows ahead that attention prefetches: a decode step reads a layer's keys and values once,
 * from memory past a few hundred positions (the 1B shape's 512 positions are 2 MB a layer). Zen 3,
 * two threads, 16 layers' attention at 512 positions: 1.35–1.58 → 1.05–1.09 ms; at 1,024:
 * 3.1–3.6 → 2.33–2.53 (keys 8 or 32 rows ahead, values 16 or 32: no better); in a two-thread
 * decode at 512 positions, 2.18–2.25 → 1.83–1.86 ms a token. Past the last row a prefetch wastes a
 * line at most: it never faults.
 */
#define KEYS_AHEAD 16
#define VALUES_AHEAD 8

/* Eight key rows at a time per query head: eight vector accumulators, summed across lanes together. */
static void attend_scores(const float *keys, int n, int d, const float *queries, int heads, float scale, float *scores, size_t stride) {
  const int wide = d & ~7;
  int p = 0;
  for (; p + 8 <= n; p += 8) {
    const float *rows = keys + (size_t)p * d;
    for (int at = 0; at < 8 * d; at += 16) _mm_prefetch((const char *)(rows + (size_t)KEYS_AHEAD * d + at), _MM_HINT_T0);
    for (int j = 0; j < heads; j++) {
      const float *q = queries + (size_t)j * d;
      __m256 acc[8];
      float tail[8] = {0};
#pragma GCC unroll 8
      for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
      for (int i = 0; i < wide; i += 8) {
        const __m256 query = _mm256_loadu_ps(q + i);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(rows + (size_t)r * d + i), query, acc[r]);
      }
      for (int i = wide; i < d; i++)
        for (int r = 0; r < 8; r++) tail[r] += rows[(size_t)r * d + i] * q[i];
      const __m256 dots = _mm256_add_ps(sum_lanes8(acc), _mm256_loadu_ps(tail));
      _mm256_storeu_ps(scores + j * stride + p, _mm256_mul_ps(dots, _mm256_set1_ps(scale)));
    }
  }
  for (; p < n; p++)
    for (int j = 0; j < heads; j++) scores[j * stride + p] = dot_f32(keys + (size_t)p * d, queries + (size_t)j * d, d) * scale;
}

/*
 * exp on eight floats: llama.cpp's ggml_v_expf (a degree-5 polynomial on the reduced argument,
 * within about 1.5 ulp of expf), with its slow branch for arguments whose 2^n under- or overflows.
 */
static inline __m256 exp8(__m256 x) {
  const __m256 r = _mm256_set1_ps(0x1.8p23f);
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
  const __m256 n = _mm256_sub_ps(z, r);
  const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f), _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
  const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
  const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
  const __m256 c = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(126), _CMP_GT_OQ);
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 j = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                      _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
      u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
  if (!_mm256_movemask_ps(c)) return _mm256_fmadd_ps(j, k, k);
  const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)), _mm256_set1_epi32((int)0x82000000u));
  const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
  const __m256 huge = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(192), _CMP_GT_OQ);
  return _mm256_or_ps(_mm256_and_ps(huge, _mm256_mul_ps(s1, s1)),
                      _mm256_andnot_ps(huge, _mm256_or_ps(_mm256_and_ps(c, _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                                                          _mm256_andnot_ps(c, _mm256_fmadd_ps(k, j, k)))));
}

static float exp_shifted(float *x, int n, float shift) {
  const __m256 by = _mm256_set1_ps(shift);
  __m256 sums = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), by));
    _mm256_storeu_ps(x + i, e);
    sums = _mm256_add_ps(sums, e);
  }
  float total = hsum8(sums);
  for (; i < n; i++) total += x[i] = expf(x[i] - shift);
  return total;
}

/* silu(g) · u = g · u / (1 + exp(−g)), eight at a time with exp8 (expf a value cost about 15 ns). */
static void swiglu(const float *gate, const float *up, float *out, size_t first, size_t last) {
  size_t i = first;
  for (; i + 8 <= last; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_storeu_ps(out + i, _mm256_div_ps(_mm256_mul_ps(g, _mm256_loadu_ps(up + i)), _mm256_add_ps(_mm256_set1_ps(1), e)));
  }
  for (; i < last; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* Columns [c, c + 8·V) of H heads' weighted sums over all n rows: each value vector is loaded once for the H heads. */
static ALWAYS_INLINE void values_columns(const float *values, int n, int d, const float *weights, size_t stride, float *out, int c, const int H, const int V) {
  __m256 acc[4][2];
  for (int h = 0; h < H; h++)
    for (int v = 0; v < V; v++) acc[h][v] = _mm256_loadu_ps(out + (size_t)h * d + c + 8 * v);
  for (int p = 0; p < n; p++) {
    __m256 row[2];
    /* The pass over the first columns brings in whole rows: the later passes find them in L1 or L2. */
    if (c == 0)
      for (int at = 0; at < d; at += 16) _mm_prefetch((const char *)(values + (size_t)(p + VALUES_AHEAD) * d + at), _MM_HINT_T0);
    for (int v = 0; v < V; v++) row[v] = _mm256_loadu_ps(values + (size_t)p * d + c + 8 * v);
    for (int h = 0; h < H; h++) {
      const __m256 weight = _mm256_broadcast_ss(weights + h * stride + p);
      for (int v = 0; v < V; v++) acc[h][v] = _mm256_fmadd_ps(weight, row[v], acc[h][v]);
    }
  }
  for (int h = 0; h < H; h++)
    for (int v = 0; v < V; v++) _mm256_storeu_ps(out + (size_t)h * d + c + 8 * v, acc[h][v]);
}

/* Up to four heads at a time, 16 columns at a time (8 accumulators of 16 registers), then 8, then one. */
static void attend_values(const float *values, int n, int d, const float *weights, size_t stride, int heads, float *out) {
#define COLUMNS(V)                                                                         \
  switch (H) {                                                                             \
    case 4: values_columns(values, n, d, w, stride, o, c, 4, V); break;                     \
    case 3: values_columns(values, n, d, w, stride, o, c, 3, V); break;                     \
    case 2: values_columns(values, n, d, w, stride, o, c, 2, V); break;                     \
    default: values_columns(values, n, d, w, stride, o, c, 1, V); break;                    \
  }
  for (int j = 0; j < heads; j += 4) {
    const int H = heads - j < 4 ? heads - j : 4;
    const float *w = weights + j * stride;
    float *o = out + (size_t)j * d;
    int c = 0;
    for (; c + 16 <= d; c += 16) COLUMNS(2)
    for (; c + 8 <= d; c += 8) COLUMNS(1)
    for (; c < d; c++)
      for (int h = 0; h < H; h++)
        for (int p = 0; p < n; p++) o[(size_t)h * d + c] += w[h * stride + p] * values[(size_t)p * d + c];
  }
#undef COLUMNS
}

#if HERD_PATH == HERD_AVX512
/*
 * The amx path (dispatch.c): this path's kernels, but the repacked Q8_0, Q4_0 and Q4_K products
 * take their tokens 16 at a time on AMX tiles. For each block of 32 columns one tile product gives
 * the 16 tokens × 16 rows integer sums that tile_q8r, tile_r16 and tile_k16 build lane by lane with vpdpbusd,
 * the same integers, which are then scaled and added as there: the two paths give the same bits.
 * Tiles: 0, the tokens' codes (16 rows of 32 bytes); 1, the block's codes in the layout a tile
 * product takes (8 rows of 64 bytes: four codes of each of the 16 rows), which is how repack.h
 * already stores Q8_0's chunks; 2, the sums (16 × 16 int32). Tokens past the last 16 and rows past
 * the last group go to this path's own products.
 */
#ifdef HERD_EMULATE_AMX
#ifndef HERD_EMULATE_AVX512
#error "HERD_EMULATE_AMX needs HERD_EMULATE_AVX512 (npm run test:avx512 defines both)"
#endif
#define AMX_TARGET /* the file's own target: AVX2, its AVX-512 emulated */
#else
#define AMX_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,amx-tile,amx-int8")))
#endif
#define AMX_TOKENS 16

/* LDTILECFG's 64-byte operand (palette 1). */
typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t bytes_per_row[16];
  uint8_t rows[16];
} amx_tile_config;

#ifdef HERD_EMULATE_AMX
/*
 * npm run test:avx512 builds the addon with this and HERD_EMULATE_AVX512 defined, so that the amx
 * path runs on a CPU without AMX: the seven tile instructions it uses, as Intel's SDM defines
 * them, on eight tiles of 16 rows × 64 bytes per thread (the configuration is per thread too).
 */
typedef struct {
  int rows, bytes;
  uint8_t data[16][64];
} emulated_tile;
static _Thread_local emulated_tile emulated_tiles[8];

static void emulated_tile_loadconfig(const void *config) {
  const amx_tile_config *c = config;
  for (int t = 0; t < 8; t++) emulated_tiles[t] = (emulated_tile){.rows = c->rows[t], .bytes = c->bytes_per_row[t]};
}
static void emulated_tile_release(void) { memset(emulated_tiles, 0, sizeof emulated_tiles); }
static void emulated_tile_zero(int t) { memset(emulated_tiles[t].data, 0, sizeof emulated_tiles[t].data); }
static void emulated_tile_loadd(int t, const void *base, size_t stride) {
  emulated_tile *tile = &emulated_tiles[t];
  memset(tile->data, 0, sizeof tile->data);
  for (int r = 0; r < tile->rows; r++) memcpy(tile->data[r], (const uint8_t *)base + (size_t)r * stride, (size_t)tile->bytes);
}
static void emulated_tile_stored(int t, void *base, size_t stride) {
  const emulated_tile *tile = &emulated_tiles[t];
  for (int r = 0; r < tile->rows; r++) memcpy((uint8_t *)base + (size_t)r * stride, tile->data[r], (size_t)tile->bytes);
}
/* TDPBSSD / TDPBSUD: c[m][n] += Σ_k Σ_i a[m][4k + i] · b[k][4n + i], a's bytes signed, b's signed or not. */
static void emulated_tile_dot(int c, int a, int b, int b_signed) {
  emulated_tile *sums = &emulated_tiles[c];
  const emulated_tile *left = &emulated_tiles[a], *right = &emulated_tiles[b];
  for (int m = 0; m < sums->rows; m++)
    for (int n = 0; n < sums->bytes / 4; n++) {
      int32_t total;
      memcpy(&total, sums->data[m] + 4 * n, 4);
      for (int k = 0; k < left->bytes / 4; k++)
        for (int i = 0; i < 4; i++) {
          const uint8_t w = right->data[k][4 * n + i];
          total += (int8_t)left->data[m][4 * k + i] * (b_signed ? (int8_t)w : (int)w);
        }
      memcpy(sums->data[m] + 4 * n, &total, 4);
    }
}
#undef _tile_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbssd
#undef _tile_dpbsud
#define _tile_loadconfig emulated_tile_loadconfig
#define _tile_release emulated_tile_release
#define _tile_zero emulated_tile_zero
#define _tile_loadd emulated_tile_loadd
#define _tile_stored emulated_tile_stored
#define _tile_dpbssd(c, a, b) emulated_tile_dot(c, a, b, 1)
#define _tile_dpbsud(c, a, b) emulated_tile_dot(c, a, b, 0)
#endif

/* Tile configuration is per thread, so every call sets it and releases the tiles at its end. */
static AMX_TARGET void amx_configure(void) {
  amx_tile_config config = {.palette = 1};
  config.rows[0] = AMX_TOKENS, config.bytes_per_row[0] = QK;
  config.rows[1] = QK / 4, config.bytes_per_row[1] = 64;
  config.rows[2] = AMX_TOKENS, config.bytes_per_row[2] = REPACK_ROWS * sizeof(int32_t);
  _tile_loadconfig(&config);
}

/* Tile 2 = one block of 16 tokens' tiled codes (quantized_row.tiles) times tile 1, stored to sums[token][row]. */
#define AMX_BLOCK_SUMS(dot, x_tile, sums) \
  do {                                    \
    _tile_zero(2);                        \
    _tile_loadd(0, (x_tile), QK);         \
    dot(2, 0, 1);                         \
    _tile_stored(2, (sums), 64);          \
  } while (0)

/* 16 tokens × one group of 16 repacked Q8_0 rows (signed codes: a signed × signed tile product). */
static AMX_TARGET void amx_tile_q8r(const uint8_t *group, const quantized_row *x, int cols, float *y, int y_stride) {
  const int nb = cols / QK;
  int32_t sums[AMX_TOKENS][REPACK_ROWS] __attribute__((aligned(64)));
  __m512 acc[AMX_TOKENS];
  for (int t = 0; t < AMX_TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int b = 0; b < nb; b++) {
    const uint8_t *block = group + (size_t)b * Q8R_BLOCK_BYTES;
    _tile_loadd(1, block + R16_CHUNK(0, 0), 64);
    AMX_BLOCK_SUMS(_tile_dpbssd, x->tiles + (size_t)b * AMX_TOKENS * QK, sums);
    const __m512 d = r16_scales(block, 0);
    for (int t = 0; t < AMX_TOKENS; t++) {
      const __m512 sum = _mm512_cvtepi32_ps(_mm512_load_si512(sums[t]));
      acc[t] = _mm512_fmadd_ps(sum, _mm512_mul_ps(d, _mm512_set1_ps(x->scales[(size_t)t * nb + b])), acc[t]);
    }
  }
  for (int t = 0; t < AMX_TOKENS; t++) _mm512_storeu_ps(y + (size_t)t * y_stride, acc[t]);
}

/*
 * The same for repacked Q4_0: each block's nibbles (stored as q + 8) unpacked to bytes first,
 * chunk j's low nibbles being codes 4j..4j+3 of every row (tile row j) and its high nibbles codes
 * 16 + 4j.. (tile row 4 + j); signed × unsigned, and 8 · Σx taken off as tile_r16 does.
 */
static AMX_TARGET void amx_tile_q4r(const uint8_t *group, const quantized_row *x, int cols, float *y, int y_stride) {
  const int nb = cols / QK;
  int32_t sums[AMX_TOKENS][REPACK_ROWS] __attribute__((aligned(64)));
  uint8_t codes[QK / 4][64] __attribute__((aligned(64)));
  __m512 acc[AMX_TOKENS];
  for (int t = 0; t < AMX_TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int b = 0; b < nb; b++) {
    const uint8_t *block = group + (size_t)b * R16_BLOCK_BYTES;
    for (int j = 0; j < 4; j++) {
      const __m512i bytes = _mm512_loadu_si512(block + R16_CHUNK(j, 0));
      _mm512_store_si512(codes[j], low_nibbles(bytes));
      _mm512_store_si512(codes[4 + j], low_nibbles(_mm512_srli_epi16(bytes, 4)));
    }
    _tile_loadd(1, codes, 64);
    AMX_BLOCK_SUMS(_tile_dpbsud, x->tiles + (size_t)b * AMX_TOKENS * QK, sums);
    const __m512 d = r16_scales(block, 0);
    for (int t = 0; t < AMX_TOKENS; t++) {
      const size_t at = (size_t)t * nb + b;
      const __m512i sum = _mm512_sub_epi32(_mm512_load_si512(sums[t]), _mm512_set1_epi32(8 * x->sums[at]));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(d, _mm512_set1_ps(x->scales[at])), acc[t]);
    }
  }
  for (int t = 0; t < AMX_TOKENS; t++) _mm512_storeu_ps(y + (size_t)t * y_stride, acc[t]);
}

/*
 * Repacked Q4_K: per sub-block of 32 one tile product of the 16 tokens and the 16 rows' nibbles
 * (unpacked as for Q4_0: chunk c's low or high nibbles are codes 4c..4c+3 of the sub-block), the
 * integer sums tile_k16 makes with eight vpdpbusd; the scales, minimums and float sums as there.
 */
static AMX_TARGET void amx_tile_q4k(const uint8_t *group, const quantized_row *x, int cols, float *y, int y_stride) {
  const int nb = cols / QK_K;
  int32_t sums[AMX_TOKENS][REPACK_ROWS] __attribute__((aligned(64)));
  uint8_t codes[QK / 4][64] __attribute__((aligned(64)));
  __m512 acc[AMX_TOKENS];
  for (int t = 0; t < AMX_TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int b = 0; b < nb; b++) {
    const uint8_t *block = group + (size_t)b * K16_BLOCK_BYTES;
    const __m512 d = k16_halves(block + K16_D, 0), dmin = k16_halves(block + K16_DMIN, 0);
    __m512i sc[2], m[2];
    k16_scales_mins(block, 0, sc, m);
    __m512 blocks[AMX_TOKENS];
    for (int t = 0; t < AMX_TOKENS; t++) blocks[t] = _mm512_setzero_ps();
    for (int j = 0; j < 8; j++) {
      for (int c = 0; c < 8; c++) {
        const __m512i bytes = _mm512_loadu_si512(block + K16_CHUNK(j / 2, c, 0));
        _mm512_store_si512(codes[c], low_nibbles(j & 1 ? _mm512_srli_epi16(bytes, 4) : bytes));
      }
      _tile_loadd(1, codes, 64);
      AMX_BLOCK_SUMS(_tile_dpbsud, x->tiles + (size_t)(8 * b + j) * AMX_TOKENS * QK, sums);
      const __m512 dsc = _mm512_mul_ps(d, _mm512_cvtepi32_ps(iand(_mm512_srli_epi32(sc[j / 4], 8 * (j % 4)), iset1(0xff))));
      for (int t = 0; t < AMX_TOKENS; t++) blocks[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums[t])), dsc, blocks[t]);
    }
    const __m512i mins[4] = {iand(m[0], iset1(0x00ff00ff)), iand(_mm512_srli_epi32(m[0], 8), iset1(0x00ff00ff)), iand(m[1], iset1(0x00ff00ff)),
                             iand(_mm512_srli_epi32(m[1], 8), iset1(0x00ff00ff))};
    for (int t = 0; t < AMX_TOKENS; t++) {
      const int32_t *xs = x->sums + (size_t)t * (cols / QK) + (size_t)b * 8;
      __m512i minsum = _mm512_setzero_si512();
      for (int k = 0; k < 2; k++) {
        minsum = _mm512_dpwssd_epi32(minsum, mins[2 * k], broadcast_pair(xs[4 * k], xs[4 * k + 2]));
        minsum = _mm512_dpwssd_epi32(minsum, mins[2 * k + 1], broadcast_pair(xs[4 * k + 1], xs[4 * k + 3]));
      }
      const __m512 xd = _mm512_set1_ps(x->scales[(size_t)t * nb + b]);
      acc[t] = _mm512_fmadd_ps(blocks[t], xd, acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(minsum), _mm512_mul_ps(dmin, xd), acc[t]);
    }
  }
  for (int t = 0; t < AMX_TOKENS; t++) _mm512_storeu_ps(y + (size_t)t * y_stride, acc[t]);
}

typedef void (*gemm_kernel)(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
typedef void (*amx_tile_kernel)(const uint8_t *group, const quantized_row *x, int cols, float *y, int y_stride);

/* Activation rows from token t on (a scale per scale_block values, a sum per 32); t starts a tile or comes after the last. */
static quantized_row tokens_from(const quantized_row *x, int t, int cols, int scale_block) {
  return (quantized_row){.codes = x->codes + (size_t)t * cols, .scales = x->scales + (size_t)t * (cols / scale_block), .sums = x->sums + (size_t)t * (cols / QK),
                         .tiles = x->tiles != NULL ? x->tiles + (size_t)t * cols : NULL};
}

/* Whole groups × whole tiles of tokens on AMX; the tokens after them through `repacked`, the stored rows after the groups through `stored`. */
static AMX_TARGET void amx_gemm(amx_tile_kernel tile, gemm_kernel repacked, gemm_kernel stored, int scale_block, const uint8_t *w, size_t row_bytes, int rows,
                                const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  const int tiled = x->tiles != NULL ? tokens / AMX_TOKENS * AMX_TOKENS : 0, grouped = rows / REPACK_ROWS * REPACK_ROWS;
  if (tiled > 0 && grouped > 0) {
    amx_configure();
    for (int g = 0; g < grouped; g += REPACK_ROWS)
      for (int t0 = 0; t0 < tiled; t0 += AMX_TOKENS) {
        const quantized_row xt = tokens_from(x, t0, cols, scale_block);
        tile(w + (size_t)g * row_bytes, &xt, cols, y + (size_t)t0 * y_stride + g, y_stride);
      }
    _tile_release();
  }
  if (tiled > 0 && grouped < rows) stored(w + (size_t)grouped * row_bytes, row_bytes, rows - grouped, x, tiled, cols, y + grouped, y_stride);
  if (tiled < tokens) {
    const quantized_row rest = tokens_from(x, tiled, cols, scale_block);
    repacked(w, row_bytes, rows, &rest, tokens - tiled, cols, y + (size_t)tiled * y_stride, y_stride);
  }
}

/*
 * Decode's one-token products on the amx path prefetch 4 blocks ahead, where the avx512 path
 * prefetches none: only Intel CPUs have AMX, and on a Sapphire Rapids host, unlike Zen 4, one
 * thread's Q8_0 products from memory went from 8.2–8.9 to 9.1–10.0 G products/s of CPU with it.
 */
#define AMX_Q8R_PREFETCH_BLOCKS 4
static void gemm_q8_0_r16_prefetching(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
#define TILE(HALF, H, T, S, stream_rows) tile_q8r(group, HALF, H, &xt, cols, yt, y_stride, T, AMX_Q8R_PREFETCH_BLOCKS, S, stream_rows, row_bytes)
  GROUP_LOOPS(TILE, R16_TOKENS, QK, QK, R16_DECODE_STREAMS)
#undef TILE
  if (grouped < rows) gemm_q8_0(w + (size_t)grouped * row_bytes, row_bytes, rows - grouped, x, tokens, cols, y + grouped, y_stride);
}

void herd_gemm_q8_0_r16_amx(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  amx_gemm(amx_tile_q8r, gemm_q8_0_r16_prefetching, gemm_q8_0, QK, w, row_bytes, rows, x, tokens, cols, y, y_stride);
}

void herd_gemm_q4_0_r16_amx(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  amx_gemm(amx_tile_q4r, gemm_q4_0_r16, gemm_q4_0, QK, w, row_bytes, rows, x, tokens, cols, y, y_stride);
}

void herd_gemm_q4_k_r16_amx(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  amx_gemm(amx_tile_q4k, gemm_q4_k_r16, gemm_q4_k, QK_K, w, row_bytes, rows, x, tokens, cols, y, y_stride);
}
#endif

const herd_kernels HERD_TABLE = {
    .name = HERD_PATH_NAME,
    .dot_f32 = dot_f32,
    .f16_to_f32 = f16_to_f32,
    .bf16_to_f32 = bf16_to_f32,
    .dot_f16 = dot_f16,
    .dot_bf16 = dot_bf16,
    .dot_q8_0 = dot_q8_0,
    .dot_q4_0 = dot_q4_0,
    .dot_q4_k = dot_q4_k,
    .dot_q6_k = dot_q6_k,
    .dot_q5_k = dot_q5_k,
    .dot_q3_k = dot_q3_k,
    .dot_q2_k = dot_q2_k,
    .dot_q4_1 = dot_q4_1,
    .dot_q5_0 = dot_q5_0,
    .dot_q5_1 = dot_q5_1,
    .dot_iq4_nl = dot_iq4_nl,
    .dot_iq4_xs = dot_iq4_xs,
    .dot_int4_g128 = dot_int4_g128,
    .gemm_q8_0 = gemm_q8_0,
    .gemm_q4_0 = gemm_q4_0,
    .gemm_q4_k = gemm_q4_k,
    .gemm_f32 = gemm_f32,
    .f32_tokens = F32_NR,
    .gemm_q4_0_r16 = gemm_q4_0_r16,
    .gemm_q4_k_r16 = gemm_q4_k_r16,
    .gemm_q6_k_r16 = gemm_q6_k_r16,
    .gemm_q5_k_r16 = gemm_q5_k_r16,
    .gemm_iq4_xs_r16 = gemm_iq4_xs_r16,
    .gemm_q8_0_r16 = gemm_q8_0_r16,
    .attend_scores = attend_scores,
    .exp_shifted = exp_shifted,
    .attend_values = attend_values,
    .swiglu = swiglu,
};
#endif
