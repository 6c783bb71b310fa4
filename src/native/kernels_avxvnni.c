/* AVX-VNNI (Alder Lake and later, without AVX-512): vpdpbusd on 256-bit vectors, VEX-encoded. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c,avxvnni")
#include <immintrin.h>
static inline __m256i dot_u8_i8(__m256i u, __m256i s) {
  return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
}
#define HERD_WIDE_FLOATS 0
#define HERD_PATH_NAME "avxvnni"
#define HERD_TABLE herd_kernels_avxvnni
#include "kernels_x86.h"
#endif
