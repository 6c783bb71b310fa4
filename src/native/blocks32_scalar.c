/*
 * The portable path's products for blocks32.h's formats, and their dequantizer (embedding rows).
 * Integer sums per block, then one float multiply-add, as llama.cpp's ggml_vec_dot_*_q8_* do:
 * the minimum (Q4_1, Q5_1) and zero-point (INT4_G128) terms use the activation block's code sum
 * instead of adding them to each weight.
 */
#include "blocks32.h"

/* Code j of a block of 32 whose 16 code bytes start at q (the fifth bit from qh for Q5). */
static inline int nibble(const uint8_t *q, int j) { return j < 16 ? q[j] & 0xf : q[j - 16] >> 4; }

static inline int five_bits(const uint8_t *q, uint32_t qh, int j) { return nibble(q, j) | (int)((qh >> j) & 1) << 4; }

float herd_dot_q4_1_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  float total = 0;
  for (int b = 0; b < nb; b++, w += Q4_1_BYTES, x += QK) {
    int32_t sum = 0;
    for (int j = 0; j < QK; j++) sum += nibble(w + 4, j) * x[j];
    total += herd_half_at(w) * xd[b] * (float)sum + herd_half_at(w + 2) * xd[b] * (float)xs[b];
  }
  return total;
}

float herd_dot_q5_0_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  (void)xs;
  float total = 0;
  for (int b = 0; b < nb; b++, w += Q5_0_BYTES, x += QK) {
    const uint32_t qh = herd_u32_at(w + 2);
    int32_t sum = 0;
    for (int j = 0; j < QK; j++) sum += (five_bits(w + 6, qh, j) - 16) * x[j];
    total += herd_half_at(w) * xd[b] * (float)sum;
  }
  return total;
}

float herd_dot_q5_1_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  float total = 0;
  for (int b = 0; b < nb; b++, w += Q5_1_BYTES, x += QK) {
    const uint32_t qh = herd_u32_at(w + 4);
    int32_t sum = 0;
    for (int j = 0; j < QK; j++) sum += five_bits(w + 8, qh, j) * x[j];
    total += herd_half_at(w) * xd[b] * (float)sum + herd_half_at(w + 2) * xd[b] * (float)xs[b];
  }
  return total;
}

float herd_dot_iq4_nl_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  (void)xs;
  float total = 0;
  for (int b = 0; b < nb; b++, w += IQ4_NL_BYTES, x += QK) {
    int32_t sum = 0;
    for (int j = 0; j < QK; j++) sum += herd_iq4_levels[nibble(w + 2, j)] * x[j];
    total += herd_half_at(w) * xd[b] * (float)sum;
  }
  return total;
}

/* Per super-block: Σ over its 8 sub-blocks of (scale − 32) · Σ level·x, then d · x's scale. */
float herd_dot_iq4_xs_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  (void)xs;
  float total = 0;
  for (int b = 0; b < nb; b++, w += IQ4_XS_BYTES) {
    int32_t scaled = 0;
    for (int sub = 0; sub < QK_K / QK; sub++, x += QK) {
      int32_t sum = 0;
      for (int j = 0; j < QK; j++) sum += herd_iq4_levels[nibble(w + 8 + 16 * sub, j)] * x[j];
      scaled += herd_iq4_xs_scale(w, sub) * sum;
    }
    total += herd_half_at(w) * xd[b] * (float)scaled;
  }
  return total;
}

/* Per group of 128: scale · Σ over its 4 activation blocks of x's scale · (Σ code·x − zero · Σ x). */
float herd_dot_int4_g128_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  float total = 0;
  for (int g = 0; g < nb; g++, w += INT4_G128_BYTES) {
    const int zero = w[2];
    float group = 0;
    for (int b = 0; b < INT4_GROUP / QK; b++, x += QK, xd++, xs++) {
      int32_t sum = 0;
      for (int j = 0; j < QK; j++) sum += nibble(w + 4 + 16 * b, j) * x[j];
      group += *xd * (float)(sum - zero * *xs);
    }
    total += herd_half_at(w) * group;
  }
  return total;
}

size_t herd_blocks32_row_bytes(int format, int cols) {
  switch (format) {
    case FMT_Q4_1: return cols % QK ? 0 : (size_t)(cols / QK) * Q4_1_BYTES;
    case FMT_Q5_0: return cols % QK ? 0 : (size_t)(cols / QK) * Q5_0_BYTES;
    case FMT_Q5_1: return cols % QK ? 0 : (size_t)(cols / QK) * Q5_1_BYTES;
    case FMT_IQ4_NL: return cols % QK ? 0 : (size_t)(cols / QK) * IQ4_NL_BYTES;
    case FMT_IQ4_XS: return cols % QK_K ? 0 : (size_t)(cols / QK_K) * IQ4_XS_BYTES;
    case FMT_INT4_G128: return cols % INT4_GROUP ? 0 : (size_t)(cols / INT4_GROUP) * INT4_G128_BYTES;
    default: return 0;
  }
}

/* The 32 weights of one block from its codes (0..31) and a float affine map, rounded once as ggml's dequantize_row_* does. */
static void affine_block(const uint8_t *block, int format, float *out) {
  switch (format) {
    case FMT_Q4_1:
      for (int j = 0; j < QK; j++) out[j] = (float)nibble(block + 4, j) * herd_half_at(block) + herd_half_at(block + 2);
      return;
    case FMT_Q5_0:
      for (int j = 0; j < QK; j++) out[j] = (float)(five_bits(block + 6, herd_u32_at(block + 2), j) - 16) * herd_half_at(block);
      return;
    case FMT_Q5_1:
      for (int j = 0; j < QK; j++) out[j] = (float)five_bits(block + 8, herd_u32_at(block + 4), j) * herd_half_at(block) + herd_half_at(block + 2);
      return;
    default: /* IQ4_NL */
      for (int j = 0; j < QK; j++) out[j] = herd_half_at(block) * (float)herd_iq4_levels[nibble(block + 2, j)];
  }
}

void herd_blocks32_dequantize_row(int format, const uint8_t *row, int cols, float *out) {
  if (format == FMT_IQ4_XS) {
    for (int b = 0; b < cols / QK_K; b++, row += IQ4_XS_BYTES) {
      for (int sub = 0; sub < QK_K / QK; sub++) {
        const float scale = herd_half_at(row) * (float)herd_iq4_xs_scale(row, sub);
        for (int j = 0; j < QK; j++) *out++ = scale * (float)herd_iq4_levels[nibble(row + 8 + 16 * sub, j)];
      }
    }
  } else if (format == FMT_INT4_G128) {
    for (int g = 0; g < cols / INT4_GROUP; g++, row += INT4_G128_BYTES) {
      for (int j = 0; j < INT4_GROUP; j++) *out++ = (float)(nibble(row + 4 + 16 * (j / QK), j % QK) - row[2]) * herd_half_at(row);
    }
  } else {
    const size_t block_bytes = herd_blocks32_row_bytes(format, QK);
    for (int b = 0; b < cols / QK; b++, row += block_bytes, out += QK) affine_block(row, format, out);
  }
}
