/*
 * The K-quants on the x86 SIMD paths, included by kernels_x86.h (which defines dot_u8_i8,
 * half_scale and hsum8 for the path). One 256-bit vector holds 32 weights of the same two groups
 * of 16: their codes are made unsigned (Q6_K's q + 32, Q3_K's q + 4), multiplied with the int8
 * activations by dot_u8_i8, and the offset taken back once per super-block from the activation
 * sums (Σ scale·offset·Σx), as llama.cpp's AVX2 kernels do with bsums.
 */

/* Lanes 0..3 of a dot_u8_i8 result cover bytes 0..15 (the first group), lanes 4..7 bytes 16..31: each times its group's scale. */
static inline __m256i scale_groups(__m256i products, int first, int second) {
  return _mm256_mullo_epi32(products, _mm256_set_m128i(_mm_set1_epi32(second), _mm_set1_epi32(first)));
}

/* `value` in the bytes of `bits` whose bit `mask` is set, else 0. */
static inline __m256i where_bit(__m256i bits, int mask, int value) {
  const __m256i m = _mm256_set1_epi8((char)mask);
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bits, m), m), _mm256_set1_epi8((char)value));
}

/* An integer subtracted from a vector of int32 sums before they are added up (in its first lane). */
static inline __m256i minus_offset(__m256i sums, int32_t offset) { return _mm256_sub_epi32(sums, _mm256_set_epi32(0, 0, 0, 0, 0, 0, 0, offset)); }

static float dot_q6_k(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0xf), top2 = _mm256_set1_epi8(0x30);
  for (int b = 0; b < nb; b++, w += Q6_K_BYTES, x += QK_K, xs += 16) {
    const int8_t *sc = (const int8_t *)(w + 192);
    __m256i sums = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
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
        const __m256i p = dot_u8_i8(codes[i], _mm256_loadu_si256((const __m256i *)(x + 128 * h + 32 * i)));
        sums = _mm256_add_epi32(sums, scale_groups(p, sc[8 * h + 2 * i], sc[8 * h + 2 * i + 1]));
      }
    }
    int32_t offset = 0;
    for (int g = 0; g < 16; g++) offset += sc[g] * xs[g];
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_scale(w + 208) * xd[b]), _mm256_cvtepi32_ps(minus_offset(sums, 32 * offset)), acc);
  }
  return hsum8(acc);
}

static float dot_q5_k(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  __m256 acc = _mm256_setzero_ps();
  float mins_total = 0;
  const __m256i low4 = _mm256_set1_epi8(0xf);
  for (int b = 0; b < nb; b++, w += Q5_K_BYTES, x += QK_K, xs += 16) {
    uint8_t sc[8], m[8];
    int32_t mins = 0;
    for (int j = 0; j < 8; j++) {
      herd_q4k_scale_min(j, w + 4, &sc[j], &m[j]);
      mins += m[j] * (xs[2 * j] + xs[2 * j + 1]);
    }
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(w + 16));
    __m256i sums = _mm256_setzero_si256();
    for (int pair = 0; pair < 4; pair++) {
      const int j = 2 * pair;
      const __m256i codes = _mm256_loadu_si256((const __m256i *)(w + 48 + 32 * pair));
      const __m256i first = _mm256_or_si256(_mm256_and_si256(codes, low4), where_bit(qh, 1 << j, 16));
      const __m256i second = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(codes, 4), low4), where_bit(qh, 1 << (j + 1), 16));
      const __m256i p0 = dot_u8_i8(first, _mm256_loadu_si256((const __m256i *)(x + 32 * j)));
      const __m256i p1 = dot_u8_i8(second, _mm256_loadu_si256((const __m256i *)(x + 32 * j + 32)));
      sums = _mm256_add_epi32(sums, _mm256_mullo_epi32(p0, _mm256_set1_epi32(sc[j])));
      sums = _mm256_add_epi32(sums, _mm256_mullo_epi32(p1, _mm256_set1_epi32(sc[j + 1])));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_scale(w) * xd[b]), _mm256_cvtepi32_ps(sums), acc);
    mins_total += half_scale(w + 2) * xd[b] * (float)mins;
  }
  return hsum8(acc) - mins_total;
}

static float dot_q3_k(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i low2 = _mm256_set1_epi8(3);
  for (int b = 0; b < nb; b++, w += Q3_K_BYTES, x += QK_K, xs += 16) {
    int sc[16];
    int32_t offset = 0;
    for (int g = 0; g < 16; g++) {
      sc[g] = herd_q3k_scale(g, w + 96);
      offset += sc[g] * xs[g];
    }
    const __m256i hmask = _mm256_loadu_si256((const __m256i *)w);
    __m256i sums = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
      const __m256i qs = _mm256_loadu_si256((const __m256i *)(w + 32 + 32 * h));
      for (int i = 0; i < 4; i++) {
        /* q + 4 (0..7): the two low bits, plus 4 where the hmask bit is set. */
        const __m256i low = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * i), low2);
        const __m256i codes = _mm256_or_si256(low, where_bit(hmask, 1 << (4 * h + i), 4));
        const __m256i p = dot_u8_i8(codes, _mm256_loadu_si256((const __m256i *)(x + 128 * h + 32 * i)));
        sums = _mm256_add_epi32(sums, scale_groups(p, sc[8 * h + 2 * i], sc[8 * h + 2 * i + 1]));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_scale(w + 108) * xd[b]), _mm256_cvtepi32_ps(minus_offset(sums, 4 * offset)), acc);
  }
  return hsum8(acc);
}

static float dot_q2_k(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  __m256 acc = _mm256_setzero_ps();
  float mins_total = 0;
  const __m256i low2 = _mm256_set1_epi8(3);
  for (int b = 0; b < nb; b++, w += Q2_K_BYTES, x += QK_K, xs += 16) {
    int32_t mins = 0;
    for (int g = 0; g < 16; g++) mins += (w[g] >> 4) * xs[g];
    __m256i sums = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
      const __m256i qs = _mm256_loadu_si256((const __m256i *)(w + 16 + 32 * h));
      for (int i = 0; i < 4; i++) {
        const __m256i codes = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * i), low2);
        const __m256i p = dot_u8_i8(codes, _mm256_loadu_si256((const __m256i *)(x + 128 * h + 32 * i)));
        const int g = 8 * h + 2 * i;
        sums = _mm256_add_epi32(sums, scale_groups(p, w[g] & 0xf, w[g + 1] & 0xf));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_scale(w + 80) * xd[b]), _mm256_cvtepi32_ps(sums), acc);
    mins_total += half_scale(w + 82) * xd[b] * (float)mins;
  }
  return hsum8(acc) - mins_total;
}
