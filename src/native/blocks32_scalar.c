/*
 * The portable path's products for blocks32.h's formats, and their dequantizer (embedding rows).
 * Integer sums per block, then one float multiply-add, as llama.cpp's ggml_vec_dot_*_q8_* do:
 * the minimum (Q4_1, Q5_1) and zero-point (INT4_G128) terms use the activation block's code sum
 * instead of adding them to each weight.
 */
#include <string.h>
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

/*
 * A block's 32 codes from its 16 nibble bytes (and the fifth bits in qh where `fifth`), as plain
 * loops over the 16 bytes that the compiler vectorizes, where nibble() per value it did not: the
 * dequantizer widens whole matrices for the F32 product (ops.c, widens_to_f32).
 */
static void block_codes(const uint8_t *q, uint32_t qh, int fifth, uint8_t *codes) {
  for (int j = 0; j < 16; j++) {
    codes[j] = q[j] & 0xf;
    codes[j + 16] = q[j] >> 4;
  }
  if (!fifth) return;
  /* Each byte of qh spread over eight codes: bit i of `spread` lands in byte i (0 or 1; little-endian, as every target is), then times 16. */
  for (int i = 0; i < 4; i++) {
    const uint64_t spread = (((((qh >> (8 * i)) & 0xff) * 0x0101010101010101ULL) & 0x8040201008040201ULL) + 0x7f7f7f7f7f7f7f7fULL) >> 7 & 0x0101010101010101ULL;
    uint64_t eight;
    memcpy(&eight, codes + 8 * i, 8);
    eight |= spread << 4; /* bytes 0..15 plus 16: no carries between bytes */
    memcpy(codes + 8 * i, &eight, 8);
  }
}

/* An IQ4 block's 32 weights: its 16 levels scaled once (the same products), then looked up by code. */
static void iq4_block(const uint8_t *q, float scale, float *out) {
  float levels[16];
  for (int i = 0; i < 16; i++) levels[i] = scale * (float)herd_iq4_levels[i];
  for (int j = 0; j < 16; j++) {
    out[j] = levels[q[j] & 0xf];
    out[j + 16] = levels[q[j] >> 4];
  }
}

/* The 32 weights of one block from its codes (0..31) and a float affine map, rounded once as ggml's dequantize_row_* does. */
static void affine_block(const uint8_t *block, int format, float *out) {
  /* The halves read once a block: herd_half_to_float is a call in another file, which the loops would repeat per value. */
  const float d = herd_half_at(block);
  uint8_t codes[QK];
  switch (format) {
    case FMT_Q4_1: {
      const float m = herd_half_at(block + 2);
      block_codes(block + 4, 0, 0, codes);
      for (int j = 0; j < QK; j++) out[j] = (float)codes[j] * d + m;
      return;
    }
    case FMT_Q5_0:
      block_codes(block + 6, herd_u32_at(block + 2), 1, codes);
      for (int j = 0; j < QK; j++) out[j] = (float)(codes[j] - 16) * d;
      return;
    case FMT_Q5_1: {
      const float m = herd_half_at(block + 2);
      block_codes(block + 8, herd_u32_at(block + 4), 1, codes);
      for (int j = 0; j < QK; j++) out[j] = (float)codes[j] * d + m;
      return;
    }
    default: /* IQ4_NL */
      iq4_block(block + 2, d, out);
  }
}

void herd_blocks32_dequantize_row(int format, const uint8_t *row, int cols, float *out) {
  if (format == FMT_IQ4_XS) {
    for (int b = 0; b < cols / QK_K; b++, row += IQ4_XS_BYTES) {
      const float d = herd_half_at(row);
      for (int sub = 0; sub < QK_K / QK; sub++) {
        const float scale = d * (float)herd_iq4_xs_scale(row, sub);
        iq4_block(row + 8 + 16 * sub, scale, out);
        out += QK;
      }
    }
  } else if (format == FMT_INT4_G128) {
    for (int g = 0; g < cols / INT4_GROUP; g++, row += INT4_G128_BYTES) {
      const float scale = herd_half_at(row);
      for (int sub = 0; sub < INT4_GROUP / QK; sub++) {
        uint8_t codes[QK];
        block_codes(row + 4 + 16 * sub, 0, 0, codes);
        for (int j = 0; j < QK; j++) *out++ = (float)(codes[j] - row[2]) * scale;
      }
    }
  } else {
    const size_t block_bytes = herd_blocks32_row_bytes(format, QK);
    for (int b = 0; b < cols / QK; b++, row += block_bytes, out += QK) affine_block(row, format, out);
  }
}
