/*
 * The K-quants on the x86 SIMD paths, included by kernels_x86.h (which defines dot_u8_i8,
 * half_scale and hsum8 for the path). One 256-bit vector holds 32 weights of the same two groups
 * of 16: their codes are made unsigned (Q6_K's q + 32, Q3_K's q + 4), multiplied with the int8
 * activations by dot_u8_i8, and the offset taken back once per super-block from the activation
 * sums (Σ scale·offset·Σx), as llama.cpp's AVX2 kernels do with bsums.
 */

/*
 * A super-block's 16 group scales as int16, the 8 of half h (groups 8h..8h + 7) in both 128-bit
 * lanes, built once a super-block; pair_scales then picks a vector's two groups with one shuffle
 * where setting them from two integers took five instructions per 32 weights.
 */
static inline __m256i half_scales16(__m128i scales, int h) {
  return _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(h ? _mm_srli_si128(scales, 8) : scales));
}

/* Group 2i's scale in every int16 of lanes 0..3 (bytes 0..15 of a code vector), group 2i + 1's in lanes 4..7. */
static inline __m256i pair_scales(__m256i half16, int i) {
  const char a = (char)(4 * i), b = (char)(4 * i + 2);
  const __m256i pick = _mm256_setr_epi8(a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1,
                                        b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1);
  return _mm256_shuffle_epi8(half16, pick);
}

/*
 * dot_u8_i8 with lanes 0..3 times one group's scale and lanes 4..7 times the next's (pair_scales:
 * each int16 of a lane holds it). Where dot_u8_i8 is pmaddubsw then pmaddwd by ones (AVX2), the
 * scales ride in that pmaddwd instead (llama.cpp's AVX2 form); the vpdpbusd paths multiply the
 * int32 sums. The same integers either way.
 */
static inline __m256i scaled_dot_u8_i8(__m256i u, __m256i s, __m256i scales16) {
#if HERD_PATH == HERD_AVX2
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scales16);
#else
  return _mm256_mullo_epi32(dot_u8_i8(u, s), _mm256_srai_epi32(scales16, 16));
#endif
}

/* Bit `from` of each byte of `bits` moved to bit `to` (a fifth or third code bit), the others 0: one mask and one shift within each byte. */
static inline __m256i bit_moved(__m256i bits, int from, int to) {
  const __m256i bit = _mm256_and_si256(bits, _mm256_set1_epi8((char)(1 << from)));
  return from < to ? _mm256_slli_epi16(bit, to - from) : _mm256_srli_epi16(bit, from - to);
}

/* c_g·xs[g] for the 16 groups in eight int32 lanes (two groups a lane): c as 16 signed bytes (scales or minimums), xs the activations' sums of 16. */
static inline __m256i group_sum_products(__m128i c, const int32_t *xs) {
  const __m256i low = _mm256_mullo_epi32(_mm256_cvtepi8_epi32(c), _mm256_loadu_si256((const __m256i *)xs));
  const __m256i high = _mm256_mullo_epi32(_mm256_cvtepi8_epi32(_mm_srli_si128(c, 8)), _mm256_loadu_si256((const __m256i *)(xs + 8)));
  return _mm256_add_epi32(low, high);
}

/* Σ_g c_g·xs[g] over the 16 groups. */
static inline int32_t dot_group_sums(__m128i c, const int32_t *xs) {
  const __m256i both = group_sum_products(c, xs);
  __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(both), _mm256_extracti128_si256(both, 1));
  sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0x4e));
  return _mm_cvtsi128_si32(_mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0xb1)));
}

/*
 * One super-block's integer products with its activations: eight int32 lanes whose total is
 * Σ scale·q·x, and in *mins the Σ min·Σx that the f16 dmin multiplies (0 without minimums).
 */
typedef __m256i (*block_products)(const uint8_t *w, const int8_t *x, const int32_t *xs, int32_t *mins);

/* Σ over super-blocks of d·xd·products − dmin·xd·mins; d and dmin are f16 at byte offsets d_at and dmin_at (< 0: none). */
static inline float dot_super_blocks(block_products products, int block_bytes, int d_at, int dmin_at, const uint8_t *w, const int8_t *x,
                                     const float *xd, const int32_t *xs, int nb) {
  __m256 acc = _mm256_setzero_ps();
  float mins_total = 0;
  for (int b = 0; b < nb; b++, w += block_bytes, x += QK_K, xs += QK_K / KQ_GROUP) {
    int32_t mins = 0;
    const __m256i sums = products(w, x, xs, &mins);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_scale(w + d_at) * xd[b]), _mm256_cvtepi32_ps(sums), acc);
    if (dmin_at >= 0) mins_total += half_scale(w + dmin_at) * xd[b] * (float)mins;
  }
  return hsum8(acc) - mins_total;
}

static inline __m256i q6_k_products(const uint8_t *w, const int8_t *x, const int32_t *xs, int32_t *mins) {
  (void)mins;
  const int8_t *sc = (const int8_t *)(w + 192);
  const __m256i low4 = _mm256_set1_epi8(0xf), top2 = _mm256_set1_epi8(0x30);
  __m256i sums = _mm256_setzero_si256();
  const __m128i scales = _mm_loadu_si128((const __m128i *)sc);
  for (int h = 0; h < 2; h++) {
    const __m256i half16 = half_scales16(scales, h);
    const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(w + 64 * h)), ql1 = _mm256_loadu_si256((const __m256i *)(w + 64 * h + 32));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h));
    /* Code i of each byte position: its nibble, and bits 2i..2i+1 of qh moved to bits 4..5 (16-bit shifts, masked per byte). */
    const __m256i codes[4] = {
        _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), top2)),
        _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), top2)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, top2)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), top2)),
    };
    for (int i = 0; i < 4; i++) {
      const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 128 * h + 32 * i));
      sums = _mm256_add_epi32(sums, scaled_dot_u8_i8(codes[i], xv, pair_scales(half16, i)));
    }
  }
  /* Less the codes' offset 32 times Σ scale·Σx, lane by lane: the lanes are summed later anyway. */
  return _mm256_sub_epi32(sums, _mm256_slli_epi32(group_sum_products(scales, xs), 5));
}

static inline __m256i q5_k_products(const uint8_t *w, const int8_t *x, const int32_t *xs, int32_t *mins) {
  uint8_t sc[8], m[8];
  for (int j = 0; j < 8; j++) {
    herd_q4k_scale_min(j, w + 4, &sc[j], &m[j]);
    *mins += m[j] * (xs[2 * j] + xs[2 * j + 1]);
  }
  const __m256i low4 = _mm256_set1_epi8(0xf), qh = _mm256_loadu_si256((const __m256i *)(w + 16));
  __m256i sums = _mm256_setzero_si256();
  for (int j = 0; j < 8; j += 2) {
    /* Sub-blocks j and j + 1: the low and high nibbles of 32 bytes, each with its bit of qh as 16. */
    const __m256i codes = _mm256_loadu_si256((const __m256i *)(w + 48 + 16 * j));
    const __m256i first = _mm256_or_si256(_mm256_and_si256(codes, low4), bit_moved(qh, j, 4));
    const __m256i second = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(codes, 4), low4), bit_moved(qh, j + 1, 4));
    /* One scale for the whole vector (a sub-block of 32 is both its groups of 16). */
    sums = _mm256_add_epi32(sums, scaled_dot_u8_i8(first, _mm256_loadu_si256((const __m256i *)(x + 32 * j)), _mm256_set1_epi16((short)sc[j])));
    sums = _mm256_add_epi32(sums, scaled_dot_u8_i8(second, _mm256_loadu_si256((const __m256i *)(x + 32 * j + 32)), _mm256_set1_epi16((short)sc[j + 1])));
  }
  return sums;
}

/* Q3_K's sixteen scales as signed bytes: kquants.h's herd_q3k_scales, its four words built in one vector (bytes stored one by one and reloaded as a vector stall the load). */
static inline __m128i q3k_scale_vector(const uint8_t *packed) {
  uint32_t high;
  memcpy(&high, packed + 8, 4);
  const __m128i low = _mm_loadl_epi64((const __m128i *)packed);
  const __m128i nibbles = _mm_and_si128(_mm_unpacklo_epi64(low, _mm_srli_epi32(low, 4)), _mm_set1_epi8(0x0f));
  const __m128i tops = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32((int)high), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(0x03));
  return _mm_sub_epi8(_mm_or_si128(nibbles, _mm_slli_epi32(tops, 4)), _mm_set1_epi8(32));
}

static inline __m256i q3_k_products(const uint8_t *w, const int8_t *x, const int32_t *xs, int32_t *mins) {
  (void)mins;
  const __m128i scales = q3k_scale_vector(w + 96);
  const __m256i low2 = _mm256_set1_epi8(3), hmask = _mm256_loadu_si256((const __m256i *)w);
  __m256i sums = _mm256_setzero_si256();
  for (int h = 0; h < 2; h++) {
    const __m256i qs = _mm256_loadu_si256((const __m256i *)(w + 32 + 32 * h)), half16 = half_scales16(scales, h);
    for (int i = 0; i < 4; i++) {
      /* q + 4 (0..7): the two low bits, plus 4 where the hmask bit is set. */
      const __m256i low = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * i), low2);
      const __m256i codes = _mm256_or_si256(low, bit_moved(hmask, 4 * h + i, 2));
      const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 128 * h + 32 * i));
      sums = _mm256_add_epi32(sums, scaled_dot_u8_i8(codes, xv, pair_scales(half16, i)));
    }
  }
  return _mm256_sub_epi32(sums, _mm256_slli_epi32(group_sum_products(scales, xs), 2)); /* less the offset 4 times Σ scale·Σx */
}

static inline __m256i q2_k_products(const uint8_t *w, const int8_t *x, const int32_t *xs, int32_t *mins) {
  const __m128i packed = _mm_loadu_si128((const __m128i *)w), low4 = _mm_set1_epi8(0xf);
  *mins = dot_group_sums(_mm_and_si128(_mm_srli_epi16(packed, 4), low4), xs);
  const __m128i scales = _mm_and_si128(packed, low4);
  const __m256i low2 = _mm256_set1_epi8(3);
  __m256i sums = _mm256_setzero_si256();
  for (int h = 0; h < 2; h++) {
    const __m256i qs = _mm256_loadu_si256((const __m256i *)(w + 16 + 32 * h)), half16 = half_scales16(scales, h);
    for (int i = 0; i < 4; i++) {
      const __m256i codes = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * i), low2);
      sums = _mm256_add_epi32(sums, scaled_dot_u8_i8(codes, _mm256_loadu_si256((const __m256i *)(x + 128 * h + 32 * i)), pair_scales(half16, i)));
    }
  }
  return sums;
}

static float dot_q6_k(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  return dot_super_blocks(q6_k_products, Q6_K_BYTES, 208, -1, w, x, xd, xs, nb);
}

static float dot_q5_k(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  return dot_super_blocks(q5_k_products, Q5_K_BYTES, 0, 2, w, x, xd, xs, nb);
}

static float dot_q3_k(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  return dot_super_blocks(q3_k_products, Q3_K_BYTES, 108, -1, w, x, xd, xs, nb);
}

static float dot_q2_k(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  return dot_super_blocks(q2_k_products, Q2_K_BYTES, 80, 82, w, x, xd, xs, nb);
}
