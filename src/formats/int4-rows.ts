import { ensure } from '../errors.js';
import { floatToHalf } from './half.js';
import { INT4_GROUP_BYTES, INT4_GROUP_COLUMNS, packedBytes, type PackedTensor } from './weights.js';
import type { Int4Matrix } from './int4.js';
import type { Int4Access } from './quantized-layout.js';
import type { StoredTensors } from './stored-tensors.js';

/**
 * AWQ and GPTQ int4 weights repacked by output row for the CPU kernels (PackedFormat INT4_G128),
 * so a backend can shard them by rows and compute on the 4-bit codes directly. Row r of a weight
 * [out, in] is in / 128 groups of 68 bytes; group g covers columns 128g..128g+127:
 *
 *   byte 0..1   scale, IEEE half, little-endian (the stored F16 bits)
 *   byte 2      zero-point, u8: 0..15, or 16 where a GPTQ v1 checkpoint stored zero − 1 = 15
 *   byte 3      0 (pad: the codes start 4-byte aligned)
 *   byte 4 + 16b + j   (b = 0..3, j = 0..15): the code of column 128g + 32b + j in the low nibble
 *                      and of column 128g + 32b + 16 + j in the high nibble
 *
 * and w[r, c] = (code − zero) · scale, exactly as the layouts dequantize. Each 16 bytes are one
 * activation block of 32 (as GGUF's Q4_0 orders them): a mask gives its first 16 codes and a
 * shift its last 16, each lined up with 16 consecutive activations.
 */
const BLOCK_COLUMNS = 32;
const CODES_OFFSET = 4;

export function int4RowBytes(cols: number): number {
  return packedBytes('INT4_G128', 1, cols);
}

/**
 * The source group of each span of 128 columns, or null when the columns of a span belong to
 * different groups (GPTQ act-order without static groups): one scale per span could not
 * represent them, so such weights stay on the float path. Spans whose columns share one group in
 * any order of groups (static groups) are exact.
 */
export function spanGroups(groupOfColumn: Int32Array): Int32Array | null {
  const spans = new Int32Array(groupOfColumn.length / INT4_GROUP_COLUMNS);
  for (let s = 0; s < spans.length; s++) {
    const group = groupOfColumn[s * INT4_GROUP_COLUMNS]!;
    for (let c = 1; c < INT4_GROUP_COLUMNS; c++) if (groupOfColumn[s * INT4_GROUP_COLUMNS + c] !== group) return null;
    spans[s] = group;
  }
  return spans;
}

/** How weight `name` [out, in] reads as INT4_G128 rows, or null when it must be read as float. */
export function describeInt4Rows(name: string, shape: number[], access: Int4Access, stored: StoredTensors): PackedTensor | null {
  const [out, cols] = shape as [number, number];
  if (access.groupSize !== INT4_GROUP_COLUMNS || cols % INT4_GROUP_COLUMNS !== 0) return null;
  if (!spanGroups(access.groupOfColumns(name, shape, stored))) return null;
  return { format: 'INT4_G128', shape, byteLength: packedBytes('INT4_G128', out, cols) };
}

/** Writes rows firstRow.. of m as INT4_G128 into target (a whole number of rows). */
export function writeInt4Rows(m: Int4Matrix, spans: Int32Array, firstRow: number, target: Uint8Array): void {
  const rowBytes = int4RowBytes(m.cols);
  const rows = target.length / rowBytes;
  for (let i = 0; i < rows; i++) {
    const r = firstRow + i;
    for (let s = 0; s < spans.length; s++) {
      const at = i * rowBytes + s * INT4_GROUP_BYTES;
      const parameter = spans[s]! * m.rows + r;
      const half = floatToHalf(m.scales[parameter]!);
      target[at] = half & 0xff;
      target[at + 1] = half >>> 8;
      target[at + 2] = m.zeros[parameter]!;
      target[at + 3] = 0;
      const codes = r * m.cols + s * INT4_GROUP_COLUMNS;
      for (let k = 0; k < INT4_GROUP_COLUMNS / 2; k++) {
        const column = codes + (k >> 4) * BLOCK_COLUMNS + (k & 15);
        target[at + CODES_OFFSET + k] = m.codes[column]! | (m.codes[column + 16]! << 4);
      }
    }
  }
}

/**
 * Serves the INT4_G128 bytes of one weight at a time, in row ranges: the first read of a weight
 * unpacks its stored tensors once (one byte a code), and they are dropped as soon as every byte
 * of the weight has been read or another weight is asked for.
 */
export class Int4RowReader {
  private current: { name: string; matrix: Int4Matrix; spans: Int32Array; bytesLeft: number } | null = null;

  read(name: string, shape: number[], access: Int4Access, stored: StoredTensors, target: Uint8Array, byteOffset: number): void {
    const [out, cols] = shape as [number, number];
    const rowBytes = int4RowBytes(cols);
    ensure(byteOffset % rowBytes === 0 && target.length % rowBytes === 0, `tensor ${name}: INT4_G128 reads must be whole rows of ${rowBytes} bytes`);
    ensure(byteOffset + target.length <= out * rowBytes, `read past the end of tensor ${name}`);
    if (this.current?.name !== name) {
      this.current = null;
      const matrix = access.unpack(name, shape, stored);
      const spans = spanGroups(matrix.groupOfColumn);
      ensure(spans, `tensor ${name}: its groups are not runs of ${INT4_GROUP_COLUMNS} columns; read it as float`);
      this.current = { name, matrix, spans, bytesLeft: out * rowBytes };
    }
    writeInt4Rows(this.current.matrix, this.current.spans, byteOffset / rowBytes, target);
    this.current.bytesLeft -= target.length;
    if (this.current.bytesLeft <= 0) this.current = null;
  }
}
