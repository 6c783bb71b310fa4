/*
 * The scale searches of the K-quants (make_qkx2_quants for Q4_K/Q5_K, make_qx_quants for Q6_K),
 * included by quantize_portable.c and quantize_avx2.c, which set LANES and VECTOR_BYTES (and the
 * target) first. They run LANES groups at once, one per lane: each lane does the scalar code's
 * float operations in the scalar code's order (sums stay sequential within a lane), so the bytes
 * equal llama.cpp's, and the independent lanes hide the latency of the sequential sums that
 * bound the scalar code. GCC's vector extensions; no FMA contraction (-std=c11), no fast-math.
 */
#include <math.h>
#include <string.h>
#include "quantize.h"

/* Vectors pass only between this file's static functions, so GCC's note that their ABI differs with AVX does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float vf __attribute__((vector_size(VECTOR_BYTES)));
typedef int32_t vi __attribute__((vector_size(VECTOR_BYTES)));

static inline vf vsplat(float v) {
  vf r;
  for (int j = 0; j < LANES; j++) r[j] = v;
  return r;
}
static inline vi vsplat_bits(int32_t v) {
  vi r;
  for (int j = 0; j < LANES; j++) r[j] = v;
  return r;
}
/* a where mask, else b. */
static inline vf vsel(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }
static inline vf vabs(vf x) { return (vf)((vi)x & vsplat_bits(0x7fffffff)); }

/*
 * ggml's nearest_int (a float plus 1.5·2^23 rounds half to even) clamped to low..high, as a float.
 * For |x| ≥ 2^22 the trick no longer rounds, but its result keeps x's sign and a magnitude beyond
 * 2^21, so it clamps to the bound exact rounding would; NaN gives low, as the scalar code's does.
 */
static inline vf vnearest_clamped(vf x, float low, float high) {
  const vf r = (x + vsplat(12582912.0f)) - vsplat(12582912.0f);
  return vsel(r > vsplat(high), vsplat(high), vsel(r >= vsplat(low), r, vsplat(low)));
}

/* Lane j of t[i] = x[j·n + i]: LANES groups of n side by side. */
static void transpose_groups(const float *x, int n, vf *t) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < LANES; j++) t[i][j] = x[j * n + i];
}

/* Σ w·(scale·l + min − x)² (or Σ w·|scale·l + min − x| when absolute) over a group of n, in every lane. */
static vf weighted_error(const vf *x, const vf *w, const vf *codes, vf scale, vf min, int n, int absolute) {
  vf error = vsplat(0);
  for (int i = 0; i < n; i++) {
    const vf diff = scale * codes[i] + min - x[i];
    error += w[i] * (absolute ? vabs(diff) : diff * diff);
  }
  return error;
}

/*
 * make_qkx2_quants over LANES groups of s->group weights, one per lane: the scale and (non-negative,
 * subtracted) min minimising the weighted error, trying nstep + 1 rescalings of the plain range
 * fit. Weights rms + |x| and squared error (quantize_row_q4_K_ref's), or |x| and absolute error
 * (quantize_row_q2_K_ref's). Codes 0..nmax of group j go to codes[group·j..].
 */
static void make_qkx2_quants_lanes(const herd_scale_min_search *s, const float *block, float *scales, float *mins, uint8_t *codes) {
  const int n = s->group;
  if (n < 1 || n > QK) return; /* not a group size of these types (and tells GCC x[0] is written) */
  vf x[QK], w[QK], best[QK], trial[QK];
  transpose_groups(block, n, x);
  if (s->absolute) {
    for (int i = 0; i < n; i++) w[i] = vabs(x[i]);
  } else {
    /* Weights rms + |x| of each sub-block (quantize_row_q4_K_ref's av_x + fabsf(x)). */
    vf sum_squares = vsplat(0), average;
    for (int i = 0; i < n; i++) sum_squares += x[i] * x[i];
    const vf mean_square = sum_squares / vsplat((float)n);
    for (int j = 0; j < LANES; j++) average[j] = sqrtf(mean_square[j]);
    for (int i = 0; i < n; i++) w[i] = average + vabs(x[i]);
  }

  vf min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; i++) {
    min = vsel(x[i] < min, x[i], min);
    max = vsel(x[i] > max, x[i], max);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  min = vsel(min > vsplat(0), vsplat(0), min);
  /* A constant sub-block: codes 0, scale 0 (its lanes compute NaNs below, then are set). */
  const vi flat = max == min;
  const vf flat_min = min, nmax = vsplat((float)s->nmax);
  vf inverse = nmax / (max - min), scale = vsplat(1) / inverse;
  for (int i = 0; i < n; i++) best[i] = vnearest_clamped(inverse * (x[i] - min), 0, (float)s->nmax);
  vf best_error = weighted_error(x, w, best, scale, min, n, s->absolute);
  for (int step = 0; step <= s->nstep; step++) {
    /* min is the best fit's so far, as in llama.cpp: later trials start from it. */
    inverse = vsplat(s->rmin + s->rdelta * step + s->nmax) / (max - min);
    vf sum_l = vsplat(0), sum_l2 = vsplat(0), sum_xl = vsplat(0);
    for (int i = 0; i < n; i++) {
      trial[i] = vnearest_clamped(inverse * (x[i] - min), 0, (float)s->nmax);
      const vf wl = w[i] * trial[i];
      sum_l += wl;
      sum_l2 += wl * trial[i];
      sum_xl += wl * x[i];
    }
    const vf det = sum_w * sum_l2 - sum_l * sum_l;
    vf this_scale = (sum_w * sum_xl - sum_x * sum_l) / det, this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    const vi positive_min = this_min > vsplat(0);
    this_scale = vsel(positive_min, sum_xl / sum_l2, this_scale);
    this_min = vsel(positive_min, vsplat(0), this_min);
    const vf error = weighted_error(x, w, trial, this_scale, this_min, n, s->absolute);
    const vi better = (det > vsplat(0)) & (error < best_error);
    for (int i = 0; i < n; i++) best[i] = vsel(better, trial[i], best[i]);
    best_error = vsel(better, error, best_error);
    scale = vsel(better, this_scale, scale);
    min = vsel(better, this_min, min);
  }
  for (int j = 0; j < LANES; j++) {
    scales[j] = flat[j] ? 0.0f : scale[j];
    mins[j] = -(flat[j] ? flat_min[j] : min[j]);
    for (int i = 0; i < n; i++) codes[j * n + i] = flat[j] ? 0 : (uint8_t)best[i][j];
  }
}

/* Σ x²·x·l and Σ x²·l² of 16 codes per lane (make_qx_quants' rmse_type 1 weights). */
static void qx_fit(const vf *x, const vf *l, vf *sum_lx, vf *sum_l2) {
  vf lx = vsplat(0), l2 = vsplat(0);
  for (int i = 0; i < 16; i++) {
    const vf w = x[i] * x[i];
    lx += w * x[i] * l[i];
    l2 += w * l[i] * l[i];
  }
  *sum_lx = lx;
  *sum_l2 = l2;
}

static void qx_codes(const vf *x, vf inverse, int nmax, vf *l) {
  for (int i = 0; i < 16; i++) l[i] = vnearest_clamped(inverse * x[i], (float)-nmax, (float)(nmax - 1));
}

/*
 * make_qx_quants with rmse_type 1 and no importance over LANES groups of 16, one per lane: the signed
 * scale of each that best fits codes −nmax..nmax−1, trying 18 rescalings around −nmax / (value of
 * largest magnitude). Codes + nmax (0..2·nmax−1) of group g go to codes[16g..].
 */
static void make_qx_quants_lanes(int nmax, const float *groups, float *scales, uint8_t *codes) {
  vf x[16], best[16], trial[16], max = vsplat(0), amax = vsplat(0);
  transpose_groups(groups, 16, x);
  for (int i = 0; i < 16; i++) {
    const vi larger = vabs(x[i]) > amax;
    amax = vsel(larger, vabs(x[i]), amax);
    max = vsel(larger, x[i], max);
  }
  /* Groups below GROUP_MAX_EPS: codes 0, scale 0 (their lanes compute NaNs below, then are set). */
  const vi zero = amax < vsplat(GROUP_MAX_EPS);
  vf sum_lx, sum_l2;
  qx_codes(x, vsplat((float)-nmax) / max, nmax, best);
  qx_fit(x, best, &sum_lx, &sum_l2);
  vf scale = vsel(sum_l2 != vsplat(0), sum_lx / sum_l2, vsplat(0)), best_fit = scale * sum_lx;
  for (int is = -9; is <= 9; is++) {
    if (is == 0) continue;
    qx_codes(x, vsplat(-(nmax + 0.1f * is)) / max, nmax, trial);
    qx_fit(x, trial, &sum_lx, &sum_l2);
    const vi better = (sum_l2 > vsplat(0)) & (sum_lx * sum_lx > best_fit * sum_l2);
    for (int i = 0; i < 16; i++) best[i] = vsel(better, trial[i], best[i]);
    const vf this_scale = sum_lx / sum_l2;
    best_fit = vsel(better, this_scale * sum_lx, best_fit);
    scale = vsel(better, this_scale, scale);
  }
  for (int g = 0; g < LANES; g++) {
    scales[g] = zero[g] ? 0.0f : scale[g];
    for (int i = 0; i < 16; i++) codes[g * 16 + i] = zero[g] ? 0 : (uint8_t)(best[i][g] + nmax);
  }
}

static void fit_scale_min(const herd_scale_min_search *s, const float *block, float *scales, float *mins, uint8_t *codes) {
  for (int j = 0; j < QK_K / s->group; j += LANES) make_qkx2_quants_lanes(s, block + j * s->group, scales + j, mins + j, codes + j * s->group);
}

static void fit_signed_scales(int nmax, const float *block, float *scales, uint8_t *codes) {
  for (int g = 0; g < 16; g += LANES) make_qx_quants_lanes(nmax, block + g * 16, scales + g, codes + g * 16);
}

const herd_scale_searches SEARCHES_TABLE = {fit_scale_min, fit_signed_scales};
