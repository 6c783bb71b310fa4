/*
 * The GGUF blocks of 32 beyond Q8_0/Q4_0 (Q4_1, Q5_0, Q5_1, IQ4_NL), IQ4_XS's super-blocks of 256
 * and herd's INT4_G128 rows of AWQ/GPTQ weights (src/formats/int4-rows.ts): their layouts, the
 * scalar path's dot products (blocks32_scalar.c) and the dequantizer for embedding rows. The x86
 * paths' products are blocks32_x86.h. In every block of 32, code j < 16 is the low nibble of code
 * byte j and code j ≥ 16 the high nibble of byte j − 16, as in Q4_0.
 */
#ifndef HERD_BLOCKS32_H
#define HERD_BLOCKS32_H
#include "herd_native.h"

#define Q4_1_BYTES 20     /* f16 d, f16 m, 16 code bytes: x = q·d + m */
#define Q5_0_BYTES 22     /* f16 d, u32 qh (bit j: code j's fifth bit), 16 code bytes: x = (q − 16)·d */
#define Q5_1_BYTES 24     /* f16 d, f16 m, u32 qh, 16 code bytes: x = q·d + m */
#define IQ4_NL_BYTES 18   /* f16 d, 16 code bytes: x = d·level[q] */
#define IQ4_XS_BYTES 136  /* f16 d, u16 scales_h, u8 scales_l[4], 8 × 16 code bytes: x = d·(ls − 32)·level[q] */
#define INT4_GROUP 128    /* INT4_G128: weights per group */
#define INT4_G128_BYTES 68 /* f16 scale, u8 zero (0..16), pad, 4 × 16 code bytes: x = (q − zero)·scale */

/* IQ4_NL's and IQ4_XS's 16 non-linear levels (kvalues_iq4nl in ggml-common.h). */
static const int8_t herd_iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* IQ4_XS's 6-bit scale of sub-block j, less its offset of 32: low nibble from scales_l, two high bits from scales_h. */
static inline int herd_iq4_xs_scale(const uint8_t *block, int j) {
  const int high = ((block[2] | block[3] << 8) >> (2 * j)) & 3;
  const int low = (block[4 + j / 2] >> (4 * (j & 1))) & 0xf;
  return (low | (high << 4)) - 32;
}

static inline float herd_half_at(const uint8_t *p) { return herd_half_to_float((uint16_t)(p[0] | p[1] << 8)); }

static inline uint32_t herd_u32_at(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

float herd_dot_q4_1_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
float herd_dot_q5_0_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
float herd_dot_q5_1_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
float herd_dot_iq4_nl_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
float herd_dot_iq4_xs_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
float herd_dot_int4_g128_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);

/* Bytes of one row of `cols` weights in one of these formats; 0 when cols is not whole blocks, or another format. */
size_t herd_blocks32_row_bytes(int format, int cols);
/* One stored row of these formats as floats, exactly as src/formats' dequantizers give them. */
void herd_blocks32_dequantize_row(int format, const uint8_t *row, int cols, float *out);
#endif
