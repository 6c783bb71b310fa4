/* The load-time repacking of Q4_0, Q8_0, the K-quants (Q4_K, Q5_K, Q6_K) and IQ4_XS into row groups (repack.h) and the portable product on it. */
#include <stdlib.h>
#include <string.h>
#include "kquants.h"
#include "repack.h"

/* Writes row r's stored block into its places in the group's repacked block. */
typedef void (*place_row_block)(uint8_t *out, const uint8_t *block, int r);

/* A Q4_0 or Q8_0 block (a half scale, then `chunks` × 4 code bytes) into its places. */
static void place_block32(uint8_t *out, const uint8_t *block, int r, int chunks) {
  memcpy(out + 2 * r, block, 2);
  for (int j = 0; j < chunks; j++) memcpy(out + R16_CHUNK(j, r), block + 2 + 4 * j, 4);
}
static void place_q4_0(uint8_t *out, const uint8_t *block, int r) { place_block32(out, block, r, 4); }
static void place_q8_0(uint8_t *out, const uint8_t *block, int r) { place_block32(out, block, r, 8); }

/* Q4_K's and Q5_K's first 16 bytes (d, dmin, the 12 scale bytes) into their places. */
static void place_k16_head(uint8_t *out, const uint8_t *block, int r) {
  memcpy(out + K16_D + 2 * r, block, 2);
  memcpy(out + K16_DMIN + 2 * r, block + 2, 2);
  for (int k = 0; k < 3; k++) memcpy(out + K16_SCALES(k, r), block + 4 + 4 * k, 4);
}

static void place_q4_k(uint8_t *out, const uint8_t *block, int r) {
  place_k16_head(out, block, r);
  for (int p = 0; p < 4; p++)
    for (int c = 0; c < 8; c++) memcpy(out + K16_CHUNK(p, c, r), block + 16 + 32 * p + 4 * c, 4);
}

/* Each whole group of rows, one at a time through a copy of it, into the interleaved layout. */
static int repack_groups(uint8_t *bytes, int rows, int blocks, size_t block_bytes, place_row_block place) {
  const size_t row_bytes = (size_t)blocks * block_bytes;
  uint8_t *stored = malloc(REPACK_ROWS * row_bytes);
  if (stored == NULL) return 0;
  for (int g = 0; g + REPACK_ROWS <= rows; g += REPACK_ROWS) {
    uint8_t *group = bytes + (size_t)g * row_bytes;
    memcpy(stored, group, REPACK_ROWS * row_bytes);
    for (int b = 0; b < blocks; b++)
      for (int r = 0; r < REPACK_ROWS; r++) place(group + (size_t)b * REPACK_ROWS * block_bytes, stored + r * row_bytes + (size_t)b * block_bytes, r);
  }
  free(stored);
  return 1;
}

int herd_repack_q4_0_r16(uint8_t *bytes, int rows, int cols) { return repack_groups(bytes, rows, cols / QK, Q4_0_BYTES, place_q4_0); }
int herd_repack_q8_0_r16(uint8_t *bytes, int rows, int cols) { return repack_groups(bytes, rows, cols / QK, Q8_0_BYTES, place_q8_0); }
int herd_repack_q4_k_r16(uint8_t *bytes, int rows, int cols) { return repack_groups(bytes, rows, cols / QK_K, Q4_K_BYTES, place_q4_k); }

/* Q6_K: ql[128], qh[64], scales[16], d. Code 32i + l of half n: nibble i / 2 of ql[64n + 32(i % 2) + l], bits 2i, 2i + 1 of qh[32n + l]. */
static void place_q6_k(uint8_t *out, const uint8_t *block, int r) {
  memcpy(out + Q6R_D + 2 * r, block + 208, 2);
  for (int k = 0; k < 4; k++) memcpy(out + Q6R_SCALES(k, r), block + 192 + 4 * k, 4);
  for (int n = 0; n < 2; n++)
    for (int l = 0; l < 32; l++) {
      const uint8_t *ql = block + 64 * n, qh = block[128 + 32 * n + l];
      const uint8_t codes[4] = {(uint8_t)((ql[l] & 0xf) | (qh & 3) << 4), (uint8_t)((ql[l + 32] & 0xf) | (qh >> 2 & 3) << 4),
                                (uint8_t)(ql[l] >> 4 | (qh >> 4 & 3) << 4), (uint8_t)(ql[l + 32] >> 4 | (qh >> 6) << 4)};
      for (int k = 0; k < 3; k++) out[Q6R_CODES(n, k, l / 4, r) + l % 4] = (uint8_t)(codes[k] | (codes[3] >> 2 * k & 3) << 6);
    }
}

int herd_repack_q6_k_r16(uint8_t *bytes, int rows, int cols) { return repack_groups(bytes, rows, cols / QK_K, Q6_K_BYTES, place_q6_k); }

/* Q5_K: d, dmin, scales[12] as Q4_K's, qh[32], qs[128]. */
static void place_q5_k(uint8_t *out, const uint8_t *block, int r) {
  place_k16_head(out, block, r);
  for (int c = 0; c < 8; c++) memcpy(out + Q5R_QH(c, r), block + 16 + 4 * c, 4);
  for (int p = 0; p < 4; p++)
    for (int c = 0; c < 8; c++) memcpy(out + Q5R_CHUNK(p, c, r), block + 48 + 32 * p + 4 * c, 4);
}

int herd_repack_q5_k_r16(uint8_t *bytes, int rows, int cols) { return repack_groups(bytes, rows, cols / QK_K, Q5_K_BYTES, place_q5_k); }

/* IQ4_XS: d, scales_h (u16), scales_l[4], qs[128] (sub-block j's 16 bytes at 16j). */
static void place_iq4_xs(uint8_t *out, const uint8_t *block, int r) {
  memcpy(out + I4R_D + 2 * r, block, 2);
  memcpy(out + I4R_SCALES_H(r), block + 2, 2);
  memcpy(out + I4R_SCALES_L(r), block + 4, 4);
  for (int j = 0; j < QK_K / QK; j++)
    for (int c = 0; c < 4; c++) memcpy(out + I4R_CHUNK(j, c, r), block + 8 + 16 * j + 4 * c, 4);
}

int herd_repack_iq4_xs_r16(uint8_t *bytes, int rows, int cols) { return repack_groups(bytes, rows, cols / QK_K, IQ4_XS_BYTES, place_iq4_xs); }

/* Σ (q − 8)·x over block b of row r of a repacked group, as an exact integer. */
static int32_t block_dot(const uint8_t *block, int r, const int8_t *x) {
  int32_t sum = 0;
  for (int j = 0; j < 4; j++)
    for (int i = 0; i < 4; i++) {
      const uint8_t q = block[R16_CHUNK(j, r) + i];
      sum += ((q & 0xf) - 8) * x[4 * j + i] + ((q >> 4) - 8) * x[16 + 4 * j + i];
    }
  return sum;
}

void herd_gemm_q4_0_r16_portable(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  const int nb = cols / QK, grouped = rows / REPACK_ROWS * REPACK_ROWS;
  for (int g = 0; g < grouped; g += REPACK_ROWS) {
    const uint8_t *group = w + (size_t)g * row_bytes;
    for (int t = 0; t < tokens; t++)
      for (int r = 0; r < REPACK_ROWS; r++) {
        float total = 0;
        for (int b = 0; b < nb; b++) {
          const uint8_t *block = group + (size_t)b * R16_BLOCK_BYTES;
          const float d = herd_half_to_float((uint16_t)(block[2 * r] | block[2 * r + 1] << 8));
          total += d * x->scales[(size_t)t * nb + b] * (float)block_dot(block, r, x->codes + (size_t)t * cols + (size_t)b * QK);
        }
        y[(size_t)t * y_stride + g + r] = total;
      }
  }
  for (int r = grouped; r < rows; r++)
    for (int t = 0; t < tokens; t++)
      y[(size_t)t * y_stride + r] = herd_kernels_scalar.dot_q4_0(w + (size_t)r * row_bytes, x->codes + (size_t)t * cols, x->scales + (size_t)t * nb, nb);
}

/* Row r of a repacked super-block as the stored block was (the scalar dot's input). */
/* place_k16_head undone. */
static void unpack_k16_head(const uint8_t *block, int r, uint8_t *out) {
  memcpy(out, block + K16_D + 2 * r, 2);
  memcpy(out + 2, block + K16_DMIN + 2 * r, 2);
  for (int k = 0; k < 3; k++) memcpy(out + 4 + 4 * k, block + K16_SCALES(k, r), 4);
}

static void unpack_q4_k_row(const uint8_t *block, int r, uint8_t *out) {
  unpack_k16_head(block, r, out);
  for (int p = 0; p < 4; p++)
    for (int c = 0; c < 8; c++) memcpy(out + 16 + 32 * p + 4 * c, block + K16_CHUNK(p, c, r), 4);
}

static void unpack_q5_k_row(const uint8_t *block, int r, uint8_t *out) {
  unpack_k16_head(block, r, out);
  for (int c = 0; c < 8; c++) memcpy(out + 16 + 4 * c, block + Q5R_QH(c, r), 4);
  for (int p = 0; p < 4; p++)
    for (int c = 0; c < 8; c++) memcpy(out + 48 + 32 * p + 4 * c, block + Q5R_CHUNK(p, c, r), 4);
}

static void unpack_iq4_xs_row(const uint8_t *block, int r, uint8_t *out) {
  memcpy(out, block + I4R_D + 2 * r, 2);
  memcpy(out + 2, block + I4R_SCALES_H(r), 2);
  memcpy(out + 4, block + I4R_SCALES_L(r), 4);
  for (int j = 0; j < QK_K / QK; j++)
    for (int c = 0; c < 4; c++) memcpy(out + 8 + 16 * j + 4 * c, block + I4R_CHUNK(j, c, r), 4);
}

static void unpack_q6_k_row(const uint8_t *block, int r, uint8_t *out) {
  memcpy(out + 208, block + Q6R_D + 2 * r, 2);
  for (int k = 0; k < 4; k++) memcpy(out + 192 + 4 * k, block + Q6R_SCALES(k, r), 4);
  for (int n = 0; n < 2; n++)
    for (int l = 0; l < 32; l++) {
      uint8_t codes[4] = {0, 0, 0, 0};
      for (int k = 0; k < 3; k++) {
        const uint8_t byte = block[Q6R_CODES(n, k, l / 4, r) + l % 4];
        codes[k] = byte & 0x3f;
        codes[3] |= (uint8_t)((byte >> 6) << 2 * k);
      }
      out[64 * n + l] = (uint8_t)((codes[0] & 0xf) | (codes[2] & 0xf) << 4);
      out[64 * n + l + 32] = (uint8_t)((codes[1] & 0xf) | (codes[3] & 0xf) << 4);
      out[128 + 32 * n + l] = (uint8_t)(codes[0] >> 4 | (codes[1] >> 4) << 2 | (codes[2] >> 4) << 4 | (codes[3] >> 4) << 6);
    }
}

static void unpack_block32_row(const uint8_t *block, int r, uint8_t *out, int chunks) {
  memcpy(out, block + 2 * r, 2);
  for (int j = 0; j < chunks; j++) memcpy(out + 2 + 4 * j, block + R16_CHUNK(j, r), 4);
}
static void unpack_q4_0_row(const uint8_t *block, int r, uint8_t *out) { unpack_block32_row(block, r, out, 4); }
static void unpack_q8_0_row(const uint8_t *block, int r, uint8_t *out) { unpack_block32_row(block, r, out, 8); }

int herd_r16_stored_format(int format) {
  switch (format) {
    case FMT_Q4_0_R16: return FMT_Q4_0;
    case FMT_Q8_0_R16: return FMT_Q8_0;
    case FMT_Q4_K_R16: return FMT_Q4_K;
    case FMT_Q6_K_R16: return FMT_Q6_K;
    case FMT_Q5_K_R16: return FMT_Q5_K;
    case FMT_IQ4_XS_R16: return FMT_IQ4_XS;
    default: return -1;
  }
}

void herd_r16_unpack_row(int format, const uint8_t *block, int r, uint8_t *out) {
  if (format == FMT_Q4_0_R16) unpack_q4_0_row(block, r, out);
  else if (format == FMT_Q8_0_R16) unpack_q8_0_row(block, r, out);
  else if (format == FMT_Q4_K_R16) unpack_q4_k_row(block, r, out);
  else if (format == FMT_Q5_K_R16) unpack_q5_k_row(block, r, out);
  else if (format == FMT_IQ4_XS_R16) unpack_iq4_xs_row(block, r, out);
  else unpack_q6_k_row(block, r, out);
}

typedef float (*kquant_dot)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);

/* Every row and token through the scalar dot, each repacked super-block first unpacked to the stored one; `sums_per_block` of the activation sums per 256. */
static void portable_kquant_r16(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride,
                                size_t block_bytes, int sums_per_block, void (*unpack_row)(const uint8_t *, int, uint8_t *), kquant_dot dot) {
  const int nb = cols / QK_K, grouped = rows / REPACK_ROWS * REPACK_ROWS;
  uint8_t block[Q6_K_BYTES];
  for (int r = 0; r < rows; r++) {
    const uint8_t *row = w + (size_t)r * row_bytes;
    for (int t = 0; t < tokens; t++) {
      const int8_t *codes = x->codes + (size_t)t * cols;
      const float *scales = x->scales + (size_t)t * nb;
      const int32_t *sums = x->sums + (size_t)t * nb * sums_per_block;
      float total = 0;
      if (r >= grouped) {
        total = dot(row, codes, scales, sums, nb);
      } else {
        const uint8_t *group = w + (size_t)(r - r % REPACK_ROWS) * row_bytes;
        for (int b = 0; b < nb; b++) {
          unpack_row(group + (size_t)b * REPACK_ROWS * block_bytes, r % REPACK_ROWS, block);
          total += dot(block, codes + (size_t)b * QK_K, scales + b, sums + (size_t)b * sums_per_block, 1);
        }
      }
      y[(size_t)t * y_stride + r] = total;
    }
  }
}

void herd_gemm_q4_k_r16_portable(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  portable_kquant_r16(w, row_bytes, rows, x, tokens, cols, y, y_stride, Q4_K_BYTES, QK_K / QK, unpack_q4_k_row, herd_kernels_scalar.dot_q4_k);
}

void herd_gemm_q5_k_r16_portable(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  portable_kquant_r16(w, row_bytes, rows, x, tokens, cols, y, y_stride, Q5_K_BYTES, QK_K / KQ_GROUP, unpack_q5_k_row, herd_dot_q5_k_scalar);
}

void herd_gemm_iq4_xs_r16_portable(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  portable_kquant_r16(w, row_bytes, rows, x, tokens, cols, y, y_stride, IQ4_XS_BYTES, QK_K / QK, unpack_iq4_xs_row, herd_kernels_scalar.dot_iq4_xs);
}

void herd_gemm_q6_k_r16_portable(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  portable_kquant_r16(w, row_bytes, rows, x, tokens, cols, y, y_stride, Q6_K_BYTES, QK_K / KQ_GROUP, unpack_q6_k_row, herd_dot_q6_k_scalar);
}

/* Every row and token through the scalar dot, each repacked block first unpacked to the stored one. */
void herd_gemm_q8_0_r16_portable(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride) {
  const int nb = cols / QK, grouped = rows / REPACK_ROWS * REPACK_ROWS;
  uint8_t block[Q8_0_BYTES];
  for (int r = 0; r < rows; r++) {
    const uint8_t *row = w + (size_t)r * row_bytes, *group = w + (size_t)(r - r % REPACK_ROWS) * row_bytes;
    for (int t = 0; t < tokens; t++) {
      const int8_t *codes = x->codes + (size_t)t * cols;
      const float *scales = x->scales + (size_t)t * nb;
      float total = 0;
      if (r >= grouped) {
        total = herd_kernels_scalar.dot_q8_0(row, codes, scales, nb);
      } else {
        for (int b = 0; b < nb; b++) {
          unpack_q8_0_row(group + (size_t)b * Q8R_BLOCK_BYTES, r % REPACK_ROWS, block);
          total += herd_kernels_scalar.dot_q8_0(block, codes + (size_t)b * QK, scales + b, 1);
        }
      }
      y[(size_t)t * y_stride + r] = total;
    }
  }
}
