{
  "targets": [
    {
      "target_name": "herd_native",
      "sources": [
        "src/native/addon.c",
        "src/native/bandwidth.c",
        "src/native/calibrate.c",
        "src/native/dispatch.c",
        "src/native/pool.c",
        "src/native/ops.c",
        "src/native/quantize.c",
        "src/native/quantize_lowbit.c",
        "src/native/repack.c",
        "src/native/quantize_portable.c",
        "src/native/quantize_avx2.c",
        "src/native/kernels_scalar.c",
        "src/native/kquants_scalar.c",
        "src/native/blocks32_scalar.c",
        "src/native/kernels_avx2.c",
        "src/native/kernels_avxvnni.c",
        "src/native/kernels_avx512.c"
      ],
      "conditions": [
        ["target_arch=='arm64'", {"sources": ["src/native/kernels_neon.c"]}]
      ],
      "cflags": ["-std=c11", "-O3", "-Wall", "-Wextra", "-fno-math-errno"],
      "xcode_settings": {"OTHER_CFLAGS": ["-std=c11", "-O3", "-Wall", "-Wextra", "-fno-math-errno"]},
      "libraries": ["-lpthread", "-lm"]
    }
  ]
}
