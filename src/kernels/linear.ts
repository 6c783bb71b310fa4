import { HerdError } from '../errors.js';
import { packedBytes, type PackedFormat } from '../formats/weights.js';
import { copyColumns } from './protocol.js';
import type { KernelInstance } from './wasm-memory.js';

/** A weight (or one thread's shard of its rows) as stored, rows of [out, in], in one instance's memory. */
export interface StoredMatrix {
  offset: number;
  byteLength: number;
  format: PackedFormat;
  rows: number;
  cols: number;
}

/** A stored matrix and the instance whose memory holds it. */
export interface PlacedMatrix extends StoredMatrix {
  instance: KernelInstance;
}

const FLOAT_DTYPE_CODE: Partial<Record<PackedFormat, number>> = { F32: 0, F16: 1, BF16: 2 };
// GGML type ids, as the kernels take them.
const QUANT_FORMAT_CODE: Partial<Record<PackedFormat, number>> = { Q8_0: 8, Q4_0: 2, Q4_K: 12 };
// K-quant super-blocks kept as GGUF stores them, by ggml type id: computed on float activations
// (see src/kernels/assembly/kquants.ts).
const K_QUANT_CODE: Partial<Record<PackedFormat, number>> = { Q2_K: 10, Q3_K: 11, Q5_K: 13, Q6_K: 14, IQ4_XS: 23 };
// GGUF blocks of 32 the kernels decode to floats as stored (blocks32.ts), by ggml type id.
const BLOCK32_FORMAT_CODE: Partial<Record<PackedFormat, number>> = { Q4_1: 3, Q5_0: 6, Q5_1: 7, IQ4_NL: 20 };
// Of those, the ones with a per-block min, whose products need the activations' block sums.
const WITH_MIN: ReadonlySet<PackedFormat> = new Set(['Q4_1', 'Q5_1']);
// Each quantized format's block length (INT4_G128: its group of 128 columns).
const BLOCK_LENGTH: Partial<Record<PackedFormat, number>> = {
  Q8_0: 32, Q4_0: 32, Q4_1: 32, Q5_0: 32, Q5_1: 32, IQ4_NL: 32, Q4_K: 256, Q6_K: 256, Q5_K: 256, Q3_K: 256, Q2_K: 256, IQ4_XS: 256, INT4_G128: 128,
};
// Activations are quantized in Q8_0 blocks of 32.
const QUANT_BLOCK = 32;

/** Whether the kernels multiply weights stored as `format` as stored (every float and quantized format with a block length). */
export function kernelsComputeOn(format: PackedFormat): boolean {
  return FLOAT_DTYPE_CODE[format] !== undefined || BLOCK_LENGTH[format] !== undefined;
}

/** Bytes of one stored row of `cols` weights in a format the kernels compute on. */
export function rowBytes(format: PackedFormat, cols: number): number {
  if (BLOCK_LENGTH[format] !== undefined) checkBlocks(format, cols);
  return packedBytes(format, 1, cols);
}

/**
 * GGUF's Q8_0, Q4_0 and Q4_K rows are kept in groups of four interleaved rows (repack_rows,
 * repack_q4k in the kernels); the other K-quants and INT4_G128 rows are computed on as read.
 */
function isGrouped(format: PackedFormat): boolean {
  return QUANT_FORMAT_CODE[format] !== undefined;
}

/** Bytes one row takes in a kernel instance: as stored, but for Q4_K's unpacked scales (148 bytes per 256 weights). */
function storedRowBytes(format: PackedFormat, cols: number): number {
  return format === 'Q4_K' ? (cols / 256) * 148 : rowBytes(format, cols);
}

/** Bytes a matrix of `rows` rows takes in a kernel instance (row groups pad the last group). */
export function storageBytes(format: PackedFormat, rows: number, cols: number): number {
  return (isGrouped(format) ? Math.ceil(rows / 4) * 4 : rows) * storedRowBytes(format, cols);
}

// Weights travel from disk to their place in chunks of whole row groups of at most this size.
export const CHUNK_BYTES = 4 * 2 ** 20;

/** Rows per loading chunk: a multiple of four. */
export function chunkRows(format: PackedFormat, cols: number): number {
  const rows = Math.floor(CHUNK_BYTES / rowBytes(format, cols) / 4) * 4;
  if (rows === 0) throw new HerdError(`rows of ${cols} ${format} weights are too long for the CPU kernels`);
  return rows;
}

/**
 * Writes stored rows starting at row `firstRow` (a multiple of four) of `matrix`: `fill` puts
 * their bytes as stored on disk into the view it is given. Row-grouped formats are filled into
 * scratch memory and reordered into place; the others are filled in place.
 */
export function writeRows(instance: KernelInstance, matrix: StoredMatrix, firstRow: number, count: number, fill: (target: Uint8Array) => void): void {
  const bytesPerRow = rowBytes(matrix.format, matrix.cols);
  const destination = matrix.offset + firstRow * storedRowBytes(matrix.format, matrix.cols);
  if (!isGrouped(matrix.format)) {
    fill(instance.bytes(destination, count * bytesPerRow));
    return;
  }
  const groups = Math.ceil(count / 4);
  instance.scope(() => {
    const staging = instance.scratch(groups * 4 * bytesPerRow);
    fill(instance.bytes(staging, count * bytesPerRow));
    instance.bytes(staging + count * bytesPerRow, (groups * 4 - count) * bytesPerRow).fill(0);
    if (matrix.format === 'Q4_K') instance.kernels.repack_q4k(staging, destination, groups, matrix.cols / 256);
    else instance.kernels.repack_rows(QUANT_FORMAT_CODE[matrix.format]!, staging, destination, groups, matrix.cols / QUANT_BLOCK);
  });
}

/**
 * y[t, c] = Σ_k W[c, k] · x[t, k] for the matrix's rows c, written at columns 0..rows-1 of a
 * y with `yStride` floats per token. Q8_0, Q4_0, Q4_K and INT4_G128 weights multiply activations
 * quantized to Q8_0 blocks, as llama.cpp does; the other GGUF blocks of 32 (Q4_1, Q5_0, Q5_1,
 * IQ4_NL) and the other K-quants are decoded to floats and multiply the float activations. Must
 * run inside the instance's scratch scope.
 */
export function multiply(instance: KernelInstance, matrix: StoredMatrix, x: number, tokens: number, y: number, yStride: number): void {
  const kernels = instance.kernels;
  const floatCode = FLOAT_DTYPE_CODE[matrix.format];
  if (floatCode !== undefined) {
    kernels.linear_float(floatCode, matrix.offset, x, y, matrix.cols, yStride, tokens, 0, matrix.rows);
    return;
  }
  const kQuantCode = K_QUANT_CODE[matrix.format];
  if (kQuantCode !== undefined) {
    // Room for one row decoded to floats.
    kernels.linear_kquant(kQuantCode, matrix.offset, x, y, matrix.cols, yStride, tokens, 0, matrix.rows, instance.scratch(matrix.cols * 4));
    return;
  }
  const block32Code = BLOCK32_FORMAT_CODE[matrix.format];
  if (block32Code !== undefined) {
    checkBlocks(matrix.format, matrix.cols);
    const sums = WITH_MIN.has(matrix.format) ? instance.scratch(((tokens * matrix.cols) / QUANT_BLOCK) * 4) : 0;
    if (sums) kernels.activation_block_sums(x, sums, matrix.cols, tokens);
    kernels.linear_blocks32(block32Code, matrix.offset, x, sums, y, matrix.cols, yStride, tokens, 0, matrix.rows);
    return;
  }
  const blocks = (tokens * matrix.cols) / QUANT_BLOCK;
  const quantized = instance.scratch(tokens * matrix.cols);
  const scales = instance.scratch(blocks * 4);
  const sums = instance.scratch(blocks * 4);
  // Q8_0's weights are signed, so its products take the activations split in two (see the kernels).
  const split = matrix.format === 'Q8_0' ? instance.scratch(blocks * 2 * QUANT_BLOCK) : 0;
  kernels.quantize_activations(x, quantized, scales, sums, split, matrix.cols, tokens);
  if (matrix.format === 'INT4_G128') {
    kernels.linear_int4(matrix.offset, quantized, scales, sums, y, matrix.cols, yStride, tokens, 0, matrix.rows);
    return;
  }
  const code = quantCode(matrix.format, matrix.cols);
  if (matrix.format === 'Q4_K') kernels.linear_q4k(matrix.offset, quantized, scales, sums, y, matrix.cols, yStride, tokens, 0, matrix.rows);
  else kernels.linear_q(code, matrix.offset, quantized, scales, sums, split, y, matrix.cols, yStride, tokens, 0, matrix.rows);
}

/**
 * multiply for a matrix that may lie in another memory than the activations (`home`): then x is
 * copied into the matrix's memory and the products back, a few kilobytes per token against the
 * matrix's megabytes. Must run inside home's scratch scope.
 */
export function multiplyPlaced(home: KernelInstance, matrix: PlacedMatrix, x: number, tokens: number, y: number, yStride: number): void {
  const memory = matrix.instance;
  if (memory === home) {
    multiply(home, matrix, x, tokens, y, yStride);
    return;
  }
  memory.scope(() => {
    const xCopy = memory.scratch(tokens * matrix.cols * 4);
    memory.floats(xCopy, tokens * matrix.cols).set(home.floats(x, tokens * matrix.cols));
    const products = memory.scratch(tokens * matrix.rows * 4);
    multiply(memory, matrix, xCopy, tokens, products, matrix.rows);
    const target = home.floats(y, (tokens - 1) * yStride + matrix.rows);
    copyColumns(tokens, matrix.rows, memory.floats(products, tokens * matrix.rows), matrix.rows, 0, target, yStride, 0);
  });
}

/** Rows of a table for each id (stored at `ids` as int32), as float32 at `out`. */
export function gatherRows(instance: KernelInstance, table: StoredMatrix, ids: number, count: number, out: number): void {
  const floatCode = FLOAT_DTYPE_CODE[table.format];
  // AWQ and GPTQ leave the embedding table in floats.
  if (table.format === 'INT4_G128') throw new HerdError('the CPU kernels cannot look up embeddings in INT4_G128 rows');
  const kQuantCode = K_QUANT_CODE[table.format];
  const block32Code = BLOCK32_FORMAT_CODE[table.format];
  if (floatCode !== undefined) instance.kernels.embedding_float(floatCode, table.offset, ids, out, table.cols, count);
  else if (kQuantCode !== undefined) instance.kernels.embedding_kquant(kQuantCode, table.offset, ids, out, table.cols, count);
  else if (block32Code !== undefined) instance.kernels.embedding_blocks32(block32Code, table.offset, ids, out, table.cols, count);
  else if (table.format === 'Q4_K') instance.kernels.embedding_q4k(table.offset, ids, out, table.cols, count);
  else instance.kernels.embedding_q(quantCode(table.format, table.cols), table.offset, ids, out, table.cols, count);
}

/**
 * One thread's share of a bandwidth probe: fills a fresh buffer of `bytes` bytes (paging it in),
 * calls `whenPagedIn` (where the threads wait for each other, so that their reads overlap), then
 * reads the buffer `passes` times.
 */
export function readMemory(instance: KernelInstance, bytes: number, passes: number, whenPagedIn: () => void): void {
  const buffer = instance.allocate(bytes);
  instance.bytes(buffer, bytes).fill(1);
  whenPagedIn();
  for (let pass = 0; pass < passes; pass++) instance.kernels.read_sum(buffer, bytes);
  instance.free(buffer, bytes);
}

function quantCode(format: PackedFormat, cols: number): number {
  checkBlocks(format, cols);
  return QUANT_FORMAT_CODE[format]!;
}

function checkBlocks(format: PackedFormat, cols: number): void {
  if (BLOCK_LENGTH[format] === undefined) throw new HerdError(`the CPU kernels cannot compute on ${format} weights`);
  const block = BLOCK_LENGTH[format]!;
  if (cols % block !== 0) throw new HerdError(`${format} rows must be a multiple of ${block} long, got ${cols}`);
}
