/*
 * The x86 paths' products for blocks32.h's formats, included by kernels_x86.h after its helpers
 * (dot_u8_i8, signed_pairs_float, nibbles32, half_scale, hsum8), so one source serves avx2,
 * avxvnni and avx512. As in llama.cpp's x86 quants.c: unsigned codes (Q4_1, Q5_1, INT4_G128) go
 * straight into the unsigned×signed byte product and their minimum or zero-point multiplies the
 * activation block's code sum; signed ones (Q5_0, the IQ4 levels) take signed_pairs_float; the
 * IQ4 levels are looked up 32 at a time by a byte shuffle.
 */
#include "blocks32.h"

/* Byte j all ones where bit j of `bits` is set: byte j picks byte j/8 of the word, then tests its bit j%8. */
static inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i byte_of = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL);
  const __m256i bit_of = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), byte_of);
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_of), bit_of);
}

/* The 32 five-bit codes (0..31) of a Q5 block: nibbles, plus 16 where qh has the code's bit. */
static inline __m256i five_bit_codes(const uint8_t *qh, const uint8_t *q) {
  uint32_t bits;
  memcpy(&bits, qh, 4);
  return _mm256_or_si256(nibbles32(q), _mm256_and_si256(bits_to_bytes(bits), _mm256_set1_epi8(16)));
}

/* The 32 levels (−127..113) that the codes of one IQ4 block of 16 bytes stand for. */
static inline __m256i iq4_levels32(const uint8_t *q) {
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)herd_iq4_levels));
  return _mm256_shuffle_epi8(table, nibbles32(q));
}

static inline __m256 unsigned_pairs_float(__m256i codes, const int8_t *x) {
  return _mm256_cvtepi32_ps(dot_u8_i8(codes, _mm256_loadu_si256((const __m256i *)x)));
}

/*
 * A block with codes 0..15 or 0..31 and a minimum (Q4_1, Q5_1): d and m widened by one
 * instruction, d·x's scale times the code products, and m·x's scale·Σx gathered in lane 1.
 */
static inline void affine_block(const uint8_t *dm, __m256i codes, const int8_t *x, float x_scale, int32_t x_sum, __m256 *acc, __m128 *mins) {
  uint32_t halves;
  memcpy(&halves, dm, 4);
  const __m128 scaled = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)halves)), _mm_set1_ps(x_scale));
  *acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(scaled), unsigned_pairs_float(codes, x), *acc);
  *mins = _mm_fmadd_ps(scaled, _mm_set1_ps((float)x_sum), *mins);
}

static inline float affine_total(__m256 acc, __m128 mins) { return hsum8(acc) + _mm_cvtss_f32(_mm_movehdup_ps(mins)); }

static float dot_q4_1(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  __m256 acc = _mm256_setzero_ps();
  __m128 mins = _mm_setzero_ps();
  for (int b = 0; b < nb; b++, w += Q4_1_BYTES, x += QK) affine_block(w, nibbles32(w + 4), x, xd[b], xs[b], &acc, &mins);
  return affine_total(acc, mins);
}

/* The codes' offset of 16 times the activation block's sum, as a minimum of −16·d (cheaper than signed products). */
static float dot_q5_0(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  __m256 acc = _mm256_setzero_ps();
  float offsets = 0;
  for (int b = 0; b < nb; b++, w += Q5_0_BYTES, x += QK) {
    const float scale = half_scale(w) * xd[b];
    acc = _mm256_fmadd_ps(_mm256_set1_ps(scale), unsigned_pairs_float(five_bit_codes(w + 2, w + 6), x), acc);
    offsets += scale * (float)xs[b];
  }
  return hsum8(acc) - 16 * offsets;
}

static float dot_q5_1(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  __m256 acc = _mm256_setzero_ps();
  __m128 mins = _mm_setzero_ps();
  for (int b = 0; b < nb; b++, w += Q5_1_BYTES, x += QK) affine_block(w, five_bit_codes(w + 4, w + 8), x, xd[b], xs[b], &acc, &mins);
  return affine_total(acc, mins);
}

static float dot_iq4_nl(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  (void)xs;
  __m256 acc = _mm256_setzero_ps();
  for (int b = 0; b < nb; b++, w += IQ4_NL_BYTES, x += QK) {
    __m256 sums = signed_pairs_float(iq4_levels32(w + 2), _mm256_loadu_si256((const __m256i *)x));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_scale(w) * xd[b]), sums, acc);
  }
  return hsum8(acc);
}

/* Each sub-block's int32 sums times its scale (a lane's |Σ| ≤ 8 sub-blocks · 4 · 127² · 32, far inside int32), one float multiply per 256. */
static float dot_iq4_xs(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  (void)xs;
  __m256 acc = _mm256_setzero_ps();
  for (int b = 0; b < nb; b++, w += IQ4_XS_BYTES) {
    __m256i scaled = _mm256_setzero_si256();
    for (int sub = 0; sub < QK_K / QK; sub++, x += QK) {
      __m256i levels = iq4_levels32(w + 8 + 16 * sub), y = _mm256_loadu_si256((const __m256i *)x);
      __m256i sums = dot_u8_i8(_mm256_sign_epi8(levels, levels), _mm256_sign_epi8(y, levels));
      scaled = _mm256_add_epi32(scaled, _mm256_mullo_epi32(sums, _mm256_set1_epi32(herd_iq4_xs_scale(w, sub))));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_scale(w) * xd[b]), _mm256_cvtepi32_ps(scaled), acc);
  }
  return hsum8(acc);
}

static float dot_int4_g128(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  __m256 acc = _mm256_setzero_ps();
  float zeros = 0;
  for (int g = 0; g < nb; g++, w += INT4_G128_BYTES) {
    const float scale = half_scale(w);
    float activation_sums = 0;
    for (int b = 0; b < INT4_GROUP / QK; b++, x += QK, xd++, xs++) {
      acc = _mm256_fmadd_ps(_mm256_set1_ps(scale * *xd), unsigned_pairs_float(nibbles32(w + 4 + 16 * b), x), acc);
      activation_sums += *xd * (float)*xs;
    }
    zeros += scale * (float)w[2] * activation_sums;
  }
  return hsum8(acc) - zeros;
}
