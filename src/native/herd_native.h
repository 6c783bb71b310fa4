/* Shared declarations of herd's native CPU kernels (see docs/performance.md, "Native kernels"). */
#ifndef HERD_NATIVE_H
#define HERD_NATIVE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Stored weight formats the native kernels compute on (codes shared with src/native/addon.ts). */
enum herd_format {
  FMT_F32 = 0, FMT_F16 = 1, FMT_BF16 = 2, FMT_Q8_0 = 3, FMT_Q4_0 = 4, FMT_Q4_K = 5,
  FMT_Q6_K = 6, FMT_Q5_K = 7, FMT_Q3_K = 8, FMT_Q2_K = 9, /* src/native/kquants.h */
  FMT_Q4_1 = 10, FMT_Q5_0 = 11, FMT_Q5_1 = 12, FMT_IQ4_NL = 13, FMT_IQ4_XS = 14, FMT_INT4_G128 = 15,
  /* Q4_0 repacked at load into groups of REPACK_ROWS interleaved rows (repack.h): linear layers only, never a stored format. */
  FMT_Q4_0_R16 = 16,
  /* Q4_K repacked likewise (repack.h). */
  FMT_Q4_K_R16 = 17,
  FMT_Q6_K_R16 = 18,
  /* Q8_0 repacked likewise (repack.h): one stream of weights for decode instead of one per row of a tile. */
  FMT_Q8_0_R16 = 19,
  /* Q5_K repacked likewise (repack.h), on the paths with a SIMD product on it. */
  FMT_Q5_K_R16 = 20,
  /* IQ4_XS repacked likewise (repack.h), on the paths with a SIMD product on it. */
  FMT_IQ4_XS_R16 = 21
};

#define QK 32      /* weights per Q8_0 / Q4_0 block, and per Q4_K sub-block */
#define QK_K 256   /* weights per Q4_K super-block */
#define Q8_0_BYTES 34
#define Q4_0_BYTES 18
#define Q4_K_BYTES 144

/*
 * Activations quantized for the int8 dot products, as llama.cpp does: Q8_0 blocks (one float
 * scale per 32 values) for Q8_0/Q4_0 weights; Q8_K (one float scale per 256, with the sum of each
 * 32 codes, which Q4_K's minimums multiply) for Q4_K weights.
 */
typedef struct {
  const int8_t *codes;   /* tokens * cols */
  const float *scales;   /* one per block (32 or 256 values) */
  const int32_t *sums;   /* Q8_K: one per 32 values */
  /* Where the path takes them (herd_kernels.token_tiles), the codes again in tiles of that many tokens, block by
   * block ([tile][block][token][32]); NULL otherwise. Whole tiles only: the tokens after the last are in `codes` alone. */
  const int8_t *tiles;
} quantized_row;

/* One instruction-set path: the inner products every linear layer is made of. */
typedef struct {
  const char *name;
  /* Tokens per tile of the copy of the activation codes its repacked Q8_0, Q4_0 and Q4_K products read (quantized_row.tiles), or 0. */
  int token_tiles;
  float (*dot_f32)(const float *a, const float *b, int n);
  void (*f16_to_f32)(const uint16_t *src, float *dst, int n);
  void (*bf16_to_f32)(const uint16_t *src, float *dst, int n);
  /* Dot of a stored F16 or BF16 row with float activations, converting on the way (a token or two: no widened copy of the row). */
  float (*dot_f16)(const uint16_t *w, const float *x, int n);
  float (*dot_bf16)(const uint16_t *w, const float *x, int n);
  /* Dot of one weight row with one quantized activation row (nb blocks of 32, or of 256 for Q4_K). */
  float (*dot_q8_0)(const uint8_t *w, const int8_t *x, const float *xd, int nb);
  float (*dot_q4_0)(const uint8_t *w, const int8_t *x, const float *xd, int nb);
  float (*dot_q4_k)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
  /* The other K-quants (kquants.h): Q8_K activations whose xs are the sums of each 16 codes. */
  float (*dot_q6_k)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
  float (*dot_q5_k)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
  float (*dot_q3_k)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
  float (*dot_q2_k)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
  /*
   * src/native/blocks32.h's formats: Q4_1, Q5_0, Q5_1 and IQ4_NL on Q8_0 activations (nb blocks of
   * 32; xs, each block's code sum, is what Q4_1's and Q5_1's minimums multiply), IQ4_XS on Q8_K
   * activations (nb super-blocks of 256), INT4_G128 on Q8_0 activations (nb groups of 128; xs is
   * what the zero-points multiply).
   */
  float (*dot_q4_1)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
  float (*dot_q5_0)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
  float (*dot_q5_1)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
  float (*dot_iq4_nl)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
  float (*dot_iq4_xs)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
  float (*dot_int4_g128)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
  /*
   * Many rows × many tokens at once (prefill and decode alike): y[t·y_stride + r] for `rows` rows
   * row_bytes apart and `tokens` activation rows of `cols` values quantized as x says (Q8_0 blocks
   * with sums of every 32 codes for Q8_0/Q4_0, Q8_K for Q4_K). The SIMD paths tile rows × tokens
   * so that each weight vector and each activation vector is loaded once per tile. Optional: where
   * a path has none (the scalar path, a new one), each row and token takes the path's dot kernel.
   */
  void (*gemm_q8_0)(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
  void (*gemm_q4_0)(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
  void (*gemm_q4_k)(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
  /*
   * The same for F32 rows (cols floats each) and float activations packed in groups of f32_tokens
   * tokens: group g is cols × f32_tokens floats from x + g·cols·f32_tokens, [column][token], zeros
   * past `tokens` (ops.c packs them once for all rows). NULL: dot_f32 row by row.
   */
  void (*gemm_f32)(const float *w, int rows, const float *x, int tokens, int cols, float *y, int y_stride);
  int f32_tokens;
  /* gemm on Q4_0 repacked as repack.h describes (w at a group's start); every path has one (the portable one by default). */
  void (*gemm_q4_0_r16)(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
  void (*gemm_q4_k_r16)(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
  /* Q6_K on Q8_K activations with sums of every 16 codes. */
  void (*gemm_q6_k_r16)(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
  /* Q5_K on Q8_K activations with sums of every 16 codes (the row dots' form). */
  void (*gemm_q5_k_r16)(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
  /* IQ4_XS on Q8_K activations with sums of every 32 codes. */
  void (*gemm_iq4_xs_r16)(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
  /* Q8_0 on Q8_0 activations with sums of every 32 codes. */
  void (*gemm_q8_0_r16)(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
  /*
   * Attention over n cached rows of one kv group (d floats each, contiguous) for the group's
   * `heads` query heads together (d floats each, contiguous): each key row is read once for all of
   * them. scores[j·stride + p] = scale · q_j·k_p.
   */
  void (*attend_scores)(const float *keys, int n, int d, const float *queries, int heads, float scale, float *scores, size_t stride);
  /* x[i] = exp(x[i] − shift), returning Σ x[i]: softmax's numerators and denominator. */
  float (*exp_shifted)(float *x, int n, float shift);
  /* out[j·d + i] += Σ_p weights[j·stride + p] · values[p·d + i] for the `heads` heads together. */
  void (*attend_values)(const float *values, int n, int d, const float *weights, size_t stride, int heads, float *out);
  /* out[i] = silu(gate[i]) · up[i] over [first, last). */
  void (*swiglu)(const float *gate, const float *up, float *out, size_t first, size_t last);
} herd_kernels;

extern const herd_kernels herd_kernels_scalar;
#if defined(__x86_64__) || defined(__i386__)
extern const herd_kernels herd_kernels_avx2;
extern const herd_kernels herd_kernels_avxvnni;
extern const herd_kernels herd_kernels_avx512;
/* The amx path's repacked Q8_0, Q4_0 and Q4_K products (kernels_x86.h); the rest of that path is avx512's. */
void herd_gemm_q8_0_r16_amx(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
void herd_gemm_q4_0_r16_amx(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
void herd_gemm_q4_k_r16_amx(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
#endif
#if defined(__aarch64__)
extern const herd_kernels herd_kernels_neon;
extern const herd_kernels herd_kernels_neon_dotprod;
extern const int herd_neon_sdot_compiled; /* 0 when the compiler could not build SDOT (clang without dotprod) */
#endif

float herd_half_to_float(uint16_t h);
uint16_t herd_float_to_half(float f);
/* The largest |x[i]| (0 for none; NaNs skipped): Q8_0's scale, for activations and weights alike. A comparison, not fmaxf, which GCC leaves a libm call per element without -ffinite-math-only. */
static inline float herd_abs_max(const float *x, int n) {
  float amax = 0;
  for (int i = 0; i < n; i++) {
    const float a = fabsf(x[i]);
    amax = a > amax ? a : amax;
  }
  return amax;
}
/* Q4_K's 6-bit scale and minimum of sub-block j (llama.cpp's get_scale_min_k4); inline, as every path calls it 8 times per 256 weights. */
static inline void herd_q4k_scale_min(int j, const uint8_t *q, uint8_t *scale, uint8_t *min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

/* All eight 6-bit scales and minimums of a Q4_K (or Q5_K) super-block at once, four bytes at a time. */
static inline void herd_q4k_scales_mins(const uint8_t *q, uint8_t scales[8], uint8_t mins[8]) {
  uint32_t u0, u1, u2, out[4];
  memcpy(&u0, q, 4);
  memcpy(&u1, q + 4, 4);
  memcpy(&u2, q + 8, 4);
  out[0] = u0 & 0x3f3f3f3f;
  out[1] = (u2 & 0x0f0f0f0f) | (((u0 >> 6) & 0x03030303) << 4);
  out[2] = u1 & 0x3f3f3f3f;
  out[3] = ((u2 >> 4) & 0x0f0f0f0f) | (((u1 >> 6) & 0x03030303) << 4);
  memcpy(scales, out, 8);
  memcpy(mins, out + 2, 8);
}

#endif
