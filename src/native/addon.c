/* The N-API surface of herd's native kernels; src/native/addon.ts is its only caller. */
#define _DEFAULT_SOURCE /* madvise's MADV_HUGEPAGE under -std=c11 */
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bandwidth.h"
#include "calibrate.h"
#include "dispatch.h"
#include "ops.h"
#include "pool.h"
#include "quantize.h"
#include "repack.h"
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

static herd_isa_choice chosen;

#define CHECK(call)                                                         \
  do {                                                                      \
    if ((call) != napi_ok) {                                                \
      napi_throw_error(env, NULL, "herd native: bad arguments to " #call); \
      return NULL;                                                          \
    }                                                                       \
  } while (0)

typedef struct {
  void *data;
  size_t length; /* elements */
} array_view;

/* A typed array argument of the expected element type. */
static int typed_array(napi_env env, napi_value value, napi_typedarray_type expected, array_view *view) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, &view->length, &view->data, &buffer, &offset) != napi_ok || type != expected) {
    napi_throw_type_error(env, NULL, "herd native: a typed array of the wrong type");
    return 0;
  }
  return 1;
}

static int int_arg(napi_env env, napi_value value, int *out) {
  if (napi_get_value_int32(env, value, out) != napi_ok) {
    napi_throw_type_error(env, NULL, "herd native: expected an integer");
    return 0;
  }
  return 1;
}

static napi_value string_value(napi_env env, const char *text) {
  napi_value value;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &value);
  return value;
}

/* choose(forced?): picks the path (forced by name, or the best); throws with the reason if the forced one cannot run. */
static napi_value choose(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char forced[32] = "";
  napi_valuetype type = napi_undefined;
  if (argc > 0) napi_typeof(env, argv[0], &type);
  if (type == napi_string) CHECK(napi_get_value_string_utf8(env, argv[0], forced, sizeof forced, NULL));
  herd_isa_choice next;
  if (!herd_choose_isa(forced, &next)) {
    char message[300];
    snprintf(message, sizeof message, "HERD_CPU_ISA=%s cannot run here: %s", forced, next.reason);
    napi_throw_error(env, "HERD_ISA", message);
    return NULL;
  }
  chosen = next;
  return NULL;
}

/* info(): { isa, reason, threads, paths: { name: "" when it runs here, else what is missing } }. */
static napi_value info(napi_env env, napi_callback_info cb) {
  (void)cb;
  napi_value result, paths, threads;
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "isa", string_value(env, chosen.kernels ? chosen.kernels->name : "none"));
  napi_set_named_property(env, result, "reason", string_value(env, chosen.reason));
  napi_create_int32(env, herd_pool_threads(), &threads);
  napi_set_named_property(env, result, "threads", threads);
  napi_create_object(env, &paths);
  static const char *const names[] = HERD_ISA_LIST;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char why[160] = "";
    if (!herd_isa_supported(names[i], why, sizeof why) && why[0] == '\0') snprintf(why, sizeof why, "unsupported");
    napi_set_named_property(env, paths, names[i], string_value(env, why));
  }
  napi_set_named_property(env, result, "paths", paths);
  return result;
}

static napi_value start_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int threads;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !int_arg(env, argv[0], &threads)) return NULL;
  if (!herd_pool_start(threads)) napi_throw_error(env, NULL, "herd native: could not start the threads");
  return NULL;
}

static napi_value stop_threads(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  herd_pool_stop();
  return NULL;
}

/* linear(format, weights: Uint8Array, rows, cols, x: Float32Array, tokens, y: Float32Array) */
static napi_value linear(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  int format, rows, cols, tokens;
  array_view w, x, y;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7 || !int_arg(env, argv[0], &format) || !typed_array(env, argv[1], napi_uint8_array, &w) || !int_arg(env, argv[2], &rows) ||
      !int_arg(env, argv[3], &cols) || !typed_array(env, argv[4], napi_float32_array, &x) || !int_arg(env, argv[5], &tokens) ||
      !typed_array(env, argv[6], napi_float32_array, &y))
    return NULL;
  const size_t row_bytes = herd_row_bytes(format, cols);
  if (row_bytes == 0 || w.length < row_bytes * rows || x.length < (size_t)tokens * cols || y.length < (size_t)tokens * rows) {
    napi_throw_range_error(env, NULL, "herd native: linear's sizes do not match its arrays");
    return NULL;
  }
  if (!herd_linear(chosen.kernels, format, w.data, rows, cols, x.data, tokens, y.data)) napi_throw_error(env, NULL, "herd native: out of memory");
  return NULL;
}

#define MAX_LINEAR_OUTPUTS 8

/* linearMany(format, weights: Uint8Array[], rows: number[], cols, x: Float32Array, tokens, ys: Float32Array[]): linear for each weight, in one call. */
static napi_value linear_many(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  int format, cols, tokens;
  uint32_t count = 0, rows_count = 0, ys_count = 0;
  array_view x;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7 || !int_arg(env, argv[0], &format) || !int_arg(env, argv[3], &cols) || !typed_array(env, argv[4], napi_float32_array, &x) ||
      !int_arg(env, argv[5], &tokens))
    return NULL;
  CHECK(napi_get_array_length(env, argv[1], &count));
  CHECK(napi_get_array_length(env, argv[2], &rows_count));
  CHECK(napi_get_array_length(env, argv[6], &ys_count));
  const size_t row_bytes = herd_row_bytes(format, cols);
  if (count == 0 || count > MAX_LINEAR_OUTPUTS || rows_count != count || ys_count != count || row_bytes == 0 || x.length < (size_t)tokens * cols) {
    napi_throw_range_error(env, NULL, "herd native: linearMany's sizes do not match its arrays");
    return NULL;
  }
  herd_linear_output outputs[MAX_LINEAR_OUTPUTS];
  for (uint32_t i = 0; i < count; i++) {
    napi_value weight, rows, y;
    array_view w, out;
    CHECK(napi_get_element(env, argv[1], i, &weight));
    CHECK(napi_get_element(env, argv[2], i, &rows));
    CHECK(napi_get_element(env, argv[6], i, &y));
    if (!typed_array(env, weight, napi_uint8_array, &w) || !int_arg(env, rows, &outputs[i].rows) || !typed_array(env, y, napi_float32_array, &out)) return NULL;
    if (w.length < row_bytes * outputs[i].rows || out.length < (size_t)tokens * outputs[i].rows) {
      napi_throw_range_error(env, NULL, "herd native: linearMany's sizes do not match its arrays");
      return NULL;
    }
    outputs[i].w = w.data;
    outputs[i].y = out.data;
  }
  if (!herd_linear_many(chosen.kernels, format, cols, x.data, tokens, outputs, (int)count)) napi_throw_error(env, NULL, "herd native: out of memory");
  return NULL;
}

/* The in-place repacking of a stored format (repack.h) and the repacked layout's code, or NULL. */
static int (*repacking_of(int format, int *repacked_code))(uint8_t *, int, int) {
  switch (format) {
    case FMT_Q4_0: *repacked_code = FMT_Q4_0_R16; return herd_repack_q4_0_r16;
    case FMT_Q8_0: *repacked_code = FMT_Q8_0_R16; return herd_repack_q8_0_r16;
    case FMT_Q4_K: *repacked_code = FMT_Q4_K_R16; return herd_repack_q4_k_r16;
    case FMT_Q6_K: *repacked_code = FMT_Q6_K_R16; return herd_repack_q6_k_r16;
    case FMT_Q5_K: *repacked_code = FMT_Q5_K_R16; return herd_repack_q5_k_r16;
    case FMT_IQ4_XS: *repacked_code = FMT_IQ4_XS_R16; return herd_repack_iq4_xs_r16;
    default: return NULL;
  }
}

/*
 * repackRows(format, bytes: Uint8Array, rows, cols, always): the format code to compute a linear
 * weight with after repacking its bytes in place (repack.h: Q4_0, Q8_0, Q4_K, Q6_K, Q5_K, IQ4_XS) where the chosen path has a
 * product of its own on the repacked layout, not the scalar path's portable one (or `always`, for tests), else `format`
 * unchanged. Q5_K's and IQ4_XS's are x86's only: NEON keeps its row dots for them.
 */
static napi_value repack_rows(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], result;
  int format, rows, cols;
  bool always = false;
  array_view w;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5 || !int_arg(env, argv[0], &format) || !typed_array(env, argv[1], napi_uint8_array, &w) || !int_arg(env, argv[2], &rows) || !int_arg(env, argv[3], &cols))
    return NULL;
  CHECK(napi_get_value_bool(env, argv[4], &always));
  const size_t row_bytes = herd_row_bytes(format, cols);
  if (row_bytes == 0 || w.length < row_bytes * rows) {
    napi_throw_range_error(env, NULL, "herd native: repackRows's sizes do not match its array");
    return NULL;
  }
  int code = format;
  int repacked_code;
  int (*repack)(uint8_t *, int, int) = repacking_of(format, &repacked_code);
  const int has_simd = repack != NULL && chosen.kernels != NULL && herd_gemm_of(chosen.kernels, repacked_code) != herd_gemm_of(&herd_kernels_scalar, repacked_code);
  if (repack != NULL && rows >= REPACK_ROWS && (always || has_simd)) {
    if (!repack(w.data, rows, cols)) {
      napi_throw_error(env, NULL, "herd native: out of memory");
      return NULL;
    }
    code = repacked_code;
  }
  CHECK(napi_create_int32(env, code, &result));
  return result;
}

#if defined(__linux__)
/* madvise over the whole pages inside [data, data + bytes): the bytes advised, 0 where there are none or the OS refuses. */
static double advise_whole_pages(const void *data, size_t bytes, int advice) {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), first = ((uintptr_t)data + page - 1) / page * page, end = ((uintptr_t)data + bytes) / page * page;
  return end > first && madvise((void *)first, end - first, advice) == 0 ? (double)(end - first) : 0;
}
#endif

/*
 * adviseHugePages(bytes: Uint8Array): asks Linux for transparent huge pages (2 MiB) under the
 * array's whole pages, before they are first written (hosts whose THP setting is `madvise` give
 * anonymous memory 4 KiB pages otherwise): decode streams every weight once per token, and on
 * 4 KiB pages each 4 KiB read costs a TLB miss. Returns the bytes advised; 0 where the OS refuses
 * or has no such advice.
 */
static napi_value advise_huge_pages(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  array_view w;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !typed_array(env, argv[0], napi_uint8_array, &w)) return NULL;
  double advised = 0;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  advised = advise_whole_pages(w.data, w.length, MADV_HUGEPAGE);
#endif
  CHECK(napi_create_double(env, advised, &result));
  return result;
}

/*
 * discardPages(array: Float32Array): gives the array's whole pages back to the OS (their bytes
 * read as zeros afterwards, and a page is faulted in again where it is next written), so memory
 * that holds nothing for now leaves the process's RSS at once, which a buffer freed by V8 does only
 * at its next collection. The array stays valid. Returns the bytes discarded.
 */
static napi_value discard_pages(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  array_view a;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !typed_array(env, argv[0], napi_float32_array, &a)) return NULL;
  double discarded = 0;
#if defined(__linux__) && defined(MADV_DONTNEED)
  discarded = advise_whole_pages(a.data, a.length * sizeof(float), MADV_DONTNEED);
#endif
  CHECK(napi_create_double(env, discarded, &result));
  return result;
}

/* embedding(format, table: Uint8Array, rows, cols, ids: Int32Array, out: Float32Array) */
static napi_value embedding(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  int format, rows, cols;
  array_view table, ids, out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6 || !int_arg(env, argv[0], &format) || !typed_array(env, argv[1], napi_uint8_array, &table) || !int_arg(env, argv[2], &rows) ||
      !int_arg(env, argv[3], &cols) || !typed_array(env, argv[4], napi_int32_array, &ids) || !typed_array(env, argv[5], napi_float32_array, &out))
    return NULL;
  const size_t row_bytes = herd_row_bytes(format, cols);
  int ok = row_bytes != 0 && table.length >= row_bytes * rows && out.length >= ids.length * cols;
  for (size_t i = 0; ok && i < ids.length; i++) ok = ((int32_t *)ids.data)[i] >= 0 && ((int32_t *)ids.data)[i] < rows;
  if (!ok) {
    napi_throw_range_error(env, NULL, "herd native: an embedding id or size out of range");
    return NULL;
  }
  herd_embedding(format, table.data, rows, cols, ids.data, (int)ids.length, out.data);
  return NULL;
}

/* rmsnorm(x, w, y, dim, eps): every row of x (length a multiple of dim). */
static napi_value rmsnorm(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  array_view x, w, y;
  int dim;
  double eps;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5 || !typed_array(env, argv[0], napi_float32_array, &x) || !typed_array(env, argv[1], napi_float32_array, &w) ||
      !typed_array(env, argv[2], napi_float32_array, &y) || !int_arg(env, argv[3], &dim))
    return NULL;
  CHECK(napi_get_value_double(env, argv[4], &eps));
  if (dim <= 0 || w.length < (size_t)dim || x.length % dim || y.length < x.length) {
    napi_throw_range_error(env, NULL, "herd native: rmsnorm's sizes do not match");
    return NULL;
  }
  herd_rmsnorm(x.data, w.data, y.data, dim, (int)(x.length / dim), (float)eps);
  return NULL;
}

/* rope(x, cos, sin, heads, headDim): in place on x [rows, heads·headDim]. */
static napi_value rope(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  array_view x, cos, sin;
  int heads, head_dim;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5 || !typed_array(env, argv[0], napi_float32_array, &x) || !typed_array(env, argv[1], napi_float32_array, &cos) ||
      !typed_array(env, argv[2], napi_float32_array, &sin) || !int_arg(env, argv[3], &heads) || !int_arg(env, argv[4], &head_dim))
    return NULL;
  const size_t width = (size_t)heads * head_dim, rows = width ? x.length / width : 0;
  if (width == 0 || x.length % width || cos.length < rows * head_dim || sin.length < rows * head_dim) {
    napi_throw_range_error(env, NULL, "herd native: rope's sizes do not match");
    return NULL;
  }
  herd_rope(x.data, cos.data, sin.data, (int)rows, heads, head_dim);
  return NULL;
}

/* swiglu(gate, up, out) and add(a, b, out): elementwise over equal lengths. */
static napi_value elementwise(napi_env env, napi_callback_info info, void (*op)(const float *, const float *, float *, size_t)) {
  size_t argc = 3;
  napi_value argv[3];
  array_view a, b, out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || !typed_array(env, argv[0], napi_float32_array, &a) || !typed_array(env, argv[1], napi_float32_array, &b) ||
      !typed_array(env, argv[2], napi_float32_array, &out))
    return NULL;
  if (b.length != a.length || out.length != a.length) {
    napi_throw_range_error(env, NULL, "herd native: elementwise lengths differ");
    return NULL;
  }
  op(a.data, b.data, out.data, a.length);
  return NULL;
}
static void chosen_swiglu(const float *gate, const float *up, float *out, size_t n) { herd_swiglu(chosen.kernels, gate, up, out, n); }
static napi_value swiglu(napi_env env, napi_callback_info info) { return elementwise(env, info, chosen_swiglu); }
static napi_value add(napi_env env, napi_callback_info info) { return elementwise(env, info, herd_add); }

/*
 * attention(keys, values, kvHeads, headDim, capacity, q, k, v, out, start, heads): keys and values
 * one layer of a cache (Float32Array, or Uint16Array of halves); q/k/v/out rows of one sequence.
 */
static napi_value attention(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  napi_typedarray_type type;
  napi_value ignored;
  size_t offset;
  herd_cache_layer cache;
  array_view keys, values, q, k, v, out;
  int start, heads;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 11) {
    napi_throw_type_error(env, NULL, "herd native: attention takes 11 arguments");
    return NULL;
  }
  CHECK(napi_get_typedarray_info(env, argv[0], &type, &keys.length, &keys.data, &ignored, &offset));
  cache.f16 = type == napi_uint16_array;
  if (!typed_array(env, argv[0], type, &keys) || (type != napi_float32_array && !cache.f16) || !typed_array(env, argv[1], type, &values) ||
      !int_arg(env, argv[2], &cache.kv_heads) || !int_arg(env, argv[3], &cache.head_dim) || !int_arg(env, argv[4], &cache.capacity) ||
      !typed_array(env, argv[5], napi_float32_array, &q) || !typed_array(env, argv[6], napi_float32_array, &k) ||
      !typed_array(env, argv[7], napi_float32_array, &v) || !typed_array(env, argv[8], napi_float32_array, &out) || !int_arg(env, argv[9], &start) ||
      !int_arg(env, argv[10], &heads))
    return NULL;
  const size_t kv_width = (size_t)cache.kv_heads * cache.head_dim, rows = kv_width ? k.length / kv_width : 0;
  if (kv_width == 0 || heads % cache.kv_heads || keys.length < kv_width * cache.capacity || values.length < keys.length ||
      start < 0 || start + rows > (size_t)cache.capacity || v.length != k.length || q.length != rows * heads * cache.head_dim || out.length != q.length) {
    napi_throw_range_error(env, NULL, "herd native: attention's sizes do not match its cache");
    return NULL;
  }
  cache.keys = keys.data;
  cache.values = values.data;
  if (!herd_attention(chosen.kernels, &cache, q.data, k.data, v.data, out.data, (int)rows, start, heads))
    napi_throw_error(env, NULL, "herd native: out of memory");
  return NULL;
}

/* quantize(ggmlType, x: Float32Array, rows, cols, out: Uint8Array): GGUF blocks of x [rows, cols] on the threads. */
static napi_value quantize(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int type, rows, cols;
  array_view x, out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5 || !int_arg(env, argv[0], &type) || !typed_array(env, argv[1], napi_float32_array, &x) || !int_arg(env, argv[2], &rows) ||
      !int_arg(env, argv[3], &cols) || !typed_array(env, argv[4], napi_uint8_array, &out))
    return NULL;
  const size_t row_bytes = herd_quantized_row_bytes(type, cols);
  if (row_bytes == 0 || rows < 0 || x.length != (size_t)rows * cols || out.length != row_bytes * rows) {
    napi_throw_range_error(env, NULL, "herd native: quantize's type or sizes do not match its arrays");
    return NULL;
  }
  herd_quantize_rows(chosen.kernels, type, x.data, rows, cols, out.data);
  return NULL;
}

/* ---- AWQ/GPTQ calibration (calibrate.c) ---- */

static napi_value size_error(napi_env env, const char *what) {
  char message[120];
  snprintf(message, sizeof message, "herd native: %s's sizes do not match its arrays", what);
  napi_throw_range_error(env, NULL, message);
  return NULL;
}

/* calibrationHessian(x: Float32Array, rows, cols, h: Float64Array) */
static napi_value calibration_hessian(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  array_view x, h;
  int rows, cols;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4 || !typed_array(env, argv[0], napi_float32_array, &x) || !int_arg(env, argv[1], &rows) || !int_arg(env, argv[2], &cols) ||
      !typed_array(env, argv[3], napi_float64_array, &h))
    return NULL;
  if (rows < 0 || cols <= 0 || x.length != (size_t)rows * cols || h.length != (size_t)cols * cols) return size_error(env, "hessian");
  herd_hessian(x.data, rows, cols, h.data);
  return NULL;
}

/* awqClip(w: Float32Array, out, cols, x: Float32Array, xRows, groupSize, bounds: Float32Array) */
static napi_value awq_clip(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  array_view w, x, bounds;
  int out, cols, x_rows, group_size;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7 || !typed_array(env, argv[0], napi_float32_array, &w) || !int_arg(env, argv[1], &out) || !int_arg(env, argv[2], &cols) ||
      !typed_array(env, argv[3], napi_float32_array, &x) || !int_arg(env, argv[4], &x_rows) || !int_arg(env, argv[5], &group_size) ||
      !typed_array(env, argv[6], napi_float32_array, &bounds))
    return NULL;
  if (out <= 0 || cols <= 0 || x_rows <= 0 || group_size <= 0 || cols % group_size || w.length != (size_t)out * cols ||
      x.length != (size_t)x_rows * cols || bounds.length != (size_t)out * (cols / group_size))
    return size_error(env, "awqClip");
  if (!herd_awq_clip(w.data, out, cols, x.data, x_rows, group_size, bounds.data)) napi_throw_error(env, NULL, "herd native: out of memory");
  return NULL;
}

/* awqPseudoQuantize(w: Float32Array, rows, cols, scales: Float32Array, groupSize, out: Float32Array) */
static napi_value awq_pseudo_quantize(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  array_view w, scales, out;
  int rows, cols, group_size;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6 || !typed_array(env, argv[0], napi_float32_array, &w) || !int_arg(env, argv[1], &rows) || !int_arg(env, argv[2], &cols) ||
      !typed_array(env, argv[3], napi_float32_array, &scales) || !int_arg(env, argv[4], &group_size) || !typed_array(env, argv[5], napi_float32_array, &out))
    return NULL;
  if (rows <= 0 || cols <= 0 || group_size <= 0 || cols % group_size || w.length != (size_t)rows * cols || scales.length != (size_t)cols ||
      out.length != (size_t)rows * cols)
    return size_error(env, "awqPseudoQuantize");
  herd_awq_pseudo_quantize(w.data, rows, cols, scales.data, group_size, out.data);
  return NULL;
}

/* gptqFactor(h: Float64Array, n, upper: Float64Array): true, or false when h is not positive definite. */
static napi_value gptq_factor(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  array_view h, upper;
  int n;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || !typed_array(env, argv[0], napi_float64_array, &h) || !int_arg(env, argv[1], &n) || !typed_array(env, argv[2], napi_float64_array, &upper))
    return NULL;
  if (n <= 0 || h.length != (size_t)n * n || upper.length != h.length) return size_error(env, "gptqFactor");
  const int status = herd_upper_cholesky_of_inverse(h.data, n, upper.data);
  if (status < 0) {
    napi_throw_error(env, NULL, "herd native: out of memory");
    return NULL;
  }
  napi_get_boolean(env, status == 1, &result);
  return result;
}

/* gptqColumns(wp: Float64Array, rows, cols, u: Float64Array, perm: Int32Array, groupSize, blockSize, symmetric, minZero, codes: Uint8Array, scales: Float32Array, zeros: Uint8Array) */
static napi_value gptq_columns(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12];
  array_view wp, u, perm, codes, scales, zeros;
  int rows, cols;
  herd_gptq_options options;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 12 || !typed_array(env, argv[0], napi_float64_array, &wp) || !int_arg(env, argv[1], &rows) || !int_arg(env, argv[2], &cols) ||
      !typed_array(env, argv[3], napi_float64_array, &u) || !typed_array(env, argv[4], napi_int32_array, &perm) ||
      !int_arg(env, argv[5], &options.group_size) || !int_arg(env, argv[6], &options.block_size) || !int_arg(env, argv[7], &options.symmetric) ||
      !int_arg(env, argv[8], &options.min_zero) || !typed_array(env, argv[9], napi_uint8_array, &codes) ||
      !typed_array(env, argv[10], napi_float32_array, &scales) || !typed_array(env, argv[11], napi_uint8_array, &zeros))
    return NULL;
  int ok = rows > 0 && cols > 0 && options.group_size > 0 && cols % options.group_size == 0 && options.block_size > 0 &&
           wp.length == (size_t)rows * cols && u.length == (size_t)cols * cols && perm.length == (size_t)cols && codes.length == wp.length &&
           scales.length == (size_t)rows * (cols / options.group_size) && zeros.length == scales.length;
  for (size_t i = 0; ok && i < perm.length; i++) ok = ((int32_t *)perm.data)[i] >= 0 && ((int32_t *)perm.data)[i] < cols;
  if (!ok) return size_error(env, "gptqColumns");
  herd_gptq_columns(wp.data, rows, cols, u.data, perm.data, &options, codes.data, scales.data, zeros.data);
  return NULL;
}

/*
 * readBandwidth(bytesPerThread, passes, repetitions): Float64Array of [repetition][thread][start, end]
 * seconds, every pool thread reading its own buffer (bandwidth.h) with the chosen path's widest loads.
 */
static napi_value read_bandwidth(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], buffer, result;
  int64_t bytes;
  int passes, repetitions;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || napi_get_value_int64(env, argv[0], &bytes) != napi_ok || !int_arg(env, argv[1], &passes) || !int_arg(env, argv[2], &repetitions)) {
    napi_throw_type_error(env, NULL, "herd native: readBandwidth takes bytes per thread, passes and repetitions");
    return NULL;
  }
  if (bytes <= 0 || passes <= 0 || repetitions <= 0) {
    napi_throw_range_error(env, NULL, "herd native: readBandwidth's bytes, passes and repetitions must be positive");
    return NULL;
  }
  const size_t count = (size_t)repetitions * herd_pool_threads() * 2;
  void *intervals;
  CHECK(napi_create_arraybuffer(env, count * sizeof(double), &intervals, &buffer));
  if (!herd_read_bandwidth(chosen.kernels->name, (size_t)bytes, passes, repetitions, intervals)) {
    napi_throw_error(env, NULL, "herd native: out of memory for the bandwidth probe's buffers");
    return NULL;
  }
  CHECK(napi_create_typedarray(env, napi_float64_array, count, buffer, 0, &result));
  return result;
}

/* Joins the threads when Node (or a worker thread's environment) shuts down. */
static void stop_at_exit(void *unused) {
  (void)unused;
  herd_pool_stop();
}

static napi_value init(napi_env env, napi_value exports) {
#if defined(__GLIBC__)
  /* glibc gives each thread that mallocs under contention an arena of its own, whose freed pages
   * stay resident; this process's threads malloc little and rarely at once, and one arena kept
   * ~12 MiB off a 1B model's peak RSS (docs/performance.md, "Peak RSS"). */
  mallopt(M_ARENA_MAX, 1);
#endif
  herd_choose_isa(NULL, &chosen);
  napi_add_env_cleanup_hook(env, stop_at_exit, NULL);
  const napi_property_descriptor functions[] = {
      {"choose", NULL, choose, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, info, NULL, NULL, NULL, napi_default, NULL},
      {"startThreads", NULL, start_threads, NULL, NULL, NULL, napi_default, NULL},
      {"stopThreads", NULL, stop_threads, NULL, NULL, NULL, napi_default, NULL},
      {"linear", NULL, linear, NULL, NULL, NULL, napi_default, NULL},
      {"linearMany", NULL, linear_many, NULL, NULL, NULL, napi_default, NULL},
      {"repackRows", NULL, repack_rows, NULL, NULL, NULL, napi_default, NULL},
      {"adviseHugePages", NULL, advise_huge_pages, NULL, NULL, NULL, napi_default, NULL},
      {"discardPages", NULL, discard_pages, NULL, NULL, NULL, napi_default, NULL},
      {"embedding", NULL, embedding, NULL, NULL, NULL, napi_default, NULL},
      {"rmsnorm", NULL, rmsnorm, NULL, NULL, NULL, napi_default, NULL},
      {"rope", NULL, rope, NULL, NULL, NULL, napi_default, NULL},
      {"swiglu", NULL, swiglu, NULL, NULL, NULL, napi_default, NULL},
      {"add", NULL, add, NULL, NULL, NULL, napi_default, NULL},
      {"attention", NULL, attention, NULL, NULL, NULL, napi_default, NULL},
      {"quantize", NULL, quantize, NULL, NULL, NULL, napi_default, NULL},
      {"calibrationHessian", NULL, calibration_hessian, NULL, NULL, NULL, napi_default, NULL},
      {"awqClip", NULL, awq_clip, NULL, NULL, NULL, napi_default, NULL},
      {"awqPseudoQuantize", NULL, awq_pseudo_quantize, NULL, NULL, NULL, napi_default, NULL},
      {"gptqFactor", NULL, gptq_factor, NULL, NULL, NULL, napi_default, NULL},
      {"gptqColumns", NULL, gptq_columns, NULL, NULL, NULL, napi_default, NULL},
      {"readBandwidth", NULL, read_bandwidth, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
