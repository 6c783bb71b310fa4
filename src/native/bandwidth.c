/*
 * The read-bandwidth probe (bandwidth.h). Its read loops are kept here rather than in each path's
 * kernel table: they need nothing of a path but its widest load, chosen by the path's name.
 * Each loop reads STREAMS parts of the buffer at once, LINES_PER_STREAM cache lines from each per
 * iteration, as the decode kernels read several weight rows at once: one stream alone leaves the
 * hardware prefetchers short of the bandwidth several reach.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bandwidth.h"
#include "pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#define STREAMS 4
#define LINE 64
#define LINES_PER_STREAM 2
/* Bytes one iteration reads; a buffer is rounded up to whole iterations. */
#define STEP (STREAMS * LINES_PER_STREAM * LINE)
/* Spins at the start barrier before a thread gives its core up in turn (a busy machine). */
#define BARRIER_SPINS 1000

typedef uint64_t (*read_loop)(const uint8_t *buffer, size_t bytes);

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *buffer, size_t bytes) {
  const size_t part = bytes / STREAMS;
  __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
  for (const uint8_t *p = buffer, *end = buffer + part; p < end; p += LINES_PER_STREAM * LINE) {
    a = _mm512_add_epi64(a, _mm512_add_epi64(_mm512_load_si512(p), _mm512_load_si512(p + LINE)));
    b = _mm512_add_epi64(b, _mm512_add_epi64(_mm512_load_si512(p + part), _mm512_load_si512(p + part + LINE)));
    c = _mm512_add_epi64(c, _mm512_add_epi64(_mm512_load_si512(p + 2 * part), _mm512_load_si512(p + 2 * part + LINE)));
    d = _mm512_add_epi64(d, _mm512_add_epi64(_mm512_load_si512(p + 3 * part), _mm512_load_si512(p + 3 * part + LINE)));
  }
  return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d)));
}

__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *buffer, size_t bytes) {
  const size_t part = bytes / STREAMS;
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  for (const uint8_t *p = buffer, *end = buffer + part; p < end; p += LINES_PER_STREAM * LINE) {
    for (int at = 0; at < LINES_PER_STREAM * LINE; at += 32) {
      const uint8_t *q = p + at;
      a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)q));
      b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(q + part)));
      c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(q + 2 * part)));
      d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(q + 3 * part)));
    }
  }
  const __m256i sum = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
  uint64_t lanes[4];
  _mm256_storeu_si256((__m256i *)lanes, sum);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#endif

/* The portable loop: 128-bit loads where every CPU of the architecture has them (SSE2, NEON), else 64-bit words. */
static uint64_t read_portable(const uint8_t *buffer, size_t bytes) {
  const size_t part = bytes / STREAMS;
#if defined(__x86_64__)
  __m128i a = _mm_setzero_si128(), b = a, c = a, d = a;
#define LOAD_ADD(sum, at) sum = _mm_add_epi64(sum, _mm_load_si128((const __m128i *)(at)))
#define WIDTH 16
#elif defined(__aarch64__)
  uint64x2_t a = vdupq_n_u64(0), b = a, c = a, d = a;
#define LOAD_ADD(sum, at) sum = vaddq_u64(sum, vld1q_u64((const uint64_t *)(const void *)(at)))
#define WIDTH 16
#else
  uint64_t a = 0, b = 0, c = 0, d = 0;
#define LOAD_ADD(sum, at) sum += *(const uint64_t *)(const void *)(at)
#define WIDTH 8
#endif
  for (const uint8_t *p = buffer, *end = buffer + part; p < end; p += LINES_PER_STREAM * LINE) {
    for (int at = 0; at < LINES_PER_STREAM * LINE; at += WIDTH) {
      LOAD_ADD(a, p + at);
      LOAD_ADD(b, p + part + at);
      LOAD_ADD(c, p + 2 * part + at);
      LOAD_ADD(d, p + 3 * part + at);
    }
  }
#undef LOAD_ADD
#undef WIDTH
#if defined(__x86_64__)
  uint64_t lanes[2];
  _mm_storeu_si128((__m128i *)lanes, _mm_add_epi64(_mm_add_epi64(a, b), _mm_add_epi64(c, d)));
  return lanes[0] + lanes[1];
#elif defined(__aarch64__)
  return vaddvq_u64(vaddq_u64(vaddq_u64(a, b), vaddq_u64(c, d)));
#else
  return a + b + c + d;
#endif
}

static read_loop loop_for(const char *isa) {
#if defined(__x86_64__)
  /* amx is avx512 with tiles. The CPU is asked as well as the path: npm run test:avx512 runs that path without AVX-512. */
  const int avx512 = strcmp(isa, "avx512") == 0 || strcmp(isa, "amx") == 0;
  if (avx512 && __builtin_cpu_supports("avx512f")) return read_avx512;
  if (avx512 || strcmp(isa, "avx2") == 0 || strcmp(isa, "avxvnni") == 0) return read_avx2;
#endif
  (void)isa;
  return read_portable;
}

static double seconds_now(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

typedef struct {
  read_loop read;
  uint8_t **buffers;
  size_t bytes;
  int passes, threads, paged_in;
  atomic_int arrived;  /* threads at the start barrier */
  double *intervals;   /* this repetition's [thread][2] */
  atomic_uint_least64_t sink; /* the sums, so the loads cannot be left out */
} probe_job;

/*
 * Every thread waits here until all have arrived, so the reads overlap. The pool runs a task on a
 * worker only if it joins before the caller's task returns; the caller waits in this barrier, so
 * every worker joins.
 */
static void await_all(probe_job *job) {
  atomic_fetch_add(&job->arrived, 1);
  for (int spins = 0; atomic_load(&job->arrived) < job->threads; spins++) {
    if (spins >= BARRIER_SPINS) sched_yield();
  }
}

static void probe_task(void *context, int thread) {
  probe_job *job = context;
  uint8_t *buffer = job->buffers[thread];
  /* Paged in by the thread that reads it, so that its pages lie on that thread's memory node. */
  if (!job->paged_in) memset(buffer, thread + 1, job->bytes);
  await_all(job);
  uint64_t sum = 0;
  const double started = seconds_now();
  for (int pass = 0; pass < job->passes; pass++) sum += job->read(buffer, job->bytes);
  job->intervals[2 * thread] = started;
  job->intervals[2 * thread + 1] = seconds_now();
  atomic_fetch_add(&job->sink, sum);
}

int herd_read_bandwidth(const char *isa, size_t bytes_per_thread, int passes, int repetitions, double *intervals) {
  const int threads = herd_pool_threads();
  probe_job job = {.read = loop_for(isa), .bytes = (bytes_per_thread + STEP - 1) / STEP * STEP, .passes = passes, .threads = threads};
  job.buffers = calloc((size_t)threads, sizeof *job.buffers);
  int ok = job.buffers != NULL;
  for (int t = 0; ok && t < threads; t++) ok = (job.buffers[t] = aligned_alloc(LINE, job.bytes)) != NULL;
  for (int r = 0; ok && r < repetitions; r++) {
    atomic_store(&job.arrived, 0);
    job.intervals = intervals + (size_t)r * threads * 2;
    herd_pool_run(probe_task, &job);
    job.paged_in = 1;
  }
  for (int t = 0; job.buffers != NULL && t < threads; t++) free(job.buffers[t]);
  free(job.buffers);
  return ok;
}
