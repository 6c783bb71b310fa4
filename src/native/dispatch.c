/* Runtime choice of the instruction-set path: once at load, from CPUID and the OS's saved state (x86-64) or AT_HWCAP (arm64). */
#define _GNU_SOURCE /* syscall(), for Linux's AMX permission */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dispatch.h"

#if defined(__x86_64__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* The OS saves the AVX (YMM) and AVX-512 (opmask, ZMM) registers across context switches only if XCR0 says so. */
static unsigned long long xcr0(void) {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return 0; /* no OSXSAVE */
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((unsigned long long)hi << 32) | lo;
}

/*
 * AMX: CPUID's AMX-TILE and AMX-INT8 bits, the tile state in XCR0, and Linux's permission for this
 * process to use tile data (asked once; the kernel saves the tiles only for processes that ask).
 */
#define XFEATURE_XTILEDATA 18
#define ARCH_REQ_XCOMP_PERM 0x1023
static int has_amx(unsigned long long state) {
#ifdef HERD_EMULATE_AMX
  (void)state;
  return 1; /* its tile instructions emulated (kernels_x86.h) */
#else
  unsigned eax, ebx, ecx, edx;
  if (__get_cpuid_max(0, 0) < 7) return 0;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const int tile = (edx >> 24) & 1, int8 = (edx >> 25) & 1;
  const unsigned long long tile_state = 3ull << 17; /* XTILECFG and XTILEDATA */
  if (!tile || !int8 || (state & tile_state) != tile_state) return 0;
#if defined(__linux__)
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
  return 0;
#endif
#endif
}

static int has_avxvnni(void) {
#ifdef HERD_EMULATE_AVXVNNI
  return 1; /* its two instructions emulated (kernels_x86.h): AVX2 is enough */
#else
  unsigned eax, ebx, ecx, edx;
  if (__get_cpuid_max(0, 0) < 7) return 0;
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  return (eax >> 4) & 1;
#endif
}

static int has_avx512(int zmm_saved) {
#ifdef HERD_EMULATE_AVX512
  (void)zmm_saved;
  return 1; /* its AVX-512 intrinsics emulated (kernels_x86.h): AVX2 is enough */
#else
  return zmm_saved && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vnni");
#endif
}
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20) /* the kernel's bit for the Armv8.2 dot-product extension (SDOT/UDOT) */
#endif
#endif

/* Whether the CPU has SDOT/UDOT (the Armv8.2 dot-product extension), which the neon-dotprod path needs. */
#if defined(__aarch64__)
static int has_dotprod(void) {
#if defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__ARM_FEATURE_DOTPROD)
  return 1; /* the whole build targets the extension (Apple's clang does for Apple silicon): any CPU that runs it has it */
#else
  return 0; /* detected through Linux's AT_HWCAP, or by a build that targets it; otherwise the plain NEON path */
#endif
}
#endif

static const herd_kernels *table_of(const char *name) {
  if (strcmp(name, "scalar") == 0) return &herd_kernels_scalar;
#if defined(__x86_64__)
  if (strcmp(name, "avx2") == 0) return &herd_kernels_avx2;
  if (strcmp(name, "avxvnni") == 0) return &herd_kernels_avxvnni;
  if (strcmp(name, "avx512") == 0 || strcmp(name, "amx") == 0) return &herd_kernels_avx512;
#elif defined(__aarch64__)
  if (strcmp(name, "neon") == 0) return &herd_kernels_neon;
  if (strcmp(name, "neon-dotprod") == 0) return &herd_kernels_neon_dotprod;
#endif
  return NULL;
}

/* The chosen path's table, each kernel it leaves out (NULL) taken from the scalar path. */
static herd_kernels completed;

#define FROM_SCALAR(field) \
  if (completed.field == NULL) completed.field = herd_kernels_scalar.field

static const herd_kernels *kernels_of(const char *name) {
  const herd_kernels *table = table_of(name);
  if (table == NULL) return NULL;
  completed = *table;
  FROM_SCALAR(dot_f32);
  FROM_SCALAR(f16_to_f32);
  FROM_SCALAR(bf16_to_f32);
  FROM_SCALAR(dot_f16);
  FROM_SCALAR(dot_bf16);
  FROM_SCALAR(dot_q8_0);
  FROM_SCALAR(dot_q4_0);
  FROM_SCALAR(dot_q4_k);
  FROM_SCALAR(dot_q6_k);
  FROM_SCALAR(dot_q5_k);
  FROM_SCALAR(dot_q3_k);
  FROM_SCALAR(dot_q2_k);
  FROM_SCALAR(dot_q4_1);
  FROM_SCALAR(dot_q5_0);
  FROM_SCALAR(dot_q5_1);
  FROM_SCALAR(dot_iq4_nl);
  FROM_SCALAR(dot_iq4_xs);
  FROM_SCALAR(dot_int4_g128);
  FROM_SCALAR(gemm_q4_0_r16);
  FROM_SCALAR(gemm_q4_k_r16);
  FROM_SCALAR(gemm_q6_k_r16);
  FROM_SCALAR(gemm_q5_k_r16);
  FROM_SCALAR(gemm_iq4_xs_r16);
  FROM_SCALAR(gemm_q8_0_r16);
  FROM_SCALAR(attend_scores);
  FROM_SCALAR(exp_shifted);
  FROM_SCALAR(attend_values);
  FROM_SCALAR(swiglu);
#if defined(__x86_64__)
  if (strcmp(name, "amx") == 0) {
    completed.name = "amx";
    completed.token_tiles = 16;
    completed.gemm_q8_0_r16 = herd_gemm_q8_0_r16_amx;
    completed.gemm_q4_0_r16 = herd_gemm_q4_0_r16_amx;
    completed.gemm_q4_k_r16 = herd_gemm_q4_k_r16_amx;
  }
#endif
  /* The other gemm_* stay NULL where a path has none: ops.c then calls the path's own dot kernels row by row. */
  return &completed;
}

int herd_isa_supported(const char *name, char *why, size_t why_size) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  const unsigned long long state = xcr0();
  const int ymm = (state & 0x6) == 0x6, zmm = (state & 0xe6) == 0xe6;
  const int avx2 = ymm && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (strcmp(name, "scalar") == 0) return 1;
  if (strcmp(name, "avx2") == 0) {
    if (!avx2) snprintf(why, why_size, "this CPU or OS lacks AVX2, FMA or F16C");
    return avx2;
  }
  if (strcmp(name, "avxvnni") == 0) {
    const int ok = avx2 && has_avxvnni();
    if (!ok) snprintf(why, why_size, "this CPU lacks AVX-VNNI");
    return ok;
  }
  if (strcmp(name, "avx512") == 0) {
    const int ok = avx2 && has_avx512(zmm);
    if (!ok) snprintf(why, why_size, "this CPU or OS lacks AVX-512 F/BW/VL/VNNI");
    return ok;
  }
  if (strcmp(name, "amx") == 0) {
    char avx512_why[160] = "";
    const int ok = herd_isa_supported("avx512", avx512_why, sizeof avx512_why) && has_amx(state);
    if (!ok) snprintf(why, why_size, "%s", avx512_why[0] ? avx512_why : "this CPU or OS lacks AMX-TILE/AMX-INT8 (or Linux did not grant tile data)");
    return ok;
  }
#elif defined(__aarch64__)
  if (strcmp(name, "scalar") == 0 || strcmp(name, "neon") == 0) return 1; /* Advanced SIMD is part of AArch64 */
  if (strcmp(name, "neon-dotprod") == 0) {
    if (!herd_neon_sdot_compiled) {
      snprintf(why, why_size, "this build's compiler could not compile SDOT (clang targeting no dot-product extension)");
      return 0;
    }
    const int ok = has_dotprod();
#if defined(__linux__)
    if (!ok) snprintf(why, why_size, "this CPU lacks the dot-product extension (no asimddp in AT_HWCAP)");
#else
    if (!ok) snprintf(why, why_size, "the dot-product extension is detected on Linux only, or where the build targets it (-march=armv8.2-a+dotprod)");
#endif
    return ok;
  }
#else
  if (strcmp(name, "scalar") == 0) return 1;
#endif
  snprintf(why, why_size, "unknown path \"%s\" (choose one of %s)", name, HERD_ISA_NAMES);
  return 0;
}

int herd_choose_isa(const char *forced, herd_isa_choice *choice) {
  memset(choice, 0, sizeof *choice);
  if (forced != NULL && forced[0] != '\0') {
    if (!herd_isa_supported(forced, choice->reason, sizeof choice->reason)) return 0;
    choice->kernels = kernels_of(forced);
    snprintf(choice->reason, sizeof choice->reason, "forced by HERD_CPU_ISA=%s", forced);
    return 1;
  }
#if defined(__aarch64__)
  static const char *const preference[] = {"neon-dotprod", "neon"};
#if defined(__linux__)
  const char *detected = !has_dotprod()             ? "AArch64 Advanced SIMD; no asimddp in AT_HWCAP, so no SDOT"
                         : herd_neon_sdot_compiled ? "AArch64 Advanced SIMD; asimddp in AT_HWCAP"
                                                   : "AArch64 Advanced SIMD; asimddp in AT_HWCAP, but this build has no SDOT";
#elif defined(__ARM_FEATURE_DOTPROD)
  const char *detected = "AArch64 Advanced SIMD; this build targets the dot-product extension";
#else
  const char *detected = "AArch64 Advanced SIMD; the dot-product extension is detected on Linux only, or where the build targets it";
#endif
#else
  static const char *const preference[] = {"amx", "avx512", "avxvnni", "avx2"};
#if defined(HERD_EMULATE_AVX512) || defined(HERD_EMULATE_AVXVNNI)
  const char *detected = "CPUID and XCR0; a test build, whose AVX-512, AMX or AVX-VNNI instructions are emulated in AVX2";
#else
  const char *detected = "CPUID and XCR0";
#endif
#endif
  char why[160];
  for (size_t i = 0; i < sizeof preference / sizeof preference[0]; i++) {
    if (table_of(preference[i]) && herd_isa_supported(preference[i], why, sizeof why)) {
      choice->kernels = kernels_of(preference[i]);
      snprintf(choice->reason, sizeof choice->reason, "the best path this CPU supports (%s)", detected);
      return 1;
    }
  }
  choice->kernels = &herd_kernels_scalar;
  snprintf(choice->reason, sizeof choice->reason, "no SIMD path this build has runs on this CPU");
  return 1;
}
