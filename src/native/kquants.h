/*
 * llama.cpp's K-quant super-blocks of 256 weights that herd's native kernels compute on as
 * stored: Q6_K, Q5_K, Q3_K, Q2_K (Q4_K is in herd_native.h). The byte layouts are ggml-common.h's,
 * as src/formats/ggml-k-quants.ts reads them:
 *   Q6_K 210: ql[128] low 4 bits, qh[64] top 2 bits, scales[16] int8 (one per 16 weights), d f16
 *   Q5_K 176: d f16, dmin f16, scales[12] (Q4_K's 6-bit scales and mins), qh[32] 5th bits, qs[128] low 4 bits
 *   Q3_K 110: hmask[32] 3rd bits, qs[64] low 2 bits, scales[12] (sixteen 6-bit scales, offset 32), d f16
 *   Q2_K  84: scales[16] (low nibble scale, high nibble min, per 16 weights), qs[64] 2-bit codes, d f16, dmin f16
 * Their dot products take Q8_K activations whose `sums` hold the sum of each 16 codes, as
 * llama.cpp's bsums: the scales (and Q2_K's mins) change every 16 weights.
 */
#ifndef HERD_KQUANTS_H
#define HERD_KQUANTS_H
#include <string.h>
#include "herd_native.h"

#define Q6_K_BYTES 210
#define Q5_K_BYTES 176
#define Q3_K_BYTES 110
#define Q2_K_BYTES 84
#define KQ_GROUP 16 /* weights per scale in Q6_K, Q3_K and Q2_K; values per activation sum */

/* The scalar path's dot products (kquants_scalar.c); the SIMD paths' are in kquants_x86.h. */
float herd_dot_q6_k_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
float herd_dot_q5_k_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
float herd_dot_q3_k_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
float herd_dot_q2_k_scalar(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);

/*
 * Q3_K's sixteen group scales, their offset of 32 removed. Scale j has its low nibble in byte j
 * (j < 8) or the high nibble of byte j − 8, and its top two bits at bits 2(j / 4).. of byte
 * 8 + j % 4: four at a time in 32-bit words, as llama.cpp unpacks them.
 */
static inline void herd_q3k_scales(const uint8_t *packed, int8_t *scales) {
  uint32_t low[2], high, words[4];
  memcpy(low, packed, 8);
  memcpy(&high, packed + 8, 4);
  for (int k = 0; k < 4; k++) words[k] = ((low[k & 1] >> (4 * (k >> 1))) & 0x0f0f0f0fu) | (((high >> (2 * k)) & 0x03030303u) << 4);
  memcpy(scales, words, 16);
  for (int j = 0; j < 16; j++) scales[j] = (int8_t)(scales[j] - 32);
}

/* Bytes of one super-block of a K-quant format above; 0 for any other format. */
size_t herd_kquant_block_bytes(int format);
/* One stored row of `cols` weights as floats, exactly as ggml's dequantize_row_* (float32, in its order). */
void herd_dequantize_kquant_row(int format, const uint8_t *row, int cols, float *out);
#endif
