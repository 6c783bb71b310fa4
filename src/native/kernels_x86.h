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
#pragma GCC target("avx2,fma,f16c,avxvnni")
#define HERD_PATH_NAME "avxvnni"
#define HERD_TABLE herd_kernels_avxvnni
#else
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#define HERD_PATH_NAME "avx512"
#define HERD_TABLE herd_kernels_avx512
#endif
#include <immintrin.h>
#include <string.h>
#include "herd_native.h"
#include "kquants.h"

#if HERD_PATH == HERD_AVX2
/* pmaddubsw pairs to int16 (no overflow: |w| ≤ 128, |x| ≤ 127), then pmaddwd to int32. */
static inline __m256i dot_u8_i8(__m256i u, __m256i s) { return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)); }
#elif HERD_PATH == HERD_AVXVNNI
/* VEX vpdpbusd (Alder Lake and later without AVX-512). */
static inline __m256i dot_u8_i8(__m256i u, __m256i s) { return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s); }
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

const herd_kernels HERD_TABLE = {
    .name = HERD_PATH_NAME,
    .dot_f32 = dot_f32,
    .f16_to_f32 = f16_to_f32,
    .bf16_to_f32 = bf16_to_f32,
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
};
#endif
