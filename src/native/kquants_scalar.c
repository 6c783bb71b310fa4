/*
 * The K-quants on the portable path: each super-block unpacked to byte codes and a scale and
 * minimum per group of 16 (as llama.cpp's generic ggml_vec_dot_q*_K_q8_K do), then integer
 * products per group times the group's scale; the float scales multiply once per super-block.
 * The same unpacking serves the embedding rows (dequantize).
 */
#include <string.h>
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

/* One super-block unpacked: codes as the format means them, a scale and a minimum per group of 16. */
typedef struct {
  int8_t q[QK_K];
  int scale[QK_K / KQ_GROUP], min[QK_K / KQ_GROUP]; /* Q5_K's per 32, repeated; min 0 where the format has none */
  float d, dmin;                                    /* dmin 0 where the format has no minimums */
} unpacked_block;

static void unpack(int format, const uint8_t *w, unpacked_block *u) {
  for (int g = 0; g < QK_K / KQ_GROUP; g++) u->min[g] = 0;
  u->dmin = 0;
  switch (format) {
    case FMT_Q6_K:
      q6k_codes(w, u->q);
      for (int g = 0; g < 16; g++) u->scale[g] = ((const int8_t *)(w + 192))[g];
      u->d = half_at(w + 208);
      return;
    case FMT_Q5_K:
      q5k_codes(w, u->q);
      for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        herd_q4k_scale_min(j, w + 4, &sc, &m);
        u->scale[2 * j] = u->scale[2 * j + 1] = sc;
        u->min[2 * j] = u->min[2 * j + 1] = m;
      }
      u->d = half_at(w);
      u->dmin = half_at(w + 2);
      return;
    case FMT_Q3_K: {
      int8_t scales[16];
      q3k_codes(w, u->q);
      herd_q3k_scales(w + 96, scales);
      for (int g = 0; g < 16; g++) u->scale[g] = scales[g];
      u->d = half_at(w + 108);
      return;
    }
    default: /* Q2_K */
      q2k_codes(w, u->q);
      for (int g = 0; g < 16; g++) {
        u->scale[g] = w[g] & 0xf;
        u->min[g] = w[g] >> 4;
      }
      u->d = half_at(w + 80);
      u->dmin = half_at(w + 82);
  }
}

/* Σ over super-blocks of d·xd·Σ_g scale·(q·x)_g − dmin·xd·Σ_g min·Σx_g, the products in integers. */
static float dot_kquant(int format, const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  const size_t block_bytes = herd_kquant_block_bytes(format);
  unpacked_block u;
  float total = 0;
  for (int b = 0; b < nb; b++, w += block_bytes, x += QK_K, xs += QK_K / KQ_GROUP) {
    unpack(format, w, &u);
    int32_t scaled = 0, mins = 0;
    for (int g = 0; g < QK_K / KQ_GROUP; g++) {
      int32_t dot = 0;
      for (int i = KQ_GROUP * g; i < KQ_GROUP * (g + 1); i++) dot += u.q[i] * x[i];
      scaled += u.scale[g] * dot;
      mins += u.min[g] * xs[g];
    }
    total += u.d * xd[b] * (float)scaled - u.dmin * xd[b] * (float)mins;
  }
  return total;
}

float herd_dot_q6_k_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) { return dot_kquant(FMT_Q6_K, w, x, xd, xs, nb); }
float herd_dot_q5_k_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) { return dot_kquant(FMT_Q5_K, w, x, xd, xs, nb); }
float herd_dot_q3_k_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) { return dot_kquant(FMT_Q3_K, w, x, xd, xs, nb); }
float herd_dot_q2_k_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) { return dot_kquant(FMT_Q2_K, w, x, xd, xs, nb); }

size_t herd_kquant_block_bytes(int format) {
  switch (format) {
    case FMT_Q6_K: return Q6_K_BYTES;
    case FMT_Q5_K: return Q5_K_BYTES;
    case FMT_Q3_K: return Q3_K_BYTES;
    case FMT_Q2_K: return Q2_K_BYTES;
    default: return 0;
  }
}

/*
 * ggml's dequantize_row_* in its float order: (d·scale)·q − dmin·min, each step rounded to float
 * (for Q6_K and Q3_K the minimum is 0 and subtracting it changes nothing), so the rows equal its
 * output bit for bit.
 */
static void dequantize_block(int format, const uint8_t *w, float *out) {
  unpacked_block u;
  unpack(format, w, &u);
  for (int g = 0; g < QK_K / KQ_GROUP; g++) {
    const float scale = u.d * (float)u.scale[g], min = u.dmin * (float)u.min[g];
    for (int i = KQ_GROUP * g; i < KQ_GROUP * (g + 1); i++) out[i] = scale * (float)u.q[i] - min;
  }
}

void herd_dequantize_kquant_row(int format, const uint8_t *row, int cols, float *out) {
  const size_t block_bytes = herd_kquant_block_bytes(format);
  for (int b = 0; b < cols / QK_K; b++) dequantize_block(format, row + b * block_bytes, out + b * QK_K);
}
