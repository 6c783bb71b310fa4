#ifndef HERD_QUANTIZE_H
#define HERD_QUANTIZE_H
/*
 * GGUF's block quantizers, byte for byte as herd's TypeScript writers (src/formats/ggml-blocks.ts,
 * ggml-quantize-legacy.ts, ggml-k-blocks.ts, ggml-quantize-k.ts) and llama.cpp's reference
 * quantizers write them. Types are ggml's type ids (GgmlType in src/formats/gguf.ts), not the
 * kernels' herd_format codes: these write files, they do not compute on them.
 */
#include "herd_native.h"

enum herd_ggml_type {
  GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7, GGML_Q8_0 = 8,
  GGML_Q2_K = 10, GGML_Q3_K = 11, GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14, GGML_IQ4_NL = 20, GGML_IQ4_XS = 23,
};

/* A group whose largest magnitude is below it is stored as zeros (ggml's GROUP_MAX_EPS). */
#define GROUP_MAX_EPS 1e-15f

/*
 * make_qkx2_quants' search parameters: codes 0..nmax, nstep + 1 trial scales (rmin + rdelta·step +
 * nmax) / range, over groups of `group` weights (16 or 32). `absolute`: Q2_K's weights |x| and
 * absolute error; else Q4_K/Q5_K's weights rms + |x| and squared error.
 */
typedef struct {
  int nmax;
  float rmin, rdelta;
  int nstep, group, absolute;
} herd_scale_min_search;

/* The K-quants' scale searches, on one instruction set (quantize_search.h); every table writes the same codes. */
typedef struct {
  /* Q2_K/Q4_K/Q5_K: the scale and min of each group (of 16 or 32) of a super-block, and their codes. */
  void (*fit_scale_min)(const herd_scale_min_search *s, const float *block, float *scales, float *mins, uint8_t *codes);
  /* Q6_K: the signed scale of each of the 16 groups of 16 of a super-block, and their codes + nmax. */
  void (*fit_signed_scales)(int nmax, const float *block, float *scales, uint8_t *codes);
} herd_scale_searches;

extern const herd_scale_searches herd_scale_searches_portable;
#if defined(__x86_64__)
extern const herd_scale_searches herd_scale_searches_avx2;
#endif

/* A float as the little-endian f16 ggml stores (GGML_FP32_TO_FP16). */
static inline void herd_put_half(uint8_t *at, float value) {
  const uint16_t bits = herd_float_to_half(value);
  at[0] = (uint8_t)bits;
  at[1] = (uint8_t)(bits >> 8);
}

/* quantize_lowbit.c: one block each of Q2_K, Q3_K, IQ4_NL, IQ4_XS (no importance matrix; only Q2_K uses the searches). */
void herd_write_q2_k(const herd_scale_searches *searches, const float *x, uint8_t *out);
void herd_write_q3_k(const herd_scale_searches *unused, const float *x, uint8_t *out);
void herd_write_iq4_nl(const herd_scale_searches *unused, const float *x, uint8_t *out);
void herd_write_iq4_xs(const herd_scale_searches *unused, const float *x, uint8_t *out);

/* Bytes of `cols` weights stored as `type`; 0 when the type is not written here or cols is not whole blocks. */
size_t herd_quantized_row_bytes(int type, int cols);
/*
 * Quantizes x [rows, cols] into `out` (rows · herd_quantized_row_bytes bytes) on the thread pool,
 * the searches on the AVX2 vectors unless the kernels' path is the scalar one (HERD_CPU_ISA=scalar
 * forces the portable searches); 0 for an unknown type.
 */
int herd_quantize_rows(const herd_kernels *k, int type, const float *x, int rows, int cols, uint8_t *out);
#endif
