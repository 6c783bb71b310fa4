/* The AVX-512 F, BW, VL, VNNI path: kernels_x86.h compiled for its target. */
#define HERD_PATH 3
#include "kernels_x86.h"
