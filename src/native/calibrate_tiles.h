/*
 * GPTQ's float64 tiles (calibrate.c), written once for two vector widths: calibrate.c includes
 * this file once with TILE_LANES 8 for CPUs with AVX-512 (a zmm register per vector) and once
 * with 4 for the others (a ymm register on the AVX2 clone). One width cannot serve both: GCC
 * lowered vectors of 8 through the stack on the AVX2 clone (GPTQ's factor took 6.9 s at width
 * 2,048 and 63.5 s at 4,096 on Zen 3's two cores; 1.2 s and 8.8 s with vectors of 4), and vectors
 * of 4 leave half of every zmm unused (on a Sapphire Rapids host the factor at width 4,096 took
 * 7.0 s with 4 lanes and 4.6 s with 8, the Hessian 5.1 s and 4.1 s, the same bits). Each sum runs
 * in the reference's order whatever the width: the lanes are independent sums.
 *
 * The includer defines TILE_LANES, TILES_TARGET (the entry points' target attributes),
 * TILES_HELPER_TARGET (the inlined helpers') and TILED(name) (each instance's names).
 */
typedef double TILED(f64v) __attribute__((vector_size(8 * TILE_LANES)));
typedef float TILED(f32v) __attribute__((vector_size(4 * TILE_LANES)));
#define F64V TILED(f64v)
#define F32V TILED(f32v)
#define TILE_VECTORS (TILE_COLS / TILE_LANES)
typedef struct {
  F64V v[TILE_ROWS][TILE_VECTORS];
} TILED(sum_tile);
#define SUM_TILE TILED(sum_tile)

/* tile[a][b] += s[a] · p[b] (the float32 products are exact in float64, so this is the scalar order's result). */
TILES_HELPER_TARGET static inline __attribute__((always_inline)) void TILED(accumulate_tile)(SUM_TILE *tile, const double s[TILE_ROWS], const float *p) {
  F64V wide[TILE_VECTORS];
  for (int b = 0; b < TILE_VECTORS; b++) {
    F32V narrow;
    memcpy(&narrow, p + TILE_LANES * b, sizeof narrow);
    wide[b] = __builtin_convertvector(narrow, F64V);
  }
  for (int a = 0; a < TILE_ROWS; a++)
    for (int b = 0; b < TILE_VECTORS; b++) tile->v[a][b] += s[a] * wide[b];
}

TILES_TARGET EXACT_PRODUCTS_MAY_FUSE static void TILED(hessian_tile)(const float *x, int n, int from, int to, int i0, int j0, double *h) {
  SUM_TILE tile;
  for (int a = 0; a < TILE_ROWS; a++) memcpy(tile.v[a], h + (size_t)(i0 + a) * n + j0, sizeof tile.v[a]);
  for (int r = from; r < to; r++) {
    const float *row = x + (size_t)r * n;
    const double s[TILE_ROWS] = {row[i0], row[i0 + 1], row[i0 + 2], row[i0 + 3]};
    TILED(accumulate_tile)(&tile, s, row + j0);
  }
  for (int a = 0; a < TILE_ROWS; a++) memcpy(h + (size_t)(i0 + a) * n + j0, tile.v[a], sizeof tile.v[a]);
}

/* tile[a][b] −= s[a] · p[b], the float64 product rounded before the subtraction as in the TypeScript. */
TILES_HELPER_TARGET static inline __attribute__((always_inline)) void TILED(subtract_products)(SUM_TILE *tile, const double s[TILE_ROWS], const double *p) {
  F64V wide[TILE_VECTORS];
  memcpy(wide, p, sizeof wide);
  for (int a = 0; a < TILE_ROWS; a++)
    for (int b = 0; b < TILE_VECTORS; b++) tile->v[a][b] -= s[a] * wide[b];
}

TILES_HELPER_TARGET static inline __attribute__((always_inline)) void TILED(add_products)(SUM_TILE *tile, const double s[TILE_ROWS], const double *p) {
  F64V wide[TILE_VECTORS];
  memcpy(wide, p, sizeof wide);
  for (int a = 0; a < TILE_ROWS; a++)
    for (int b = 0; b < TILE_VECTORS; b++) tile->v[a][b] += s[a] * wide[b];
}

TILES_TARGET static void TILED(cholesky_panel_tile)(const cholesky_job *job, int i0, int jj0) {
  const int n = job->n, j0 = job->j0;
  SUM_TILE tile;
  for (int a = 0; a < TILE_ROWS; a++) memcpy(tile.v[a], job->a + (size_t)(i0 + a) * n + j0 + jj0, sizeof tile.v[a]);
  for (int k = 0; k < j0; k++) {
    const double s[TILE_ROWS] = {job->l[(size_t)i0 * n + k], job->l[(size_t)(i0 + 1) * n + k], job->l[(size_t)(i0 + 2) * n + k], job->l[(size_t)(i0 + 3) * n + k]};
    TILED(subtract_products)(&tile, s, job->panel + (size_t)k * CHOLESKY_PANEL + jj0);
  }
  double sums[TILE_ROWS][TILE_COLS];
  for (int a = 0; a < TILE_ROWS; a++) memcpy(sums[a], tile.v[a], sizeof tile.v[a]);
  for (int a = 0; a < TILE_ROWS; a++)
    for (int b = 0; b < TILE_COLS && j0 + jj0 + b <= i0 + a; b++) job->l[(size_t)(i0 + a) * n + j0 + jj0 + b] = sums[a][b];
}

/*
 * L⁻¹ by forward substitution, 64 columns per item: li[i, j] = −(Σ_{k=j}^{i−1} l[i,k]·li[k,j]) / l[i,i].
 * The vector lanes are columns; a lane's terms before its own column are products with its zeros
 * above the diagonal, which leave the sum at +0, so each sum matches the reference's.
 */
TILES_TARGET static void TILED(lower_inverse_columns)(void *context, int item) {
  const inverse_job *job = context;
  const int n = job->n, j0 = item * INVERSE_LANES, lanes = min_int(INVERSE_LANES, n - j0);
  F64V *column = aligned_alloc(64, sizeof(F64V) * (INVERSE_LANES / TILE_LANES) * (size_t)(n - j0)); /* [k - j0][64]: li[k, j0..] */
  if (column == NULL) abort();
  memset(column, 0, sizeof(F64V) * (INVERSE_LANES / TILE_LANES) * (size_t)(n - j0));
  for (int i = j0; i < n; i++) {
    const double *row = job->l + (size_t)i * n;
    F64V sums[INVERSE_LANES / TILE_LANES];
    memset(sums, 0, sizeof sums);
    for (int k = j0; k < i; k++) {
      const double lik = row[k];
      const F64V *previous = column + (size_t)(k - j0) * (INVERSE_LANES / TILE_LANES);
      for (int v = 0; v < INVERSE_LANES / TILE_LANES; v++) sums[v] += lik * previous[v];
    }
    double *out = (double *)(column + (size_t)(i - j0) * (INVERSE_LANES / TILE_LANES));
    const double *sum = (const double *)sums;
    for (int lane = 0; lane < lanes; lane++) {
      if (j0 + lane < i) out[lane] = -sum[lane] / row[i];
      else if (j0 + lane == i) out[lane] = 1 / row[i];
    }
    for (int lane = 0; lane < lanes; lane++) job->li[(size_t)i * n + j0 + lane] = out[lane];
  }
  free(column);
}

TILES_TARGET static void TILED(product_tile)(const product_job *job, int i0, int j0) {
  const int n = job->n;
  SUM_TILE tile;
  for (int a = 0; a < TILE_ROWS; a++) memcpy(tile.v[a], job->inverse + (size_t)(i0 + a) * n + j0, sizeof tile.v[a]);
  for (int k = job->from > i0 ? job->from : i0; k < job->to; k++) {
    const double *row = job->li + (size_t)k * n;
    const double s[TILE_ROWS] = {row[i0], row[i0 + 1], row[i0 + 2], row[i0 + 3]};
    TILED(add_products)(&tile, s, row + j0);
  }
  for (int a = 0; a < TILE_ROWS; a++) memcpy(job->inverse + (size_t)(i0 + a) * n + j0, tile.v[a], sizeof tile.v[a]);
}

#undef F64V
#undef F32V
#undef TILE_VECTORS
#undef SUM_TILE
