#ifndef HERD_DISPATCH_H
#define HERD_DISPATCH_H
#include "herd_native.h"

/* The paths this build has, as a list (addon.c's info() reports each) and as text for messages. */
#if defined(__x86_64__)
#define HERD_ISA_LIST {"scalar", "avx2", "avxvnni", "avx512", "amx"}
#define HERD_ISA_NAMES "scalar, avx2, avxvnni, avx512, amx"
#elif defined(__aarch64__)
#define HERD_ISA_LIST {"scalar", "neon", "neon-dotprod"}
#define HERD_ISA_NAMES "scalar, neon, neon-dotprod"
#else
#define HERD_ISA_LIST {"scalar"}
#define HERD_ISA_NAMES "scalar"
#endif

typedef struct {
  const herd_kernels *kernels;
  char reason[200];  /* why this path, or why the forced one cannot run */
} herd_isa_choice;

/* Whether the CPU (and OS) can run the named path; if not, `why` says what is missing. */
int herd_isa_supported(const char *name, char *why, size_t why_size);
/* The forced path (HERD_CPU_ISA) when given and supported, else the best one; 0 if the forced one cannot run. */
int herd_choose_isa(const char *forced, herd_isa_choice *choice);
#endif
