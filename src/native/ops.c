/* The ops of a Llama layer on the chosen path's inner products, shared out over the thread pool. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "blocks32.h"
#include "kquants.h"
#include "ops.h"
#include "pool.h"
#include "repack.h"

size_t herd_row_bytes(int format, int cols) {
  switch (format) {
    case FMT_F32: return (size_t)cols * 4;
    case FMT_F16:
    case FMT_BF16: return (size_t)cols * 2;
    case FMT_Q8_0:
    case FMT_Q8_0_R16: return cols % QK ? 0 : (size_t)(cols / QK) * Q8_0_BYTES;
    case FMT_Q4_0:
    case FMT_Q4_0_R16: return cols % QK ? 0 : (size_t)(cols / QK) * Q4_0_BYTES;
    case FMT_Q4_K:
    case FMT_Q4_K_R16: return cols % QK_K ? 0 : (size_t)(cols / QK_K) * Q4_K_BYTES;
    case FMT_Q6_K:
    case FMT_Q5_K:
    case FMT_Q3_K:
    case FMT_Q2_K: return cols % QK_K ? 0 : (size_t)(cols / QK_K) * herd_kquant_block_bytes(format);
    case FMT_Q6_K_R16: return cols % QK_K ? 0 : (size_t)(cols / QK_K) * Q6_K_BYTES;
    case FMT_Q5_K_R16: return cols % QK_K ? 0 : (size_t)(cols / QK_K) * Q5_K_BYTES;
    case FMT_IQ4_XS_R16: return herd_blocks32_row_bytes(FMT_IQ4_XS, cols);
    default: return herd_blocks32_row_bytes(format, cols);
  }
}

/* Scale amax/127 and codes round(x/scale), as llama.cpp's quantize_row_q8_0 (with a float scale). */
static float quantize_block(const float *x, int n, int8_t *codes) {
  const float scale = herd_abs_max(x, n) / 127.0f, inverse = scale != 0 ? 1.0f / scale : 0.0f;
  for (int i = 0; i < n; i++) codes[i] = (int8_t)lrintf(x[i] * inverse);
  return scale;
}

void herd_quantize_q8_0(const float *x, int cols, int8_t *codes, float *scales) {
  for (int b = 0; b < cols / QK; b++) scales[b] = quantize_block(x + b * QK, QK, codes + b * QK);
}

/*
 * The sum of each `width` codes: what a weight block's minimum, offset or zero-point multiplies
 * (the tiled kernels, too, take unsigned weight codes and subtract their offset times it).
 */
static void code_sums(const int8_t *codes, int cols, int32_t *sums, int width) {
  for (int j = 0; j < cols / width; j++) {
    int32_t sum = 0;
    for (int i = 0; i < width; i++) sum += codes[j * width + i];
    sums[j] = sum;
  }
}

void herd_quantize_q8_k(const float *x, int cols, int8_t *codes, float *scales, int32_t *sums) {
  for (int b = 0; b < cols / QK_K; b++) scales[b] = quantize_block(x + b * QK_K, QK_K, codes + b * QK_K);
  code_sums(codes, cols, sums, QK);
}

void herd_quantize_q8_k16(const float *x, int cols, int8_t *codes, float *scales, int32_t *sums) {
  for (int b = 0; b < cols / QK_K; b++) scales[b] = quantize_block(x + b * QK_K, QK_K, codes + b * QK_K);
  code_sums(codes, cols, sums, KQ_GROUP);
}

/* Formats whose activations are Q8_K with each 32 codes' sum; the K-quants of kquants.h take each 16's; the others Q8_0 with each 32's. */
static int takes_q8_k(int format) { return format == FMT_Q4_K || format == FMT_Q4_K_R16 || format == FMT_IQ4_XS || format == FMT_IQ4_XS_R16; }

/* Rows per unit of work a thread takes at a time: enough to amortise the shared counter. */
#define ROW_CHUNK 16
/*
 * Decode's products (up to DECODE_TOKENS tokens) read their weights once, from memory: in chunks of
 * 128 rows each thread streams 8 repacked groups in a row instead of hopping between alternate
 * groups, which the prefetchers followed worse. Q4_0 decode on two threads of a Sapphire Rapids
 * host: 16.4–17.1 → 18.5–21.0 tok/s (three runs each, the builds taking turns). Still small enough
 * for a thread that loses its core to leave the rest to the other (1,002 chunks in the 1B head).
 */
#define DECODE_TOKENS 2
#define DECODE_ROW_CHUNK 128
/* Up to this many tokens, 16-bit rows are converted inside the dot; more share one widened copy of each row. */
#define FUSED_16BIT_TOKENS 2
/*
 * From this many tokens F32 rows take the path's gemm_f32, in chunks of F32_ROW_CHUNK rows that
 * stay in L2, over blocks of up to F32_TOKEN_BLOCK tokens whose packed activations (a copy the
 * size of theirs: 12 MiB at 8,192 columns) stay in L2 and L3 while every chunk reads them.
 * 4,096 tokens of 2,048 × 8,192 on one Sapphire Rapids core: blocks of 192–384 tokens 42–47 G
 * products/s, 768 36–43, all at once 36–40.
 */
#define F32_GEMM_TOKENS 3
#define F32_ROW_CHUNK 64
#define F32_TOKEN_BLOCK 384
/*
 * The formats without a tile product of their own (16-bit rows, Q5_K, Q6_K and IQ4_XS as stored,
 * Q3_K, Q2_K, the 32-blocks, int4) take gemm_f32 too from this many tokens: each chunk of WIDENED_ROW_CHUNK rows
 * widened to floats once per block of tokens, in a buffer of the thread's, where one row dot per
 * token unpacks every block again for every token. Where widening pays (one Zen 3 core, 2,048 ×
 * 2,048, weights from memory, G products/s, row dots → widened): F16 12.6 → 16.9 at 8 tokens and
 * 12.3 → 32.4 at 32; at 24, Q5_K 16.6 → 24.5, Q3_K 10.6 → 20.1, Q5_0 14.0 → 16.6–17.3 and
 * IQ4_XS 18.1 → 19.9. Chunks of 32 rows measured as fast as 16 and up to 10 % faster than 64.
 */
#define WIDENED_16BIT_TOKENS 8
#define WIDENED_QUANTIZED_TOKENS 24
#define WIDENED_ROW_CHUNK 32
/* Fewer tokens than this are quantized on the calling thread: a pool dispatch would cost more. */
#define POOL_QUANTIZE_TOKENS 4

typedef struct {
  const herd_kernels *k;
  int format, cols, tokens;
  size_t row_bytes;
  const float *x;
  float *x_groups; /* F32 products on gemm_f32 (takes_f32_gemm): x's tokens packed in groups of k->f32_tokens */
  size_t first_token; /* of the block of tokens this run computes: y's rows from there */
  int8_t *codes;
  int8_t *tiles;  /* the codes in tiles of k->token_tiles tokens, when the product reads them (quantized_row.tiles) */
  float *scales;
  int32_t *sums;
  float *row_floats;  /* per thread: one 16-bit row widened to floats, or a chunk of rows (widens_to_f32) */
  const herd_linear_output *outputs;
  int count;
  atomic_int next_token;  /* activation rows quantized so far */
  atomic_int next_chunk;  /* chunks of ROW_CHUNK rows over the outputs one after another */
} linear_job;

static float quantized_dot(const linear_job *job, const uint8_t *row, int t) {
  const int cols = job->cols;
  const int8_t *codes = job->codes + (size_t)t * cols;
  const float *q8_0_scales = job->scales + (size_t)t * (cols / QK), *q8_k_scales = job->scales + (size_t)t * (cols / QK_K);
  const int32_t *sums = job->sums + (size_t)t * (cols / QK), *sums16 = job->sums + (size_t)t * (cols / KQ_GROUP);
  switch (job->format) {
    case FMT_Q8_0: return job->k->dot_q8_0(row, codes, q8_0_scales, cols / QK);
    case FMT_Q4_0: return job->k->dot_q4_0(row, codes, q8_0_scales, cols / QK);
    case FMT_Q6_K: return job->k->dot_q6_k(row, codes, q8_k_scales, sums16, cols / QK_K);
    case FMT_Q5_K: return job->k->dot_q5_k(row, codes, q8_k_scales, sums16, cols / QK_K);
    case FMT_Q3_K: return job->k->dot_q3_k(row, codes, q8_k_scales, sums16, cols / QK_K);
    case FMT_Q2_K: return job->k->dot_q2_k(row, codes, q8_k_scales, sums16, cols / QK_K);
    case FMT_Q4_1: return job->k->dot_q4_1(row, codes, q8_0_scales, sums, cols / QK);
    case FMT_Q5_0: return job->k->dot_q5_0(row, codes, q8_0_scales, sums, cols / QK);
    case FMT_Q5_1: return job->k->dot_q5_1(row, codes, q8_0_scales, sums, cols / QK);
    case FMT_IQ4_NL: return job->k->dot_iq4_nl(row, codes, q8_0_scales, sums, cols / QK);
    case FMT_IQ4_XS: return job->k->dot_iq4_xs(row, codes, q8_k_scales, sums, cols / QK_K);
    case FMT_INT4_G128: return job->k->dot_int4_g128(row, codes, q8_0_scales, sums, cols / INT4_GROUP);
    default: return job->k->dot_q4_k(row, codes, q8_k_scales, sums, cols / QK_K);
  }
}

herd_gemm_fn herd_gemm_of(const herd_kernels *k, int format) {
  switch (format) {
    case FMT_Q8_0: return k->gemm_q8_0;
    case FMT_Q4_0: return k->gemm_q4_0;
    case FMT_Q4_K: return k->gemm_q4_k;
    case FMT_Q4_0_R16: return k->gemm_q4_0_r16;
    case FMT_Q4_K_R16: return k->gemm_q4_k_r16;
    case FMT_Q6_K_R16: return k->gemm_q6_k_r16;
    case FMT_Q5_K_R16: return k->gemm_q5_k_r16;
    case FMT_IQ4_XS_R16: return k->gemm_iq4_xs_r16;
    case FMT_Q8_0_R16: return k->gemm_q8_0_r16;
    default: return NULL;
  }
}

/* Activation row t as the format's integer products take it (Q8_K with sums of 16 or 32 codes, or Q8_0 with sums of 32). */
static void quantize_token(const linear_job *job, int t) {
  const int cols = job->cols;
  const float *row = job->x + (size_t)t * cols;
  int8_t *codes = job->codes + (size_t)t * cols;
  float *k_scales = job->scales + (size_t)t * (cols / QK_K);
  if (herd_kquant_block_bytes(job->format) || job->format == FMT_Q6_K_R16 || job->format == FMT_Q5_K_R16) {
    herd_quantize_q8_k16(row, cols, codes, k_scales, job->sums + (size_t)t * (cols / KQ_GROUP));
  } else if (takes_q8_k(job->format)) {
    herd_quantize_q8_k(row, cols, codes, k_scales, job->sums + (size_t)t * (cols / QK));
  } else {
    herd_quantize_q8_0(row, cols, codes, job->scales + (size_t)t * (cols / QK));
    code_sums(codes, cols, job->sums + (size_t)t * (cols / QK), QK);
  }
  const int tile_tokens = job->k->token_tiles;
  if (job->tiles != NULL && t < job->tokens / tile_tokens * tile_tokens) {
    int8_t *tile = job->tiles + (size_t)(t / tile_tokens) * tile_tokens * cols + (size_t)(t % tile_tokens) * QK;
    for (int b = 0; b < cols / QK; b++) memcpy(tile + (size_t)b * tile_tokens * QK, codes + (size_t)b * QK, QK);
  }
}

/*
 * Whether the product reads the codes in tiles of tokens too: AMX's tile loads take 16 rows at a
 * fixed stride, and the codes' own stride (a row's length in bytes, 8,192 for down_proj) puts
 * all 16 in one set of the L1 cache, which took AMX's down_proj below the vector path's speed.
 */
static int takes_tiles(const herd_kernels *k, int format, int tokens) {
  return k->token_tiles > 0 && tokens >= k->token_tiles && (format == FMT_Q8_0_R16 || format == FMT_Q4_0_R16 || format == FMT_Q4_K_R16);
}

static void quantize_task(void *context, int thread) {
  (void)thread;
  linear_job *job = context;
  for (int t; (t = atomic_fetch_add(&job->next_token, 1)) < job->tokens;) quantize_token(job, t);
}

/* Formats whose rows the F32 product takes once widened (widens_to_f32): those without a gemm of their own, on paths with gemm_f32. */
static int widens_to_f32(const linear_job *job) {
  const int sixteen_bit = job->format == FMT_F16 || job->format == FMT_BF16;
  return job->format != FMT_F32 && herd_gemm_of(job->k, job->format) == NULL && job->k->gemm_f32 != NULL &&
         job->tokens >= (sixteen_bit ? WIDENED_16BIT_TOKENS : WIDENED_QUANTIZED_TOKENS);
}

static int takes_f32_gemm(const linear_job *job) {
  return (job->format == FMT_F32 && job->k->gemm_f32 != NULL && job->tokens >= F32_GEMM_TOKENS) || widens_to_f32(job);
}

static void dequantize_row(int format, const uint8_t *row, int cols, float *out);

/* One stored row as floats: the 16-bit ones on the path's own conversion. */
static void widen_row(const linear_job *job, const uint8_t *row, float *out) {
  if (job->format == FMT_F16) job->k->f16_to_f32((const uint16_t *)row, out, job->cols);
  else if (job->format == FMT_BF16) job->k->bf16_to_f32((const uint16_t *)row, out, job->cols);
  else dequantize_row(job->format, row, job->cols, out);
}

/* Rows [first, last) as floats in the thread's chunk of row_floats. */
static const float *widened_rows(const linear_job *job, const uint8_t *w, int first, int last, int thread) {
  float *out = job->row_floats + (size_t)thread * WIDENED_ROW_CHUNK * job->cols;
  for (int r = first; r < last; r++) widen_row(job, w + (size_t)r * job->row_bytes, out + (size_t)(r - first) * job->cols);
  return out;
}

static void linear_rows(const linear_job *job, const herd_linear_output *out, int first, int last, int thread) {
  const herd_gemm_fn gemm = herd_gemm_of(job->k, job->format);
  if (gemm != NULL) {
    const quantized_row x = {.codes = job->codes, .scales = job->scales, .sums = job->sums, .tiles = job->tiles};
    gemm(out->w + (size_t)first * job->row_bytes, job->row_bytes, last - first, &x, job->tokens, job->cols, out->y + first, out->rows);
    return;
  }
  if (job->x_groups != NULL) {
    float *y = out->y + job->first_token * out->rows + first;
    const float *w = job->format == FMT_F32 ? (const float *)(out->w + (size_t)first * job->row_bytes) : widened_rows(job, out->w, first, last, thread);
    job->k->gemm_f32(w, last - first, job->x_groups, job->tokens, job->cols, y, out->rows);
    return;
  }
  const int sixteen_bit = job->format == FMT_F16 || job->format == FMT_BF16;
  if (sixteen_bit && job->tokens <= FUSED_16BIT_TOKENS) {
    float (*dot)(const uint16_t *, const float *, int) = job->format == FMT_F16 ? job->k->dot_f16 : job->k->dot_bf16;
    for (int r = first; r < last; r++)
      for (int t = 0; t < job->tokens; t++)
        out->y[(size_t)t * out->rows + r] = dot((const uint16_t *)(out->w + (size_t)r * job->row_bytes), job->x + (size_t)t * job->cols, job->cols);
    return;
  }
  for (int r = first; r < last; r++) {
    const uint8_t *row = out->w + (size_t)r * job->row_bytes;
    const float *floats = (const float *)row;
    if (sixteen_bit) {
      float *widened = job->row_floats + (size_t)thread * job->cols;
      widen_row(job, row, widened);
      floats = widened;
    }
    for (int t = 0; t < job->tokens; t++) {
      out->y[(size_t)t * out->rows + r] = job->format <= FMT_BF16 ? job->k->dot_f32(floats, job->x + (size_t)t * job->cols, job->cols)
                                                                   : quantized_dot(job, row, t);
    }
  }
}

static void linear_task(void *context, int thread) {
  linear_job *job = context;
  const int f32_chunk = job->format == FMT_F32 ? F32_ROW_CHUNK : WIDENED_ROW_CHUNK;
  const int chunk_rows = job->x_groups != NULL ? f32_chunk : job->tokens <= DECODE_TOKENS ? DECODE_ROW_CHUNK : ROW_CHUNK;
  for (;;) {
    int chunk = atomic_fetch_add(&job->next_chunk, 1), i = 0;
    /* The output the chunk falls in: a chunk never spans two weights. */
    for (; i < job->count; i++) {
      const int chunks = (job->outputs[i].rows + chunk_rows - 1) / chunk_rows;
      if (chunk < chunks) break;
      chunk -= chunks;
    }
    if (i == job->count) return;
    const int first = chunk * chunk_rows, rows = job->outputs[i].rows;
    linear_rows(job, &job->outputs[i], first, first + chunk_rows < rows ? first + chunk_rows : rows, thread);
  }
}

/* Group g of the job's tokens into x_groups: column c's tokens side by side, zeros for tokens past the last. */
static void pack_f32_group(void *context, int g) {
  const linear_job *job = context;
  const int width = job->k->f32_tokens, cols = job->cols, first = g * width;
  const int present = job->tokens - first < width ? job->tokens - first : width;
  const float *x = job->x + (size_t)first * cols;
  float *out = job->x_groups + (size_t)first * cols;
  for (int c = 0; c < cols; c++, out += width) {
    int t = 0;
    for (; t < present; t++) out[t] = x[(size_t)t * cols + c];
    for (; t < width; t++) out[t] = 0;
  }
}

/* F32 rows from F32_GEMM_TOKENS on: each block of tokens packed on the pool, then its rows shared out. */
static int f32_gemm_blocks(linear_job *job) {
  const int width = job->k->f32_tokens, block = F32_TOKEN_BLOCK / width * width, tokens = job->tokens;
  const float *x = job->x;
  job->x_groups = malloc((size_t)(tokens < block ? (tokens + width - 1) / width * width : block) * job->cols * sizeof(float));
  if (job->x_groups == NULL) return 0;
  if (job->format != FMT_F32 && (job->row_floats = malloc((size_t)herd_pool_threads() * WIDENED_ROW_CHUNK * job->cols * sizeof(float))) == NULL) {
    free(job->x_groups);
    return 0;
  }
  for (int first = 0; first < tokens; first += block) {
    job->first_token = (size_t)first;
    job->x = x + (size_t)first * job->cols;
    job->tokens = tokens - first < block ? tokens - first : block;
    atomic_store(&job->next_chunk, 0);
    herd_pool_for((job->tokens + width - 1) / width, pack_f32_group, job);
    herd_pool_run(linear_task, job);
  }
  free(job->x_groups);
  free(job->row_floats);
  return 1;
}

int herd_linear_many(const herd_kernels *k, int format, int cols, const float *x, int tokens, const herd_linear_output *outputs, int count) {
  linear_job job = {.k = k, .format = format, .cols = cols, .tokens = tokens, .row_bytes = herd_row_bytes(format, cols), .x = x, .outputs = outputs, .count = count};
  atomic_init(&job.next_token, 0);
  atomic_init(&job.next_chunk, 0);
  if (takes_f32_gemm(&job)) return f32_gemm_blocks(&job);
  void *scratch = NULL;
  if (format == FMT_F16 || format == FMT_BF16) {
    scratch = job.row_floats = malloc((size_t)herd_pool_threads() * cols * sizeof(float));
  } else if (format >= FMT_Q8_0) {
    const size_t values = (size_t)tokens * cols, tiled = takes_tiles(k, format, tokens) ? values : 0;
    /* Codes, then up to one scale per 32 values, then up to one sum per 16 (the K-quants'), then the tiled copy. */
    scratch = malloc(values + values / QK * sizeof(float) + values / KQ_GROUP * sizeof(int32_t) + tiled);
    if (scratch != NULL) {
      job.codes = scratch;
      job.scales = (float *)(job.codes + values);
      job.sums = (int32_t *)(job.scales + values / QK);
      job.tiles = tiled ? (int8_t *)(job.sums + values / KQ_GROUP) : NULL;
      if (tokens < POOL_QUANTIZE_TOKENS) quantize_task(&job, 0);
      else herd_pool_run(quantize_task, &job);
    }
  }
  if (format != FMT_F32 && scratch == NULL) return 0;
  herd_pool_run(linear_task, &job);
  free(scratch);
  return 1;
}

int herd_linear(const herd_kernels *k, int format, const uint8_t *w, int rows, int cols, const float *x, int tokens, float *y) {
  const herd_linear_output out = {.w = w, .rows = rows, .y = y};
  return herd_linear_many(k, format, cols, x, tokens, &out, 1);
}

static void dequantize_row(int format, const uint8_t *row, int cols, float *out) {
  switch (format) {
    case FMT_F32: memcpy(out, row, (size_t)cols * 4); return;
    case FMT_F16: herd_kernels_scalar.f16_to_f32((const uint16_t *)row, out, cols); return;
    case FMT_BF16: herd_kernels_scalar.bf16_to_f32((const uint16_t *)row, out, cols); return;
    case FMT_Q8_0:
      for (int b = 0; b < cols / QK; b++, row += Q8_0_BYTES) {
        const float d = herd_half_to_float((uint16_t)(row[0] | row[1] << 8));
        for (int i = 0; i < QK; i++) out[b * QK + i] = d * (float)(int8_t)row[2 + i];
      }
      return;
    case FMT_Q4_0:
      for (int b = 0; b < cols / QK; b++, row += Q4_0_BYTES) {
        const float d = herd_half_to_float((uint16_t)(row[0] | row[1] << 8));
        for (int i = 0; i < QK / 2; i++) {
          out[b * QK + i] = d * (float)((row[2 + i] & 0xf) - 8);
          out[b * QK + i + QK / 2] = d * (float)((row[2 + i] >> 4) - 8);
        }
      }
      return;
    case FMT_Q6_K:
    case FMT_Q5_K:
    case FMT_Q3_K:
    case FMT_Q2_K: herd_dequantize_kquant_row(format, row, cols, out); return;
    case FMT_Q4_K:
      for (int b = 0; b < cols / QK_K; b++, row += Q4_K_BYTES) {
        const float d = herd_half_to_float((uint16_t)(row[0] | row[1] << 8)), dmin = herd_half_to_float((uint16_t)(row[2] | row[3] << 8));
        for (int j = 0; j < 8; j++) {
          uint8_t sc, m;
          herd_q4k_scale_min(j, row + 4, &sc, &m);
          const uint8_t *codes = row + 16 + 32 * (j / 2);
          for (int i = 0; i < QK; i++) out[b * QK_K + j * QK + i] = d * sc * (float)((codes[i] >> ((j & 1) * 4)) & 0xf) - dmin * m;
        }
      }
      return;
    default: herd_blocks32_dequantize_row(format, row, cols, out);
  }
}

/* Row `id` of a repacked table: each block of its group unpacked to the stored block, then dequantized. */
static void dequantize_repacked_row(int format, const uint8_t *table, size_t row_bytes, int id, int cols, float *out) {
  const int stored = herd_r16_stored_format(format), block_cols = stored == FMT_Q4_0 || stored == FMT_Q8_0 ? QK : QK_K;
  const size_t block_bytes = row_bytes / (size_t)(cols / block_cols);
  const uint8_t *group = table + (size_t)(id - id % REPACK_ROWS) * row_bytes;
  uint8_t block[Q6_K_BYTES];
  for (int b = 0; b < cols / block_cols; b++) {
    herd_r16_unpack_row(format, group + (size_t)b * REPACK_ROWS * block_bytes, id % REPACK_ROWS, block);
    dequantize_row(stored, block, block_cols, out + (size_t)b * block_cols);
  }
}

void herd_embedding(int format, const uint8_t *table, int rows, int cols, const int32_t *ids, int count, float *out) {
  const size_t row_bytes = herd_row_bytes(format, cols);
  const int grouped = rows / REPACK_ROWS * REPACK_ROWS, stored = herd_r16_stored_format(format);
  for (int i = 0; i < count; i++) {
    float *row = out + (size_t)i * cols;
    if (stored >= 0 && ids[i] < grouped) dequantize_repacked_row(format, table, row_bytes, ids[i], cols, row);
    else dequantize_row(stored >= 0 ? stored : format, table + (size_t)ids[i] * row_bytes, cols, row);
  }
}

void herd_rmsnorm(const float *x, const float *w, float *y, int dim, int rows, float eps) {
  for (int t = 0; t < rows; t++, x += dim, y += dim) {
    float squares = 0;
    for (int i = 0; i < dim; i++) squares += x[i] * x[i];
    const float inverse = 1.0f / sqrtf(squares / (float)dim + eps);
    for (int i = 0; i < dim; i++) y[i] = x[i] * inverse * w[i];
  }
}

void herd_rope(float *x, const float *cos, const float *sin, int rows, int heads, int head_dim) {
  const int half = head_dim / 2;
  for (int t = 0; t < rows; t++) {
    const float *c = cos + (size_t)t * head_dim, *s = sin + (size_t)t * head_dim;
    for (int h = 0; h < heads; h++) {
      float *head = x + ((size_t)t * heads + h) * head_dim;
      for (int i = 0; i < half; i++) {
        const float first = head[i], second = head[i + half];
        head[i] = first * c[i] - second * s[i];
        head[i + half] = second * c[i + half] + first * s[i + half];
      }
    }
  }
}

/* Values a pool item of SwiGLU takes; a decode step's 8,192 stay on the calling thread. */
#define SWIGLU_CHUNK 16384

typedef struct {
  const herd_kernels *k;
  const float *gate, *up;
  float *out;
  size_t n;
} swiglu_job;

static void swiglu_item(void *context, int item) {
  const swiglu_job *job = context;
  const size_t first = (size_t)item * SWIGLU_CHUNK;
  job->k->swiglu(job->gate, job->up, job->out, first, first + SWIGLU_CHUNK < job->n ? first + SWIGLU_CHUNK : job->n);
}

/* Elementwise, so sharing it out changes no value; a prompt's (tokens × 8,192) is worth the pool. */
void herd_swiglu(const herd_kernels *k, const float *gate, const float *up, float *out, size_t n) {
  if (n <= SWIGLU_CHUNK) {
    k->swiglu(gate, up, out, 0, n);
    return;
  }
  swiglu_job job = {.k = k, .gate = gate, .up = up, .out = out, .n = n};
  herd_pool_for((int)((n + SWIGLU_CHUNK - 1) / SWIGLU_CHUNK), swiglu_item, &job);
}

void herd_add(const float *a, const float *b, float *out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

static void cache_write(const herd_cache_layer *cache, void *base, const float *src, int rows, int start) {
  const int width = cache->kv_heads * cache->head_dim;
  for (int t = 0; t < rows; t++) {
    for (int g = 0; g < cache->kv_heads; g++) {
      const float *from = src + (size_t)t * width + (size_t)g * cache->head_dim;
      const size_t at = ((size_t)g * cache->capacity + start + t) * cache->head_dim;
      if (!cache->f16) memcpy((float *)base + at, from, (size_t)cache->head_dim * 4);
      else for (int i = 0; i < cache->head_dim; i++) ((uint16_t *)base)[at + i] = herd_float_to_half(from[i]);
    }
  }
}

typedef struct {
  const herd_kernels *k;
  const herd_cache_layer *cache;
  const float *q;
  float *out;
  int rows, start, heads;
  float *scratch;  /* per thread: attention_scratch(job) floats */
  atomic_int next;
} attention_job;

/* Cached rows an F16 cache widens at a time: enough for whole vector steps, and a small scratch per thread. */
#define WIDENED_ROWS 64

/* Rows [p, p + n) of kv group g's keys or values as floats (an F16 cache's widened into `widened`). */
static const float *cached_rows(const attention_job *job, const void *base, int g, int p, int n, float *widened) {
  const herd_cache_layer *cache = job->cache;
  const size_t at = ((size_t)g * cache->capacity + p) * cache->head_dim;
  if (!cache->f16) return (const float *)base + at;
  job->k->f16_to_f32((const uint16_t *)base + at, widened, n * cache->head_dim);
  return widened;
}

/*
 * The query heads of kv group g in row t, together: softmax(q·Kᵀ/√d) over positions 0..start+t,
 * times V. The path's attention kernels take the group's heads at once, so each cached key and
 * value row is read (and an F16 one widened) once for all of them.
 */
static void attend_group(const attention_job *job, int t, int g, float *scores, float *widened) {
  const herd_cache_layer *cache = job->cache;
  const herd_kernels *k = job->k;
  const int d = cache->head_dim, visible = job->start + t + 1, group = job->heads / cache->kv_heads;
  const int span = cache->f16 ? WIDENED_ROWS : visible; /* an F32 cache's rows are read where they are, in one call */
  const size_t stride = (size_t)job->start + job->rows; /* one head's scores */
  const float *queries = job->q + ((size_t)t * job->heads + (size_t)g * group) * d;
  for (int p = 0; p < visible; p += span) {
    const int n = visible - p < span ? visible - p : span;
    k->attend_scores(cached_rows(job, cache->keys, g, p, n, widened), n, d, queries, group, 1.0f / sqrtf((float)d), scores + p, stride);
  }
  for (int j = 0; j < group; j++) {
    float *head = scores + j * stride, maximum = -INFINITY;
    for (int p = 0; p < visible; p++) maximum = head[p] > maximum ? head[p] : maximum; /* not fmaxf: as in herd_abs_max */
    const float inverse = 1.0f / k->exp_shifted(head, visible, maximum);
    for (int p = 0; p < visible; p++) head[p] *= inverse;
  }
  float *results = job->out + ((size_t)t * job->heads + (size_t)g * group) * d;
  memset(results, 0, (size_t)group * d * 4);
  for (int p = 0; p < visible; p += span) {
    const int n = visible - p < span ? visible - p : span;
    k->attend_values(cached_rows(job, cache->values, g, p, n, widened), n, d, scores + p, stride, group, results);
  }
}

/* Per thread: each of a group's heads' scores over the visible positions, then an F16 cache's widened rows. */
static size_t attention_scratch(const attention_job *job) {
  return (size_t)(job->heads / job->cache->kv_heads) * (job->start + job->rows) + (size_t)WIDENED_ROWS * job->cache->head_dim;
}

static void attention_task(void *context, int thread) {
  attention_job *job = context;
  const size_t per_thread = attention_scratch(job);
  float *scores = job->scratch + (size_t)thread * per_thread, *widened = scores + per_thread - (size_t)WIDENED_ROWS * job->cache->head_dim;
  const int groups = job->cache->kv_heads;
  for (;;) {
    const int item = atomic_fetch_add(&job->next, 1);
    if (item >= job->rows * groups) return;
    attend_group(job, item / groups, item % groups, scores, widened);
  }
}

int herd_attention(const herd_kernels *k, const herd_cache_layer *cache, const float *q, const float *kr, const float *vr,
                   float *out, int rows, int start, int heads) {
  cache_write(cache, cache->keys, kr, rows, start);
  cache_write(cache, cache->values, vr, rows, start);
  attention_job job = {.k = k, .cache = cache, .q = q, .out = out, .rows = rows, .start = start, .heads = heads};
  atomic_init(&job.next, 0);
  job.scratch = malloc((size_t)herd_pool_threads() * attention_scratch(&job) * sizeof(float));
  if (job.scratch == NULL) return 0;
  herd_pool_run(attention_task, &job);
  free(job.scratch);
  return 1;
}
