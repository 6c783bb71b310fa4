/*
 * The arm64 paths: AArch64 Advanced SIMD (NEON), which every AArch64 CPU has, in two tables that
 * differ only in the byte dot product of the integer kernels. `neon-dotprod` uses SDOT
 * (vdotq_s32, the Armv8.2 dot-product extension: four byte products summed into each int32
 * lane), compiled for that extension by a target attribute and chosen only when the CPU reports
 * it (dispatch.c, AT_HWCAP's HWCAP_ASIMDDP); `neon` multiplies bytes to int16 (SMULL, SMLAL2)
 * and adds pairs into int32 lanes (SADALP), which every AArch64 CPU runs. The kernels are written
 * once (always inlined) and take the byte dot product as a constant argument, so each table gets
 * its own copy with the product inlined. Kernels left out come from the scalar path.
 */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include <string.h>
#include "herd_native.h"
#include "blocks32.h"
#include "kquants.h"
#include "repack.h"

/*
 * GCC compiles SDOT into functions with a target attribute; arm_neon.h declares vdotq_s32 for
 * armv8.2-a+dotprod, and GCC inlines it only into a function of that target or wider. Clang
 * before LLVM 19 declares it only when the whole file targets dotprod (Apple's clang does for
 * Apple silicon), so a clang build without that has no neon-dotprod path (dispatch.c refuses it).
 */
#if defined(__clang__)
#define HERD_DOTPROD
#else
#define HERD_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#if defined(__clang__) && !defined(__ARM_FEATURE_DOTPROD)
#define HERD_SDOT_COMPILED 0
#else
#define HERD_SDOT_COMPILED 1
#endif
const int herd_neon_sdot_compiled = HERD_SDOT_COMPILED;
#define HERD_INLINE static inline __attribute__((always_inline))

static inline float half_scale(const uint8_t *p) {
  __fp16 h;
  memcpy(&h, p, 2);
  return (float)h;
}

static float dot_f32(const float *a, const float *b, int n) {
  float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
    s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
  }
  for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
  float total = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
  for (; i < n; i++) total += a[i] * b[i];
  return total;
}

static void f16_to_f32(const uint16_t *src, float *dst, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    float16x8_t halves = vreinterpretq_f16_u16(vld1q_u16(src + i));
    vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(halves)));
    vst1q_f32(dst + i + 4, vcvt_high_f32_f16(halves));
  }
  for (; i < n; i++) dst[i] = half_scale((const uint8_t *)(src + i));
}

static void bf16_to_f32(const uint16_t *src, float *dst, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    uint16x8_t halves = vld1q_u16(src + i);
    vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(halves), 16)));
    vst1q_f32(dst + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(halves, 16)));
  }
  for (; i < n; i++) {
    uint32_t bits = (uint32_t)src[i] << 16;
    memcpy(&dst[i], &bits, 4);
  }
}

/* A stored F16 or BF16 row times float activations, widened four at a time on the way (decode's one or two tokens). */
static float dot_f16(const uint16_t *w, const float *x, int n) {
  float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const float16x8_t halves = vreinterpretq_f16_u16(vld1q_u16(w + i));
    s0 = vfmaq_f32(s0, vcvt_f32_f16(vget_low_f16(halves)), vld1q_f32(x + i));
    s1 = vfmaq_f32(s1, vcvt_high_f32_f16(halves), vld1q_f32(x + i + 4));
  }
  float total = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; i++) total += half_scale((const uint8_t *)(w + i)) * x[i];
  return total;
}

static float dot_bf16(const uint16_t *w, const float *x, int n) {
  float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint16x8_t halves = vld1q_u16(w + i);
    s0 = vfmaq_f32(s0, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(halves), 16)), vld1q_f32(x + i));
    s1 = vfmaq_f32(s1, vreinterpretq_f32_u32(vshll_high_n_u16(halves, 16)), vld1q_f32(x + i + 4));
  }
  float total = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; i++) {
    const uint32_t bits = (uint32_t)w[i] << 16;
    float value;
    memcpy(&value, &bits, 4);
    total += value * x[i];
  }
  return total;
}

/*
 * Attention's scores: four key rows at a time per query head, in four vector accumulators summed
 * across lanes together by two pairwise adds (one vector of four scores, no horizontal sum per
 * position); rows past the last four take dot_f32.
 */
static void attend_scores(const float *keys, int n, int d, const float *queries, int heads, float scale, float *scores, size_t stride) {
  const int wide = d & ~3;
  int p = 0;
  for (; p + 4 <= n; p += 4) {
    const float *rows = keys + (size_t)p * d;
    for (int j = 0; j < heads; j++) {
      const float *q = queries + (size_t)j * d;
      float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
      for (int i = 0; i < wide; i += 4) {
        const float32x4_t qv = vld1q_f32(q + i);
        for (int r = 0; r < 4; r++) acc[r] = vfmaq_f32(acc[r], vld1q_f32(rows + (size_t)r * d + i), qv);
      }
      float tail[4] = {0, 0, 0, 0};
      for (int i = wide; i < d; i++)
        for (int r = 0; r < 4; r++) tail[r] += rows[(size_t)r * d + i] * q[i];
      const float32x4_t dots = vaddq_f32(vpaddq_f32(vpaddq_f32(acc[0], acc[1]), vpaddq_f32(acc[2], acc[3])), vld1q_f32(tail));
      vst1q_f32(scores + j * stride + p, vmulq_n_f32(dots, scale));
    }
  }
  for (; p < n; p++)
    for (int j = 0; j < heads; j++) scores[j * stride + p] = dot_f32(keys + (size_t)p * d, queries + (size_t)j * d, d) * scale;
}

/*
 * Columns [c, c + 4·V) of H heads' weighted sums over all n rows, in H × V accumulators: each
 * value vector is loaded once for the H heads, and out is read and written once per call instead
 * of once per row.
 */
HERD_INLINE void values_columns(const float *values, int n, int d, const float *weights, size_t stride, float *out, int c, const int H, const int V) {
  float32x4_t acc[4][4];
  for (int h = 0; h < H; h++)
    for (int v = 0; v < V; v++) acc[h][v] = vld1q_f32(out + (size_t)h * d + c + 4 * v);
  for (int p = 0; p < n; p++) {
    float32x4_t row[4];
    for (int v = 0; v < V; v++) row[v] = vld1q_f32(values + (size_t)p * d + c + 4 * v);
    for (int h = 0; h < H; h++) {
      const float weight = weights[h * stride + p];
      for (int v = 0; v < V; v++) acc[h][v] = vfmaq_n_f32(acc[h][v], row[v], weight);
    }
  }
  for (int h = 0; h < H; h++)
    for (int v = 0; v < V; v++) vst1q_f32(out + (size_t)h * d + c + 4 * v, acc[h][v]);
}

/* Heads four at a time, columns sixteen at a time (then four); the last d mod 4 columns as scalars. */
static void attend_values(const float *values, int n, int d, const float *weights, size_t stride, int heads, float *out) {
  for (int j = 0; j < heads; j += 4) {
    const float *w = weights + j * stride;
    float *sums = out + (size_t)j * d;
    const int h = heads - j < 4 ? heads - j : 4;
    int c = 0;
    for (; c + 16 <= d; c += 16) {
      switch (h) {
        case 1: values_columns(values, n, d, w, stride, sums, c, 1, 4); break;
        case 2: values_columns(values, n, d, w, stride, sums, c, 2, 4); break;
        case 3: values_columns(values, n, d, w, stride, sums, c, 3, 4); break;
        default: values_columns(values, n, d, w, stride, sums, c, 4, 4); break;
      }
    }
    for (; c + 4 <= d; c += 4) {
      switch (h) {
        case 1: values_columns(values, n, d, w, stride, sums, c, 1, 1); break;
        case 2: values_columns(values, n, d, w, stride, sums, c, 2, 1); break;
        case 3: values_columns(values, n, d, w, stride, sums, c, 3, 1); break;
        default: values_columns(values, n, d, w, stride, sums, c, 4, 1); break;
      }
    }
    for (; c < d; c++)
      for (int k = 0; k < h; k++)
        for (int p = 0; p < n; p++) sums[(size_t)k * d + c] += w[k * stride + p] * values[(size_t)p * d + c];
  }
}

/*
 * F32 rows × many tokens (herd_kernels.gemm_f32): the activations come packed by ops.c in groups
 * of F32_TOKENS, [column][token], so each column's tokens are two vectors. A tile of up to 8 rows
 * × a group: four columns of each row in one vector, each of its lanes multiplying the column's
 * two token vectors (`fmla` by element) into 16 accumulators, no horizontal sums; 8 row loads and
 * 8 activation loads per 64 FMAs. Token groups are the outer loop, so one group (64 KB at 2,048
 * columns) serves every row of ops.c's chunk.
 */
#define F32_TOKENS 8
#define F32_TILE_ROWS 8

/* acc[r] += w[r]'s lane `lane` (a literal, as clang requires) × the column's two token vectors. */
#define F32_LANE(lane)                                                                          \
  do {                                                                                          \
    const float32x4_t x0 = vld1q_f32(xc + (lane) * F32_TOKENS), x1 = vld1q_f32(xc + (lane) * F32_TOKENS + 4); \
    for (int r = 0; r < R; r++) {                                                               \
      acc[r][0] = vfmaq_laneq_f32(acc[r][0], x0, wv[r], lane);                                  \
      acc[r][1] = vfmaq_laneq_f32(acc[r][1], x1, wv[r], lane);                                  \
    }                                                                                           \
  } while (0)

HERD_INLINE void f32_tile(const float *w, int cols, const float *x, int tokens, float *y, int y_stride, const int R) {
  float32x4_t acc[F32_TILE_ROWS][2];
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = vdupq_n_f32(0);
  int c = 0;
  for (; c + 4 <= cols; c += 4) {
    const float *xc = x + (size_t)c * F32_TOKENS;
    float32x4_t wv[F32_TILE_ROWS];
    for (int r = 0; r < R; r++) wv[r] = vld1q_f32(w + (size_t)r * cols + c);
    F32_LANE(0);
    F32_LANE(1);
    F32_LANE(2);
    F32_LANE(3);
  }
  for (; c < cols; c++) {
    const float32x4_t x0 = vld1q_f32(x + (size_t)c * F32_TOKENS), x1 = vld1q_f32(x + (size_t)c * F32_TOKENS + 4);
    for (int r = 0; r < R; r++) {
      acc[r][0] = vfmaq_n_f32(acc[r][0], x0, w[(size_t)r * cols + c]);
      acc[r][1] = vfmaq_n_f32(acc[r][1], x1, w[(size_t)r * cols + c]);
    }
  }
  for (int r = 0; r < R; r++) {
    float lanes[F32_TOKENS];
    vst1q_f32(lanes, acc[r][0]);
    vst1q_f32(lanes + 4, acc[r][1]);
    for (int t = 0; t < tokens; t++) y[(size_t)t * y_stride + r] = lanes[t];
  }
}
#undef F32_LANE

static void gemm_f32(const float *w, int rows, const float *x, int tokens, int cols, float *y, int y_stride) {
  for (int t0 = 0; t0 < tokens; t0 += F32_TOKENS) {
    const float *group = x + (size_t)t0 * cols;
    const int present = tokens - t0 < F32_TOKENS ? tokens - t0 : F32_TOKENS;
    for (int r0 = 0; r0 < rows; r0 += F32_TILE_ROWS) {
      const float *tile = w + (size_t)r0 * cols;
      float *out = y + (size_t)t0 * y_stride + r0;
      switch (rows - r0 < F32_TILE_ROWS ? rows - r0 : F32_TILE_ROWS) {
        case 1: f32_tile(tile, cols, group, present, out, y_stride, 1); break;
        case 2: f32_tile(tile, cols, group, present, out, y_stride, 2); break;
        case 3: f32_tile(tile, cols, group, present, out, y_stride, 3); break;
        case 4: f32_tile(tile, cols, group, present, out, y_stride, 4); break;
        case 5: f32_tile(tile, cols, group, present, out, y_stride, 5); break;
        case 6: f32_tile(tile, cols, group, present, out, y_stride, 6); break;
        case 7: f32_tile(tile, cols, group, present, out, y_stride, 7); break;
        default: f32_tile(tile, cols, group, present, out, y_stride, F32_TILE_ROWS); break;
      }
    }
  }
}

/*
 * exp on four floats: the same degree-5 polynomial on the reduced argument as the x86 paths' exp8
 * (llama.cpp's ggml_v_expf, within about 1.5 ulp of expf), with its slow branch for arguments
 * whose 2^n under- or overflows.
 */
static inline float32x4_t exp4(float32x4_t x) {
  const float32x4_t r = vdupq_n_f32(0x1.8p23f);
  const float32x4_t z = vfmaq_f32(r, x, vdupq_n_f32(0x1.715476p+0f));
  const float32x4_t n = vsubq_f32(z, r);
  const float32x4_t b = vfmsq_f32(vfmsq_f32(x, n, vdupq_n_f32(0x1.62e4p-1f)), n, vdupq_n_f32(0x1.7f7d1cp-20f));
  const uint32x4_t e = vshlq_n_u32(vreinterpretq_u32_f32(z), 23);
  const float32x4_t k = vreinterpretq_f32_u32(vaddq_u32(e, vreinterpretq_u32_f32(vdupq_n_f32(1))));
  const uint32x4_t c = vcagtq_f32(n, vdupq_n_f32(126));
  const float32x4_t u = vmulq_f32(b, b);
  const float32x4_t high = vfmaq_f32(vdupq_n_f32(0x1.573e2ep-5f), vdupq_n_f32(0x1.0e4020p-7f), b);
  const float32x4_t low = vfmaq_f32(vdupq_n_f32(0x1.fffdb6p-2f), vdupq_n_f32(0x1.555e66p-3f), b);
  const float32x4_t j = vfmaq_f32(vmulq_f32(vdupq_n_f32(0x1.ffffecp-1f), b), vfmaq_f32(low, high, u), u);
  if (vmaxvq_u32(c) == 0) return vfmaq_f32(k, j, k);
  const uint32x4_t g = vandq_u32(vclezq_f32(n), vdupq_n_u32(0x82000000u));
  const float32x4_t s1 = vreinterpretq_f32_u32(vaddq_u32(g, vdupq_n_u32(0x7f000000u)));
  const float32x4_t s2 = vreinterpretq_f32_u32(vsubq_u32(e, g));
  const uint32x4_t huge = vcagtq_f32(n, vdupq_n_f32(192));
  return vbslq_f32(huge, vmulq_f32(s1, s1), vbslq_f32(c, vmulq_f32(vfmaq_f32(s2, s2, j), s1), vfmaq_f32(k, k, j)));
}

static float exp_shifted(float *x, int n, float shift) {
  float32x4_t sums = vdupq_n_f32(0);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), vdupq_n_f32(shift)));
    vst1q_f32(x + i, e);
    sums = vaddq_f32(sums, e);
  }
  float total = vaddvq_f32(sums);
  for (; i < n; i++) total += x[i] = expf(x[i] - shift);
  return total;
}

/* silu(g) · u = g · u / (1 + exp(−g)), four at a time with exp4. */
static void swiglu(const float *gate, const float *up, float *out, size_t first, size_t last) {
  size_t i = first;
  for (; i + 4 <= last; i += 4) {
    const float32x4_t g = vld1q_f32(gate + i);
    vst1q_f32(out + i, vdivq_f32(vmulq_f32(g, vld1q_f32(up + i)), vaddq_f32(vdupq_n_f32(1), exp4(vnegq_f32(g)))));
  }
  for (; i < last; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* acc plus the products of 16 byte pairs, four to a lane (which four is each path's own). */
typedef int32x4_t (*byte_dot)(int32x4_t acc, int8x16_t a, int8x16_t b);

/* Two products fit an int16 lane: |a| ≤ 128 and |b| ≤ 127, the activation quantizer's range. */
HERD_INLINE int32x4_t byte_dot_neon(int32x4_t acc, int8x16_t a, int8x16_t b) {
  int16x8_t pairs = vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b);
  return vpadalq_s16(acc, pairs);
}

#if HERD_SDOT_COMPILED
HERD_DOTPROD HERD_INLINE int32x4_t byte_dot_sdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
  return vdotq_s32(acc, a, b);
}
#else
#define byte_dot_sdot byte_dot_neon /* the table below then exists only to link: dispatch never chooses it */
#endif

HERD_INLINE float q8_0_blocks(const uint8_t *w, const int8_t *x, const float *xd, int nb, byte_dot dot) {
  float32x4_t acc = vdupq_n_f32(0);
  for (int b = 0; b < nb; b++, w += Q8_0_BYTES, x += QK) {
    int32x4_t sums = dot(vdupq_n_s32(0), vld1q_s8((const int8_t *)w + 2), vld1q_s8(x));
    sums = dot(sums, vld1q_s8((const int8_t *)w + 18), vld1q_s8(x + 16));
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(sums), half_scale(w) * xd[b]);
  }
  return vaddvq_f32(acc);
}

HERD_INLINE float q4_0_blocks(const uint8_t *w, const int8_t *x, const float *xd, int nb, byte_dot dot) {
  float32x4_t acc = vdupq_n_f32(0);
  const uint8x16_t low = vdupq_n_u8(0xf);
  const int8x16_t eight = vdupq_n_s8(8);
  for (int b = 0; b < nb; b++, w += Q4_0_BYTES, x += QK) {
    /* Weights 0..15 of a block are the low nibbles, 16..31 the high ones, each less 8. */
    uint8x16_t codes = vld1q_u8(w + 2);
    int8x16_t first = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(codes, low)), eight);
    int8x16_t second = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(codes, 4)), eight);
    int32x4_t sums = dot(dot(vdupq_n_s32(0), first, vld1q_s8(x)), second, vld1q_s8(x + 16));
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(sums), half_scale(w) * xd[b]);
  }
  return vaddvq_f32(acc);
}

/* One Q4_K sub-block: 32 unsigned 4-bit codes (the low or high nibbles of 32 bytes) times 32 activations. */
HERD_INLINE int32x4_t q4_k_sub_block(uint8x16_t codes0, uint8x16_t codes1, const int8_t *x, byte_dot dot) {
  int32x4_t sums = dot(vdupq_n_s32(0), vreinterpretq_s8_u8(codes0), vld1q_s8(x));
  return dot(sums, vreinterpretq_s8_u8(codes1), vld1q_s8(x + 16));
}

/* Σ m[j]·sums[j] over a super-block's eight sub-blocks: what its minimums take off the product. */
static inline int32_t minimums_times_sums(const uint8_t m[8], const int32_t *sums) {
  const uint16x8_t wide = vmovl_u8(vld1_u8(m));
  int32x4_t products = vmulq_s32(vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(wide))), vld1q_s32(sums));
  products = vmlaq_s32(products, vreinterpretq_s32_u32(vmovl_high_u16(wide)), vld1q_s32(sums + 4));
  return vaddvq_s32(products);
}

HERD_INLINE float q4_k_blocks(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb, byte_dot dot) {
  float32x4_t acc = vdupq_n_f32(0);
  float mins_total = 0;
  const uint8x16_t low = vdupq_n_u8(0xf);
  for (int b = 0; b < nb; b++, w += Q4_K_BYTES, x += QK_K) {
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) herd_q4k_scale_min(j, w + 4, &sc[j], &m[j]);
    const int32_t mins = minimums_times_sums(m, xs + b * 8);
    int32x4_t scaled = vdupq_n_s32(0);
    for (int pair = 0; pair < 4; pair++) {
      const uint8_t *qs = w + 16 + 32 * pair;
      uint8x16_t c0 = vld1q_u8(qs), c1 = vld1q_u8(qs + 16);
      int32x4_t first = q4_k_sub_block(vandq_u8(c0, low), vandq_u8(c1, low), x + 64 * pair, dot);
      int32x4_t second = q4_k_sub_block(vshrq_n_u8(c0, 4), vshrq_n_u8(c1, 4), x + 64 * pair + 32, dot);
      scaled = vmlaq_n_s32(scaled, first, sc[2 * pair]);
      scaled = vmlaq_n_s32(scaled, second, sc[2 * pair + 1]);
    }
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(scaled), half_scale(w) * xd[b]);
    mins_total += half_scale(w + 2) * xd[b] * (float)mins;
  }
  return vaddvq_f32(acc) - mins_total;
}

/*
 * Q6_K (kquants.h): each 128 weights of a super-block take 64 bytes of low nibbles (ql) and 32 of
 * top bit pairs (qh). Bytes l and 32 + l of ql give weights l, 32 + l (low nibbles) and 64 + l,
 * 96 + l (high nibbles); byte l of qh their top two bits, pair by pair. Codes are 0..63 less 32,
 * and each 16 weights have their own int8 scale, applied to that group's int32 lanes.
 */
HERD_INLINE float q6_k_blocks(const uint8_t *w, const int8_t *x, const float *xd, int nb, byte_dot dot) {
  float32x4_t acc = vdupq_n_f32(0);
  const uint8x16_t low = vdupq_n_u8(0xf), top = vdupq_n_u8(0x30);
  const int8x16_t offset = vdupq_n_s8(32);
  const int32x4_t zero = vdupq_n_s32(0);
  for (int b = 0; b < nb; b++, w += Q6_K_BYTES, x += QK_K) {
    int32x4_t scaled = zero;
    for (int h = 0; h < 2; h++) {
      const uint8_t *ql = w + 64 * h, *qh = w + 128 + 32 * h;
      const int8_t *xh = x + 128 * h, *scales = (const int8_t *)w + 192 + 8 * h;
      for (int half = 0; half < 2; half++) {
        const uint8x16_t first = vld1q_u8(ql + 16 * half), second = vld1q_u8(ql + 32 + 16 * half), bits = vld1q_u8(qh + 16 * half);
        const int8x16_t q0 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(first, low), vandq_u8(vshlq_n_u8(bits, 4), top))), offset);
        const int8x16_t q1 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(second, low), vandq_u8(vshlq_n_u8(bits, 2), top))), offset);
        const int8x16_t q2 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(first, 4), vandq_u8(bits, top))), offset);
        const int8x16_t q3 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(second, 4), vandq_u8(vshrq_n_u8(bits, 2), top))), offset);
        /* Weights 32i + 16·half + 0..15 of this 128 are group 2i + half. */
        scaled = vmlaq_n_s32(scaled, dot(zero, q0, vld1q_s8(xh + 16 * half)), scales[half]);
        scaled = vmlaq_n_s32(scaled, dot(zero, q1, vld1q_s8(xh + 32 + 16 * half)), scales[2 + half]);
        scaled = vmlaq_n_s32(scaled, dot(zero, q2, vld1q_s8(xh + 64 + 16 * half)), scales[4 + half]);
        scaled = vmlaq_n_s32(scaled, dot(zero, q3, vld1q_s8(xh + 96 + 16 * half)), scales[6 + half]);
      }
    }
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(scaled), half_scale(w + 208) * xd[b]);
  }
  return vaddvq_f32(acc);
}

/*
 * Q5_K (kquants.h): as Q4_K, with a fifth bit per weight: weights 64p + l and 64p + 32 + l are the
 * low and high nibbles of qs[32p + l] plus 16 where bits 2p and 2p + 1 of qh[l] are set. The
 * activation sums (xs) come per 16 values; each sub-block's minimum takes two of them.
 */
HERD_INLINE float q5_k_blocks(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb, byte_dot dot) {
  float32x4_t acc = vdupq_n_f32(0);
  float mins_total = 0;
  const uint8x16_t low = vdupq_n_u8(0xf), fifth = vdupq_n_u8(0x10);
  for (int b = 0; b < nb; b++, w += Q5_K_BYTES, x += QK_K, xs += QK_K / KQ_GROUP) {
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) herd_q4k_scale_min(j, w + 4, &sc[j], &m[j]);
    int32_t sub_block_sums[8];
    vst1q_s32(sub_block_sums, vpaddq_s32(vld1q_s32(xs), vld1q_s32(xs + 4)));
    vst1q_s32(sub_block_sums + 4, vpaddq_s32(vld1q_s32(xs + 8), vld1q_s32(xs + 12)));
    const int32_t mins = minimums_times_sums(m, sub_block_sums);
    const uint8x16_t qh0 = vld1q_u8(w + 16), qh1 = vld1q_u8(w + 32);
    int32x4_t scaled = vdupq_n_s32(0);
    for (int pair = 0; pair < 4; pair++) {
      const uint8_t *qs = w + 48 + 32 * pair;
      const uint8x16_t c0 = vld1q_u8(qs), c1 = vld1q_u8(qs + 16);
      /* Bits 2p and 2p + 1 of qh moved to bit 4. */
      const int8x16_t to_first = vdupq_n_s8((int8_t)(4 - 2 * pair)), to_second = vdupq_n_s8((int8_t)(3 - 2 * pair));
      const uint8x16_t f0 = vorrq_u8(vandq_u8(c0, low), vandq_u8(vshlq_u8(qh0, to_first), fifth));
      const uint8x16_t f1 = vorrq_u8(vandq_u8(c1, low), vandq_u8(vshlq_u8(qh1, to_first), fifth));
      const uint8x16_t s0 = vorrq_u8(vshrq_n_u8(c0, 4), vandq_u8(vshlq_u8(qh0, to_second), fifth));
      const uint8x16_t s1 = vorrq_u8(vshrq_n_u8(c1, 4), vandq_u8(vshlq_u8(qh1, to_second), fifth));
      scaled = vmlaq_n_s32(scaled, q4_k_sub_block(f0, f1, x + 64 * pair, dot), sc[2 * pair]);
      scaled = vmlaq_n_s32(scaled, q4_k_sub_block(s0, s1, x + 64 * pair + 32, dot), sc[2 * pair + 1]);
    }
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(scaled), half_scale(w) * xd[b]);
    mins_total += half_scale(w + 2) * xd[b] * (float)mins;
  }
  return vaddvq_f32(acc) - mins_total;
}

/*
 * Q3_K and Q2_K (kquants.h): weight 128h + 32i + l is bits 2i, 2i + 1 of qs[32h + l]; Q3_K takes
 * 4 off it unless bit 4h + i of hmask[l] is set, Q2_K's minimums take m·Σx of each 16 off the sum.
 * Each 16 weights have their own scale; codes are in −4..3 (Q3_K) or 0..3 (Q2_K).
 */
HERD_INLINE int8x16_t two_bits(uint8x16_t bytes, int pair) { return vreinterpretq_s8_u8(vandq_u8(vshlq_u8(bytes, vdupq_n_s8((int8_t)(-2 * pair))), vdupq_n_u8(3))); }

HERD_INLINE float q3_k_blocks(const uint8_t *w, const int8_t *x, const float *xd, int nb, byte_dot dot) {
  float32x4_t acc = vdupq_n_f32(0);
  const int32x4_t zero = vdupq_n_s32(0);
  for (int b = 0; b < nb; b++, w += Q3_K_BYTES, x += QK_K) {
    int8_t scales[16];
    herd_q3k_scales(w + 96, scales);
    int32x4_t scaled = zero;
    for (int h = 0; h < 2; h++)
      for (int half = 0; half < 2; half++) {
        const uint8x16_t qs = vld1q_u8(w + 32 + 32 * h + 16 * half), hmask = vld1q_u8(w + 16 * half);
        for (int i = 0; i < 4; i++) {
          /* 4 where the third bit is clear. */
          const uint8x16_t off = vbicq_u8(vdupq_n_u8(4), vtstq_u8(hmask, vdupq_n_u8((uint8_t)(1 << (4 * h + i)))));
          const int8x16_t codes = vsubq_s8(two_bits(qs, i), vreinterpretq_s8_u8(off));
          const int at = 128 * h + 32 * i + 16 * half;
          scaled = vmlaq_n_s32(scaled, dot(zero, codes, vld1q_s8(x + at)), scales[at / KQ_GROUP]);
        }
      }
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(scaled), half_scale(w + 108) * xd[b]);
  }
  return vaddvq_f32(acc);
}

HERD_INLINE float q2_k_blocks(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb, byte_dot dot) {
  float32x4_t acc = vdupq_n_f32(0);
  float mins_total = 0;
  const int32x4_t zero = vdupq_n_s32(0);
  for (int b = 0; b < nb; b++, w += Q2_K_BYTES, x += QK_K, xs += QK_K / KQ_GROUP) {
    int32_t mins = 0;
    for (int g = 0; g < 16; g++) mins += (w[g] >> 4) * xs[g];
    int32x4_t scaled = zero;
    for (int h = 0; h < 2; h++)
      for (int half = 0; half < 2; half++) {
        const uint8x16_t qs = vld1q_u8(w + 16 + 32 * h + 16 * half);
        for (int i = 0; i < 4; i++) {
          const int at = 128 * h + 32 * i + 16 * half;
          scaled = vmlaq_n_s32(scaled, dot(zero, two_bits(qs, i), vld1q_s8(x + at)), w[at / KQ_GROUP] & 0xf);
        }
      }
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(scaled), half_scale(w + 80) * xd[b]);
    mins_total += half_scale(w + 82) * xd[b] * (float)mins;
  }
  return vaddvq_f32(acc) - mins_total;
}

/*
 * blocks32.h's formats. Each block's 16 code bytes hold codes j (low nibble of byte j) and j + 16
 * (high nibble); its integer sum is taken whole, then scaled once, in the scalar path's order.
 */
HERD_INLINE int32_t block32_sum(int8x16_t first, int8x16_t second, const int8_t *x, byte_dot dot) {
  return vaddvq_s32(dot(dot(vdupq_n_s32(0), first, vld1q_s8(x)), second, vld1q_s8(x + 16)));
}

/* Sixteen bits of a Q5 block's qh, bit j for lane j, as 0x10 where set: the codes' fifth bits. */
static inline uint8x16_t fifth_bits(uint32_t bits) {
  static const uint8_t lane_bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bytes = vcombine_u8(vdup_n_u8((uint8_t)bits), vdup_n_u8((uint8_t)(bits >> 8)));
  return vandq_u8(vtstq_u8(bytes, vld1q_u8(lane_bit)), vdupq_n_u8(0x10));
}

/* Q4_1's and INT4_G128's unsigned codes 0..15 (their minimum or zero point is applied through the activations' sum). */
HERD_INLINE int32_t unsigned_nibbles_sum(const uint8_t *codes_at, const int8_t *x, byte_dot dot) {
  const uint8x16_t codes = vld1q_u8(codes_at);
  return block32_sum(vreinterpretq_s8_u8(vandq_u8(codes, vdupq_n_u8(0xf))), vreinterpretq_s8_u8(vshrq_n_u8(codes, 4)), x, dot);
}

HERD_INLINE float q4_1_blocks(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb, byte_dot dot) {
  float total = 0;
  for (int b = 0; b < nb; b++, w += Q4_1_BYTES, x += QK) {
    const int32_t sum = unsigned_nibbles_sum(w + 4, x, dot);
    total += half_scale(w) * xd[b] * (float)sum + half_scale(w + 2) * xd[b] * (float)xs[b];
  }
  return total;
}

/* Q5_0 and Q5_1: the nibbles with their fifth bits, less 16 for Q5_0 (signed codes), as Q5_1's unsigned ones otherwise. */
HERD_INLINE int32_t q5_block_sum(const uint8_t *codes_at, uint32_t qh, int offset, const int8_t *x, byte_dot dot) {
  const uint8x16_t codes = vld1q_u8(codes_at);
  const int8x16_t first = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(codes, vdupq_n_u8(0xf)), fifth_bits(qh & 0xffff))), vdupq_n_s8((int8_t)offset));
  const int8x16_t second = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(codes, 4), fifth_bits(qh >> 16))), vdupq_n_s8((int8_t)offset));
  return block32_sum(first, second, x, dot);
}

HERD_INLINE float q5_0_blocks(const uint8_t *w, const int8_t *x, const float *xd, int nb, byte_dot dot) {
  float total = 0;
  for (int b = 0; b < nb; b++, w += Q5_0_BYTES, x += QK) total += half_scale(w) * xd[b] * (float)q5_block_sum(w + 6, herd_u32_at(w + 2), 16, x, dot);
  return total;
}

HERD_INLINE float q5_1_blocks(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb, byte_dot dot) {
  float total = 0;
  for (int b = 0; b < nb; b++, w += Q5_1_BYTES, x += QK)
    total += half_scale(w) * xd[b] * (float)q5_block_sum(w + 8, herd_u32_at(w + 4), 0, x, dot) + half_scale(w + 2) * xd[b] * (float)xs[b];
  return total;
}

/* IQ4_NL's and IQ4_XS's codes looked up in their 16 levels, a table lookup per 16. */
HERD_INLINE int32_t iq4_block_sum(const uint8_t *codes_at, const int8_t *x, byte_dot dot) {
  const int8x16_t levels = vld1q_s8(herd_iq4_levels);
  const uint8x16_t codes = vld1q_u8(codes_at);
  return block32_sum(vqtbl1q_s8(levels, vandq_u8(codes, vdupq_n_u8(0xf))), vqtbl1q_s8(levels, vshrq_n_u8(codes, 4)), x, dot);
}

HERD_INLINE float iq4_nl_blocks(const uint8_t *w, const int8_t *x, const float *xd, int nb, byte_dot dot) {
  float total = 0;
  for (int b = 0; b < nb; b++, w += IQ4_NL_BYTES, x += QK) total += half_scale(w) * xd[b] * (float)iq4_block_sum(w + 2, x, dot);
  return total;
}

HERD_INLINE float iq4_xs_blocks(const uint8_t *w, const int8_t *x, const float *xd, int nb, byte_dot dot) {
  float total = 0;
  for (int b = 0; b < nb; b++, w += IQ4_XS_BYTES) {
    int32_t scaled = 0;
    for (int sub = 0; sub < QK_K / QK; sub++, x += QK) scaled += herd_iq4_xs_scale(w, sub) * iq4_block_sum(w + 8 + 16 * sub, x, dot);
    total += half_scale(w) * xd[b] * (float)scaled;
  }
  return total;
}

HERD_INLINE float int4_g128_groups(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb, byte_dot dot) {
  float total = 0;
  for (int g = 0; g < nb; g++, w += INT4_G128_BYTES) {
    const int zero = w[2];
    float group = 0;
    for (int b = 0; b < INT4_GROUP / QK; b++, x += QK, xd++, xs++) {
      const int32_t sum = unsigned_nibbles_sum(w + 4 + 16 * b, x, dot);
      group += *xd * (float)(sum - zero * *xs);
    }
    total += half_scale(w) * group;
  }
  return total;
}

/* The K-quants after Q4_K and blocks32.h's formats on both byte products: one wrapper per path and format. */
#define LOW_BIT_KERNELS(suffix, attributes, byte_product)                                                                          \
  attributes static float dot_q4_1_##suffix(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {      \
    return q4_1_blocks(w, x, xd, xs, nb, byte_product);                                                                            \
  }                                                                                                                                \
  attributes static float dot_q5_0_##suffix(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {      \
    (void)xs;                                                                                                                      \
    return q5_0_blocks(w, x, xd, nb, byte_product);                                                                                \
  }                                                                                                                                \
  attributes static float dot_q5_1_##suffix(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {      \
    return q5_1_blocks(w, x, xd, xs, nb, byte_product);                                                                            \
  }                                                                                                                                \
  attributes static float dot_iq4_nl_##suffix(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {    \
    (void)xs;                                                                                                                      \
    return iq4_nl_blocks(w, x, xd, nb, byte_product);                                                                              \
  }                                                                                                                                \
  attributes static float dot_iq4_xs_##suffix(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {    \
    (void)xs;                                                                                                                      \
    return iq4_xs_blocks(w, x, xd, nb, byte_product);                                                                              \
  }                                                                                                                                \
  attributes static float dot_int4_g128_##suffix(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) { \
    return int4_g128_groups(w, x, xd, xs, nb, byte_product);                                                                       \
  }                                                                                                                                \
  attributes static float dot_q6_k_##suffix(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {      \
    (void)xs; /* the sums serve formats with minimums */                                                                          \
    return q6_k_blocks(w, x, xd, nb, byte_product);                                                                                \
  }                                                                                                                                \
  attributes static float dot_q5_k_##suffix(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {      \
    return q5_k_blocks(w, x, xd, xs, nb, byte_product);                                                                            \
  }                                                                                                                                \
  attributes static float dot_q3_k_##suffix(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {      \
    (void)xs;                                                                                                                      \
    return q3_k_blocks(w, x, xd, nb, byte_product);                                                                                \
  }                                                                                                                                \
  attributes static float dot_q2_k_##suffix(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {      \
    return q2_k_blocks(w, x, xd, xs, nb, byte_product);                                                                            \
  }
LOW_BIT_KERNELS(neon, , byte_dot_neon)
LOW_BIT_KERNELS(sdot, HERD_DOTPROD, byte_dot_sdot)

#define LOW_BIT_TABLE(suffix)                                                                                                          \
  .dot_q6_k = dot_q6_k_##suffix, .dot_q5_k = dot_q5_k_##suffix, .dot_q3_k = dot_q3_k_##suffix, .dot_q2_k = dot_q2_k_##suffix,           \
  .dot_q4_1 = dot_q4_1_##suffix, .dot_q5_0 = dot_q5_0_##suffix, .dot_q5_1 = dot_q5_1_##suffix, .dot_iq4_nl = dot_iq4_nl_##suffix,       \
  .dot_iq4_xs = dot_iq4_xs_##suffix, .dot_int4_g128 = dot_int4_g128_##suffix

/*
 * The repacked layouts (repack.h): a 64-byte chunk holds four code bytes of each of a group's 16
 * rows, so one 16-byte vector holds four bytes of four rows, a "quarter" of the group. Against
 * four activation bytes in every int32 lane, a byte product sums each row's four into that row's
 * lane: no horizontal sums, and each quarter's codes, unpacked once, serve a tile of tokens.
 * `four_lanes` takes four such vectors against the four 4-byte lanes of 16 activation codes.
 */
typedef int32x4_t (*lanes_dot)(int32x4_t acc, const int8x16_t w[4], int8x16_t x);

/* Lane r of acc plus Σ w[4r + i]·x[4r + i] (i < 4): the pairs fit int16 as byte_dot_neon's do. */
HERD_INLINE int32x4_t rows_dot_neon(int32x4_t acc, int8x16_t w, int8x16_t x) {
  const int16x8_t low = vmull_s8(vget_low_s8(w), vget_low_s8(x)), high = vmull_high_s8(w, x);
  return vpadalq_s16(acc, vpaddq_s16(low, high));
}

HERD_INLINE int32x4_t four_lanes_neon(int32x4_t acc, const int8x16_t w[4], int8x16_t x) {
  const int32x4_t words = vreinterpretq_s32_s8(x);
  acc = rows_dot_neon(acc, w[0], vreinterpretq_s8_s32(vdupq_laneq_s32(words, 0)));
  acc = rows_dot_neon(acc, w[1], vreinterpretq_s8_s32(vdupq_laneq_s32(words, 1)));
  acc = rows_dot_neon(acc, w[2], vreinterpretq_s8_s32(vdupq_laneq_s32(words, 2)));
  return rows_dot_neon(acc, w[3], vreinterpretq_s8_s32(vdupq_laneq_s32(words, 3)));
}

#if HERD_SDOT_COMPILED
/* SDOT's by-element form takes the lane itself (a literal, as clang requires). */
HERD_DOTPROD HERD_INLINE int32x4_t four_lanes_sdot(int32x4_t acc, const int8x16_t w[4], int8x16_t x) {
  acc = vdotq_laneq_s32(acc, w[0], x, 0);
  acc = vdotq_laneq_s32(acc, w[1], x, 1);
  acc = vdotq_laneq_s32(acc, w[2], x, 2);
  return vdotq_laneq_s32(acc, w[3], x, 3);
}
#else
#define four_lanes_sdot four_lanes_neon
#endif

/* Tokens per tile (a tile's float sums: quarters × tokens of the 32 vector registers). */
#define TILE_TOKENS 4
/* The four rows of quarter q among a group's 16 half-precision values at p, as floats. */
static inline float32x4_t quarter_halves(const uint8_t *p, int q) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(const void *)(p + 8 * q)))); }
/* Quarter q's 16 bytes of a repacked chunk whose row 0 starts at p. */
static inline uint8x16_t quarter_bytes(const uint8_t *p, int q) { return vld1q_u8(p + 16 * q); }
/* Byte e of each int32 lane, as an int32 (unsigned or sign-extended). */
static inline int32x4_t lane_byte(uint32x4_t lanes, int e) { return vreinterpretq_s32_u32(vandq_u32(vshlq_u32(lanes, vdupq_n_s32(-8 * e)), vdupq_n_u32(0xff))); }
static inline int32x4_t lane_int8(int32x4_t lanes, int e) { return vshlq_s32(vshlq_s32(lanes, vdupq_n_s32(24 - 8 * e)), vdupq_n_s32(-24)); }

/* A tile's sums into y: token t's rows 4(first + q) .. + 3. */
#define STORE_QUARTERS(acc, Q, T)  \
  for (int q = 0; q < Q; q++)      \
    for (int t = 0; t < T; t++) vst1q_f32(y + (size_t)t * y_stride + 4 * (first + q), acc[q][t])

/* A tile's float sums, zeroed. */
#define ZERO_QUARTERS(acc, Q, T) \
  for (int q = 0; q < Q; q++)    \
    for (int t = 0; t < T; t++) acc[q][t] = vdupq_n_f32(0)

/*
 * Q quarters of a Q8_0 or Q4_0 group from `first` on × T tokens. A block's eight code vectors of
 * a quarter: Q8_0's eight chunks; Q4_0's four chunks' low nibbles (codes 4j..) then high ones
 * (16 + 4j..), each less 8.
 */
HERD_INLINE void tile_block32(const uint8_t *group, int first, const int Q, const quantized_row *x, int cols, float *y, int y_stride, const int T,
                              const int format, lanes_dot dot) {
  const int nb = cols / QK;
  const size_t block_bytes = format == FMT_Q8_0 ? Q8R_BLOCK_BYTES : R16_BLOCK_BYTES;
  float32x4_t acc[4][TILE_TOKENS];
  ZERO_QUARTERS(acc, Q, T);
  for (int b = 0; b < nb; b++) {
    const uint8_t *block = group + (size_t)b * block_bytes;
    for (int q = 0; q < Q; q++) {
      const float32x4_t d = quarter_halves(block, first + q);
      int8x16_t codes[8];
      if (format == FMT_Q8_0) {
        for (int j = 0; j < 8; j++) codes[j] = vreinterpretq_s8_u8(quarter_bytes(block + R16_CHUNK(j, 0), first + q));
      } else {
        for (int j = 0; j < 4; j++) {
          const uint8x16_t bytes = quarter_bytes(block + R16_CHUNK(j, 0), first + q);
          codes[j] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(bytes, vdupq_n_u8(0xf))), vdupq_n_s8(8));
          codes[4 + j] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(bytes, 4)), vdupq_n_s8(8));
        }
      }
      for (int t = 0; t < T; t++) {
        const int8_t *xc = x->codes + (size_t)t * cols + (size_t)b * QK;
        const int32x4_t sum = dot(dot(vdupq_n_s32(0), codes, vld1q_s8(xc)), codes + 4, vld1q_s8(xc + 16));
        acc[q][t] = vfmaq_f32(acc[q][t], vcvtq_f32_s32(sum), vmulq_n_f32(d, x->scales[(size_t)t * nb + b]));
      }
    }
  }
  STORE_QUARTERS(acc, Q, T);
}

/*
 * Q4_K: per super-block, quarter and token one exact int32 sum per row, Σ_j scale_j·(codes·x)_j,
 * and one of the minimums, Σ_j m_j·Σx_j; the 6-bit scales unpacked for four rows at once as
 * herd_q4k_scales_mins does for one (sc[0] holds scales 0–3 of a row's lane, sc[1] 4–7).
 */
HERD_INLINE void tile_k16(const uint8_t *group, int first, const int Q, const quantized_row *x, int cols, float *y, int y_stride, const int T, lanes_dot dot) {
  const int nb = cols / QK_K;
  float32x4_t acc[4][TILE_TOKENS];
  ZERO_QUARTERS(acc, Q, T);
  for (int b = 0; b < nb; b++) {
    const uint8_t *block = group + (size_t)b * K16_BLOCK_BYTES;
    for (int q = 0; q < Q; q++) {
      const int quarter = first + q;
      const uint32x4_t u0 = vreinterpretq_u32_u8(quarter_bytes(block + K16_SCALES(0, 0), quarter));
      const uint32x4_t u1 = vreinterpretq_u32_u8(quarter_bytes(block + K16_SCALES(1, 0), quarter));
      const uint32x4_t u2 = vreinterpretq_u32_u8(quarter_bytes(block + K16_SCALES(2, 0), quarter));
      const uint32x4_t six = vdupq_n_u32(0x3f3f3f3f), four = vdupq_n_u32(0x0f0f0f0f), two = vdupq_n_u32(0x03030303);
      const uint32x4_t sc[2] = {vandq_u32(u0, six), vorrq_u32(vandq_u32(u2, four), vshlq_n_u32(vandq_u32(vshrq_n_u32(u0, 6), two), 4))};
      const uint32x4_t m[2] = {vandq_u32(u1, six), vorrq_u32(vandq_u32(vshrq_n_u32(u2, 4), four), vshlq_n_u32(vandq_u32(vshrq_n_u32(u1, 6), two), 4))};
      int32x4_t sums[TILE_TOKENS];
      for (int t = 0; t < T; t++) sums[t] = vdupq_n_s32(0);
      for (int j = 0; j < 8; j++) {
        const int32x4_t scale = lane_byte(sc[j / 4], j % 4);
        int8x16_t codes[8];
        for (int c = 0; c < 8; c++) {
          const uint8x16_t bytes = quarter_bytes(block + K16_CHUNK(j / 2, c, 0), quarter);
          codes[c] = vreinterpretq_s8_u8(j & 1 ? vshrq_n_u8(bytes, 4) : vandq_u8(bytes, vdupq_n_u8(0xf)));
        }
        for (int t = 0; t < T; t++) {
          const int8_t *xc = x->codes + (size_t)t * cols + (size_t)b * QK_K + 32 * j;
          sums[t] = vmlaq_s32(sums[t], dot(dot(vdupq_n_s32(0), codes, vld1q_s8(xc)), codes + 4, vld1q_s8(xc + 16)), scale);
        }
      }
      const float32x4_t d = quarter_halves(block + K16_D, quarter), dmin = quarter_halves(block + K16_DMIN, quarter);
      for (int t = 0; t < T; t++) {
        const int32_t *xs = x->sums + (size_t)t * (cols / QK) + (size_t)b * 8;
        int32x4_t mins = vdupq_n_s32(0);
        for (int j = 0; j < 8; j++) mins = vmlaq_n_s32(mins, lane_byte(m[j / 4], j % 4), xs[j]);
        const float xd = x->scales[(size_t)t * nb + b];
        acc[q][t] = vfmaq_f32(acc[q][t], vcvtq_f32_s32(sums[t]), vmulq_n_f32(d, xd));
        acc[q][t] = vfmsq_f32(acc[q][t], vcvtq_f32_s32(mins), vmulq_n_f32(dmin, xd));
      }
    }
  }
  STORE_QUARTERS(acc, Q, T);
}

/*
 * Q6_K: per super-block, quarter and token one exact int32 sum per row, Σ_g scale_g·(codes·x)_g,
 * the codes (three bytes for every four, repack.h) less 32, as q6_k_blocks.
 */
HERD_INLINE void tile_q6r(const uint8_t *group, int first, const int Q, const quantized_row *x, int cols, float *y, int y_stride, const int T, lanes_dot dot) {
  const int nb = cols / QK_K;
  float32x4_t acc[4][TILE_TOKENS];
  ZERO_QUARTERS(acc, Q, T);
  for (int b = 0; b < nb; b++) {
    const uint8_t *block = group + (size_t)b * Q6R_BLOCK_BYTES;
    for (int q = 0; q < Q; q++) {
      const int quarter = first + q;
      int32x4_t scale_words[4];
      for (int k = 0; k < 4; k++) scale_words[k] = vreinterpretq_s32_u8(quarter_bytes(block + Q6R_SCALES(k, 0), quarter));
      int32x4_t sums[TILE_TOKENS];
      for (int t = 0; t < T; t++) sums[t] = vdupq_n_s32(0);
      for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++) {
          int8x16_t codes[8];
          for (int c = 0; c < 8; c++) {
            uint8x16_t code;
            if (i < 3) {
              code = vandq_u8(quarter_bytes(block + Q6R_CODES(h, i, c, 0), quarter), vdupq_n_u8(0x3f));
            } else {
              /* Code 96 + l: its bit pairs in the top bits of A, B and C (repack.h). */
              code = vshrq_n_u8(quarter_bytes(block + Q6R_CODES(h, 0, c, 0), quarter), 6);
              code = vorrq_u8(code, vshlq_n_u8(vshrq_n_u8(quarter_bytes(block + Q6R_CODES(h, 1, c, 0), quarter), 6), 2));
              code = vorrq_u8(code, vshlq_n_u8(vshrq_n_u8(quarter_bytes(block + Q6R_CODES(h, 2, c, 0), quarter), 6), 4));
            }
            codes[c] = vsubq_s8(vreinterpretq_s8_u8(code), vdupq_n_s8(32));
          }
          const int g = 8 * h + 2 * i;
          const int32x4_t first_scale = lane_int8(scale_words[g / 4], g % 4), second_scale = lane_int8(scale_words[g / 4], g % 4 + 1);
          for (int t = 0; t < T; t++) {
            const int8_t *xc = x->codes + (size_t)t * cols + (size_t)b * QK_K + 128 * h + 32 * i;
            sums[t] = vmlaq_s32(sums[t], dot(vdupq_n_s32(0), codes, vld1q_s8(xc)), first_scale);
            sums[t] = vmlaq_s32(sums[t], dot(vdupq_n_s32(0), codes + 4, vld1q_s8(xc + 16)), second_scale);
          }
        }
      const float32x4_t d = quarter_halves(block + Q6R_D, quarter);
      for (int t = 0; t < T; t++) acc[q][t] = vfmaq_f32(acc[q][t], vcvtq_f32_s32(sums[t]), vmulq_n_f32(d, x->scales[(size_t)t * nb + b]));
    }
  }
  STORE_QUARTERS(acc, Q, T);
}

/*
 * Every whole group of rows in tiles of up to TILE_TOKENS tokens: one token takes the group's four
 * quarters in one pass (each cache line used whole as it arrives: decode reads weights from
 * memory), a tile of more takes two quarters at a time (its sums and codes fit the registers).
 * TILE(first, Q, T) needs Q and T as constants. Leaves `grouped`, the rows in whole groups, for
 * the stored rows after them.
 */
#define GROUP_TILES(TILE, scale_block, sum_group)                                                                                  \
  const int grouped = rows / REPACK_ROWS * REPACK_ROWS;                                                                            \
  for (int g = 0; g < grouped; g += REPACK_ROWS) {                                                                                 \
    const uint8_t *group = w + (size_t)g * row_bytes;                                                                              \
    for (int t0 = 0; t0 < tokens; t0 += TILE_TOKENS) {                                                                             \
      const quantized_row xt = {.codes = x->codes + (size_t)t0 * cols, .scales = x->scales + (size_t)t0 * (cols / (scale_block)), \
                                .sums = x->sums + (size_t)t0 * (cols / (sum_group))};                                              \
      float *yt = y + (size_t)t0 * y_stride + g;                                                                                   \
      switch (tokens - t0) {                                                                                                       \
        case 1: TILE(0, 4, 1); break;                                                                                              \
        case 2: TILE(0, 2, 2), TILE(2, 2, 2); break;                                                                               \
        case 3: TILE(0, 2, 3), TILE(2, 2, 3); break;                                                                               \
        default: TILE(0, 2, TILE_TOKENS), TILE(2, 2, TILE_TOKENS); break;                                                          \
      }                                                                                                                            \
    }                                                                                                                              \
  }

/* Rows past the last whole group, stored as they were: each row and token through the path's dot kernel. */
typedef float (*row_dot)(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb);
static void stored_rows(const uint8_t *w, size_t row_bytes, int first, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride,
                        int block_values, int sum_group, row_dot dot) {
  const int nb = cols / block_values;
  for (int r = first; r < rows; r++)
    for (int t = 0; t < tokens; t++)
      y[(size_t)t * y_stride + r] = dot(w + (size_t)r * row_bytes, x->codes + (size_t)t * cols, x->scales + (size_t)t * nb, x->sums + (size_t)t * (cols / sum_group), nb);
}

/* The stored Q8_0 and Q4_0 dots in row_dot's shape (their activation sums unused). */
#define BLOCK32_ROW_DOT(name, blocks, byte_product, attributes)                                                 \
  attributes static float name(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) { \
    (void)xs;                                                                                                   \
    return blocks(w, x, xd, nb, byte_product);                                                                  \
  }
BLOCK32_ROW_DOT(row_q8_0_neon, q8_0_blocks, byte_dot_neon, )
BLOCK32_ROW_DOT(row_q4_0_neon, q4_0_blocks, byte_dot_neon, )
BLOCK32_ROW_DOT(row_q8_0_sdot, q8_0_blocks, byte_dot_sdot, HERD_DOTPROD)
BLOCK32_ROW_DOT(row_q4_0_sdot, q4_0_blocks, byte_dot_sdot, HERD_DOTPROD)

static float dot_q8_0_neon(const uint8_t *w, const int8_t *x, const float *xd, int nb) {
  return q8_0_blocks(w, x, xd, nb, byte_dot_neon);
}

static float dot_q4_0_neon(const uint8_t *w, const int8_t *x, const float *xd, int nb) {
  return q4_0_blocks(w, x, xd, nb, byte_dot_neon);
}

static float dot_q4_k_neon(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  return q4_k_blocks(w, x, xd, xs, nb, byte_dot_neon);
}

HERD_DOTPROD static float dot_q8_0_sdot(const uint8_t *w, const int8_t *x, const float *xd, int nb) {
  return q8_0_blocks(w, x, xd, nb, byte_dot_sdot);
}

HERD_DOTPROD static float dot_q4_0_sdot(const uint8_t *w, const int8_t *x, const float *xd, int nb) {
  return q4_0_blocks(w, x, xd, nb, byte_dot_sdot);
}

HERD_DOTPROD static float dot_q4_k_sdot(const uint8_t *w, const int8_t *x, const float *xd, const int32_t *xs, int nb) {
  return q4_k_blocks(w, x, xd, xs, nb, byte_dot_sdot);
}

/* One repacked product of a path: the tiles over its whole groups with the path's byte product, the path's dot over the stored rows after them. */
#define REPACKED_PRODUCT(name, attributes, byte_lanes, TILE, block_values, sum_group, row_dot)                                        \
  attributes static void name(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, \
                              int y_stride) {                                                                                        \
    const lanes_dot lanes = byte_lanes;                                                                                              \
    GROUP_TILES(TILE, block_values, sum_group)                                                                                       \
    stored_rows(w, row_bytes, grouped, rows, x, tokens, cols, y, y_stride, block_values, sum_group, row_dot);                        \
  }
/* One path's four repacked products. */
#define REPACKED_KERNELS(suffix, attributes, byte_lanes)                                                              \
  REPACKED_PRODUCT(gemm_q8_0_r16_##suffix, attributes, byte_lanes, Q8R_TILE, QK, QK, row_q8_0_##suffix)               \
  REPACKED_PRODUCT(gemm_q4_0_r16_##suffix, attributes, byte_lanes, Q4R_TILE, QK, QK, row_q4_0_##suffix)               \
  REPACKED_PRODUCT(gemm_q4_k_r16_##suffix, attributes, byte_lanes, K16_TILE, QK_K, QK, dot_q4_k_##suffix)             \
  REPACKED_PRODUCT(gemm_q6_k_r16_##suffix, attributes, byte_lanes, Q6R_TILE, QK_K, KQ_GROUP, dot_q6_k_##suffix)
#define Q8R_TILE(first, Q, T) tile_block32(group, first, Q, &xt, cols, yt, y_stride, T, FMT_Q8_0, lanes)
#define Q4R_TILE(first, Q, T) tile_block32(group, first, Q, &xt, cols, yt, y_stride, T, FMT_Q4_0, lanes)
#define K16_TILE(first, Q, T) tile_k16(group, first, Q, &xt, cols, yt, y_stride, T, lanes)
#define Q6R_TILE(first, Q, T) tile_q6r(group, first, Q, &xt, cols, yt, y_stride, T, lanes)
REPACKED_KERNELS(neon, , four_lanes_neon)
REPACKED_KERNELS(sdot, HERD_DOTPROD, four_lanes_sdot)

#define REPACKED_TABLE(suffix)                                                                                                  \
  .gemm_q8_0_r16 = gemm_q8_0_r16_##suffix, .gemm_q4_0_r16 = gemm_q4_0_r16_##suffix, .gemm_q4_k_r16 = gemm_q4_k_r16_##suffix, \
  .gemm_q6_k_r16 = gemm_q6_k_r16_##suffix

/* The float kernels: the same on both paths, which differ in their byte products only. */
#define FLOAT_TABLE                                                                                                          \
  .dot_f32 = dot_f32, .gemm_f32 = gemm_f32, .f32_tokens = F32_TOKENS, .f16_to_f32 = f16_to_f32, .bf16_to_f32 = bf16_to_f32, \
  .dot_f16 = dot_f16, .dot_bf16 = dot_bf16, .attend_scores = attend_scores, .attend_values = attend_values,                 \
  .exp_shifted = exp_shifted, .swiglu = swiglu

const herd_kernels herd_kernels_neon = {
    .name = "neon",
    FLOAT_TABLE,
    .dot_q8_0 = dot_q8_0_neon,
    .dot_q4_0 = dot_q4_0_neon,
    .dot_q4_k = dot_q4_k_neon,
    LOW_BIT_TABLE(neon),
    REPACKED_TABLE(neon),
};

const herd_kernels herd_kernels_neon_dotprod = {
    .name = "neon-dotprod",
    FLOAT_TABLE,
    .dot_q8_0 = dot_q8_0_sdot,
    .dot_q4_0 = dot_q4_0_sdot,
    .dot_q4_k = dot_q4_k_sdot,
    LOW_BIT_TABLE(sdot),
    REPACKED_TABLE(sdot),
};
#endif
