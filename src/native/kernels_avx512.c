/*
 * AVX-512 (F, BW, VL, VNNI): float products 16 lanes wide; byte products through EVEX vpdpbusd
 * on 256-bit vectors (a Q8_0/Q4_0 block is 32 bytes, so wider vectors would only pair blocks).
 */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#include <immintrin.h>
static inline __m256i dot_u8_i8(__m256i u, __m256i s) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}
#define HERD_WIDE_FLOATS 1
#define HERD_PATH_NAME "avx512"
#define HERD_TABLE herd_kernels_avx512
#include "kernels_x86.h"
#endif
