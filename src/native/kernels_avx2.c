/* AVX2 + FMA + F16C: byte products through maddubs (pairs to int16), then madd to int32. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
static inline __m256i dot_u8_i8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
#define HERD_WIDE_FLOATS 0
#define HERD_PATH_NAME "avx2"
#define HERD_TABLE herd_kernels_avx2
#include "kernels_x86.h"
#endif
