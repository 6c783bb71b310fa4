/*
 * GGUF block quantizers on the thread pool. Every value is a float and every operation rounds to
 * float in the order llama.cpp's reference code (quantize_row_*_ref, make_qx_quants,
 * make_qkx2_quants in ggml-quants.c) and herd's TypeScript ports compute it: the chosen codes flip
 * on exact ties, so the bytes are equal only if the roundings are. That needs no FMA contraction
 * (-std=c11 turns GCC's off) and no fast-math. The K-quants' scale searches, where the time goes,
 * are in quantize_search.h, vectorized across groups.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include "herd_native.h"
#include "pool.h"
#include "quantize.h"

/* Fills one block's bytes from its weights (the K-quants with the given scale searches). */
typedef void (*block_writer)(const herd_scale_searches *searches, const float *x, uint8_t *out);

/*
 * ggml's nearest_int (a float plus 1.5·2^23 rounds half to even), clamped to low..high. Beyond
 * |x| ≥ 2^22, where ggml's trick stops working, rintf rounds the same way, as the TypeScript does.
 */
static inline int nearest_clamped(float x, int low, int high) {
  const float r = fabsf(x) < 4194304.0f ? (x + 12582912.0f) - 12582912.0f : rintf(x);
  if (r > (float)high) return high;
  if (r >= (float)low) return (int)r;
  return low; /* below low, or NaN */
}

static inline int clamp_int(int l, int low, int high) { return l < low ? low : l > high ? high : l; }

/* The value of largest magnitude (the first of equals), which Q4_0 and Q5_0 scale by. */
static float extreme_of(const float *x, int n) {
  float extreme = 0;
  for (int i = 0; i < n; i++)
    if (fabsf(x[i]) > fabsf(extreme)) extreme = x[i];
  return extreme;
}

/* ---- Blocks of 32: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 ---- */

static void write_q8_0(const herd_scale_searches *unused, const float *x, uint8_t *out) {
  (void)unused;
  const float d = herd_abs_max(x, QK) / 127, inverse = d != 0 ? 1.0f / d : 0.0f;
  herd_put_half(out, d);
  for (int i = 0; i < QK; i++) out[2 + i] = (uint8_t)(int8_t)roundf(x[i] * inverse);
}

static void write_q4_0(const herd_scale_searches *unused, const float *x, uint8_t *out) {
  (void)unused;
  const float d = extreme_of(x, QK) / -8, inverse = d != 0 ? 1.0f / d : 0.0f;
  herd_put_half(out, d);
  for (int j = 0; j < 16; j++) {
    const int low = (int)(x[j] * inverse + 8.5f), high = (int)(x[j + 16] * inverse + 8.5f);
    out[2 + j] = (uint8_t)((low < 15 ? low : 15) | (high < 15 ? high : 15) << 4);
  }
}

/* Q4_1 and Q5_1's affine fit: f16 d = (max − min) / levels and f16 m = min, then codes ⌊(x − min)/d + ½⌋. */
static void affine_fit(const float *x, int levels, uint8_t *out, int *codes) {
  float min = x[0], max = x[0];
  for (int i = 1; i < QK; i++) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
  }
  const float d = (max - min) / (float)levels, inverse = d != 0 ? 1.0f / d : 0.0f;
  herd_put_half(out, d);
  herd_put_half(out + 2, min);
  for (int i = 0; i < QK; i++) codes[i] = (int)((x[i] - min) * inverse + 0.5f);
}

/* Element j's low 4 bits in the low nibble of byte j, element j + 16's in the high nibble. */
static void pack_nibbles(const int *codes, uint8_t *qs) {
  for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((codes[j] & 0xf) | (codes[j + 16] & 0xf) << 4);
}

/* Bit i of the little-endian u32 is bit 4 of element i's code. */
static void put_fifth_bits(const int *codes, uint8_t *at) {
  uint32_t qh = 0;
  for (int i = 0; i < QK; i++) qh |= (uint32_t)((codes[i] >> 4) & 1) << i;
  for (int b = 0; b < 4; b++) at[b] = (uint8_t)(qh >> (8 * b));
}

static void write_q4_1(const herd_scale_searches *unused, const float *x, uint8_t *out) {
  (void)unused;
  int codes[QK];
  affine_fit(x, 15, out, codes);
  for (int i = 0; i < QK; i++) codes[i] = clamp_int(codes[i], 0, 15);
  pack_nibbles(codes, out + 4);
}

static void write_q5_0(const herd_scale_searches *unused, const float *x, uint8_t *out) {
  (void)unused;
  const float d = extreme_of(x, QK) / -16, inverse = d != 0 ? 1.0f / d : 0.0f;
  herd_put_half(out, d);
  int codes[QK];
  for (int i = 0; i < QK; i++) codes[i] = clamp_int((int)(x[i] * inverse + 16.5f), 0, 31);
  put_fifth_bits(codes, out + 2);
  pack_nibbles(codes, out + 6);
}

static void write_q5_1(const herd_scale_searches *unused, const float *x, uint8_t *out) {
  (void)unused;
  int codes[QK];
  /* No clamp, as llama.cpp: the code is at most 31 up to rounding. */
  affine_fit(x, 31, out, codes);
  put_fifth_bits(codes, out + 4);
  pack_nibbles(codes, out + 8);
}

/* ---- Super-blocks of 256: Q4_K, Q5_K (scale and min per 32), Q6_K (signed scale per 16) ---- */

static const herd_scale_min_search Q4_K_SEARCH = {15, -1.0f, 0.1f, 20, QK, 0};
static const herd_scale_min_search Q5_K_SEARCH = {31, -0.5f, 0.1f, 15, QK, 0};

/*
 * What Q4_K and Q5_K share: each sub-block of 32 fitted (weights rms + |x|), f16 d and dmin and the
 * 12 bytes of 6-bit scales and mins written to header[0..15], the final codes 0..nmax to codes.
 */
static void fit_scale_min_super_block(const herd_scale_searches *searches, const float *x, const herd_scale_min_search *s, uint8_t *header, uint8_t *codes) {
  float scales[8], mins[8], max_scale = 0, max_min = 0;
  searches->fit_scale_min(s, x, scales, mins, codes);
  for (int j = 0; j < 8; j++) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inverse_scale = max_scale > 0 ? 63 / max_scale : 0, inverse_min = max_min > 0 ? 63 / max_min : 0;
  uint8_t *packed = header + 4;
  memset(packed, 0, 12);
  for (int j = 0; j < 8; j++) {
    const int ls = nearest_clamped(inverse_scale * scales[j], 0, 63), lm = nearest_clamped(inverse_min * mins[j], 0, 63);
    if (j < 4) {
      packed[j] = (uint8_t)ls;
      packed[j + 4] = (uint8_t)lm;
    } else {
      packed[j + 4] = (uint8_t)((ls & 0xf) | (lm & 0xf) << 4);
      packed[j - 4] |= (uint8_t)((ls >> 4) << 6);
      packed[j] |= (uint8_t)((lm >> 4) << 6);
    }
  }
  herd_put_half(header, max_scale / 63);
  herd_put_half(header + 2, max_min / 63);
  const float d = herd_half_to_float((uint16_t)(header[0] | header[1] << 8));
  const float dmin = herd_half_to_float((uint16_t)(header[2] | header[3] << 8));
  for (int j = 0; j < 8; j++) {
    uint8_t sc, m;
    herd_q4k_scale_min(j, packed, &sc, &m);
    const float scale = d * sc;
    /* A sub-block whose scale rounds to 0 keeps make_qkx2_quants' codes, as llama.cpp does. */
    if (scale == 0) continue;
    const float offset = dmin * m;
    for (int i = j * QK; i < (j + 1) * QK; i++) codes[i] = (uint8_t)nearest_clamped((x[i] + offset) / scale, 0, s->nmax);
  }
}

static void write_q4_k(const herd_scale_searches *searches, const float *x, uint8_t *out) {
  uint8_t codes[QK_K];
  fit_scale_min_super_block(searches, x, &Q4_K_SEARCH, out, codes);
  uint8_t *qs = out + 16;
  for (int quarter = 0; quarter < 4; quarter++)
    for (int l = 0; l < 32; l++) qs[quarter * 32 + l] = (uint8_t)(codes[quarter * 64 + l] | codes[quarter * 64 + 32 + l] << 4);
}

/* Each 64 weights: low nibbles of the first 32 and high of the next 32; their 5th bits at bits 2n, 2n + 1 of qh[j]. */
static void write_q5_k(const herd_scale_searches *searches, const float *x, uint8_t *out) {
  uint8_t codes[QK_K];
  fit_scale_min_super_block(searches, x, &Q5_K_SEARCH, out, codes);
  uint8_t *qh = out + 16, *qs = out + 48;
  memset(qh, 0, 32);
  for (int n = 0; n < QK_K / 64; n++) {
    for (int j = 0; j < 32; j++) {
      const uint8_t low = codes[n * 64 + j], high = codes[n * 64 + 32 + j];
      qs[n * 32 + j] = (uint8_t)((low & 0xf) | (high & 0xf) << 4);
      qh[j] |= (uint8_t)((low >> 4) << (2 * n) | (high >> 4) << (2 * n + 1));
    }
  }
}

/*
 * Q6_K, 210 bytes: ql[128], qh[64], 16 int8 scales, f16 d. Each 128 weights w[0..127] fill 64
 * bytes of ql and 32 of qh: ql[l] = w[l] | w[l+64] << 4, ql[l+32] = w[l+32] | w[l+96] << 4 (low 4
 * bits), qh[l] = the high 2 bits of w[l], w[l+32], w[l+64], w[l+96] at bits 0, 2, 4, 6.
 */
static void write_q6_k(const herd_scale_searches *searches, const float *x, uint8_t *out) {
  uint8_t codes[QK_K];
  float scales[16], max_scale = 0, max_abs_scale = 0;
  searches->fit_signed_scales(32, x, scales, codes);
  for (int ib = 0; ib < 16; ib++) {
    if (fabsf(scales[ib]) > max_abs_scale) {
      max_abs_scale = fabsf(scales[ib]);
      max_scale = scales[ib];
    }
  }
  memset(out, 0, 210);
  if (max_abs_scale < GROUP_MAX_EPS) return; /* all zeros, d = 0 */
  const float inverse = -128 / max_scale;
  herd_put_half(out + 208, 1 / inverse);
  const float d = herd_half_to_float((uint16_t)(out[208] | out[209] << 8));
  int8_t *int_scales = (int8_t *)(out + 192);
  for (int ib = 0; ib < 16; ib++) int_scales[ib] = (int8_t)nearest_clamped(inverse * scales[ib], -128, 127);
  for (int ib = 0; ib < 16; ib++) {
    const float step = d * int_scales[ib];
    /* A group whose scale rounds to 0 keeps make_qx_quants' codes, as llama.cpp does. */
    if (step == 0) continue;
    for (int i = ib * 16; i < ib * 16 + 16; i++) codes[i] = (uint8_t)(nearest_clamped(x[i] / step, -32, 31) + 32);
  }
  uint8_t *ql = out, *qh = out + 128;
  for (int half = 0; half < 2; half++) {
    const uint8_t *w = codes + half * 128;
    for (int l = 0; l < 32; l++) {
      ql[half * 64 + l] = (uint8_t)((w[l] & 0xf) | (w[l + 64] & 0xf) << 4);
      ql[half * 64 + l + 32] = (uint8_t)((w[l + 32] & 0xf) | (w[l + 96] & 0xf) << 4);
      qh[half * 32 + l] = (uint8_t)((w[l] >> 4) | (w[l + 32] >> 4) << 2 | (w[l + 64] >> 4) << 4 | (w[l + 96] >> 4) << 6);
    }
  }
}

/* ---- The table and the threads ---- */

typedef struct {
  int type, block, bytes;
  block_writer write;
} quant_type;

static const quant_type TYPES[] = {
    {GGML_Q8_0, QK, 34, write_q8_0},     {GGML_Q4_0, QK, 18, write_q4_0},     {GGML_Q4_1, QK, 20, write_q4_1},
    {GGML_Q5_0, QK, 22, write_q5_0},     {GGML_Q5_1, QK, 24, write_q5_1},     {GGML_Q4_K, QK_K, 144, write_q4_k},
    {GGML_Q5_K, QK_K, 176, write_q5_k},  {GGML_Q6_K, QK_K, 210, write_q6_k},
    {GGML_Q2_K, QK_K, 84, herd_write_q2_k},     {GGML_Q3_K, QK_K, 110, herd_write_q3_k},
    {GGML_IQ4_NL, QK, 18, herd_write_iq4_nl},   {GGML_IQ4_XS, QK_K, 136, herd_write_iq4_xs},
};

static const quant_type *type_of(int type) {
  for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
    if (TYPES[i].type == type) return &TYPES[i];
  return NULL;
}

size_t herd_quantized_row_bytes(int type, int cols) {
  const quant_type *t = type_of(type);
  return t == NULL || cols <= 0 || cols % t->block ? 0 : (size_t)(cols / t->block) * t->bytes;
}

/* Weights a thread takes at a time: enough to amortise the shared counter, few enough to balance. */
#define CHUNK_WEIGHTS 8192

typedef struct {
  const quant_type *t;
  const herd_scale_searches *searches;
  const float *x;
  uint8_t *out;
  size_t blocks, chunk;
  atomic_size_t next;
} quantize_job;

/* Rows are whole blocks, so the matrix is one run of blocks, shared out in chunks. */
static void quantize_task(void *context, int thread) {
  (void)thread;
  quantize_job *job = context;
  for (;;) {
    const size_t first = atomic_fetch_add(&job->next, job->chunk);
    if (first >= job->blocks) return;
    const size_t last = first + job->chunk < job->blocks ? first + job->chunk : job->blocks;
    for (size_t b = first; b < last; b++) job->t->write(job->searches, job->x + b * job->t->block, job->out + b * job->t->bytes);
  }
}

int herd_quantize_rows(const herd_kernels *k, int type, const float *x, int rows, int cols, uint8_t *out) {
  const quant_type *t = type_of(type);
  if (t == NULL || herd_quantized_row_bytes(type, cols) == 0) return 0;
  const herd_scale_searches *searches = &herd_scale_searches_portable;
#if defined(__x86_64__)
  /* Every x86 SIMD path has AVX2. (By name: dispatch.c hands out a completed copy of the path's table.) */
  if (strcmp(k->name, "scalar") != 0) searches = &herd_scale_searches_avx2;
#else
  (void)k;
#endif
  quantize_job job = {.t = t, .searches = searches, .x = x, .out = out, .blocks = (size_t)rows * (cols / t->block), .chunk = CHUNK_WEIGHTS / t->block};
  atomic_init(&job.next, 0);
  herd_pool_run(quantize_task, &job);
  return 1;
}
