#ifndef HERD_CALIBRATE_H
#define HERD_CALIBRATE_H
/*
 * The heavy loops of AWQ's and GPTQ's calibration (src/quant/awq-search.ts, src/quant/gptq.ts) on
 * the pool's threads. Each result is bit-identical to the TypeScript reference: every sum runs in
 * float64 in the same order (the vectors run across independent sums, never along one), and
 * products are rounded where the reference rounds them.
 */
#include <stdint.h>

/* h = 2/rows · XᵀX, full and symmetric: x [rows, n] float32, h [n, n] float64. 0 on allocation failure. */
int herd_hessian(const float *x, int rows, int n, double *h);

/*
 * AutoAWQ's clipping search for every [row, group] of W [out, cols]: bounds [out, cols / group_size].
 * x [x_rows, cols] are the calibration inputs; every step-th row is sampled (at most 512).
 */
int herd_awq_clip(const float *w, int out, int cols, const float *x, int x_rows, int group_size, float *bounds);

/*
 * AWQ's candidate Q(W·diag(s))·diag(1/s) for one grid ratio (awq-search.ts scaledPseudoQuantized):
 * each column scaled by s, each group of group_size quantized to 4 bits and back with AWQ's
 * min/max parameters, then divided by s; w and out [rows, cols].
 */
void herd_awq_pseudo_quantize(const float *w, int rows, int cols, const float *scales, int group_size, float *out);

/* U upper-triangular with H⁻¹ = UᵀU, h [n, n] symmetric: 1, or 0 when h is not positive definite, −1 on allocation failure. */
int herd_upper_cholesky_of_inverse(const double *h, int n, double *upper);

typedef struct {
  int group_size, block_size, symmetric, min_zero;
} herd_gptq_options;

/*
 * GPTQ's column loop after the Hessian's factor is known: wp [rows, cols] (columns in act order,
 * float64, changed in place), u [cols, cols] the upper Cholesky factor of H⁻¹, perm the stored
 * column of each position. Writes codes [rows, cols] (stored order), scales and zeros [groups, rows].
 */
int herd_gptq_columns(double *wp, int rows, int cols, const double *u, const int32_t *perm, const herd_gptq_options *options,
                      uint8_t *codes, float *scales, uint8_t *zeros);
#endif
