/* The AVX2 + FMA + F16C path: kernels_x86.h compiled for its target. */
#define HERD_PATH 1
#include "kernels_x86.h"
