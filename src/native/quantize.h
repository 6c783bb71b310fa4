#ifndef HERD_QUANTIZE_H
#define HERD_QUANTIZE_H
/*
 * GGUF's block quantizers, byte for byte as herd's TypeScript writers (src/formats/ggml-blocks.ts,
 * ggml-quantize-legacy.ts, ggml-k-blocks.ts, ggml-quantize-k.ts) and llama.cpp's reference
 * quantizers write them. Types are ggml's type ids (GgmlType in src/formats/gguf.ts), not the
 * kernels' herd_format codes: these write files, they do not compute on them.
 */
#include <stddef.h>
#include <stdint.h>

enum herd_ggml_type {
  GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7, GGML_Q8_0 = 8,
  GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14,
};

/* Bytes of `cols` weights stored as `type`; 0 when the type is not written here or cols is not whole blocks. */
size_t herd_quantized_row_bytes(int type, int cols);
/* Quantizes x [rows, cols] into `out` (rows · herd_quantized_row_bytes bytes) on the thread pool; 0 for an unknown type. */
int herd_quantize_rows(int type, const float *x, int rows, int cols, uint8_t *out);
#endif
