/* The scale searches on AVX2: 8 lanes, one per sub-block of a Q4_K/Q5_K super-block. No FMA: products round before sums, as the scalar code's. */
#if defined(__x86_64__)
#pragma GCC target("avx2")
#define LANES 8
#define VECTOR_BYTES 32
#define SEARCHES_TABLE herd_scale_searches_avx2
#include "quantize_search.h"
#endif
