/* The portable path: plain C the compiler may vectorize for the baseline ISA (SSE2 on x86-64). */
#include <math.h>
#include <string.h>
#include "herd_native.h"
#include "repack.h"
#include "kquants.h"
#include "blocks32.h"

float herd_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff, bits;
  if (exponent == 0) {
    if (mantissa == 0) bits = sign;
    else { /* subnormal: normalise */
      exponent = 1;
      while (!(mantissa & 0x400)) { mantissa <<= 1; exponent--; }
      mantissa &= 0x3ff;
      bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
  } else if (exponent == 31) bits = sign | 0x7f800000 | (mantissa << 13);
  else bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static uint32_t round_shift(uint32_t value, uint32_t shift) {
  uint32_t half = 1u << (shift - 1), remainder = value & ((1u << shift) - 1), result = value >> shift;
  if (remainder > half || (remainder == half && (result & 1))) result++;
  return result;
}

/* Round to nearest even, as the WASM kernels' F16 KV cache does. */
uint16_t herd_float_to_half(float f) {
  uint32_t bits;
  memcpy(&bits, &f, 4);
  uint32_t sign = (bits >> 16) & 0x8000, mantissa = bits & 0x7fffff;
  int exponent = (int)((bits >> 23) & 0xff) - 112;
  if (((bits >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (mantissa ? 0x200 : 0));
  if (exponent >= 31) return (uint16_t)(sign | 0x7c00);
  if (exponent <= 0) {
    if (exponent < -10) return (uint16_t)sign;
    return (uint16_t)(sign | round_shift(mantissa | 0x800000, (uint32_t)(14 - exponent)));
  }
  return (uint16_t)(sign | (((uint32_t)exponent << 10) + round_shift(mantissa, 13)));
}

static float dot_f32(const float *a, const float *b, int n) {
  float total = 0;
  for (int i = 0; i < n; i++) total += a[i] * b[i];
  return total;
}

static void f16_to_f32(const uint16_t *src, float *dst, int n) {
  for (int i = 0; i < n; i++) dst[i] = herd_half_to_float(src[i]);
}

static void bf16_to_f32(const uint16_t *src, float *dst, int n) {
  for (int i = 0; i < n; i++) {
    uint32_t bits = (uint32_t)src[i] << 16;
    memcpy(&dst[i], &bits, 4);
  }
}

static float dot_f16(const uint16_t *w, const float *x, int n) {
  float total = 0;
  for (int i = 0; i < n; i++) total += herd_half_to_float(w[i]) * x[i];
  return total;
}

static float dot_bf16(const uint16_t *w, const float *x, int n) {
  float total = 0;
  for (int i = 0; i < n; i++) {
    const uint32_t bits = (uint32_t)w[i] << 16;
    float value;
    memcpy(&value, &bits, 4);
    total += value * x[i];
  }
  return total;
}

static void axpy_f32(float a, const float *x, float *y, int n) {
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static float dot_q8_0(const uint8_t *w, const int8_t *x, const float *xd, int nb) {
  float total = 0;
  for (int b = 0; b < nb; b++, w += Q8_0_BYTES, x += QK) {
    const int8_t *q = (const int8_t *)(w + 2);
    int32_t sum = 0;
    for (int i = 0; i < QK; i++) sum += q[i] * x[i];
    total += herd_half_to_float((uint16_t)(w[0] | w[1] << 8)) * xd[b] * (float)sum;
  }
  return total;
}

static float dot_q4_0(const uint8_t *w, const int8_t *x, const float *xd, int nb) {
  float total = 0;
  for (int b = 0; b < nb; b++, w += Q4_0_BYTES, x += QK) {
    const uint8_t *q = w + 2;
    int32_t sum = 0;
    for (int i = 0; i < QK / 2; i++) sum += ((q[i] & 0xf) - 8) * x[i] + ((q[i] >> 4) - 8) * x[i + QK / 2];
    total += herd_half_to_float((uint16_t)(w[0] | w[1] << 8)) * xd[b] * (float)sum;
  }
  return total;
}

/* Q4_K: d f16, dmin f16, scales[12], qs[128]; each 32 bytes of qs hold two sub-blocks (low, high nibbles). */
static float dot_q4_k(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  float total = 0;
  for (int b = 0; b < nb; b++, w += Q4_K_BYTES, x += QK_K) {
    const float d = herd_half_to_float((uint16_t)(w[0] | w[1] << 8)) * xd[b];
    const float dmin = herd_half_to_float((uint16_t)(w[2] | w[3] << 8)) * xd[b];
    const uint8_t *qs = w + 16;
    int32_t scaled = 0, mins = 0;
    for (int j = 0; j < 8; j++) {
      uint8_t sc, m;
      herd_q4k_scale_min(j, w + 4, &sc, &m);
      const uint8_t *codes = qs + 32 * (j / 2);
      const int shift = (j & 1) * 4;
      int32_t sum = 0;
      for (int i = 0; i < QK; i++) sum += ((codes[i] >> shift) & 0xf) * x[32 * j + i];
      scaled += sc * sum;
      mins += m * xs[b * 8 + j];
    }
    total += d * (float)scaled - dmin * (float)mins;
  }
  return total;
}

static void attend_scores(const float *keys, int n, int d, const float *queries, int heads, float scale, float *scores, size_t stride) {
  for (int p = 0; p < n; p++)
    for (int j = 0; j < heads; j++) scores[j * stride + p] = dot_f32(keys + (size_t)p * d, queries + (size_t)j * d, d) * scale;
}

static float exp_shifted(float *x, int n, float shift) {
  float total = 0;
  for (int i = 0; i < n; i++) total += x[i] = expf(x[i] - shift);
  return total;
}

static void swiglu(const float *gate, const float *up, float *out, size_t first, size_t last) {
  for (size_t i = first; i < last; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void attend_values(const float *values, int n, int d, const float *weights, size_t stride, int heads, float *out) {
  for (int p = 0; p < n; p++)
    for (int j = 0; j < heads; j++) axpy_f32(weights[j * stride + p], values + (size_t)p * d, out + (size_t)j * d, d);
}

const herd_kernels herd_kernels_scalar = {
    .name = "scalar",
    .dot_f32 = dot_f32,
    .f16_to_f32 = f16_to_f32,
    .bf16_to_f32 = bf16_to_f32,
    .dot_f16 = dot_f16,
    .dot_bf16 = dot_bf16,
    .dot_q8_0 = dot_q8_0,
    .dot_q4_0 = dot_q4_0,
    .dot_q4_k = dot_q4_k,
    .dot_q6_k = herd_dot_q6_k_scalar,
    .dot_q5_k = herd_dot_q5_k_scalar,
    .dot_q3_k = herd_dot_q3_k_scalar,
    .dot_q2_k = herd_dot_q2_k_scalar,
    .dot_q4_1 = herd_dot_q4_1_scalar,
    .dot_q5_0 = herd_dot_q5_0_scalar,
    .dot_q5_1 = herd_dot_q5_1_scalar,
    .dot_iq4_nl = herd_dot_iq4_nl_scalar,
    .dot_iq4_xs = herd_dot_iq4_xs_scalar,
    .dot_int4_g128 = herd_dot_int4_g128_scalar,
    .gemm_q4_0_r16 = herd_gemm_q4_0_r16_portable,
    .gemm_q4_k_r16 = herd_gemm_q4_k_r16_portable,
    .gemm_q6_k_r16 = herd_gemm_q6_k_r16_portable,
    .gemm_q5_k_r16 = herd_gemm_q5_k_r16_portable,
    .gemm_iq4_xs_r16 = herd_gemm_iq4_xs_r16_portable,
    .gemm_q8_0_r16 = herd_gemm_q8_0_r16_portable,
    .attend_scores = attend_scores,
    .exp_shifted = exp_shifted,
    .attend_values = attend_values,
    .swiglu = swiglu,
};
