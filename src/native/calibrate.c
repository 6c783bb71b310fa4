/*
 * AWQ's and GPTQ's calibration loops on the pool's threads (see calibrate.h). The TypeScript
 * reference sums in float64 one term after another; so does every sum here, the vectors running
 * across independent sums (tokens, matrix entries), and products are not fused
 * into the additions (a float32·float32 product is exact in float64, but GPTQ's float64 products
 * are rounded before they are subtracted). The results are therefore the same bits on every path.
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "calibrate.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "pool.h"
/* The clipping blocks are written with AVX-512 and AVX2 intrinsics for GCC on x86-64, chosen at run time; other builds and CPUs take the generic vector code. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define X86_INTRINSIC_BLOCKS 1
#endif

/* The vector loops are compiled for each x86-64 level and chosen at load (results do not depend on it). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/*
 * Sums of float32·float32 products may fuse: such a product is exact in float64 (24 + 24
 * significant bits), so a fused multiply-add rounds exactly as the reference's add does.
 */
#if defined(__GNUC__) && !defined(__clang__)
#define EXACT_PRODUCTS_MAY_FUSE __attribute__((optimize("fp-contract=fast")))
#else
#define EXACT_PRODUCTS_MAY_FUSE
#endif

static int min_int(int a, int b) { return a < b ? a : b; }

/* GPTQ's float64 sums in tiles of 4 rows × 16 columns (calibrate_tiles.h), and the jobs their loops serve. */
enum { TILE_ROWS = 4, TILE_COLS = 16 };

/*
 * Rows per pass over h (and over L⁻¹ in the factor): each entry's sum continues in row order
 * while the rows stay in cache. A column tile's lines in rows 8,192 floats (or doubles) apart
 * fall into 4 (or 2) sets of a 16-way L2, which 32 rows fit and 128 overflowed: on a Sapphire
 * Rapids host the Hessian at width 8,192 took 24.4 s with 128 rows and 12.5 s with 32.
 */
enum { HESSIAN_CHUNK = 32 };

typedef struct {
  const float *x;
  int n, from, to, blocks;
  double *h;
} hessian_job;

enum { CHOLESKY_PANEL = 64 };

typedef struct {
  const double *a;
  double *l, *panel; /* panel [k][64]: l[j0 + jj, k] for k < j0 */
  int n, j0, width;
} cholesky_job;

enum { INVERSE_LANES = 64 };

typedef struct {
  const double *l;
  double *li;
  int n;
} inverse_job;

typedef struct {
  const double *li;
  double *inverse;
  int n, from, to, blocks;
} product_job;

#ifdef X86_INTRINSIC_BLOCKS
#define TILE_LANES 8
#define TILES_TARGET __attribute__((target("avx512f")))
#define TILES_HELPER_TARGET __attribute__((target("avx512f")))
#define TILED(name) name##_avx512
#include "calibrate_tiles.h"
#undef TILE_LANES
#undef TILES_TARGET
#undef TILES_HELPER_TARGET
#undef TILED
#endif
#define TILE_LANES 4
#ifdef X86_INTRINSIC_BLOCKS
#define TILES_TARGET __attribute__((target_clones("avx2", "default")))
#else
#define TILES_TARGET
#endif
#define TILES_HELPER_TARGET
#define TILED(name) name##_generic
#include "calibrate_tiles.h"

/* The tiles' instance for this CPU (the same bits either way). */
typedef struct {
  void (*hessian_tile)(const float *x, int n, int from, int to, int i0, int j0, double *h);
  void (*cholesky_panel_tile)(const cholesky_job *job, int i0, int jj0);
  void (*lower_inverse_columns)(void *context, int item);
  void (*product_tile)(const product_job *job, int i0, int j0);
} f64_tiles;

static const f64_tiles *tiles(void) {
  static const f64_tiles generic = {hessian_tile_generic, cholesky_panel_tile_generic, lower_inverse_columns_generic, product_tile_generic};
#ifdef X86_INTRINSIC_BLOCKS
  static const f64_tiles avx512 = {hessian_tile_avx512, cholesky_panel_tile_avx512, lower_inverse_columns_avx512, product_tile_avx512};
  if (__builtin_cpu_supports("avx512f")) return &avx512;
#endif
  return &generic;
}

/* ---- GPTQ's Hessian ---- */

/* Adds rows from..to of XᵀX to the lower triangle of rows i0..i0+3 (full tiles may also fill a few upper entries). */
static void hessian_rows(void *context, int item) {
  const hessian_job *job = context;
  const int n = job->n, i0 = (job->blocks - 1 - item) * TILE_ROWS, i_end = min_int(i0 + TILE_ROWS, n);
  for (int j0 = 0; j0 < i_end; j0 += TILE_COLS) {
    if (i_end - i0 == TILE_ROWS && j0 + TILE_COLS <= n) {
      tiles()->hessian_tile(job->x, n, job->from, job->to, i0, j0, job->h);
      continue;
    }
    for (int i = i0; i < i_end; i++) {
      for (int j = j0; j < min_int(j0 + TILE_COLS, i + 1); j++) {
        double sum = job->h[(size_t)i * n + j];
        for (int r = job->from; r < job->to; r++) sum += (double)job->x[(size_t)r * n + i] * (double)job->x[(size_t)r * n + j];
        job->h[(size_t)i * n + j] = sum;
      }
    }
  }
}

int herd_hessian(const float *x, int rows, int n, double *h) {
  memset(h, 0, (size_t)n * n * sizeof *h);
  /* Chunks of rows in order keep each entry's sum in row order while the chunk stays in cache. */
  hessian_job job = {x, n, 0, 0, (n + TILE_ROWS - 1) / TILE_ROWS, h};
  for (job.from = 0; job.from < rows; job.from = job.to) {
    job.to = min_int(job.from + HESSIAN_CHUNK, rows);
    herd_pool_for(job.blocks, hessian_rows, &job);
  }
  const double factor = 2.0 / (rows > 1 ? rows : 1);
  for (int i = 0; i < n; i++) {
    for (int j = 0; j <= i; j++) {
      h[(size_t)i * n + j] *= factor;
      h[(size_t)j * n + i] = h[(size_t)i * n + j];
    }
  }
  return 1;
}

/* ---- AWQ's clipping search ---- */

/* AutoAWQ auto_clip: n_grid 20, shrinks 0 … 9/20 of the group maximum, up to 512 sampled tokens (as awq-search.ts). */
enum { CLIP_GRID = 20, CLIP_SHRINKS = 10, CLIP_SAMPLE_TOKENS = 512, CLIP_ITEM_ROWS = 8, INT4_MAX = 15 };
/* The original group and its 10 clipped candidates, whose dot products with the tokens are taken together. */
enum { CLIP_VECTORS = 1 + CLIP_SHRINKS, CLIP_TOKEN_BLOCK = 16 };

/*
 * inputs: per group, per block of CLIP_TOKEN_BLOCK sampled tokens (zeros past the last), the
 * block's inputs column by column, [group][block][column within the group][token of the block]:
 * a block's columns lie one after another (a whole token list apart, 2 KiB at 512 tokens, they
 * fell into two of L1's 64 sets).
 */
typedef struct {
  const float *w, *inputs;
  int out, cols, group_size, groups, tokens, blocks, row_blocks;
  float *bounds;
} clip_job;

/* sums[k] = Σ_c inputs[c][k] · w[c], c in order, for the tokens of one block. */
VECTOR_CLONES EXACT_PRODUCTS_MAY_FUSE static void group_dots(const float *inputs, const float *w, int size, double *sums) {
  for (int k = 0; k < CLIP_TOKEN_BLOCK; k++) sums[k] = 0;
  for (int c = 0; c < size; c++) {
    const double wc = w[c];
    const float *column = inputs + (size_t)c * CLIP_TOKEN_BLOCK;
    for (int k = 0; k < CLIP_TOKEN_BLOCK; k++) sums[k] += (double)column[k] * wc;
  }
}

/* awq.ts awqGroupParams: the group's scale and zero from its lowest and highest value. */
static void awq_group_params(double low, double high, double *scale, double *zero) {
  *scale = (float)(fmax(high - low, 1e-5) / INT4_MAX);
  *zero = fmin(INT4_MAX, fmax(0, -nearbyint(low / *scale)));
}

/* awq.ts awqGroupParams and int4.ts quantizeCode/dequantizeCode, in place on float32 values. */
static void awq_fake_quantize_scalar(float *values, int size) {
  double low = INFINITY, high = -INFINITY, scale, zero;
  /* Comparisons, not fmin/fmax: GCC 12 for aarch64 crashes at -O3 vectorising an fmin/fmax reduction of floats into a double. */
  for (int c = 0; c < size; c++) {
    low = values[c] < low ? values[c] : low;
    high = values[c] > high ? values[c] : high;
  }
  awq_group_params(low, high, &scale, &zero);
  for (int c = 0; c < size; c++) {
    const double code = fmin(INT4_MAX, fmax(0, nearbyint(values[c] / scale) + zero));
    values[c] = (float)((code - zero) * scale);
  }
}

#ifdef X86_INTRINSIC_BLOCKS
/*
 * The same on AVX-512, 8 values a vector, for groups of a multiple of 8 whose lowest value is
 * below zero: the same operations lane by lane (IEEE quotients, rounding half to even), so the
 * same bits. A group whose lowest value is not below zero goes to the scalar loop: there the
 * zero point can come out −0 and the comparisons' choice between +0 and −0 is the reference's
 * (vector min/max may choose the other); with it below zero no lane meets a tie of zeros.
 * Returns 0, untouched, for the groups it leaves to the scalar loop.
 */
__attribute__((target("avx512f"))) static int awq_fake_quantize_avx512(float *values, int size) {
  if (size % 8 != 0) return 0;
  __m512d lows = _mm512_set1_pd(INFINITY), highs = _mm512_set1_pd(-INFINITY);
  for (int c = 0; c < size; c += 8) {
    const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(values + c));
    lows = _mm512_min_pd(lows, v);
    highs = _mm512_max_pd(highs, v);
  }
  const double low = _mm512_reduce_min_pd(lows), high = _mm512_reduce_max_pd(highs);
  if (!(low < 0)) return 0;
  double scale, zero;
  awq_group_params(low, high, &scale, &zero);
  const __m512d scales = _mm512_set1_pd(scale), zeros = _mm512_set1_pd(zero), top = _mm512_set1_pd(INT4_MAX), bottom = _mm512_setzero_pd();
  for (int c = 0; c < size; c += 8) {
    const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(values + c));
    const __m512d rounded = _mm512_roundscale_pd(_mm512_div_pd(v, scales), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512d code = _mm512_min_pd(top, _mm512_max_pd(bottom, _mm512_add_pd(rounded, zeros)));
    _mm256_storeu_ps(values + c, _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(code, zeros), scales)));
  }
  return 1;
}

/*
 * The same on AVX2, 4 values a vector, for groups of a multiple of 4 (the same conditions, the
 * same bits): a 1B shape's gate_proj candidate (8,192 × 2,048, groups of 128) on two Zen 3 threads
 * 68 → 13 ms, its clipping search 4.2 → 3.0 s.
 */
__attribute__((target("avx2"))) static int awq_fake_quantize_avx2(float *values, int size) {
  if (size % 4 != 0) return 0;
  __m256d lows = _mm256_set1_pd(INFINITY), highs = _mm256_set1_pd(-INFINITY);
  for (int c = 0; c < size; c += 4) {
    const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(values + c));
    lows = _mm256_min_pd(lows, v);
    highs = _mm256_max_pd(highs, v);
  }
  double low_lanes[4], high_lanes[4];
  _mm256_storeu_pd(low_lanes, lows);
  _mm256_storeu_pd(high_lanes, highs);
  const double low = fmin(fmin(low_lanes[0], low_lanes[1]), fmin(low_lanes[2], low_lanes[3]));
  const double high = fmax(fmax(high_lanes[0], high_lanes[1]), fmax(high_lanes[2], high_lanes[3]));
  if (!(low < 0)) return 0;
  double scale, zero;
  awq_group_params(low, high, &scale, &zero);
  const __m256d scales = _mm256_set1_pd(scale), zeros = _mm256_set1_pd(zero), top = _mm256_set1_pd(INT4_MAX), bottom = _mm256_setzero_pd();
  for (int c = 0; c < size; c += 4) {
    const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(values + c));
    const __m256d rounded = _mm256_round_pd(_mm256_div_pd(v, scales), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256d code = _mm256_min_pd(top, _mm256_max_pd(bottom, _mm256_add_pd(rounded, zeros)));
    _mm_storeu_ps(values + c, _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sub_pd(code, zeros), scales)));
  }
  return 1;
}

/*
 * min(bound, max(−bound, w)) as floats on AVX-512, for groups of a multiple of 8 and a bound
 * above zero: no operand pair is a tie of zeros, so the same bits as fmin/fmax. Returns 0,
 * untouched, for the groups it leaves to the scalar loop.
 */
__attribute__((target("avx512f"))) static int clip_group_avx512(const float *w, int size, double bound, float *out) {
  if (size % 8 != 0 || !(bound > 0)) return 0;
  const __m512d highest = _mm512_set1_pd(bound), lowest = _mm512_set1_pd(-bound);
  for (int c = 0; c < size; c += 8) {
    const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(w + c));
    _mm256_storeu_ps(out + c, _mm512_cvtpd_ps(_mm512_min_pd(highest, _mm512_max_pd(lowest, v))));
  }
  return 1;
}

/* The same on AVX2, 4 values a vector, for groups of a multiple of 4. */
__attribute__((target("avx2"))) static int clip_group_avx2(const float *w, int size, double bound, float *out) {
  if (size % 4 != 0 || !(bound > 0)) return 0;
  const __m256d highest = _mm256_set1_pd(bound), lowest = _mm256_set1_pd(-bound);
  for (int c = 0; c < size; c += 4) {
    const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(w + c));
    _mm_storeu_ps(out + c, _mm256_cvtpd_ps(_mm256_min_pd(highest, _mm256_max_pd(lowest, v))));
  }
  return 1;
}
#endif

/* The clipping search's candidate group: w clamped to ±bound. */
static void clip_group(const float *w, int size, double bound, float *out) {
#ifdef X86_INTRINSIC_BLOCKS
  if (__builtin_cpu_supports("avx512f") && clip_group_avx512(w, size, bound, out)) return;
  if (__builtin_cpu_supports("avx2") && clip_group_avx2(w, size, bound, out)) return;
#endif
  for (int c = 0; c < size; c++) out[c] = (float)fmin(bound, fmax(-bound, w[c]));
}

/* Every AWQ candidate's groups pass here (the scale search's and the clipping search's): vectors where the CPU has AVX-512 or AVX2. */
static void awq_fake_quantize(float *values, int size) {
#ifdef X86_INTRINSIC_BLOCKS
  if (__builtin_cpu_supports("avx512f") && awq_fake_quantize_avx512(values, size)) return;
  if (__builtin_cpu_supports("avx2") && awq_fake_quantize_avx2(values, size)) return;
#endif
  awq_fake_quantize_scalar(values, size);
}

#ifdef X86_INTRINSIC_BLOCKS
/*
 * sums[v][k] = Σ_c inputs[c][k] · vectors[v][c], c in order, for one block's 16 tokens: the 11
 * vectors' sums stay in 22 registers while the columns pass, each input loaded once for all of
 * them (group_dots, run per vector, reloads them 11 times). sums: [vector][stride].
 */
__attribute__((target("avx512f"))) EXACT_PRODUCTS_MAY_FUSE static void clip_dots_block(const float *inputs, const double *vectors, int size, double *sums, int stride) {
  __m512d acc[CLIP_VECTORS][2];
  for (int v = 0; v < CLIP_VECTORS; v++) acc[v][0] = acc[v][1] = _mm512_setzero_pd();
  for (int c = 0; c < size; c++) {
    const float *column = inputs + (size_t)c * CLIP_TOKEN_BLOCK;
    const __m512d x0 = _mm512_cvtps_pd(_mm256_loadu_ps(column)), x1 = _mm512_cvtps_pd(_mm256_loadu_ps(column + 8));
    for (int v = 0; v < CLIP_VECTORS; v++) {
      const __m512d w = _mm512_set1_pd(vectors[v * size + c]);
      acc[v][0] = _mm512_fmadd_pd(x0, w, acc[v][0]);
      acc[v][1] = _mm512_fmadd_pd(x1, w, acc[v][1]);
    }
  }
  for (int v = 0; v < CLIP_VECTORS; v++) {
    _mm512_storeu_pd(sums + (size_t)v * stride, acc[v][0]);
    _mm512_storeu_pd(sums + (size_t)v * stride + 8, acc[v][1]);
  }
}

/* The same for the block's 4 tokens from k0 on AVX2 + FMA: the 11 vectors' sums in 11 of its 16 registers. */
__attribute__((target("avx2,fma"))) EXACT_PRODUCTS_MAY_FUSE static void clip_dots_block4(const float *inputs, int k0, const double *vectors, int size, double *sums, int stride) {
  __m256d acc[CLIP_VECTORS];
  for (int v = 0; v < CLIP_VECTORS; v++) acc[v] = _mm256_setzero_pd();
  for (int c = 0; c < size; c++) {
    const __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(inputs + (size_t)c * CLIP_TOKEN_BLOCK + k0));
    for (int v = 0; v < CLIP_VECTORS; v++) acc[v] = _mm256_fmadd_pd(x, _mm256_set1_pd(vectors[v * size + c]), acc[v]);
  }
  for (int v = 0; v < CLIP_VECTORS; v++) _mm256_storeu_pd(sums + (size_t)v * stride + k0, acc[v]);
}
#endif

/*
 * sums[v][k] for every vector and every token of the group's blocks (sums [vector][blocks · 16]):
 * a block at a time on AVX-512, 4 tokens at a time on AVX2 (group_dots, vector by vector, took
 * 91 s of CPU a 1B layer's clipping searches on Zen 3), vector by vector on other CPUs.
 */
static void clip_dots(const float *inputs, int blocks, const double *vectors, const float *floats, int size, double *sums) {
  const int stride = blocks * CLIP_TOKEN_BLOCK;
  for (int b = 0; b < blocks; b++) {
    const float *block = inputs + (size_t)b * size * CLIP_TOKEN_BLOCK;
    double *block_sums = sums + (size_t)b * CLIP_TOKEN_BLOCK;
#ifdef X86_INTRINSIC_BLOCKS
    if (__builtin_cpu_supports("avx512f")) {
      clip_dots_block(block, vectors, size, block_sums, stride);
      continue;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      for (int k0 = 0; k0 < CLIP_TOKEN_BLOCK; k0 += 4) clip_dots_block4(block, k0, vectors, size, block_sums, stride);
      continue;
    }
#else
    (void)vectors; /* only the intrinsic blocks read the doubles */
#endif
    for (int v = 0; v < CLIP_VECTORS; v++) group_dots(block, floats + (size_t)v * size, size, block_sums + (size_t)v * stride);
  }
}

/* Scratch of one item: the vectors as floats and as doubles, and their sums over the tokens. */
typedef struct {
  float *floats;
  double *vectors, *sums;
} clip_scratch;

static double clip_bound(const clip_job *job, const float *w, const float *inputs, const clip_scratch *scratch) {
  const int size = job->group_size, tokens = job->tokens, stride = job->blocks * CLIP_TOKEN_BLOCK;
  double group_max = 0;
  for (int c = 0; c < size; c++) group_max = fabsf(w[c]) > group_max ? fabsf(w[c]) : group_max; /* not fmax: see awq_fake_quantize */
  memcpy(scratch->floats, w, sizeof(float) * size);
  for (int shrink = 0; shrink < CLIP_SHRINKS; shrink++) {
    const double bound = group_max * (1 - (double)shrink / CLIP_GRID);
    float *clipped = scratch->floats + (size_t)(1 + shrink) * size;
    clip_group(w, size, bound, clipped);
    awq_fake_quantize(clipped, size);
  }
  for (int i = 0; i < CLIP_VECTORS * size; i++) scratch->vectors[i] = scratch->floats[i];
  clip_dots(inputs, job->blocks, scratch->vectors, scratch->floats, size, scratch->sums);
  /* Each candidate's error summed over the tokens in order, the ten sums side by side: ten additions in flight, not one waiting on the last. */
  const double *original = scratch->sums;
  double errors[CLIP_SHRINKS] = {0};
  for (int k = 0; k < tokens; k++)
    for (int shrink = 0; shrink < CLIP_SHRINKS; shrink++) {
      const double difference = scratch->sums[(size_t)(1 + shrink) * stride + k] - original[k];
      errors[shrink] += difference * difference;
    }
  double best_error = 1e9, best_bound = group_max;
  for (int shrink = 0; shrink < CLIP_SHRINKS; shrink++) {
    const double error = errors[shrink] / tokens;
    if (error < best_error) {
      best_error = error;
      best_bound = group_max * (1 - (double)shrink / CLIP_GRID);
    }
  }
  return best_bound;
}

static void clip_item(void *context, int item) {
  const clip_job *job = context;
  const int g = item / job->row_blocks, first = item % job->row_blocks * CLIP_ITEM_ROWS, size = job->group_size;
  clip_scratch scratch = {malloc(sizeof(float) * CLIP_VECTORS * size), malloc(sizeof(double) * CLIP_VECTORS * size),
                          malloc(sizeof(double) * CLIP_VECTORS * job->blocks * CLIP_TOKEN_BLOCK)};
  if (scratch.floats == NULL || scratch.vectors == NULL || scratch.sums == NULL) abort(); /* tens of kilobytes: the process is out of memory anyway */
  const float *inputs = job->inputs + (size_t)g * job->blocks * size * CLIP_TOKEN_BLOCK;
  for (int o = first; o < min_int(first + CLIP_ITEM_ROWS, job->out); o++) {
    const float *w = job->w + (size_t)o * job->cols + (size_t)g * size;
    job->bounds[(size_t)o * job->groups + g] = (float)clip_bound(job, w, inputs, &scratch);
  }
  free(scratch.floats);
  free(scratch.vectors);
  free(scratch.sums);
}

int herd_awq_clip(const float *w, int out, int cols, const float *x, int x_rows, int group_size, float *bounds) {
  const int step = x_rows / CLIP_SAMPLE_TOKENS > 1 ? x_rows / CLIP_SAMPLE_TOKENS : 1, tokens = (x_rows + step - 1) / step;
  const int blocks = (tokens + CLIP_TOKEN_BLOCK - 1) / CLIP_TOKEN_BLOCK;
  float *inputs = calloc((size_t)cols * blocks * CLIP_TOKEN_BLOCK, sizeof(float));
  if (inputs == NULL) return 0;
  for (int k = 0; k < tokens; k++) {
    float *block = inputs + (size_t)(k / CLIP_TOKEN_BLOCK) * group_size * CLIP_TOKEN_BLOCK + k % CLIP_TOKEN_BLOCK;
    for (int c = 0; c < cols; c++) block[((size_t)(c / group_size) * blocks * group_size + c % group_size) * CLIP_TOKEN_BLOCK] = x[(size_t)k * step * cols + c];
  }
  clip_job job = {w, inputs, out, cols, group_size, cols / group_size, tokens, blocks, (out + CLIP_ITEM_ROWS - 1) / CLIP_ITEM_ROWS, bounds};
  herd_pool_for(job.groups * job.row_blocks, clip_item, &job);
  free(inputs);
  return 1;
}

/* ---- AWQ's scale search: the candidates of a grid ratio ---- */

typedef struct {
  const float *w, *scales;
  int rows, cols, group_size;
  float *out;
} pseudo_quantize_job;

enum { PSEUDO_QUANTIZE_ITEM_ROWS = 16 };

/* Rows of one item: float32 products and quotients as the TypeScript's Float32Array stores them. */
static void pseudo_quantize_rows(void *context, int item) {
  const pseudo_quantize_job *job = context;
  const int cols = job->cols;
  for (int r = item * PSEUDO_QUANTIZE_ITEM_ROWS; r < min_int((item + 1) * PSEUDO_QUANTIZE_ITEM_ROWS, job->rows); r++) {
    const float *w = job->w + (size_t)r * cols;
    float *out = job->out + (size_t)r * cols;
    for (int c = 0; c < cols; c++) out[c] = w[c] * job->scales[c];
    for (int g = 0; g < cols; g += job->group_size) awq_fake_quantize(out + g, job->group_size);
    for (int c = 0; c < cols; c++) out[c] = (float)((double)out[c] / job->scales[c]);
  }
}

void herd_awq_pseudo_quantize(const float *w, int rows, int cols, const float *scales, int group_size, float *out) {
  pseudo_quantize_job job = {w, scales, rows, cols, group_size, out};
  herd_pool_for((rows + PSEUDO_QUANTIZE_ITEM_ROWS - 1) / PSEUDO_QUANTIZE_ITEM_ROWS, pseudo_quantize_rows, &job);
}

/* ---- GPTQ's factor: U upper-triangular with H⁻¹ = UᵀU (gptq.ts upperCholeskyOfInverse) ---- */

/*
 * Cholesky L (A = L·Lᵀ) by panels of 64 columns. The reference computes each entry as
 * a[i,j] − l[i,0]·l[j,0] − l[i,1]·l[j,1] − … in that order; here the terms before the panel are
 * subtracted for all later rows at once (tiles of 4 rows × 16 panel columns, in parallel), then
 * the panel's own terms row by row, so every entry sees the same operations in the same order.
 */

/* Rows i0..i0+3's sums for the panel's columns, less the terms of the columns before it. */
static void cholesky_panel_rows(void *context, int item) {
  const cholesky_job *job = context;
  const int n = job->n, j0 = job->j0, i0 = j0 + item * TILE_ROWS;
  for (int jj0 = 0; jj0 < job->width; jj0 += TILE_COLS) {
    if (i0 + TILE_ROWS <= n && jj0 + TILE_COLS <= job->width) {
      tiles()->cholesky_panel_tile(job, i0, jj0);
      continue;
    }
    for (int i = i0; i < min_int(i0 + TILE_ROWS, n); i++) {
      for (int j = j0 + jj0; j < min_int(j0 + min_int(jj0 + TILE_COLS, job->width), i + 1); j++) {
        double sum = job->a[(size_t)i * n + j];
        for (int k = 0; k < j0; k++) sum -= job->l[(size_t)i * n + k] * job->l[(size_t)j * n + k];
        job->l[(size_t)i * n + j] = sum;
      }
    }
  }
}

/* Finishes row i's panel entries: their sums less the terms of the panel's earlier columns. */
static int cholesky_finish_row(const cholesky_job *job, int i) {
  const int n = job->n, j0 = job->j0;
  double *li = job->l + (size_t)i * n;
  for (int j = j0; j < min_int(j0 + job->width, i + 1); j++) {
    const double *lj = job->l + (size_t)j * n;
    double sum = li[j];
    for (int k = j0; k < j; k++) sum -= li[k] * lj[k];
    if (i == j) {
      if (!(sum > 0)) return 0;
      li[i] = sqrt(sum);
    } else {
      li[j] = sum / lj[j];
    }
  }
  return 1;
}

static void cholesky_finish_rows(void *context, int item) {
  cholesky_job *job = context;
  const int first = job->j0 + job->width + item * TILE_ROWS;
  for (int i = first; i < min_int(first + TILE_ROWS, job->n); i++) cholesky_finish_row(job, i);
}

/* 1 when A is positive definite (l written), else 0. */
static int cholesky(const double *a, int n, double *l, double *panel) {
  memset(l, 0, (size_t)n * n * sizeof *l);
  cholesky_job job = {a, l, panel, n, 0, 0};
  for (job.j0 = 0; job.j0 < n; job.j0 += CHOLESKY_PANEL) {
    job.width = min_int(CHOLESKY_PANEL, n - job.j0);
    for (int k = 0; k < job.j0; k++)
      for (int jj = 0; jj < CHOLESKY_PANEL; jj++) panel[(size_t)k * CHOLESKY_PANEL + jj] = jj < job.width ? l[(size_t)(job.j0 + jj) * n + k] : 0;
    herd_pool_for((n - job.j0 + TILE_ROWS - 1) / TILE_ROWS, cholesky_panel_rows, &job);
    for (int i = job.j0; i < job.j0 + job.width; i++)
      if (!cholesky_finish_row(&job, i)) return 0;
    herd_pool_for((n - job.j0 - job.width + TILE_ROWS - 1) / TILE_ROWS, cholesky_finish_rows, &job);
  }
  return 1;
}

/* inverse[i, j] = Σ_{k=i}^{n−1} li[k,i]·li[k,j] (lower triangle; terms with k < i are zero and skipped), rows k in chunks. */
static void product_rows(void *context, int item) {
  const product_job *job = context;
  const int n = job->n, i0 = item * TILE_ROWS, i_end = min_int(i0 + TILE_ROWS, n);
  if (job->to <= i0) return;
  for (int j0 = 0; j0 < i_end; j0 += TILE_COLS) {
    if (i_end - i0 == TILE_ROWS && j0 + TILE_COLS <= n) {
      tiles()->product_tile(job, i0, j0);
      continue;
    }
    for (int i = i0; i < i_end; i++) {
      for (int j = j0; j < min_int(j0 + TILE_COLS, i + 1); j++) {
        double sum = job->inverse[(size_t)i * n + j];
        for (int k = job->from > i ? job->from : i; k < job->to; k++) sum += job->li[(size_t)k * n + i] * job->li[(size_t)k * n + j];
        job->inverse[(size_t)i * n + j] = sum;
      }
    }
  }
}

int herd_upper_cholesky_of_inverse(const double *h, int n, double *upper) {
  const size_t size = (size_t)n * n;
  double *first = malloc(size * sizeof(double)), *second = calloc(size, sizeof(double));
  double *panel = malloc((size_t)n * CHOLESKY_PANEL * sizeof(double));
  int result = -1;
  if (first == NULL || second == NULL || panel == NULL) goto done;
  result = 0;
  if (!cholesky(h, n, first, panel)) goto done;
  inverse_job inverse = {first, second, n};
  herd_pool_for((n + INVERSE_LANES - 1) / INVERSE_LANES, tiles()->lower_inverse_columns, &inverse);
  /* H⁻¹ = L⁻ᵀ·L⁻¹ into `first` (L is no longer needed). */
  memset(first, 0, size * sizeof(double));
  product_job product = {second, first, n, 0, 0, (n + TILE_ROWS - 1) / TILE_ROWS};
  for (product.from = 0; product.from < n; product.from = product.to) {
    product.to = min_int(product.from + HESSIAN_CHUNK, n);
    herd_pool_for(product.blocks, product_rows, &product);
  }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < i; j++) first[(size_t)j * n + i] = first[(size_t)i * n + j];
  if (!cholesky(first, n, second, panel)) goto done;
  memset(upper, 0, size * sizeof(double));
  for (int i = 0; i < n; i++)
    for (int j = 0; j <= i; j++) upper[(size_t)j * n + i] = second[(size_t)i * n + j];
  result = 1;
done:
  free(first);
  free(second);
  free(panel);
  return result;
}

/* ---- GPTQ's column loop ---- */

/* Rows per item (rows are independent), and columns per pass of the lazy update (a tile of u that stays in cache). */
enum { GPTQ_ITEM_ROWS = 64, GPTQ_UPDATE_TILE = 512 };

typedef struct {
  double *wp;
  const double *u;
  const int32_t *perm;
  const herd_gptq_options *options;
  int rows, cols;
  uint8_t *codes, *zeros;
  float *scales;
} gptq_job;

typedef struct {
  double scale, zero;
} group_params;

/* int4.ts groupParams: the range always contains 0; symmetric puts the zero at 8. */
static group_params gptq_group_params(const double *values, int size, const herd_gptq_options *options) {
  double low = 0, high = 0;
  for (int k = 0; k < size; k++) {
    low = fmin(low, values[k]);
    high = fmax(high, values[k]);
  }
  if (options->symmetric) {
    high = fmax(-low, high);
    if (low < 0) low = -high;
  }
  if (low == 0 && high == 0) {
    low = -1;
    high = 1;
  }
  group_params p;
  p.scale = (float)((high - low) / INT4_MAX);
  p.zero = options->symmetric ? (INT4_MAX + 1) / 2 : fmin(INT4_MAX, fmax(options->min_zero, nearbyint(-low / p.scale)));
  return p;
}

/* wp[r, k] −= errors[r, c] · u[c, k] for the block's columns c in order, for every later column k. */
VECTOR_CLONES static void gptq_lazy_update(double *wp, int cols, int rows, const double *errors, int block_size, const double *u, int start, int end) {
  for (int k0 = end; k0 < cols; k0 += GPTQ_UPDATE_TILE) {
    const int k1 = min_int(k0 + GPTQ_UPDATE_TILE, cols);
    for (int r = 0; r < rows; r++) {
      double *row = wp + (size_t)r * cols;
      for (int c = start; c < end; c++) {
        const double error = errors[(size_t)r * block_size + (c - start)];
        const double *uc = u + (size_t)c * cols;
        for (int k = k0; k < k1; k++) row[k] = row[k] - error * uc[k];
      }
    }
  }
}

VECTOR_CLONES static void gptq_within_block(double *row, const double *uc, double error, int from, int end) {
  for (int k = from; k < end; k++) row[k] = row[k] - error * uc[k];
}

static void gptq_rows(void *context, int item) {
  const gptq_job *job = context;
  const herd_gptq_options *options = job->options;
  const int first = item * GPTQ_ITEM_ROWS, count = min_int(GPTQ_ITEM_ROWS, job->rows - first), cols = job->cols;
  double *wp = job->wp + (size_t)first * cols;
  double *errors = malloc(sizeof(double) * count * options->block_size);
  group_params *params = malloc(sizeof(group_params) * count);
  if (errors == NULL || params == NULL) abort();
  for (int start = 0; start < cols; start += options->block_size) {
    const int end = min_int(start + options->block_size, cols);
    for (int c = start; c < end; c++) {
      if (c % options->group_size == 0) {
        const int group = c / options->group_size;
        for (int r = 0; r < count; r++) {
          params[r] = gptq_group_params(wp + (size_t)r * cols + c, options->group_size, options);
          job->scales[(size_t)group * job->rows + first + r] = (float)params[r].scale;
          job->zeros[(size_t)group * job->rows + first + r] = (uint8_t)params[r].zero;
        }
      }
      const double *uc = job->u + (size_t)c * cols;
      for (int r = 0; r < count; r++) {
        double *row = wp + (size_t)r * cols;
        const double value = row[c];
        const double code = fmin(INT4_MAX, fmax(0, nearbyint(value / params[r].scale) + params[r].zero));
        job->codes[(size_t)(first + r) * cols + job->perm[c]] = (uint8_t)code;
        const double error = (value - (code - params[r].zero) * params[r].scale) / uc[c];
        errors[(size_t)r * options->block_size + (c - start)] = error;
        gptq_within_block(row, uc, error, c + 1, end);
      }
    }
    gptq_lazy_update(wp, cols, count, errors, options->block_size, job->u, start, end);
  }
  free(errors);
  free(params);
}

int herd_gptq_columns(double *wp, int rows, int cols, const double *u, const int32_t *perm, const herd_gptq_options *options,
                      uint8_t *codes, float *scales, uint8_t *zeros) {
  gptq_job job = {wp, u, perm, options, rows, cols, codes, zeros, scales};
  herd_pool_for((rows + GPTQ_ITEM_ROWS - 1) / GPTQ_ITEM_ROWS, gptq_rows, &job);
  return 1;
}
