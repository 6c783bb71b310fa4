import { HerdError } from '../errors.js';
import { packedBytes, type PackedFormat } from '../engine/ops.js';
import type { KernelInstance } from './wasm-memory.js';

/** A weight (or one thread's shard of its rows) as stored, rows of [out, in], in one instance's memory. */
export interface StoredMatrix {
  offset: number;
  byteLength: number;
  format: PackedFormat;
  rows: number;
  cols: number;
}

const FLOAT_DTYPE_CODE: Partial<Record<PackedFormat, number>> = { F32: 0, F16: 1, BF16: 2 };
// GGML type ids, as the kernels take them, and each format's block length.
const QUANT_FORMAT_CODE: Partial<Record<PackedFormat, number>> = { Q8_0: 8, Q4_0: 2, Q4_K: 12 };
const BLOCK_LENGTH: Partial<Record<PackedFormat, number>> = { Q8_0: 32, Q4_0: 32, Q4_K: 256 };
// Activations are quantized in Q8_0 blocks of 32.
const QUANT_BLOCK = 32;

/** Bytes of `rows` rows of `cols` weights in a format the kernels compute on. */
export function matrixBytes(format: PackedFormat, rows: number, cols: number): number {
  if (QUANT_FORMAT_CODE[format] !== undefined) checkBlocks(format, cols);
  return packedBytes(format, rows, cols);
}

/**
 * y[t, c] = Σ_k W[c, k] · x[t, k] for the matrix's rows c, written at columns 0..rows-1 of a
 * y with `yStride` floats per token. Quantized weights multiply activations quantized to Q8_0
 * blocks, as llama.cpp does. Must run inside the instance's scratch scope.
 */
export function multiply(instance: KernelInstance, matrix: StoredMatrix, x: number, tokens: number, y: number, yStride: number): void {
  const kernels = instance.kernels;
  const floatCode = FLOAT_DTYPE_CODE[matrix.format];
  if (floatCode !== undefined) {
    kernels.linear_float(floatCode, matrix.offset, x, y, matrix.cols, yStride, tokens, 0, matrix.rows);
    return;
  }
  const quantized = instance.scratch(tokens * matrix.cols);
  const scales = instance.scratch((tokens * matrix.cols) / QUANT_BLOCK * 4);
  kernels.quantize_q8_rows(x, quantized, scales, matrix.cols, tokens);
  const code = quantCode(matrix.format, matrix.cols);
  if (matrix.format === 'Q4_K') kernels.linear_q4k(matrix.offset, quantized, scales, y, matrix.cols, yStride, tokens, 0, matrix.rows);
  else kernels.linear_q(code, matrix.offset, quantized, scales, y, matrix.cols, yStride, tokens, 0, matrix.rows);
}

/** Rows of a table for each id (stored at `ids` as int32), as float32 at `out`. */
export function gatherRows(instance: KernelInstance, table: StoredMatrix, ids: number, count: number, out: number): void {
  const floatCode = FLOAT_DTYPE_CODE[table.format];
  if (floatCode !== undefined) instance.kernels.embedding_float(floatCode, table.offset, ids, out, table.cols, count);
  else if (table.format === 'Q4_K') instance.kernels.embedding_q4k(table.offset, ids, out, table.cols, count);
  else instance.kernels.embedding_q(quantCode(table.format, table.cols), table.offset, ids, out, table.cols, count);
}

/**
 * One thread's share of a bandwidth probe: fills a fresh buffer of `bytes` bytes (paging it in),
 * then reads it `passes` times; returns the seconds the reads took.
 */
export function readMemory(instance: KernelInstance, bytes: number, passes: number): number {
  const buffer = instance.allocate(bytes);
  instance.bytes(buffer, bytes).fill(1);
  const started = performance.now();
  for (let pass = 0; pass < passes; pass++) instance.kernels.read_sum(buffer, bytes);
  const seconds = (performance.now() - started) / 1000;
  instance.free(buffer, bytes);
  return seconds;
}

function quantCode(format: PackedFormat, cols: number): number {
  checkBlocks(format, cols);
  return QUANT_FORMAT_CODE[format]!;
}

function checkBlocks(format: PackedFormat, cols: number): void {
  if (QUANT_FORMAT_CODE[format] === undefined) throw new HerdError(`the CPU kernels cannot compute on ${format} weights`);
  const block = BLOCK_LENGTH[format]!;
  if (cols % block !== 0) throw new HerdError(`${format} rows must be a multiple of ${block} long, got ${cols}`);
}
