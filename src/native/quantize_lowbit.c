/*
 * GGUF's low-bit block quantizers without an importance matrix, as llama.cpp's quantize_q2_K,
 * quantize_q3_K, quantize_iq4_nl and quantize_iq4_xs write them when given none (ggml-quants.c:
 * quantize_row_q2_K_ref, quantize_row_q3_K_ref, quantize_row_iq4_nl_impl with 7 trial scales).
 * Byte identity needs the reference's float operations in its order and its rounding helper
 * exactly (ggml_nearest_int below, garbage-in-garbage-out beyond 2^22 and NaN included). Q2_K's
 * scale search is the K-quants' vectorized make_qkx2_quants (quantize_search.h, whose inputs stay
 * within ±nmax·1.2, where its rounding equals this one); the rest are plain scalar loops, one
 * super-block at a time, shared out over the pool by quantize.c.
 */
#include <math.h>
#include <string.h>
#include "quantize.h"

/* ggml's nearest_int bit for bit: adding 1.5·2^23 rounds half to even into the mantissa (NaN gives 0). */
static inline int ggml_nearest_int(float x) {
  const float biased = x + 12582912.0f;
  int32_t bits;
  memcpy(&bits, &biased, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

static inline int clamp_to(int l, int low, int high) { return l < low ? low : l > high ? high : l; }

static inline float half_at(const uint8_t *at) { return herd_half_to_float((uint16_t)(at[0] | at[1] << 8)); }

/* Each 128 codes of 0..3 fill 32 bytes: byte l holds codes l, l + 32, l + 64, l + 96 at bits 0, 2, 4, 6. */
static void pack_two_bit_codes(const uint8_t *codes, uint8_t *qs) {
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; l++) qs[j / 4 + l] = (uint8_t)(codes[j + l] | codes[j + l + 32] << 2 | codes[j + l + 64] << 4 | codes[j + l + 96] << 6);
}

/* ---- Q2_K: 16 groups of 16, each a 4-bit scale and 4-bit min of f16 d and dmin, codes 0..3 ---- */

/* make_qkx2_quants for Q2_K: codes 0..3, 16 trial scales, groups of 16, weights |x|, absolute error. */
static const herd_scale_min_search Q2_K_SEARCH = {3, -0.5f, 0.1f, 15, 16, 1};

/* Q2_K, 84 bytes: scales[16] (scale | min << 4), qs[64], f16 d, f16 dmin. */
void herd_write_q2_k(const herd_scale_searches *searches, const float *x, uint8_t *out) {
  uint8_t codes[QK_K], *scales_byte = out, *qs = out + 16;
  float scales[16], mins[16], max_scale = 0, max_min = 0;
  searches->fit_scale_min(&Q2_K_SEARCH, x, scales, mins, codes);
  for (int j = 0; j < 16; j++) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  memset(scales_byte, 0, 16);
  if (max_scale > 0) {
    const float inverse = 15.0f / max_scale;
    for (int j = 0; j < 16; j++) scales_byte[j] = (uint8_t)ggml_nearest_int(inverse * scales[j]);
  }
  herd_put_half(out + 80, max_scale > 0 ? max_scale / 15.0f : 0.0f);
  if (max_min > 0) {
    const float inverse = 15.0f / max_min;
    for (int j = 0; j < 16; j++) scales_byte[j] |= (uint8_t)(ggml_nearest_int(inverse * mins[j]) << 4);
  }
  herd_put_half(out + 82, max_min > 0 ? max_min / 15.0f : 0.0f);
  const float d = half_at(out + 80), dmin = half_at(out + 82);
  for (int j = 0; j < 16; j++) {
    const float step = d * (scales_byte[j] & 0xf);
    /* A group whose scale rounds to 0 keeps the search's codes, as llama.cpp does. */
    if (step == 0) continue;
    const float offset = dmin * (scales_byte[j] >> 4);
    for (int i = 16 * j; i < 16 * j + 16; i++) codes[i] = (uint8_t)clamp_to(ggml_nearest_int((x[i] + offset) / step), 0, 3);
  }
  pack_two_bit_codes(codes, qs);
}

/* ---- Q3_K: 16 groups of 16, each a signed 6-bit scale of f16 d, codes −4..3 ---- */

/*
 * make_q3_quants with do_rmse (nmax 4): codes −4..3 at −4 / (value of largest magnitude), then up
 * to 5 passes moving single codes where that raises Σ(x³l)² / Σ(x²l²). Returns the group's scale.
 */
static float fit_q3_group(const float *x, int8_t *codes) {
  enum { N = 16, NMAX = 4 };
  float max = 0, amax = 0;
  for (int i = 0; i < N; i++) {
    const float ax = fabsf(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    memset(codes, 0, N);
    return 0;
  }
  const float inverse = -NMAX / max;
  float sum_lx = 0, sum_l2 = 0;
  for (int i = 0; i < N; i++) {
    const int l = clamp_to(ggml_nearest_int(inverse * x[i]), -NMAX, NMAX - 1);
    codes[i] = (int8_t)l;
    const float w = x[i] * x[i];
    sum_lx += w * x[i] * l;
    sum_l2 += w * l * l;
  }
  for (int pass = 0; pass < 5; pass++) {
    int changed = 0;
    for (int i = 0; i < N; i++) {
      const float w = x[i] * x[i];
      float slx = sum_lx - w * x[i] * codes[i];
      if (!(slx > 0)) continue;
      float sl2 = sum_l2 - w * codes[i] * codes[i];
      const int l = clamp_to(ggml_nearest_int(x[i] * sl2 / slx), -NMAX, NMAX - 1);
      if (l == codes[i]) continue;
      slx += w * x[i] * l;
      sl2 += w * l * l;
      if (sl2 > 0 && slx * slx * sum_l2 > sum_lx * sum_lx * sl2) {
        codes[i] = (int8_t)l;
        sum_lx = slx;
        sum_l2 = sl2;
        changed++;
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < N; i++) codes[i] = (int8_t)(codes[i] + NMAX);
  return sum_lx / sum_l2;
}

/* Group j's 6-bit scale: low 4 bits in the nibbles of scales[0..7], high 2 bits in scales[8..11]. */
static int q3_scale_of(const uint8_t *scales, int j) {
  const int low = j < 8 ? scales[j] & 0xf : scales[j - 8] >> 4;
  return (low | ((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
}

/* Q3_K, 110 bytes: hmask[32] (bit 2 of the codes), qs[64] (their low 2 bits), scales[12], f16 d. */
void herd_write_q3_k(const herd_scale_searches *unused, const float *x, uint8_t *out) {
  (void)unused;
  uint8_t *hmask = out, *qs = out + 32, *scales_bytes = out + 96;
  int8_t codes[QK_K];
  float scales[16], max_scale = 0, amax = 0;
  for (int j = 0; j < 16; j++) {
    scales[j] = fit_q3_group(x + 16 * j, codes + 16 * j);
    if (fabsf(scales[j]) > amax) {
      amax = fabsf(scales[j]);
      max_scale = scales[j];
    }
  }
  memset(scales_bytes, 0, 12);
  if (max_scale != 0) {
    const float inverse = -32.0f / max_scale;
    for (int j = 0; j < 16; j++) {
      /* llama.cpp keeps the rounded scale in an int8_t before clamping it. */
      const int l = clamp_to((int8_t)ggml_nearest_int(inverse * scales[j]), -32, 31) + 32;
      if (j < 8) scales_bytes[j] = (uint8_t)(l & 0xf);
      else scales_bytes[j - 8] |= (uint8_t)((l & 0xf) << 4);
      scales_bytes[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
    herd_put_half(out + 108, 1 / inverse);
  } else {
    herd_put_half(out + 108, 0.0f);
  }
  const float d = half_at(out + 108);
  for (int j = 0; j < 16; j++) {
    const float step = d * (float)(int8_t)q3_scale_of(scales_bytes, j);
    if (step == 0) continue;
    for (int i = 16 * j; i < 16 * j + 16; i++) codes[i] = (int8_t)(clamp_to(ggml_nearest_int(x[i] / step), -4, 3) + 4);
  }
  /* Bit 2 of code j goes to bit j / 32 of hmask[j % 32]; the low 2 bits stay. */
  uint8_t low[QK_K];
  memset(hmask, 0, 32);
  for (int j = 0; j < QK_K; j++) {
    if (codes[j] > 3) hmask[j % 32] |= (uint8_t)(1 << (j / 32));
    low[j] = (uint8_t)(codes[j] & 3);
  }
  pack_two_bit_codes(low, qs);
}

/* ---- IQ4_NL and IQ4_XS: 4-bit indices into ggml's non-linear table kvalues_iq4nl ---- */

static const int8_t IQ4_VALUES[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/*
 * best_index_int8: the table entry nearest x, the upper one unless x − lower < upper − x in float.
 * Its bisection ends at the first entry above x; counting the entries above x finds the same one
 * without the branches, which the 16 trial scales of every weight mispredict (3× faster).
 */
static int nearest_table_index(float x) {
  if (x <= IQ4_VALUES[0]) return 0;
  if (x >= IQ4_VALUES[15]) return 15;
  /* Counted as 15 − entries above x, so that NaN ends at 15 as the bisection does. */
  int upper = 15;
  for (int j = 1; j < 15; j++) upper -= x < IQ4_VALUES[j];
  return x - IQ4_VALUES[upper - 1] < IQ4_VALUES[upper] - x ? upper - 1 : upper;
}

enum { IQ4_TRIES = 7 };

/*
 * One block of 32 (quantize_row_iq4_nl_impl's inner loop, weights x², 7 trials each side): the
 * scale whose table indices best fit Σ(w·q·x)² / Σ(w·q²), starting from −max/−127. Indices to codes.
 */
static float fit_iq4_block(const float *x, uint8_t *codes) {
  float w[32], amax = 0, max = 0;
  for (int j = 0; j < 32; j++) {
    w[j] = x[j] * x[j];
    const float ax = fabsf(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (amax < GROUP_MAX_EPS) return 0;
  float d = -max / IQ4_VALUES[0], inverse = 1 / d, sum_qx = 0, sum_q2 = 0;
  for (int j = 0; j < 32; j++) {
    const int l = nearest_table_index(inverse * x[j]);
    codes[j] = (uint8_t)l;
    const float q = IQ4_VALUES[l];
    sum_qx += w[j] * q * x[j];
    sum_q2 += w[j] * q * q;
  }
  d = sum_qx / sum_q2;
  float best = d * sum_qx;
  for (int trial = -IQ4_TRIES; trial <= IQ4_TRIES; trial++) {
    inverse = (trial + IQ4_VALUES[0]) / max;
    sum_qx = sum_q2 = 0;
    for (int j = 0; j < 32; j++) {
      const float q = IQ4_VALUES[nearest_table_index(inverse * x[j])];
      sum_qx += w[j] * q * x[j];
      sum_q2 += w[j] * q * q;
    }
    if (sum_q2 > 0 && sum_qx * sum_qx > best * sum_q2) {
      d = sum_qx / sum_q2;
      best = d * sum_qx;
    }
  }
  return d;
}

/* Indices of 32 weights at 1 / step (0 when the step is 0), element j low nibble and j + 16 high of byte j. */
static void write_iq4_indices(const float *x, float step, uint8_t *qs) {
  const float inverse = step != 0 ? 1 / step : 0.0f;
  uint8_t codes[32];
  for (int j = 0; j < 32; j++) codes[j] = (uint8_t)nearest_table_index(inverse * x[j]);
  for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(codes[j] | codes[j + 16] << 4);
}

/* IQ4_NL, 18 bytes: f16 d, qs[16]. The indices are recomputed at the fitted (float) scale. */
void herd_write_iq4_nl(const herd_scale_searches *unused, const float *x, uint8_t *out) {
  (void)unused;
  uint8_t codes[32];
  const float d = fit_iq4_block(x, codes);
  herd_put_half(out, d);
  write_iq4_indices(x, d, out + 2);
}

/*
 * IQ4_XS, 136 bytes: f16 d, u16 scales_h (2 high bits of each block's 6-bit scale), scales_l[4]
 * (4 low bits, two blocks a byte), qs[128]. Each block of 32 fitted as IQ4_NL's, then its scale
 * stored as d·(l − 32) with d = −(scale of largest magnitude)/32, and its indices recomputed at it.
 */
void herd_write_iq4_xs(const herd_scale_searches *unused, const float *x, uint8_t *out) {
  (void)unused;
  uint8_t codes[32], *scales_low = out + 4, *qs = out + 8;
  float scales[8], max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < 8; ib++) {
    scales[ib] = fit_iq4_block(x + 32 * ib, codes);
    if (fabsf(scales[ib]) > amax_scale) {
      amax_scale = fabsf(scales[ib]);
      max_scale = scales[ib];
    }
  }
  const float d = -max_scale / 32, inverse = d != 0 ? 1 / d : 0.0f;
  herd_put_half(out, d);
  uint16_t scales_high = 0;
  memset(scales_low, 0, 4);
  for (int ib = 0; ib < 8; ib++) {
    const int l = clamp_to(ggml_nearest_int(inverse * scales[ib]), -32, 31);
    write_iq4_indices(x + 32 * ib, d * l, qs + 16 * ib);
    const int stored = l + 32;
    scales_low[ib / 2] |= (uint8_t)((stored & 0xf) << (4 * (ib % 2)));
    scales_high |= (uint16_t)((stored >> 4) << (2 * ib));
  }
  out[2] = (uint8_t)scales_high;
  out[3] = (uint8_t)(scales_high >> 8);
}
