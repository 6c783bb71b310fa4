/*
 * The K-quants on the portable path: each super-block's codes unpacked to bytes (as llama.cpp's
 * generic ggml_vec_dot_q*_K_q8_K do), then integer products per group of 16 scaled by the
 * group's integer scale; the float scales multiply once per super-block. The same unpacking
 * serves the embedding rows (dequantize).
 */
#include "kquants.h"

static float half_at(const uint8_t *p) { return herd_half_to_float((uint16_t)(p[0] | p[1] << 8)); }

/* Weight 128h + 32i + l of Q6_K: low nibble of ql[64h + 32(i & 1) + l] (high nibble for i ≥ 2), top bits 2i..2i+1 of qh[32h + l]; minus 32. */
static void q6k_codes(const uint8_t *w, int8_t *q) {
  for (int h = 0; h < 2; h++) {
    const uint8_t *ql = w + 64 * h, *qh = w + 128 + 32 * h;
    for (int i = 0; i < 4; i++) {
      for (int l = 0; l < 32; l++) {
        const uint8_t byte = ql[l + 32 * (i & 1)];
        q[128 * h + 32 * i + l] = (int8_t)(((i < 2 ? byte & 0xf : byte >> 4) | (((qh[l] >> (2 * i)) & 3) << 4)) - 32);
      }
    }
  }
}

/* Weight 32j + l of Q5_K: nibble of qs[32(j / 2) + l] (low for even j), plus bit j of qh[l] as 16. */
static void q5k_codes(const uint8_t *w, int8_t *q) {
  const uint8_t *qh = w + 16, *qs = w + 48;
  for (int j = 0; j < 8; j++) {
    for (int l = 0; l < 32; l++) {
      q[32 * j + l] = (int8_t)(((qs[32 * (j / 2) + l] >> (4 * (j & 1))) & 0xf) | (((qh[l] >> j) & 1) << 4));
    }
  }
}

/* Weight 128h + 32i + l of Q3_K: bits 2i..2i+1 of qs[32h + l], minus 4 unless bit 4h + i of hmask[l] is set. */
static void q3k_codes(const uint8_t *w, int8_t *q) {
  const uint8_t *hmask = w, *qs = w + 32;
  for (int h = 0; h < 2; h++) {
    for (int i = 0; i < 4; i++) {
      for (int l = 0; l < 32; l++) {
        const int low = (qs[32 * h + l] >> (2 * i)) & 3;
        q[128 * h + 32 * i + l] = (int8_t)(low - ((hmask[l] >> (4 * h + i)) & 1 ? 0 : 4));
      }
    }
  }
}

/* Weight 128h + 32i + l of Q2_K: bits 2i..2i+1 of qs[32h + l] (Q3_K's low bits, without the third). */
static void q2k_codes(const uint8_t *w, int8_t *q) {
  const uint8_t *qs = w + 16;
  for (int h = 0; h < 2; h++) {
    for (int i = 0; i < 4; i++) {
      for (int l = 0; l < 32; l++) q[128 * h + 32 * i + l] = (int8_t)((qs[32 * h + l] >> (2 * i)) & 3);
    }
  }
}

/* Σ q·x over each of the 16 groups of 16 in a super-block. */
static void group_dots(const int8_t *q, const int8_t *x, int32_t *dots) {
  for (int g = 0; g < QK_K / KQ_GROUP; g++) {
    int32_t sum = 0;
    for (int i = 0; i < KQ_GROUP; i++) sum += q[KQ_GROUP * g + i] * x[KQ_GROUP * g + i];
    dots[g] = sum;
  }
}

float herd_dot_q6_k_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  (void)xs; /* the codes are signed once unpacked */
  float total = 0;
  int8_t q[QK_K];
  int32_t dots[16];
  for (int b = 0; b < nb; b++, w += Q6_K_BYTES, x += QK_K) {
    q6k_codes(w, q);
    group_dots(q, x, dots);
    const int8_t *scales = (const int8_t *)(w + 192);
    int32_t sum = 0;
    for (int g = 0; g < 16; g++) sum += scales[g] * dots[g];
    total += half_at(w + 208) * xd[b] * (float)sum;
  }
  return total;
}

float herd_dot_q5_k_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  float total = 0;
  int8_t q[QK_K];
  int32_t dots[16];
  for (int b = 0; b < nb; b++, w += Q5_K_BYTES, x += QK_K, xs += 16) {
    q5k_codes(w, q);
    group_dots(q, x, dots);
    int32_t scaled = 0, mins = 0;
    for (int j = 0; j < 8; j++) {
      uint8_t sc, m;
      herd_q4k_scale_min(j, w + 4, &sc, &m);
      scaled += sc * (dots[2 * j] + dots[2 * j + 1]);
      mins += m * (xs[2 * j] + xs[2 * j + 1]);
    }
    total += half_at(w) * xd[b] * (float)scaled - half_at(w + 2) * xd[b] * (float)mins;
  }
  return total;
}

float herd_dot_q3_k_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  (void)xs;
  float total = 0;
  int8_t q[QK_K];
  int32_t dots[16];
  for (int b = 0; b < nb; b++, w += Q3_K_BYTES, x += QK_K) {
    q3k_codes(w, q);
    group_dots(q, x, dots);
    int32_t sum = 0;
    for (int g = 0; g < 16; g++) sum += herd_q3k_scale(g, w + 96) * dots[g];
    total += half_at(w + 108) * xd[b] * (float)sum;
  }
  return total;
}

float herd_dot_q2_k_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  float total = 0;
  int8_t q[QK_K];
  int32_t dots[16];
  for (int b = 0; b < nb; b++, w += Q2_K_BYTES, x += QK_K, xs += 16) {
    q2k_codes(w, q);
    group_dots(q, x, dots);
    int32_t scaled = 0, mins = 0;
    for (int g = 0; g < 16; g++) {
      scaled += (w[g] & 0xf) * dots[g];
      mins += (w[g] >> 4) * xs[g];
    }
    total += half_at(w + 80) * xd[b] * (float)scaled - half_at(w + 82) * xd[b] * (float)mins;
  }
  return total;
}

size_t herd_kquant_block_bytes(int format) {
  switch (format) {
    case FMT_Q6_K: return Q6_K_BYTES;
    case FMT_Q5_K: return Q5_K_BYTES;
    case FMT_Q3_K: return Q3_K_BYTES;
    case FMT_Q2_K: return Q2_K_BYTES;
    default: return 0;
  }
}

/* The float steps in the order of ggml's dequantize_row_* (each product rounded to float), so the rows equal its output. */
static void dequantize_block(int format, const uint8_t *w, float *out) {
  int8_t q[QK_K];
  switch (format) {
    case FMT_Q6_K: {
      const float d = half_at(w + 208);
      q6k_codes(w, q);
      for (int i = 0; i < QK_K; i++) out[i] = (d * (float)((const int8_t *)(w + 192))[i / KQ_GROUP]) * (float)q[i];
      return;
    }
    case FMT_Q5_K: {
      const float d = half_at(w), dmin = half_at(w + 2);
      q5k_codes(w, q);
      for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        herd_q4k_scale_min(j, w + 4, &sc, &m);
        const float scale = d * (float)sc, min = dmin * (float)m;
        for (int l = 0; l < 32; l++) out[32 * j + l] = scale * (float)q[32 * j + l] - min;
      }
      return;
    }
    case FMT_Q3_K: {
      const float d = half_at(w + 108);
      q3k_codes(w, q);
      for (int i = 0; i < QK_K; i++) out[i] = (d * (float)herd_q3k_scale(i / KQ_GROUP, w + 96)) * (float)q[i];
      return;
    }
    default: { /* Q2_K */
      const float d = half_at(w + 80), dmin = half_at(w + 82);
      q2k_codes(w, q);
      for (int i = 0; i < QK_K; i++) out[i] = (d * (float)(w[i / KQ_GROUP] & 0xf)) * (float)q[i] - dmin * (float)(w[i / KQ_GROUP] >> 4);
    }
  }
}

void herd_dequantize_kquant_row(int format, const uint8_t *row, int cols, float *out) {
  const size_t block_bytes = herd_kquant_block_bytes(format);
  for (int b = 0; b < cols / QK_K; b++) dequantize_block(format, row + b * block_bytes, out + b * QK_K);
}
