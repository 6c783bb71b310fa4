import { HerdError } from '../errors.js';
import { halfToFloat } from './half.js';
import { bf16ToFloat32, f16ToFloat32 } from './safetensors.js';
import { dequantizeBlocks, IQ4_NL_LEVELS } from './ggml-blocks.js';
import { dequantizeQ4K } from './ggml-k-blocks.js';
import { dequantizeKQuant } from './ggml-k-quants.js';
import { GGML_LAYOUT, GgmlType } from './gguf.js';

/**
 * Every ggml type herd can turn into float32, each exactly as ggml's `dequantize_row_*`
 * (ggml-quants.c) computes it: float32 arithmetic, so a product of a code and an f16 scale is
 * exact and a scale-plus-min is rounded once (JavaScript's double sum rounded by Math.fround
 * gives the same float). Registering another type is one line in DEQUANTIZERS.
 */

/** Floats of `count` elements from their stored bytes (whole blocks, checked by the caller). */
export type Dequantizer = (bytes: Uint8Array, count: number) => Float32Array;

/** Where a tensor comes from, for error lines: file and tensor name. */
export interface TensorPlace {
  file: string;
  tensor: string;
}

export const DEQUANTIZERS: Partial<Record<GgmlType, Dequantizer>> = {
  [GgmlType.F32]: (bytes, count) => elements(bytes, count, Float32Array),
  [GgmlType.F16]: (bytes, count) => widenHalves(bytes, count, f16ToFloat32),
  [GgmlType.BF16]: (bytes, count) => widenHalves(bytes, count, bf16ToFloat32),
  [GgmlType.F64]: (bytes, count) => Float32Array.from(elements(bytes, count, Float64Array)),
  [GgmlType.I8]: (bytes, count) => Float32Array.from(elements(bytes, count, Int8Array)),
  [GgmlType.I16]: (bytes, count) => Float32Array.from(elements(bytes, count, Int16Array)),
  [GgmlType.I32]: (bytes, count) => Float32Array.from(elements(bytes, count, Int32Array)),
  [GgmlType.I64]: (bytes, count) => Float32Array.from(elements(bytes, count, BigInt64Array), Number),
  [GgmlType.Q8_0]: (bytes, count) => dequantizeBlocks('Q8_0', bytes, count),
  [GgmlType.Q4_0]: (bytes, count) => dequantizeBlocks('Q4_0', bytes, count),
  [GgmlType.Q4_K]: dequantizeQ4K,
  [GgmlType.Q6_K]: (bytes, count) => dequantizeKQuant('Q6_K', bytes, count),
  [GgmlType.Q5_K]: (bytes, count) => dequantizeKQuant('Q5_K', bytes, count),
  [GgmlType.Q3_K]: (bytes, count) => dequantizeKQuant('Q3_K', bytes, count),
  [GgmlType.Q2_K]: (bytes, count) => dequantizeKQuant('Q2_K', bytes, count),
  [GgmlType.IQ4_XS]: (bytes, count) => dequantizeKQuant('IQ4_XS', bytes, count),
  [GgmlType.Q4_1]: (bytes, count) => blocksOf32(GgmlType.Q4_1, bytes, count, q4_1Block),
  [GgmlType.Q5_0]: (bytes, count) => blocksOf32(GgmlType.Q5_0, bytes, count, q5_0Block),
  [GgmlType.Q5_1]: (bytes, count) => blocksOf32(GgmlType.Q5_1, bytes, count, q5_1Block),
  [GgmlType.IQ4_NL]: (bytes, count) => blocksOf32(GgmlType.IQ4_NL, bytes, count, iq4NlBlock),
  [GgmlType.MXFP4]: (bytes, count) => blocksOf32(GgmlType.MXFP4, bytes, count, mxfp4Block),
  [GgmlType.Q8_1]: (bytes, count) => blocksOf32(GgmlType.Q8_1, bytes, count, q8_1Block),
  [GgmlType.Q8_K]: dequantizeQ8K,
  [GgmlType.TQ1_0]: dequantizeTQ1_0,
  [GgmlType.TQ2_0]: dequantizeTQ2_0,
};

/**
 * `count` elements of a tensor stored as `type`, as float32. A type without a dequantizer (the
 * IQ1/IQ2/IQ3 grids, NVFP4, Q1_0) or bytes that are not the tensor's size are one line naming
 * file and tensor.
 */
export function dequantizeGgml(type: GgmlType, bytes: Uint8Array, count: number, place?: TensorPlace): Float32Array {
  const where = place ? `${place.file}: ` : '';
  const which = place ? ` (tensor ${place.tensor})` : '';
  const dequantize = DEQUANTIZERS[type];
  if (!dequantize) throw new HerdError(`${where}herd cannot compute on or dequantize ${GgmlType[type] ?? `ggml type ${type}`}${which}`);
  const { block, bytes: blockBytes } = GGML_LAYOUT[type];
  if (count % block !== 0 || bytes.length !== (count / block) * blockBytes) {
    throw new HerdError(`${where}${GgmlType[type]} data of ${bytes.length} bytes is not ${count} elements in blocks of ${block}${which}`);
  }
  return dequantize(bytes, count);
}

// ---------------------------------------------------------------------------------------------
// Element types

type ElementArray<T> = { new (buffer: ArrayBuffer, offset: number, length: number): T; BYTES_PER_ELEMENT: number };

/** The bytes as a typed array, copied so the array is aligned and owns its buffer. */
function elements<T>(bytes: Uint8Array, count: number, Type: ElementArray<T>): T {
  const copy = new ArrayBuffer(count * Type.BYTES_PER_ELEMENT);
  new Uint8Array(copy).set(bytes.subarray(0, copy.byteLength));
  return new Type(copy, 0, count);
}

function widenHalves(bytes: Uint8Array, count: number, widen: (halves: Uint16Array, out: Float32Array) => void): Float32Array {
  const out = new Float32Array(count);
  widen(elements(bytes, count, Uint16Array), out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Blocks of 32: elements 0..15 in the low nibbles of 16 code bytes, 16..31 in the high nibbles.

/** Writes the 32 floats of the block at `at` into out[0..32). */
type Block32 = (view: DataView, at: number, out: Float32Array) => void;

function blocksOf32(type: GgmlType, bytes: Uint8Array, count: number, decode: Block32): Float32Array {
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const blockBytes = GGML_LAYOUT[type].bytes;
  for (let b = 0; b < count / 32; b++) decode(view, b * blockBytes, out.subarray(b * 32, b * 32 + 32));
  return out;
}

const half = (view: DataView, at: number) => halfToFloat(view.getUint16(at, true));

/** Code j (0..31) of a block whose 16 code bytes start at `codes`. */
function nibble(view: DataView, codes: number, j: number): number {
  const byte = view.getUint8(codes + (j & 15));
  return j < 16 ? byte & 0x0f : byte >> 4;
}

/** Q4_1 (20 bytes): f16 d, f16 m, codes; x = q·d + m. */
function q4_1Block(view: DataView, at: number, out: Float32Array): void {
  const d = half(view, at), m = half(view, at + 2);
  for (let j = 0; j < 32; j++) out[j] = Math.fround(nibble(view, at + 4, j) * d + m);
}

/** Bit j of Q5's qh word is the fifth bit of code j. */
function fifthBit(view: DataView, qh: number, j: number): number {
  return ((view.getUint32(qh, true) >>> j) & 1) << 4;
}

/** Q5_0 (22 bytes): f16 d, 4 bytes qh, codes; x = (q − 16)·d. */
function q5_0Block(view: DataView, at: number, out: Float32Array): void {
  const d = half(view, at);
  for (let j = 0; j < 32; j++) out[j] = ((nibble(view, at + 6, j) | fifthBit(view, at + 2, j)) - 16) * d;
}

/** Q5_1 (24 bytes): f16 d, f16 m, 4 bytes qh, codes; x = q·d + m. */
function q5_1Block(view: DataView, at: number, out: Float32Array): void {
  const d = half(view, at), m = half(view, at + 2);
  for (let j = 0; j < 32; j++) out[j] = Math.fround((nibble(view, at + 8, j) | fifthBit(view, at + 4, j)) * d + m);
}

/** IQ4_NL (18 bytes): f16 d, codes; x = d · level[q]. */
function iq4NlBlock(view: DataView, at: number, out: Float32Array): void {
  const d = half(view, at);
  for (let j = 0; j < 32; j++) out[j] = d * IQ4_NL_LEVELS[nibble(view, at + 2, j)]!;
}

/** E2M1 values doubled (kvalues_mxfp4): the code's sign bit is bit 3. */
const MXFP4_VALUES: readonly number[] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/** MXFP4 (17 bytes): E8M0 exponent e, codes; x = value[q] · 2^(e − 128) (the half undoes the doubling). */
function mxfp4Block(view: DataView, at: number, out: Float32Array): void {
  const d = 2 ** (view.getUint8(at) - 128);
  for (let j = 0; j < 32; j++) out[j] = Math.fround(MXFP4_VALUES[nibble(view, at + 1, j)]! * d);
}

/** Q8_1 (36 bytes): f16 d, f16 s (d·Σq, unused here), 32 int8; x = q·d. */
function q8_1Block(view: DataView, at: number, out: Float32Array): void {
  const d = half(view, at);
  for (let j = 0; j < 32; j++) out[j] = view.getInt8(at + 4 + j) * d;
}

// ---------------------------------------------------------------------------------------------
// Blocks of 256

const QK_K = 256;

/** Q8_K (292 bytes): f32 d, 256 int8, 16 int16 block sums (unused here); x = q·d. */
function dequantizeQ8K(bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const blockBytes = GGML_LAYOUT[GgmlType.Q8_K].bytes;
  for (let b = 0; b < count / QK_K; b++) {
    const d = view.getFloat32(b * blockBytes, true);
    for (let j = 0; j < QK_K; j++) out[b * QK_K + j] = Math.fround(view.getInt8(b * blockBytes + 4 + j) * d);
  }
  return out;
}

/**
 * A base-3 digit as TQ1_0 packs it: a byte holds 5 (or 4) ternary digits as a fixed-point
 * fraction of 243; multiplying by 3^n (mod 256) brings digit n to the top, and (byte · 3) >> 8
 * reads it (0, 1, 2 → −1, 0, 1).
 */
function ternaryDigit(byte: number, n: number): number {
  const shifted = (byte * 3 ** n) & 0xff;
  return ((shifted * 3) >> 8) - 1;
}

/**
 * TQ1_0 (54 bytes): 48 bytes of 5 digits each, 4 bytes of 4 digits each, f16 d. Output order as
 * dequantize_row_tq1_0: bytes 0..31 give digits 0..4 of each byte in turn (5 × 32 values), bytes
 * 32..47 likewise (5 × 16), then the 4 qh bytes digits 0..3 (4 × 4).
 */
function dequantizeTQ1_0(bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  const blockBytes = GGML_LAYOUT[GgmlType.TQ1_0].bytes;
  for (let b = 0; b < count / QK_K; b++) {
    const block = bytes.subarray(b * blockBytes, (b + 1) * blockBytes);
    const d = halfToFloat(block[52]! | (block[53]! << 8));
    let y = b * QK_K;
    for (const [start, width] of [[0, 32], [32, 16]] as const) {
      for (let n = 0; n < 5; n++) for (let m = 0; m < width; m++) out[y++] = ternaryDigit(block[start + m]!, n) * d;
    }
    for (let n = 0; n < 4; n++) for (let j = 0; j < 4; j++) out[y++] = ternaryDigit(block[48 + j]!, n) * d;
  }
  return out;
}

/** TQ2_0 (66 bytes): 64 bytes of four 2-bit codes, f16 d; x = (q − 1)·d, byte m's bit pair l giving element 32l + m of its 128. */
function dequantizeTQ2_0(bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  const blockBytes = GGML_LAYOUT[GgmlType.TQ2_0].bytes;
  for (let b = 0; b < count / QK_K; b++) {
    const block = bytes.subarray(b * blockBytes, (b + 1) * blockBytes);
    const d = halfToFloat(block[64]! | (block[65]! << 8));
    let y = b * QK_K;
    for (let j = 0; j < 64; j += 32) {
      for (let l = 0; l < 4; l++) for (let m = 0; m < 32; m++) out[y++] = (((block[j + m]! >> (2 * l)) & 3) - 1) * d;
    }
  }
  return out;
}
