/* The AVX-VNNI path: kernels_x86.h compiled for its target. */
#define HERD_PATH 2
#include "kernels_x86.h"
