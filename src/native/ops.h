#ifndef HERD_OPS_H
#define HERD_OPS_H
#include "herd_native.h"

/* A many-rows-many-tokens product (herd_kernels.gemm_*). */
typedef void (*herd_gemm_fn)(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
/* The path's product for a format (a stored layout's or a repacked one's), else NULL. */
herd_gemm_fn herd_gemm_of(const herd_kernels *k, int format);
/* Bytes of one stored row of `cols` weights; 0 when cols is not whole blocks of the format. */
size_t herd_row_bytes(int format, int cols);
/* y[t, r] = Σ_k W[r, k] · x[t, k]: x [tokens, cols], W [rows, cols] as stored, y [tokens, rows]. 0 on allocation failure. */
int herd_linear(const herd_kernels *k, int format, const uint8_t *w, int rows, int cols, const float *x, int tokens, float *y);
/* One of several weights of the same format and width applied to the same activations, and where its product goes ([tokens, rows]). */
typedef struct {
  const uint8_t *w;
  int rows;
  float *y;
} herd_linear_output;
/* herd_linear for each output (a layer's q, k and v, or gate and up): the activations quantized once, the threads dispatched once. */
int herd_linear_many(const herd_kernels *k, int format, int cols, const float *x, int tokens, const herd_linear_output *outputs, int count);
/* Rows ids[i] of a table of `rows` rows as stored or repacked (repack.h), as floats: out [count, cols]. */
void herd_embedding(int format, const uint8_t *table, int rows, int cols, const int32_t *ids, int count, float *out);
/* Quantizes one row of activations as llama.cpp does for the int8 dot products (Q8_0 or Q8_K blocks). */
void herd_quantize_q8_0(const float *x, int cols, int8_t *codes, float *scales);
void herd_quantize_q8_k(const float *x, int cols, int8_t *codes, float *scales, int32_t *sums);
/* Q8_K with the sum of each 16 codes, for Q6_K, Q5_K, Q3_K and Q2_K (kquants.h). */
void herd_quantize_q8_k16(const float *x, int cols, int8_t *codes, float *scales, int32_t *sums);

void herd_rmsnorm(const float *x, const float *w, float *y, int dim, int rows, float eps);
void herd_rope(float *x, const float *cos, const float *sin, int rows, int heads, int head_dim);
void herd_swiglu(const herd_kernels *k, const float *gate, const float *up, float *out, size_t n);
void herd_add(const float *a, const float *b, float *out, size_t n);

/* One layer's keys or values: [kv_heads, capacity, head_dim] as float32 (f16 = 0) or IEEE half (f16 = 1). */
typedef struct {
  void *keys, *values;
  int f16, kv_heads, head_dim, capacity;
} herd_cache_layer;

/* Writes k and v rows [rows, kv_heads·head_dim] at positions start.., then q [rows, heads·head_dim] attends causally. */
int herd_attention(const herd_kernels *k, const herd_cache_layer *cache, const float *q, const float *kr, const float *vr,
                   float *out, int rows, int start, int heads);
#endif
