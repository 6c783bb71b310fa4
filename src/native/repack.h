/*
 * Q4_0 matrices repacked at load for the tiled products (docs/performance.md, "Repacked Q4_0").
 *
 * Rows go in groups of REPACK_ROWS; a group keeps its place (the bytes of its rows, so row r0 of a
 * group still starts at r0 · row_bytes) but stores its blocks interleaved: for block b, the 16
 * rows' half scales (32 bytes), then four chunks of 64 bytes, chunk j holding bytes 4j..4j+3 of
 * each row's 16 nibble bytes, row after row. One vector load then gives four codes of each of 16
 * rows (low nibbles: values 4j..4j+3; high nibbles: 16+4j..16+4j+3), and one int32 lane per row
 * accumulates a block for one token against four activation bytes broadcast to every lane: no
 * horizontal sums, and each unpacked vector serves a whole tile of tokens. Rows past the last
 * whole group stay as stored.
 *
 * Q4_K likewise, per super-block of a group: the 16 rows' d (32 bytes) and dmin (32 bytes), their
 * 12 packed scale bytes as three chunks of 64 (chunk k: bytes 4k..4k+3 of each row, so the 6-bit
 * unpacking runs on 16 rows at once, one int32 lane each), then the 128 nibble bytes as 32 chunks
 * of 64 (chunk 8p + c: bytes 32p + 4c.. + 3 of each row; low nibbles are sub-block 2p, high 2p + 1).
 * Q6_K: the 16 d's, the 16 int8 scales as four chunks of 64, then each row's 256 6-bit codes
 * rebuilt as three bytes for every four (Q6R_CODES): codes l, l + 32 and l + 64 of a half of 128
 * whole in bits 0-5 of bytes A, B and C, code l + 96 in their bits 6-7 (its bits 0-1 in A's, 2-3
 * in B's, 4-5 in C's); chunk (n, k, c): bytes 4c..4c + 3 of half n's A (k = 0), B or C of each row.
 * The stored ql/qh split took 17 vector operations for four vectors of codes; this one takes 11
 * (a mask each for three, eight for the fourth). Q5_K: Q4_K's layout with the 32 qh bytes as
 * eight chunks of 64 (chunk c: bytes 4c..4c+3 of each row, whose bit j is the fifth bit of
 * sub-block j's codes) between the scales and the nibbles. IQ4_XS: the 16 d's, the 16 rows' scales_h (2 bytes each) and
 * scales_l (one chunk of 64), then sub-block j's 16 code bytes as four chunks of 64 (chunk 4j + c:
 * bytes 16j + 4c.. + 3 of each row; low nibbles are its codes 4c..4c+3, high nibbles 16 further). Q8_0: the 16 half scales, then the 32 code bytes as eight chunks
 * of 64 (a block of 16 rows is 544 bytes, read front to back: decode's weights are one stream,
 * where the stored layout's tiles of rows read one stream per row).
 */
#ifndef HERD_REPACK_H
#define HERD_REPACK_H
#include "herd_native.h"
#include "blocks32.h"
#include "kquants.h"

#define REPACK_ROWS 16
#define R16_BLOCK_BYTES (REPACK_ROWS * Q4_0_BYTES)
/* Offset in a repacked block of row r's code bytes 4j..4j+3 (Q4_0's 16 nibble bytes, j < 4; Q8_0's 32 code bytes, j < 8). */
#define R16_CHUNK(j, r) (2 * REPACK_ROWS + 64 * (j) + 4 * (r))
/* Q8_0: the 16 rows' half scales, then eight chunks of 64 bytes as R16_CHUNK places them. */
#define Q8R_BLOCK_BYTES (REPACK_ROWS * Q8_0_BYTES)

#define K16_BLOCK_BYTES (REPACK_ROWS * Q4_K_BYTES)
#define K16_D 0
#define K16_DMIN (2 * REPACK_ROWS)
#define K16_SCALES(k, r) (4 * REPACK_ROWS + 64 * (k) + 4 * (r))
#define K16_CHUNK(p, c, r) (16 * REPACK_ROWS + 64 * (8 * (p) + (c)) + 4 * (r))

/* Rewrites a stored Q4_0 matrix in place as above; 0 when the one group of scratch cannot be allocated. */
int herd_repack_q4_0_r16(uint8_t *bytes, int rows, int cols);
int herd_repack_q4_k_r16(uint8_t *bytes, int rows, int cols);
#define Q6R_BLOCK_BYTES (REPACK_ROWS * Q6_K_BYTES)
#define Q6R_D 0
#define Q6R_SCALES(k, r) (2 * REPACK_ROWS + 64 * (k) + 4 * (r))
#define Q6R_CODES(n, k, c, r) (18 * REPACK_ROWS + 64 * (24 * (n) + 8 * (k) + (c)) + 4 * (r))
int herd_repack_q6_k_r16(uint8_t *bytes, int rows, int cols);
int herd_repack_q8_0_r16(uint8_t *bytes, int rows, int cols);
#define Q5R_BLOCK_BYTES (REPACK_ROWS * Q5_K_BYTES)
#define Q5R_QH(c, r) (16 * REPACK_ROWS + 64 * (c) + 4 * (r))
#define Q5R_CHUNK(p, c, r) (48 * REPACK_ROWS + 64 * (8 * (p) + (c)) + 4 * (r))
int herd_repack_q5_k_r16(uint8_t *bytes, int rows, int cols);
#define I4R_BLOCK_BYTES (REPACK_ROWS * IQ4_XS_BYTES)
#define I4R_D 0
#define I4R_SCALES_H(r) (2 * REPACK_ROWS + 2 * (r))
#define I4R_SCALES_L(r) (4 * REPACK_ROWS + 4 * (r))
#define I4R_CHUNK(j, c, r) (8 * REPACK_ROWS + 64 * (4 * (j) + (c)) + 4 * (r))
int herd_repack_iq4_xs_r16(uint8_t *bytes, int rows, int cols);
/* The stored format of a repacked one (FMT_Q4_0 for FMT_Q4_0_R16, …), or -1. */
int herd_r16_stored_format(int format);
/* Row r of a group's repacked block (a Q4_0 or Q8_0 block, a Q4_K or Q6_K super-block) as the stored block was: for embedding lookups. */
void herd_r16_unpack_row(int format, const uint8_t *block, int r, uint8_t *out);
/* The layouts' products in plain C (every path's fallback, and the reference the SIMD ones are tested against). */
void herd_gemm_q4_0_r16_portable(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
void herd_gemm_q4_k_r16_portable(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
void herd_gemm_q6_k_r16_portable(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
void herd_gemm_q5_k_r16_portable(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
void herd_gemm_iq4_xs_r16_portable(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
void herd_gemm_q8_0_r16_portable(const uint8_t *w, size_t row_bytes, int rows, const quantized_row *x, int tokens, int cols, float *y, int y_stride);
#endif
