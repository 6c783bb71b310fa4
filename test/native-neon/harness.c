/*
 * The arm64 NEON kernels against the scalar path and float64 references computed here, run
 * under an emulator by scripts/test-neon.sh (npm run test:neon) on an x86 machine with a cross
 * compiler, or natively on arm64. Usage: harness EXPECTED_PATH, the path dispatch must choose on
 * this (emulated) CPU: neon-dotprod where it has the dot-product extension, neon where not.
 *
 * Tolerances, from first principles (u = 2^-24, float's unit roundoff):
 * - f16 and bf16 widening is exact: bit for bit the scalar path's output (NaNs: both NaN).
 * - dot_f32 of n terms: |result − exact| ≤ (n + 2)·u·Σ|a·b|, which bounds any summation order.
 * - quantized dots: each block's integer sum is exact, so only the float scaling and the
 *   accumulation of nb blocks round: |result − exact| ≤ (nb + 4)·2u·Σ|terms|. With unit scales
 *   and sums below 2^24 every value is an integer float, so the result must be exact.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/native/dispatch.h"
#include "../../src/native/blocks32.h"
#include "../../src/native/kquants.h"
#include "../../src/native/repack.h"

static int failures = 0;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* splitmix64: reproducible draws, the same on every machine. */
static uint64_t next_random(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double uniform(double low, double high) { return low + (high - low) * (double)(next_random() >> 11) / 9007199254740992.0; }
static int random_int(int low, int high) { return low + (int)(next_random() % (uint64_t)(high - low + 1)); }

/* Reports one kernel's cases: the worst error as a fraction of its tolerance (≤ 1 passes). */
typedef struct {
  const char *path, *kernel;
  int cases, failed;
  double worst;
} tally;

static void check(tally *t, const char *what, double got, double exact, double tolerance) {
  const double error = fabs(got - exact);
  const double ratio = tolerance > 0 ? error / tolerance : (error == 0 ? 0 : INFINITY);
  t->cases++;
  if (ratio > t->worst) t->worst = ratio;
  if (!(ratio <= 1)) {
    t->failed++;
    if (t->failed <= 5) printf("  FAIL %s %s %s: got %.9g, exact %.9g, tolerance %.3g\n", t->path, t->kernel, what, got, exact, tolerance);
  }
}

static void report(const tally *t) {
  printf("%s %-13s %-12s %4d cases, worst error %.3f of its tolerance\n", t->failed ? "FAIL" : "ok  ", t->path, t->kernel, t->cases, t->worst);
  failures += t->failed;
}

static const int FLOAT_LENGTHS[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 64, 100, 255, 257, 1000, 4099};
#define COUNT(array) ((int)(sizeof(array) / sizeof(array[0])))

static void test_dot_f32(const herd_kernels *k) {
  tally t = {k->name, "dot_f32", 0, 0, 0};
  enum { MAX = 4099 + 1 };
  static float a[MAX], b[MAX];
  for (int i = 0; i < MAX; i++) a[i] = (float)uniform(-1, 1), b[i] = (float)uniform(-1, 1);
  for (int c = 0; c < COUNT(FLOAT_LENGTHS); c++) {
    const int n = FLOAT_LENGTHS[c];
    for (int offset = 0; offset < 2; offset++) { /* offset 1: vectors not 16-byte aligned */
      double exact = 0, magnitude = 0;
      for (int i = 0; i < n; i++) exact += (double)a[offset + i] * b[offset + i], magnitude += fabs((double)a[offset + i] * b[offset + i]);
      char what[40];
      snprintf(what, sizeof what, "n=%d offset=%d", n, offset);
      check(&t, what, k->dot_f32(a + offset, b + offset, n), exact, (n + 2) * 0x1p-24 * magnitude);
    }
  }
  report(&t);
}

/* A stored F16 or BF16 row (finite values in ±4) times floats, on every length and offset of dot_f32's cases. */
static void test_dot_16bit(const herd_kernels *k, const char *kernel, float (*dot)(const uint16_t *, const float *, int), int bf16) {
  tally t = {k->name, kernel, 0, 0, 0};
  enum { MAX = 4099 + 1 };
  static uint16_t w[MAX];
  static float x[MAX], widened[MAX];
  for (int i = 0; i < MAX; i++) {
    const float value = (float)uniform(-4, 4);
    uint32_t bits;
    memcpy(&bits, &value, 4);
    w[i] = bf16 ? (uint16_t)(bits >> 16) : herd_float_to_half(value);
    bits = (uint32_t)w[i] << 16;
    if (bf16) memcpy(&widened[i], &bits, 4);
    else widened[i] = herd_half_to_float(w[i]);
    x[i] = (float)uniform(-1, 1);
  }
  for (int c = 0; c < COUNT(FLOAT_LENGTHS); c++) {
    const int n = FLOAT_LENGTHS[c];
    for (int offset = 0; offset < 2; offset++) {
      double exact = 0, magnitude = 0;
      for (int i = offset; i < offset + n; i++) exact += (double)widened[i] * x[i], magnitude += fabs((double)widened[i] * x[i]);
      char what[40];
      snprintf(what, sizeof what, "n=%d offset=%d", n, offset);
      check(&t, what, dot(w + offset, x + offset, n), exact, (n + 2) * 0x1p-24 * magnitude);
    }
  }
  report(&t);
}

/* Scores and weighted value sums of one kv group's heads over n cached rows, on awkward sizes. */
static void test_attention(const herd_kernels *k) {
  tally scores_tally = {k->name, "attend_scores", 0, 0, 0}, values_tally = {k->name, "attend_values", 0, 0, 0};
  enum { MAX_N = 37, MAX_D = 130, MAX_HEADS = 6, STRIDE = MAX_N + 3 };
  static float keys[MAX_N * MAX_D], queries[MAX_HEADS * MAX_D], scores[MAX_HEADS * STRIDE], out[MAX_HEADS * MAX_D], start[MAX_HEADS * MAX_D];
  /* Rows past whole fours, columns past whole sixteens and fours, heads past whole fours. */
  static const int NS[] = {1, 7, 37}, DS[] = {5, 20, 64, 130}, HEADS[] = {1, 3, 4, 6};
  for (int a = 0; a < COUNT(NS); a++)
    for (int b = 0; b < COUNT(DS); b++)
      for (int c = 0; c < COUNT(HEADS); c++) {
        const int n = NS[a], d = DS[b], heads = HEADS[c];
        const float scale = 0.125f;
        for (int i = 0; i < n * d; i++) keys[i] = (float)uniform(-1, 1);
        for (int i = 0; i < heads * d; i++) queries[i] = (float)uniform(-1, 1), start[i] = out[i] = (float)uniform(-1, 1);
        char what[40];
        snprintf(what, sizeof what, "n=%d d=%d heads=%d", n, d, heads);
        for (int i = 0; i < MAX_HEADS * STRIDE; i++) scores[i] = NAN;
        k->attend_scores(keys, n, d, queries, heads, scale, scores, STRIDE);
        int outside = 0;
        for (int i = 0; i < MAX_HEADS * STRIDE; i++) outside += !isnan(scores[i]) && (i / STRIDE >= heads || i % STRIDE >= n);
        check(&scores_tally, "nothing written past the rows and heads", outside, 0, 0);
        for (int j = 0; j < heads; j++)
          for (int p = 0; p < n; p++) {
            double exact = 0, magnitude = 0;
            for (int i = 0; i < d; i++) exact += (double)keys[p * d + i] * queries[j * d + i], magnitude += fabs((double)keys[p * d + i] * queries[j * d + i]);
            check(&scores_tally, what, scores[j * STRIDE + p], exact * scale, (d + 2) * 0x1p-24 * magnitude * scale);
          }
        /* The scores as weights (any floats serve), the values being the keys again. */
        k->attend_values(keys, n, d, scores, STRIDE, heads, out);
        for (int j = 0; j < heads; j++)
          for (int i = 0; i < d; i++) {
            double exact = start[j * d + i], magnitude = fabs(start[j * d + i]);
            for (int p = 0; p < n; p++) exact += (double)scores[j * STRIDE + p] * keys[p * d + i], magnitude += fabs((double)scores[j * STRIDE + p] * keys[p * d + i]);
            check(&values_tally, what, out[j * d + i], exact, (n + 2) * 0x1p-24 * magnitude);
          }
      }
  report(&scores_tally);
  report(&values_tally);
}

/* Bit-for-bit equality of two widenings of the same 16-bit values (NaN payloads may differ). */
static int same_float(float x, float y) { return (isnan(x) && isnan(y)) || memcmp(&x, &y, 4) == 0; }

static void test_widening(const herd_kernels *k, const char *kernel, void (*mine)(const uint16_t *, float *, int),
                          void (*scalar)(const uint16_t *, float *, int)) {
  tally t = {k->name, kernel, 0, 0, 0};
  enum { ALL = 65536 };
  static uint16_t src[ALL];
  static float got[ALL], expected[ALL];
  for (int i = 0; i < ALL; i++) src[i] = (uint16_t)i;
  /* Every 16-bit pattern in one call, then short calls from an odd start for the tails. */
  mine(src, got, ALL);
  scalar(src, expected, ALL);
  for (int i = 0; i < ALL; i++) {
    char what[40];
    snprintf(what, sizeof what, "0x%04x", i);
    check(&t, what, same_float(got[i], expected[i]) ? 0 : 1, 0, 0);
  }
  for (int n = 1; n <= 19; n++) {
    memset(got, 0xff, sizeof(float) * 32);
    mine(src + 0x3c01, got + 1, n);
    scalar(src + 0x3c01, expected + 1, n);
    int same = isnan(got[0]) && isnan(got[n + 1]); /* the 0xff fill (a NaN) around the output is untouched */
    for (int i = 1; i <= n; i++) same &= same_float(got[i], expected[i]);
    char what[40];
    snprintf(what, sizeof what, "tail n=%d", n);
    check(&t, what, same ? 0 : 1, 0, 0);
  }
  report(&t);
}

static void put_half(uint8_t *p, float value) {
  uint16_t h = herd_float_to_half(value);
  memcpy(p, &h, 2);
}

/* A block scale: a random magnitude and sign, or exactly 1 for the exact cases. */
static float block_scale(int exact) {
  if (exact) return 1;
  const float magnitude = (float)uniform(1e-3, 0.1);
  return next_random() & 1 ? magnitude : -magnitude;
}

/* Activations as the quantizer makes them: codes in ±limit and a positive scale per block. */
static void random_activations(int8_t *x, float *xd, int values, int block, int limit, int exact) {
  for (int i = 0; i < values; i++) x[i] = (int8_t)random_int(-limit, limit);
  for (int b = 0; b < values / block; b++) xd[b] = exact ? 1 : (float)uniform(1e-3, 0.05);
}

static const int BLOCK_COUNTS[] = {1, 2, 3, 5, 8, 17};
#define MAX_BLOCKS 17

/* Q8_0 and Q4_0: the code of weight i of a block, as the format defines it. */
static int q8_0_code(const uint8_t *block, int i) { return (int8_t)block[2 + i]; }
static int q4_0_code(const uint8_t *block, int i) { return i < 16 ? (block[2 + i] & 0xf) - 8 : (block[2 + i - 16] >> 4) - 8; }

typedef enum { CODES_RANDOM, CODES_EXTREME_LOW, CODES_EXTREME_HIGH } code_fill;

static void test_blocks32(const herd_kernels *k, const char *kernel, int bytes, int (*code)(const uint8_t *, int),
                          float (*mine)(const uint8_t *, const int8_t *, const float *, int),
                          float (*scalar)(const uint8_t *, const int8_t *, const float *, int)) {
  tally t = {k->name, kernel, 0, 0, 0};
  static uint8_t w[MAX_BLOCKS * Q8_0_BYTES];
  static int8_t x[MAX_BLOCKS * QK];
  static float xd[MAX_BLOCKS];
  for (int c = 0; c < COUNT(BLOCK_COUNTS); c++) {
    for (int exact = 0; exact < 2; exact++) {
      for (code_fill fill = CODES_RANDOM; fill <= CODES_EXTREME_HIGH; fill++) {
        const int nb = BLOCK_COUNTS[c];
        for (int b = 0; b < nb; b++) {
          put_half(w + b * bytes, block_scale(exact));
          /* Extremes: every weight byte 0x80 (Q8_0 −128, Q4_0 0 − 8) or 0x7f, against activations ±127. */
          for (int i = 2; i < bytes; i++) w[b * bytes + i] = fill == CODES_RANDOM ? (uint8_t)next_random() : fill == CODES_EXTREME_LOW ? 0x80 : 0x7f;
        }
        random_activations(x, xd, nb * QK, QK, 127, exact);
        if (fill != CODES_RANDOM)
          for (int i = 0; i < nb * QK; i++) x[i] = fill == CODES_EXTREME_LOW ? -127 : 127;
        double result = 0, magnitude = 0;
        for (int b = 0; b < nb; b++) {
          const uint8_t *block = w + b * bytes;
          uint16_t h;
          memcpy(&h, block, 2);
          long sum = 0, absolute = 0;
          for (int i = 0; i < QK; i++) sum += code(block, i) * x[b * QK + i], absolute += labs((long)code(block, i) * x[b * QK + i]);
          const double scale = (double)herd_half_to_float(h) * xd[b];
          result += scale * (double)sum;
          magnitude += fabs(scale) * (double)absolute;
        }
        const double tolerance = exact ? 0 : (nb + 4) * 0x1p-23 * magnitude;
        char what[60];
        snprintf(what, sizeof what, "nb=%d %s fill=%d", nb, exact ? "exact" : "random", (int)fill);
        check(&t, what, mine(w, x, xd, nb), result, tolerance);
        check(&t, what, scalar(w, x, xd, nb), result, tolerance);
      }
    }
  }
  report(&t);
}

/* Q4_K's code of weight i (0..255) of a super-block: 32 bytes hold sub-blocks 2p (low nibbles) and 2p+1 (high). */
static int q4_k_code(const uint8_t *block, int i) {
  const int sub = i / 32, pair = sub / 2;
  const uint8_t byte = block[16 + 32 * pair + i % 32];
  return sub % 2 ? byte >> 4 : byte & 0xf;
}

/*
 * Adds a Q4_K or Q5_K super-block's terms (code(block, i) of weight i, as the format defines it)
 * to the float64 result and to Σ|terms|: eight sub-blocks of 32, each with a 6-bit scale and a
 * minimum that takes m·Σx off.
 */
static void reference_scales_mins(const uint8_t *block, int (*code)(const uint8_t *, int), const int8_t *x, float xd, double *result, double *magnitude) {
  uint16_t d, dmin;
  memcpy(&d, block, 2);
  memcpy(&dmin, block + 2, 2);
  const double scale = (double)herd_half_to_float(d) * xd, min_scale = (double)herd_half_to_float(dmin) * xd;
  for (int j = 0; j < 8; j++) {
    uint8_t sc, m;
    herd_q4k_scale_min(j, block + 4, &sc, &m);
    long sum = 0, absolute = 0, activations = 0;
    for (int i = 32 * j; i < 32 * (j + 1); i++) {
      const long product = (long)code(block, i) * x[i];
      sum += product, absolute += labs(product), activations += x[i];
    }
    *result += scale * sc * (double)sum - min_scale * m * (double)activations;
    *magnitude += fabs(scale) * sc * (double)absolute + fabs(min_scale) * m * fabs((double)activations);
  }
}

/* xs (the kernels' sums of each 32 codes) is not read: the reference sums x itself. */
static void reference_q4_k(const uint8_t *block, const int8_t *x, float xd, const int32_t *xs, double *result, double *magnitude) {
  (void)xs;
  reference_scales_mins(block, q4_k_code, x, xd, result, magnitude);
}

static void test_q4_k(const herd_kernels *k) {
  tally t = {k->name, "dot_q4_k", 0, 0, 0};
  static uint8_t w[MAX_BLOCKS * Q4_K_BYTES];
  static int8_t x[MAX_BLOCKS * QK_K];
  static float xd[MAX_BLOCKS];
  static int32_t xs[MAX_BLOCKS * 8];
  for (int c = 0; c < COUNT(BLOCK_COUNTS); c++) {
    for (int exact = 0; exact < 2; exact++) {
      /* Exact cases keep every sum below 2^24: activations in ±15 and at most 2 super-blocks. */
      const int nb = exact ? 1 + c % 2 : BLOCK_COUNTS[c];
      for (int b = 0; b < nb; b++) {
        uint8_t *block = w + b * Q4_K_BYTES;
        put_half(block, block_scale(exact));
        put_half(block + 2, exact ? 1 : (float)uniform(0, 0.05));
        for (int i = 4; i < Q4_K_BYTES; i++) block[i] = (uint8_t)next_random();
      }
      random_activations(x, xd, nb * QK_K, QK_K, exact ? 15 : 127, exact);
      for (int s = 0; s < nb * 8; s++) {
        xs[s] = 0;
        for (int i = 0; i < QK; i++) xs[s] += x[s * QK + i];
      }
      double result = 0, magnitude = 0;
      for (int b = 0; b < nb; b++) reference_q4_k(w + b * Q4_K_BYTES, x + b * QK_K, xd[b], xs + b * 8, &result, &magnitude);
      const double tolerance = exact ? 0 : (nb + 4) * 0x1p-23 * magnitude;
      char what[40];
      snprintf(what, sizeof what, "nb=%d %s", nb, exact ? "exact" : "random");
      check(&t, what, k->dot_q4_k(w, x, xd, xs, nb), result, tolerance);
      check(&t, what, herd_kernels_scalar.dot_q4_k(w, x, xd, xs, nb), result, tolerance);
    }
  }
  report(&t);
}

static double half_of(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return herd_half_to_float(h);
}

/* Q6_K, Q5_K, Q3_K and Q2_K: the K-quants on activations with sums of each 16 (ggml's layouts, kquants.h). */
typedef struct {
  const char *kernel;
  int bytes;
  /* One super-block: random, or every code at its lowest or highest; scales that keep exact cases below 2^24. */
  void (*make_block)(uint8_t *block, int exact, code_fill fill);
  /* Adds a super-block's terms, as the format defines them, to the float64 result and to Σ|terms|. */
  void (*reference)(const uint8_t *block, const int8_t *x, float xd, double *result, double *magnitude);
  float (*mine)(const uint8_t *, const int8_t *, const float *, const int32_t *, int);
  float (*scalar)(const uint8_t *, const int8_t *, const float *, const int32_t *, int);
} kquant16_format;

/*
 * Q6_K's code of weight i (0..255) of a super-block, as ggml's dequantize_row_q6_K reads it: in
 * each half n of 128, weight 32k + l (k 0..3) is the low (k < 2) or high nibble of ql[64n + l +
 * 32(k mod 2)] with bits 2k, 2k + 1 of qh[32n + l] above it, less 32; its scale is the int8 at
 * 192 + i / 16, the super-block's at 208.
 */
static int q6_k_code(const uint8_t *block, int i) {
  const int n = i / 128, k = i % 128 / 32, l = i % 32;
  const uint8_t byte = block[64 * n + l + 32 * (k % 2)], high = block[128 + 32 * n + l];
  return ((k < 2 ? byte & 0xf : byte >> 4) | ((high >> (2 * k)) & 3) << 4) - 32;
}

static void make_q6_k(uint8_t *block, int exact, code_fill fill) {
  /* Extremes: every code −32 (all bits 0) or 31 (all 1), with the largest scales of each sign unless exact. */
  for (int i = 0; i < 192; i++) block[i] = fill == CODES_RANDOM ? (uint8_t)next_random() : fill == CODES_EXTREME_LOW ? 0 : 0xff;
  for (int g = 0; g < 16; g++) block[192 + g] = (uint8_t)(int8_t)(exact ? random_int(-8, 8) : fill != CODES_RANDOM ? (g % 2 ? -128 : 127) : random_int(-128, 127));
  put_half(block + 208, block_scale(exact));
}

static void reference_q6_k(const uint8_t *block, const int8_t *x, float xd, double *result, double *magnitude) {
  uint16_t d;
  memcpy(&d, block + 208, 2);
  const double scale = (double)herd_half_to_float(d) * xd;
  for (int g = 0; g < 16; g++) {
    long sum = 0, absolute = 0;
    for (int i = 16 * g; i < 16 * (g + 1); i++) {
      const long product = (long)q6_k_code(block, i) * x[i];
      sum += product, absolute += labs(product);
    }
    const int group_scale = (int8_t)block[192 + g];
    *result += scale * group_scale * (double)sum;
    *magnitude += fabs(scale) * abs(group_scale) * (double)absolute;
  }
}

/*
 * Q5_K's code of weight i (0..255), as ggml's dequantize_row_q5_K reads it: weights 64p + l and
 * 64p + 32 + l are the low and high nibbles of qs[32p + l] (qs at byte 48), plus 16 where bit 2p,
 * respectively 2p + 1, of qh[l] (at byte 16) is set; scales and minimums as Q4_K's.
 */
static int q5_k_code(const uint8_t *block, int i) {
  const int p = i / 64, second = i % 64 >= 32, l = i % 32;
  const uint8_t byte = block[48 + 32 * p + l];
  return (second ? byte >> 4 : byte & 0xf) + (block[16 + l] >> (2 * p + second) & 1) * 16;
}

static void make_q5_k(uint8_t *block, int exact, code_fill fill) {
  put_half(block, block_scale(exact));
  put_half(block + 2, exact ? 1 : (float)uniform(0, 0.05));
  for (int i = 4; i < 16; i++) block[i] = (uint8_t)next_random();
  /* Extremes: every code 0 or 31. */
  for (int i = 16; i < Q5_K_BYTES; i++) block[i] = fill == CODES_RANDOM ? (uint8_t)next_random() : fill == CODES_EXTREME_LOW ? 0 : 0xff;
}

static void reference_q5_k(const uint8_t *block, const int8_t *x, float xd, double *result, double *magnitude) {
  reference_scales_mins(block, q5_k_code, x, xd, result, magnitude);
}

/*
 * Q3_K's code of weight i, as ggml's dequantize_row_q3_K reads it: in each half n of 128, weight
 * 32k + l is bits 2k, 2k + 1 of qs[32n + l] (qs at byte 32), less 4 unless bit 4n + k of
 * hmask[l] (at byte 0) is set. Scale j (of each 16) has its low nibble in byte 96 + j (j < 8) or
 * the high nibble of byte 96 + j − 8, and its top two bits at bits 2(j / 4) of byte 104 + j % 4;
 * less 32. d at byte 108.
 */
static int q3_k_code(const uint8_t *block, int i) {
  const int n = i / 128, k = i % 128 / 32, l = i % 32;
  return ((block[32 + 32 * n + l] >> (2 * k)) & 3) - (block[l] >> (4 * n + k) & 1 ? 0 : 4);
}

static int q3_k_scale(const uint8_t *block, int j) {
  const int low = j < 8 ? block[96 + j] & 0xf : block[96 + j - 8] >> 4, high = (block[104 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | high << 4) - 32;
}

static void make_q3_k(uint8_t *block, int exact, code_fill fill) {
  /* Extremes: every code −4 (all bits 0) or 3 (all 1). */
  for (int i = 0; i < 96; i++) block[i] = fill == CODES_RANDOM ? (uint8_t)next_random() : fill == CODES_EXTREME_LOW ? 0 : 0xff;
  for (int i = 96; i < 108; i++) block[i] = (uint8_t)next_random();
  put_half(block + 108, block_scale(exact));
}

static void reference_q3_k(const uint8_t *block, const int8_t *x, float xd, double *result, double *magnitude) {
  const double scale = half_of(block + 108) * xd;
  for (int g = 0; g < 16; g++) {
    long sum = 0, absolute = 0;
    for (int i = 16 * g; i < 16 * (g + 1); i++) sum += (long)q3_k_code(block, i) * x[i], absolute += labs((long)q3_k_code(block, i) * x[i]);
    *result += scale * q3_k_scale(block, g) * (double)sum;
    *magnitude += fabs(scale * q3_k_scale(block, g)) * (double)absolute;
  }
}

/* Q2_K, as ggml's dequantize_row_q2_K reads it: weight 128n + 32k + l is bits 2k, 2k + 1 of qs[32n + l] (qs at byte 16); group g's scale and minimum the low and high nibbles of byte g; d and dmin at 80 and 82. */
static void make_q2_k(uint8_t *block, int exact, code_fill fill) {
  for (int i = 0; i < 16; i++) block[i] = (uint8_t)next_random();
  /* Extremes: every code 0 or 3. */
  for (int i = 16; i < 80; i++) block[i] = fill == CODES_RANDOM ? (uint8_t)next_random() : fill == CODES_EXTREME_LOW ? 0 : 0xff;
  put_half(block + 80, block_scale(exact));
  put_half(block + 82, exact ? 1 : (float)uniform(0, 0.05));
}

static void reference_q2_k(const uint8_t *block, const int8_t *x, float xd, double *result, double *magnitude) {
  const double scale = half_of(block + 80) * xd, min_scale = half_of(block + 82) * xd;
  for (int g = 0; g < 16; g++) {
    long sum = 0, absolute = 0, activations = 0;
    for (int i = 16 * g; i < 16 * (g + 1); i++) {
      const int n = i / 128, k = i % 128 / 32, l = i % 32;
      const long product = (long)((block[16 + 32 * n + l] >> (2 * k)) & 3) * x[i];
      sum += product, absolute += labs(product), activations += x[i];
    }
    *result += scale * (block[g] & 0xf) * (double)sum - min_scale * (block[g] >> 4) * (double)activations;
    *magnitude += fabs(scale) * (block[g] & 0xf) * (double)absolute + fabs(min_scale) * (block[g] >> 4) * fabs((double)activations);
  }
}

/* 1–17 super-blocks (at most 2 for the exact cases, whose activations are in ±15), random and extreme codes. */
static void test_kquant16(const herd_kernels *k, const kquant16_format *f) {
  tally t = {k->name, f->kernel, 0, 0, 0};
  static uint8_t w[MAX_BLOCKS * Q6_K_BYTES];
  static int8_t x[MAX_BLOCKS * QK_K];
  static float xd[MAX_BLOCKS];
  static int32_t xs[MAX_BLOCKS * 16];
  for (int c = 0; c < COUNT(BLOCK_COUNTS); c++) {
    for (int exact = 0; exact < 2; exact++) {
      for (code_fill fill = CODES_RANDOM; fill <= CODES_EXTREME_HIGH; fill++) {
        const int nb = exact ? 1 + c % 2 : BLOCK_COUNTS[c];
        for (int b = 0; b < nb; b++) f->make_block(w + b * f->bytes, exact, fill);
        random_activations(x, xd, nb * QK_K, QK_K, exact ? 15 : 127, exact);
        if (fill != CODES_RANDOM && !exact)
          for (int i = 0; i < nb * QK_K; i++) x[i] = fill == CODES_EXTREME_LOW ? -127 : 127;
        for (int s = 0; s < nb * 16; s++) {
          xs[s] = 0;
          for (int i = 0; i < 16; i++) xs[s] += x[s * 16 + i];
        }
        double result = 0, magnitude = 0;
        for (int b = 0; b < nb; b++) f->reference(w + b * f->bytes, x + b * QK_K, xd[b], &result, &magnitude);
        const double tolerance = exact ? 0 : (nb + 4) * 0x1p-23 * magnitude;
        char what[60];
        snprintf(what, sizeof what, "nb=%d %s fill=%d", nb, exact ? "exact" : "random", (int)fill);
        check(&t, what, f->mine(w, x, xd, xs, nb), result, tolerance);
        check(&t, what, f->scalar(w, x, xd, xs, nb), result, tolerance);
      }
    }
  }
  report(&t);
}

/*
 * blocks32.h's formats (Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS, INT4_G128), each block read as ggml's
 * dequantize_row_* (or src/formats/int4-rows.ts) reads it: code j < 16 the low nibble of code byte
 * j, code j ≥ 16 the high nibble of byte j − 16; a Q5 code's fifth bit is bit j of qh.
 */
static int nibble_code(const uint8_t *codes, int j) { return j < 16 ? codes[j] & 0xf : codes[j - 16] >> 4; }
static int fifth_bit(const uint8_t *qh, int j) { uint32_t bits; memcpy(&bits, qh, 4); return (int)((bits >> j) & 1) << 4; }
static const int IQ4_LEVELS[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Adds Σ scale · code · x and offset · Σ x over one block of 32 codes to the result, and their magnitudes. */
static void add_block_terms(double scale, const int *codes, double offset, const int8_t *x, double *result, double *magnitude) {
  long sum = 0, absolute = 0, activations = 0;
  for (int j = 0; j < QK; j++) sum += (long)codes[j] * x[j], absolute += labs((long)codes[j] * x[j]), activations += x[j];
  *result += scale * (double)sum + offset * (double)activations;
  *magnitude += fabs(scale) * (double)absolute + fabs(offset * (double)activations);
}

/* One block (or group, or super-block) of the format: its terms with activation scales xd (one per 32 values, IQ4_XS one per 256). */
static void reference_blocks32(int format, const uint8_t *block, const int8_t *x, const float *xd, double *result, double *magnitude) {
  int codes[QK];
  switch (format) {
    case FMT_Q4_1:
      for (int j = 0; j < QK; j++) codes[j] = nibble_code(block + 4, j);
      return add_block_terms(half_of(block) * xd[0], codes, half_of(block + 2) * xd[0], x, result, magnitude);
    case FMT_Q5_0:
      for (int j = 0; j < QK; j++) codes[j] = (nibble_code(block + 6, j) | fifth_bit(block + 2, j)) - 16;
      return add_block_terms(half_of(block) * xd[0], codes, 0, x, result, magnitude);
    case FMT_Q5_1:
      for (int j = 0; j < QK; j++) codes[j] = nibble_code(block + 8, j) | fifth_bit(block + 4, j);
      return add_block_terms(half_of(block) * xd[0], codes, half_of(block + 2) * xd[0], x, result, magnitude);
    case FMT_IQ4_NL:
      for (int j = 0; j < QK; j++) codes[j] = IQ4_LEVELS[nibble_code(block + 2, j)];
      return add_block_terms(half_of(block) * xd[0], codes, 0, x, result, magnitude);
    case FMT_IQ4_XS:
      for (int sub = 0; sub < 8; sub++) {
        const int high = ((block[2] | block[3] << 8) >> (2 * sub)) & 3, low = (block[4 + sub / 2] >> (4 * (sub % 2))) & 0xf;
        for (int j = 0; j < QK; j++) codes[j] = IQ4_LEVELS[nibble_code(block + 8 + 16 * sub, j)];
        add_block_terms(half_of(block) * xd[0] * ((low | high << 4) - 32), codes, 0, x + QK * sub, result, magnitude);
      }
      return;
    default: /* INT4_G128: (code − zero) · scale, four blocks of 32 */
      for (int b = 0; b < INT4_GROUP / QK; b++) {
        for (int j = 0; j < QK; j++) codes[j] = nibble_code(block + 4 + 16 * b, j);
        add_block_terms(half_of(block) * xd[b], codes, -half_of(block) * xd[b] * block[2], x + QK * b, result, magnitude);
      }
  }
}

static void test_blocks32_formats(const herd_kernels *k) {
  static const struct {
    const char *kernel;
    int format, bytes, values, activation_block;
    float (*scalar)(const uint8_t *, const int8_t *, const float *, const int32_t *, int);
  } FORMATS[] = {
      {"dot_q4_1", FMT_Q4_1, Q4_1_BYTES, QK, QK, herd_dot_q4_1_scalar},
      {"dot_q5_0", FMT_Q5_0, Q5_0_BYTES, QK, QK, herd_dot_q5_0_scalar},
      {"dot_q5_1", FMT_Q5_1, Q5_1_BYTES, QK, QK, herd_dot_q5_1_scalar},
      {"dot_iq4_nl", FMT_IQ4_NL, IQ4_NL_BYTES, QK, QK, herd_dot_iq4_nl_scalar},
      {"dot_iq4_xs", FMT_IQ4_XS, IQ4_XS_BYTES, QK_K, QK_K, herd_dot_iq4_xs_scalar},
      {"dot_int4_g128", FMT_INT4_G128, INT4_G128_BYTES, INT4_GROUP, QK, herd_dot_int4_g128_scalar},
  };
  /* The path's kernels, in FORMATS' order. */
  float (*const mine[])(const uint8_t *, const int8_t *, const float *, const int32_t *, int) = {k->dot_q4_1, k->dot_q5_0, k->dot_q5_1, k->dot_iq4_nl, k->dot_iq4_xs, k->dot_int4_g128};
  static uint8_t w[MAX_BLOCKS * IQ4_XS_BYTES];
  static int8_t x[MAX_BLOCKS * QK_K];
  static float xd[MAX_BLOCKS * QK_K / QK];
  static int32_t xs[MAX_BLOCKS * QK_K / QK];
  for (int f = 0; f < COUNT(FORMATS); f++) {
    tally t = {k->name, FORMATS[f].kernel, 0, 0, 0};
    for (int c = 0; c < COUNT(BLOCK_COUNTS); c++) {
      for (int exact = 0; exact < 2; exact++) {
        for (code_fill fill = CODES_RANDOM; fill <= CODES_EXTREME_HIGH; fill++) {
          /* Exact cases: one block, unit scales, activations in ±15, so every sum is an integer below 2^24. */
          const int nb = exact ? 1 : BLOCK_COUNTS[c], values = nb * FORMATS[f].values;
          for (int b = 0; b < nb; b++) {
            uint8_t *block = w + b * FORMATS[f].bytes;
            /* Extremes: every code byte 0x00 or 0xff (every code 0 or 15, Q5's fifth bits too), scales aside. */
            for (int i = 0; i < FORMATS[f].bytes; i++) block[i] = fill == CODES_RANDOM ? (uint8_t)next_random() : fill == CODES_EXTREME_LOW ? 0 : 0xff;
            put_half(block, block_scale(exact));
            if (FORMATS[f].format == FMT_Q4_1 || FORMATS[f].format == FMT_Q5_1) put_half(block + 2, exact ? 1 : (float)uniform(-0.1, 0.1));
            if (FORMATS[f].format == FMT_INT4_G128) block[2] = (uint8_t)random_int(0, 16);
          }
          random_activations(x, xd, values, FORMATS[f].activation_block, exact ? 15 : 127, exact);
          if (fill != CODES_RANDOM && !exact)
            for (int i = 0; i < values; i++) x[i] = fill == CODES_EXTREME_LOW ? -127 : 127;
          for (int s = 0; s < values / QK; s++) {
            xs[s] = 0;
            for (int i = 0; i < QK; i++) xs[s] += x[s * QK + i];
          }
          double result = 0, magnitude = 0;
          const int scales_per_block = FORMATS[f].values / FORMATS[f].activation_block;
          for (int b = 0; b < nb; b++)
            reference_blocks32(FORMATS[f].format, w + b * FORMATS[f].bytes, x + b * FORMATS[f].values, xd + b * scales_per_block, &result, &magnitude);
          const double tolerance = exact ? 0 : (nb * FORMATS[f].values / QK + 4) * 0x1p-23 * magnitude;
          char what[60];
          snprintf(what, sizeof what, "nb=%d %s fill=%d", nb, exact ? "exact" : "random", (int)fill);
          check(&t, what, mine[f](w, x, xd, xs, nb), result, tolerance);
          check(&t, what, FORMATS[f].scalar(w, x, xd, xs, nb), result, tolerance);
        }
      }
    }
    report(&t);
  }
}

/*
 * gemm_f32 on activations packed as ops.c packs them (groups of f32_tokens tokens, [column][token],
 * zeros past the last token): every row and token within (cols + 2)·2⁻²⁴·Σ|w·x| of float64, and
 * nothing written outside y's rows × tokens (every other value keeps its NaN).
 */
static void test_gemm_f32(const herd_kernels *k) {
  static const int ROWS[] = {1, 5, 8, 9, 19}, TOKENS[] = {3, 8, 11, 17}, COLS[] = {1, 3, 4, 7, 64, 130};
  enum { MAX_ROWS = 19, MAX_TOKENS = 24, MAX_COLS = 130, Y_STRIDE = MAX_ROWS + 1 };
  static float w[MAX_ROWS * MAX_COLS], x[MAX_TOKENS * MAX_COLS], packed[MAX_TOKENS * MAX_COLS], y[MAX_TOKENS * Y_STRIDE];
  tally t = {k->name, "gemm_f32", 0, 0, 0};
  if (k->gemm_f32 == NULL || k->f32_tokens <= 0) {
    printf("  FAIL %s has no gemm_f32\n", k->name);
    failures++;
    return;
  }
  const int width = k->f32_tokens;
  for (int rc = 0; rc < COUNT(ROWS); rc++)
    for (int tc = 0; tc < COUNT(TOKENS); tc++)
      for (int cc = 0; cc < COUNT(COLS); cc++) {
        const int rows = ROWS[rc], tokens = TOKENS[tc], cols = COLS[cc];
        for (int i = 0; i < rows * cols; i++) w[i] = (float)uniform(-1, 1);
        for (int i = 0; i < tokens * cols; i++) x[i] = (float)uniform(-1, 1);
        for (int g = 0; g * width < tokens; g++)
          for (int c = 0; c < cols; c++)
            for (int j = 0; j < width; j++) packed[(size_t)g * width * cols + (size_t)c * width + j] = g * width + j < tokens ? x[(size_t)(g * width + j) * cols + c] : 0;
        for (int i = 0; i < MAX_TOKENS * Y_STRIDE; i++) y[i] = NAN;
        k->gemm_f32(w, rows, packed, tokens, cols, y, Y_STRIDE);
        for (int token = 0; token < tokens; token++) {
          for (int r = 0; r < rows; r++) {
            double exact = 0, magnitude = 0;
            for (int c = 0; c < cols; c++) exact += (double)w[r * cols + c] * x[token * cols + c], magnitude += fabs((double)w[r * cols + c] * x[token * cols + c]);
            char what[60];
            snprintf(what, sizeof what, "rows=%d tokens=%d cols=%d r=%d t=%d", rows, tokens, cols, r, token);
            check(&t, what, y[token * Y_STRIDE + r], exact, (cols + 2) * 0x1p-24 * magnitude);
          }
        }
        /* Nothing past the rows (the stride's spare column) or past the last token (the packed group's zeros). */
        int outside = 0;
        for (int i = 0; i < MAX_TOKENS * Y_STRIDE; i++) outside += !isnan(y[i]) && (i / Y_STRIDE >= tokens || i % Y_STRIDE >= rows);
        t.cases++;
        if (outside) {
          t.failed++;
          printf("  FAIL %s gemm_f32 rows=%d tokens=%d cols=%d wrote %d values outside y\n", k->name, rows, tokens, cols, outside);
        }
      }
  report(&t);
}

/*
 * exp_shifted and swiglu against exp in float64 (the vector exp is within about 1.5 ulp of expf):
 * each exp within 2 ulp (2^-22 relative, or 2^-149 for subnormal results); overflow must give
 * infinity and NaN NaN. Arguments span the fast range, the slow branch's (|x| > 87.3, where 2^n
 * needs two factors), subnormal results, overflow and both infinities.
 */
static void test_exp(const herd_kernels *k) {
  static const float SPECIAL[] = {-INFINITY, -120, -104, -103.9f, -100, -87.4f, -87.3f, -80, -10, -1e-8f, -0.0f, 0, 1e-8f, 1, 10, 80, 87.3f, 88.3f, 88.7f, 88.8f, 89, 100, INFINITY, NAN};
  enum { N = 1000 + COUNT(SPECIAL) };
  static float x[N], before[N], gate[N], up[N], out[N];
  tally t = {k->name, "exp_shifted", 0, 0, 0};
  for (int s = 0; s < 2; s++) {
    const float shift = s ? 3.5f : 0;
    for (int i = 0; i < N; i++) before[i] = x[i] = i < COUNT(SPECIAL) ? SPECIAL[i] : (float)uniform(-110, 95);
    k->exp_shifted(x, N, shift);
    for (int i = 0; i < N; i++) {
      const double exact = exp((double)(before[i] - shift));
      char what[40];
      snprintf(what, sizeof what, "exp(%.9g - %g)", before[i], shift);
      if (isnan(exact) || exact > 0x1.fffffep127) {
        t.cases++;
        if (isnan(exact) ? !isnan(x[i]) : x[i] != INFINITY) {
          t.failed++;
          printf("  FAIL %s exp_shifted %s: got %.9g\n", k->name, what, x[i]);
        }
      } else check(&t, what, x[i], exact, exact * 0x1p-22 + 0x1p-149);
    }
  }
  /* The sum over finite terms: each term's error, then float summation's (n + 2)·u·Σ. */
  for (int i = 0; i < N; i++) x[i] = before[i] = (float)uniform(-30, 0);
  const float total = k->exp_shifted(x, N, 0);
  double exact = 0;
  for (int i = 0; i < N; i++) exact += exp((double)before[i]);
  check(&t, "sum", total, exact, exact * (0x1p-22 + (N + 2) * 0x1p-24));
  report(&t);

  tally g = {k->name, "swiglu", 0, 0, 0};
  for (int i = 0; i < N; i++) {
    gate[i] = i < COUNT(SPECIAL) && isfinite(SPECIAL[i]) && SPECIAL[i] >= -88 ? SPECIAL[i] : (float)uniform(-88, 100);
    up[i] = (float)uniform(-4, 4);
  }
  /* From an offset (the pool hands out chunks), so the vector loop starts and ends mid-array. */
  const size_t first = 3, last = N - 2;
  k->swiglu(gate, up, out, first, last);
  for (size_t i = first; i < last; i++) {
    const double result = (double)gate[i] / (1 + exp(-(double)gate[i])) * up[i];
    char what[48];
    snprintf(what, sizeof what, "gate %.9g up %.9g", gate[i], up[i]);
    check(&g, what, out[i], result, fabs(result) * 0x1p-20 + 0x1p-149);
  }
  report(&g);
}

/*
 * The repacked products (repack.h): stored rows made here, repacked by herd_repack_*_r16, then
 * every row × token of the path's product and of the portable one against float64 sums of the
 * stored blocks, on groups of 16 rows and the stored rows after them, one token and tiles of many.
 */
typedef void (*gemm_kernel)(const uint8_t *, size_t, int, const quantized_row *, int, int, float *, int);
typedef struct {
  const char *kernel;
  int bytes, values, sum_group; /* a block's bytes and weights; activation codes per sum */
  void (*make_block)(uint8_t *block, code_fill fill);
  void (*reference)(const uint8_t *block, const int8_t *x, float xd, const int32_t *xs, double *result, double *magnitude);
  int (*repack)(uint8_t *bytes, int rows, int cols);
  gemm_kernel portable;
} repacked_format;

static void make_block32(uint8_t *block, int bytes, code_fill fill) {
  for (int i = 2; i < bytes; i++) block[i] = fill == CODES_RANDOM ? (uint8_t)next_random() : fill == CODES_EXTREME_LOW ? 0x80 : 0x7f;
  put_half(block, block_scale(0));
}
static void make_q8_0(uint8_t *block, code_fill fill) { make_block32(block, Q8_0_BYTES, fill); }
static void make_q4_0(uint8_t *block, code_fill fill) { make_block32(block, Q4_0_BYTES, fill); }
static void make_q4_k(uint8_t *block, code_fill fill) {
  /* Extremes: every code 0 or 15, under random scales and minimums. */
  for (int i = 4; i < Q4_K_BYTES; i++) block[i] = i >= 16 && fill != CODES_RANDOM ? (fill == CODES_EXTREME_LOW ? 0 : 0xff) : (uint8_t)next_random();
  put_half(block, block_scale(0));
  put_half(block + 2, (float)uniform(0, 0.05));
}
static void make_q6_k_random(uint8_t *block, code_fill fill) { make_q6_k(block, 0, fill); }

static void reference_block32(const uint8_t *block, int (*code)(const uint8_t *, int), const int8_t *x, float xd, double *result, double *magnitude) {
  long sum = 0, absolute = 0;
  for (int i = 0; i < QK; i++) sum += code(block, i) * x[i], absolute += labs((long)code(block, i) * x[i]);
  *result += half_of(block) * xd * (double)sum;
  *magnitude += fabs(half_of(block) * xd) * (double)absolute;
}
static void reference_q8_0(const uint8_t *block, const int8_t *x, float xd, const int32_t *xs, double *result, double *magnitude) {
  (void)xs;
  reference_block32(block, q8_0_code, x, xd, result, magnitude);
}
static void reference_q4_0(const uint8_t *block, const int8_t *x, float xd, const int32_t *xs, double *result, double *magnitude) {
  (void)xs;
  reference_block32(block, q4_0_code, x, xd, result, magnitude);
}
static void reference_q6_k_sums(const uint8_t *block, const int8_t *x, float xd, const int32_t *xs, double *result, double *magnitude) {
  (void)xs;
  reference_q6_k(block, x, xd, result, magnitude);
}

static void test_repacked_format(const herd_kernels *k, const repacked_format *f, gemm_kernel mine) {
  static const int ROWS[] = {16, 5, 37}, TOKENS[] = {1, 2, 3, 4, 5, 7, 9}, BLOCKS[] = {1, 2, 3};
  enum { MAX_ROWS = 37, MAX_TOKENS = 9, MAX_ROW_BLOCKS = 3 * 8, Y_STRIDE = MAX_ROWS + 3 };
  static uint8_t stored[MAX_ROWS * MAX_ROW_BLOCKS * Q6_K_BYTES], repacked[MAX_ROWS * MAX_ROW_BLOCKS * Q6_K_BYTES];
  static int8_t x[MAX_TOKENS * MAX_ROW_BLOCKS * QK];
  static float xd[MAX_TOKENS * MAX_ROW_BLOCKS], y[MAX_TOKENS * Y_STRIDE], portable_y[MAX_TOKENS * Y_STRIDE];
  static int32_t xs[MAX_TOKENS * MAX_ROW_BLOCKS * QK / KQ_GROUP];
  tally t = {k->name, f->kernel, 0, 0, 0};
  tally p = {"portable", f->kernel, 0, 0, 0};
  for (int rc = 0; rc < COUNT(ROWS); rc++)
    for (int tc = 0; tc < COUNT(TOKENS); tc++)
      for (int bc = 0; bc < COUNT(BLOCKS); bc++) {
        /* Q8_0 and Q4_0 rows of 8, 16 and 24 blocks of 32; the K-quants' of 1, 2 and 3 super-blocks. */
        const int rows = ROWS[rc], tokens = TOKENS[tc], nb = BLOCKS[bc] * (f->values == QK ? 8 : 1), cols = nb * f->values;
        const size_t row_bytes = (size_t)nb * f->bytes;
        const code_fill fill = (code_fill)((rc + tc + bc) % 3);
        for (int b = 0; b < rows * nb; b++) f->make_block(stored + (size_t)b * f->bytes, fill);
        memcpy(repacked, stored, rows * row_bytes);
        if (!f->repack(repacked, rows, cols)) {
          printf("  FAIL %s: repacking failed\n", f->kernel);
          failures++;
          return;
        }
        random_activations(x, xd, tokens * cols, f->values, 127, 0);
        for (int s = 0; s < tokens * cols / f->sum_group; s++) {
          xs[s] = 0;
          for (int i = 0; i < f->sum_group; i++) xs[s] += x[s * f->sum_group + i];
        }
        const quantized_row activations = {.codes = x, .scales = xd, .sums = xs};
        mine(repacked, row_bytes, rows, &activations, tokens, cols, y, Y_STRIDE);
        f->portable(repacked, row_bytes, rows, &activations, tokens, cols, portable_y, Y_STRIDE);
        for (int r = 0; r < rows; r++)
          for (int token = 0; token < tokens; token++) {
            double result = 0, magnitude = 0;
            for (int b = 0; b < nb; b++)
              f->reference(stored + (size_t)r * row_bytes + (size_t)b * f->bytes, x + (size_t)token * cols + (size_t)b * f->values,
                           xd[token * nb + b], xs + (size_t)(token * cols + b * f->values) / f->sum_group, &result, &magnitude);
            const double tolerance = (cols / QK + 4) * 0x1p-23 * magnitude;
            char what[80];
            snprintf(what, sizeof what, "rows=%d tokens=%d nb=%d row %d token %d", rows, tokens, nb, r, token);
            check(&t, what, y[token * Y_STRIDE + r], result, tolerance);
            check(&p, what, portable_y[token * Y_STRIDE + r], result, tolerance);
          }
      }
  report(&t);
  report(&p);
}

static void test_repacked(const herd_kernels *k) {
  const repacked_format q8_0 = {"gemm_q8_0_r16", Q8_0_BYTES, QK, QK, make_q8_0, reference_q8_0, herd_repack_q8_0_r16, herd_gemm_q8_0_r16_portable};
  const repacked_format q4_0 = {"gemm_q4_0_r16", Q4_0_BYTES, QK, QK, make_q4_0, reference_q4_0, herd_repack_q4_0_r16, herd_gemm_q4_0_r16_portable};
  const repacked_format q4_k = {"gemm_q4_k_r16", Q4_K_BYTES, QK_K, QK, make_q4_k, reference_q4_k, herd_repack_q4_k_r16, herd_gemm_q4_k_r16_portable};
  const repacked_format q6_k = {"gemm_q6_k_r16", Q6_K_BYTES, QK_K, KQ_GROUP, make_q6_k_random, reference_q6_k_sums, herd_repack_q6_k_r16,
                                herd_gemm_q6_k_r16_portable};
  test_repacked_format(k, &q8_0, k->gemm_q8_0_r16);
  test_repacked_format(k, &q4_0, k->gemm_q4_0_r16);
  test_repacked_format(k, &q4_k, k->gemm_q4_k_r16);
  test_repacked_format(k, &q6_k, k->gemm_q6_k_r16);
  if (k->gemm_q8_0_r16 == herd_gemm_q8_0_r16_portable || k->gemm_q4_0_r16 == herd_gemm_q4_0_r16_portable ||
      k->gemm_q4_k_r16 == herd_gemm_q4_k_r16_portable || k->gemm_q6_k_r16 == herd_gemm_q6_k_r16_portable) {
    printf("  FAIL %s has no repacked products of its own\n", k->name);
    failures++;
  }
}

/* The dispatch: the best path on this CPU, the forced ones it runs, and refusals of the rest. */
static void test_dispatch(const char *expected) {
  herd_isa_choice choice;
  herd_choose_isa(NULL, &choice);
  printf("chosen: %s (%s)\n", choice.kernels->name, choice.reason);
  if (strcmp(choice.kernels->name, expected) != 0) {
    printf("  FAIL dispatch chose %s, expected %s\n", choice.kernels->name, expected);
    failures++;
  }
  static const char *const names[] = HERD_ISA_LIST;
  for (int i = 0; i < COUNT(names); i++) {
    char why[160] = "";
    const int supported = herd_isa_supported(names[i], why, sizeof why);
    const int forced = herd_choose_isa(names[i], &choice);
    printf("  %-13s %s\n", names[i], supported ? "runs here" : why);
    /* neon-dotprod runs exactly where it is the expected choice; scalar and neon everywhere. */
    const int should_run = strcmp(names[i], "neon-dotprod") != 0 || strcmp(expected, "neon-dotprod") == 0;
    if (supported != should_run || forced != supported || (forced && strcmp(choice.kernels->name, names[i]) != 0)) {
      printf("  FAIL forcing %s: supported %d, forced %d\n", names[i], supported, forced);
      failures++;
    }
  }
  if (herd_choose_isa("avx2", &choice)) {
    printf("  FAIL an x86 path was accepted on arm64\n");
    failures++;
  } else printf("  avx2 refused: %s\n", choice.reason);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s neon|neon-dotprod (the path this CPU should get)\n", argv[0]);
    return 2;
  }
  test_dispatch(argv[1]);
  static const char *const paths[] = {"neon", "neon-dotprod"};
  for (int p = 0; p < COUNT(paths); p++) {
    herd_isa_choice choice;
    if (!herd_choose_isa(paths[p], &choice)) {
      printf("(%s does not run on this CPU: %s)\n", paths[p], choice.reason);
      continue;
    }
    const herd_kernels *k = choice.kernels;
    test_dot_f32(k);
    test_widening(k, "f16_to_f32", k->f16_to_f32, herd_kernels_scalar.f16_to_f32);
    test_widening(k, "bf16_to_f32", k->bf16_to_f32, herd_kernels_scalar.bf16_to_f32);
    test_dot_16bit(k, "dot_f16", k->dot_f16, 0);
    test_dot_16bit(k, "dot_bf16", k->dot_bf16, 1);
    test_attention(k);
    test_blocks32(k, "dot_q8_0", Q8_0_BYTES, q8_0_code, k->dot_q8_0, herd_kernels_scalar.dot_q8_0);
    test_blocks32(k, "dot_q4_0", Q4_0_BYTES, q4_0_code, k->dot_q4_0, herd_kernels_scalar.dot_q4_0);
    test_q4_k(k);
    const kquant16_format q6_k = {"dot_q6_k", Q6_K_BYTES, make_q6_k, reference_q6_k, k->dot_q6_k, herd_kernels_scalar.dot_q6_k};
    const kquant16_format q5_k = {"dot_q5_k", Q5_K_BYTES, make_q5_k, reference_q5_k, k->dot_q5_k, herd_kernels_scalar.dot_q5_k};
    test_kquant16(k, &q6_k);
    test_kquant16(k, &q5_k);
    const kquant16_format q3_k = {"dot_q3_k", Q3_K_BYTES, make_q3_k, reference_q3_k, k->dot_q3_k, herd_kernels_scalar.dot_q3_k};
    const kquant16_format q2_k = {"dot_q2_k", Q2_K_BYTES, make_q2_k, reference_q2_k, k->dot_q2_k, herd_kernels_scalar.dot_q2_k};
    test_kquant16(k, &q3_k);
    test_kquant16(k, &q2_k);
    test_blocks32_formats(k);
    test_repacked(k);
    test_exp(k);
    test_gemm_f32(k);
  }
  printf(failures ? "%d FAILED\n" : "all passed\n", failures);
  return failures ? 1 : 0;
}
