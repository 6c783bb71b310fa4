/* The scale searches for any CPU: 4 lanes, the baseline ISA's 128-bit vectors (SSE2 on x86-64). */
#define LANES 4
#define VECTOR_BYTES 16
#define SEARCHES_TABLE herd_scale_searches_portable
#include "quantize_search.h"
