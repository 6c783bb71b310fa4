/* The load-time repacking of Q4_0 into row groups (repack.h) and the portable product on it. */
#include <stdlib.h>
#include <string.h>
#include "repack.h"

int herd_repack_q4_0_r16(uint8_t *bytes, int rows, int cols) {
  const int nb = cols / QK;
  const size_t row_bytes = (size_t)nb * Q4_0_BYTES;
  uint8_t *stored = malloc(REPACK_ROWS * row_bytes);
  if (stored == NULL) return 0;
  for (int g = 0; g + REPACK_ROWS <= rows; g += REPACK_ROWS) {
    uint8_t *group = bytes + (size_t)g * row_bytes;
    memcpy(stored, group, REPACK_ROWS * row_bytes);
    for (int b = 0; b < nb; b++) {
      uint8_t *out = group + (size_t)b * R16_BLOCK_BYTES;
      for (int r = 0; r < REPACK_ROWS; r++) {
        const uint8_t *block = stored + r * row_bytes + (size_t)b * Q4_0_BYTES;
        memcpy(out + 2 * r, block, 2);
        for (int j = 0; j < 4; j++) memcpy(out + R16_CHUNK(j, r), block + 2 + 4 * j, 4);
      }
    }
  }
  free(stored);
  return 1;
}

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
