import fs from 'node:fs';
import path from 'node:path';
import { HerdError, modelError } from '../errors.js';
import { openForReading, writeFileAtomically } from './files.js';

/**
 * The GGUF v3 container (ggml/docs/gguf.md): "GGUF", version, tensor and key-value counts, typed
 * metadata, tensor infos (name, dims innermost first, ggml type, offset), then tensor data
 * aligned to `general.alignment` (32).
 */

export const GGUF_MAGIC = 0x46554747;
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

export enum GgufValueType { UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12 }

/**
 * Every ggml tensor type, numbered as ggml.h's `enum ggml_type` (gguf-py's GGMLQuantizationType);
 * the gaps (4, 5, 31–33, 36–38) are types ggml removed.
 */
export enum GgmlType {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41,
}

/** Weights of a K-quant super-block (ggml's QK_K). */
const QK_K = 256;

/**
 * Elements per block and bytes per block of each type, as ggml-common.h's block structs
 * (gguf-py's GGML_QUANT_SIZES): with these the reader can size and skip any tensor, even
 * one herd cannot compute on.
 */
export const GGML_LAYOUT: Record<GgmlType, { block: number; bytes: number }> = {
  [GgmlType.F32]: { block: 1, bytes: 4 },
  [GgmlType.F16]: { block: 1, bytes: 2 },
  [GgmlType.Q4_0]: { block: 32, bytes: 2 + 16 },
  [GgmlType.Q4_1]: { block: 32, bytes: 2 + 2 + 16 },
  [GgmlType.Q5_0]: { block: 32, bytes: 2 + 4 + 16 },
  [GgmlType.Q5_1]: { block: 32, bytes: 2 + 2 + 4 + 16 },
  [GgmlType.Q8_0]: { block: 32, bytes: 2 + 32 },
  // Two f16 (d, s) as ggml-common.h's static_assert says; gguf-py's table still has 4 + 4 + 32.
  [GgmlType.Q8_1]: { block: 32, bytes: 2 + 2 + 32 },
  [GgmlType.Q2_K]: { block: QK_K, bytes: 2 + 2 + QK_K / 16 + QK_K / 4 },
  [GgmlType.Q3_K]: { block: QK_K, bytes: 2 + QK_K / 4 + QK_K / 8 + 12 },
  [GgmlType.Q4_K]: { block: QK_K, bytes: 2 + 2 + QK_K / 2 + 12 },
  [GgmlType.Q5_K]: { block: QK_K, bytes: 2 + 2 + QK_K / 2 + QK_K / 8 + 12 },
  [GgmlType.Q6_K]: { block: QK_K, bytes: 2 + QK_K / 2 + QK_K / 4 + QK_K / 16 },
  [GgmlType.Q8_K]: { block: QK_K, bytes: 4 + QK_K + QK_K / 8 },
  [GgmlType.IQ2_XXS]: { block: QK_K, bytes: 2 + QK_K / 4 },
  [GgmlType.IQ2_XS]: { block: QK_K, bytes: 2 + QK_K / 4 + QK_K / 32 },
  [GgmlType.IQ3_XXS]: { block: QK_K, bytes: 2 + QK_K / 4 + QK_K / 8 },
  [GgmlType.IQ1_S]: { block: QK_K, bytes: 2 + QK_K / 8 + QK_K / 16 },
  [GgmlType.IQ4_NL]: { block: 32, bytes: 2 + 16 },
  [GgmlType.IQ3_S]: { block: QK_K, bytes: 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4 },
  [GgmlType.IQ2_S]: { block: QK_K, bytes: 2 + QK_K / 4 + QK_K / 16 },
  [GgmlType.IQ4_XS]: { block: QK_K, bytes: 2 + 2 + QK_K / 2 + QK_K / 64 },
  [GgmlType.I8]: { block: 1, bytes: 1 },
  [GgmlType.I16]: { block: 1, bytes: 2 },
  [GgmlType.I32]: { block: 1, bytes: 4 },
  [GgmlType.I64]: { block: 1, bytes: 8 },
  [GgmlType.F64]: { block: 1, bytes: 8 },
  [GgmlType.IQ1_M]: { block: QK_K, bytes: QK_K / 8 + QK_K / 16 + QK_K / 32 },
  [GgmlType.BF16]: { block: 1, bytes: 2 },
  [GgmlType.TQ1_0]: { block: QK_K, bytes: 2 + 4 * 13 },
  [GgmlType.TQ2_0]: { block: QK_K, bytes: 2 + QK_K / 4 },
  [GgmlType.MXFP4]: { block: 32, bytes: 1 + 16 },
  [GgmlType.NVFP4]: { block: 64, bytes: 4 + 32 },
  [GgmlType.Q1_0]: { block: 128, bytes: 2 + 16 },
};

/** The types herd's GGUF writer produces (the last four from the native quantizers only); reading accepts every type above. */
export const GGUF_WRITTEN_TYPES: ReadonlySet<GgmlType> = new Set([
  GgmlType.F32, GgmlType.F16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
  GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
]);

export function isGgmlType(id: number): id is GgmlType {
  return Object.prototype.hasOwnProperty.call(GGML_LAYOUT, id);
}

/** A metadata value with the type it is written as. */
export type GgufValue =
  | { type: GgufValueType.STRING; value: string }
  | { type: GgufValueType.UINT16 | GgufValueType.UINT32 | GgufValueType.INT32 | GgufValueType.FLOAT32 | GgufValueType.UINT64; value: number }
  | { type: GgufValueType.BOOL; value: boolean }
  | { type: GgufValueType.ARRAY; itemType: GgufValueType.STRING; value: string[] }
  | { type: GgufValueType.ARRAY; itemType: GgufValueType.INT32 | GgufValueType.FLOAT32; value: number[] };

export type GgufMetadata = Map<string, GgufValue>;

export interface GgufTensorToWrite {
  name: string;
  type: GgmlType;
  /** ggml order: innermost (contiguous) dimension first, e.g. [in, out] for a linear weight. */
  dims: number[];
  bytes: Uint8Array;
}

export function tensorByteLength(type: GgmlType, dims: readonly number[]): number {
  const { block, bytes } = GGML_LAYOUT[type];
  const count = dims.reduce((a, b) => a * b, 1);
  if (dims[0]! % block !== 0) throw new HerdError(`ggml type ${GgmlType[type]} needs rows that are a multiple of ${block}`);
  return (count / block) * bytes;
}

class Writer {
  private readonly chunks: Buffer[] = [];
  length = 0;

  private push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  u32(x: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(x);
    this.push(b);
  }

  u64(x: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(x));
    this.push(b);
  }

  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.push(bytes);
  }

  scalar(type: GgufValueType, value: number | boolean | string): void {
    const b = Buffer.alloc(8);
    switch (type) {
      case GgufValueType.STRING: return this.string(value as string);
      case GgufValueType.UINT16: b.writeUInt16LE(value as number); return this.push(b.subarray(0, 2));
      case GgufValueType.UINT32: b.writeUInt32LE(value as number); return this.push(b.subarray(0, 4));
      case GgufValueType.INT32: b.writeInt32LE(value as number); return this.push(b.subarray(0, 4));
      case GgufValueType.FLOAT32: b.writeFloatLE(value as number); return this.push(b.subarray(0, 4));
      case GgufValueType.UINT64: return this.u64(value as number);
      case GgufValueType.BOOL: return this.push(Buffer.from([value ? 1 : 0]));
      default: throw new HerdError(`GGUF writer: value type ${type} is not written by herd`);
    }
  }

  pad(alignment: number): void {
    const extra = (alignment - (this.length % alignment)) % alignment;
    if (extra) this.push(Buffer.alloc(extra));
  }

  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Writes a GGUF file atomically. */
export function writeGguf(file: string, metadata: GgufMetadata, tensors: GgufTensorToWrite[]): void {
  const header = new Writer();
  header.u32(GGUF_MAGIC);
  header.u32(GGUF_VERSION);
  header.u64(tensors.length);
  header.u64(metadata.size);
  for (const [key, entry] of metadata) {
    header.string(key);
    header.u32(entry.type);
    if (entry.type === GgufValueType.ARRAY) {
      header.u32(entry.itemType);
      header.u64(entry.value.length);
      for (const item of entry.value) header.scalar(entry.itemType, item);
    } else {
      header.scalar(entry.type, entry.value);
    }
  }
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const tensor of tensors) {
    if (!GGUF_WRITTEN_TYPES.has(tensor.type)) throw new HerdError(`GGUF writer: tensor ${tensor.name} has ggml type ${GgmlType[tensor.type] ?? tensor.type}, which herd does not write`);
    if (tensor.bytes.length !== tensorByteLength(tensor.type, tensor.dims)) throw new HerdError(`GGUF writer: tensor ${tensor.name} has the wrong byte length`);
    header.string(tensor.name);
    header.u32(tensor.dims.length);
    tensor.dims.forEach((d) => header.u64(d));
    header.u32(tensor.type);
    header.u64(offset);
    parts.push(tensor.bytes);
    const padding = (GGUF_ALIGNMENT - (tensor.bytes.length % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
    if (padding) parts.push(new Uint8Array(padding));
    offset += tensor.bytes.length + padding;
  }
  header.pad(GGUF_ALIGNMENT);
  writeFileAtomically(file, [header.bytes, ...parts]);
}

/** One tensor of a GGUF file: where its bytes are. */
export interface GgufTensorInfo {
  name: string;
  /** The file that holds its bytes (one part of a split model, or the model file). */
  file: string;
  type: GgmlType;
  dims: number[];
  /** Absolute offset in the file and byte length. */
  begin: number;
  byteLength: number;
}

export interface GgufFile {
  file: string;
  version: number;
  metadata: Map<string, unknown>;
  tensors: Map<string, GgufTensorInfo>;
}

/**
 * Reads the header of a GGUF file (metadata and tensor table), checking it against the file
 * size; `headerOnly` reads a header whose tensor data is not there (the memory planner prices a
 * model from its header alone).
 */
export function readGgufHeader(file: string, options: { headerOnly?: boolean } = {}): GgufFile {
  const name = path.basename(file);
  const fd = openForReading(file);
  try {
    const size = fs.fstatSync(fd).size;
    const reader = new Reader(fd, size, file);
    if (reader.u32() !== GGUF_MAGIC) throw modelError(`${name}: not a GGUF file (bad magic)`, file);
    const version = reader.u32();
    if (version !== 2 && version !== 3) throw modelError(`${name}: GGUF version ${version} is not supported (2 or 3)`, file);
    const tensorCount = reader.u64();
    const kvCount = reader.u64();
    const metadata = new Map<string, unknown>();
    for (let i = 0; i < kvCount; i++) {
      const key = reader.string();
      metadata.set(key, reader.value(reader.u32()));
    }
    const infos: Array<Omit<GgufTensorInfo, 'file' | 'begin' | 'byteLength'> & { offset: number }> = [];
    for (let i = 0; i < tensorCount; i++) {
      const tensorName = reader.string();
      const dims = Array.from({ length: reader.u32() }, () => reader.u64());
      const type = reader.u32();
      if (!isGgmlType(type)) throw modelError(`${name}: tensor ${tensorName} has unknown ggml type ${type}`, file, tensorName);
      infos.push({ name: tensorName, dims, type, offset: reader.u64() });
    }
    const alignment = typeof metadata.get('general.alignment') === 'number' ? (metadata.get('general.alignment') as number) : GGUF_ALIGNMENT;
    const dataStart = Math.ceil(reader.position / alignment) * alignment;
    const tensors = new Map<string, GgufTensorInfo>();
    for (const info of infos) {
      const byteLength = storedByteLength(info, name);
      if (info.offset % alignment !== 0) throw new HerdError(`${name}: tensor ${info.name} starts at data offset ${info.offset}, which is not a multiple of the alignment ${alignment}`);
      const begin = dataStart + info.offset;
      if (!options.headerOnly && begin + byteLength > size) throw modelError(`${name}: tensor ${info.name} ends past the end of the file (truncated)`, file, info.name);
      if (tensors.has(info.name)) throw modelError(`${name}: tensor ${info.name} is listed twice`, file, info.name);
      tensors.set(info.name, { name: info.name, file, type: info.type, dims: info.dims, begin, byteLength });
    }
    checkNoOverlap([...tensors.values()], name);
    return { file, version, metadata, tensors };
  } finally {
    fs.closeSync(fd);
  }
}

/** The bytes a tensor's type and dims imply; rows must split into whole blocks. */
function storedByteLength(info: { name: string; type: GgmlType; dims: number[] }, file: string): number {
  const { block } = GGML_LAYOUT[info.type];
  if (info.dims.length === 0 || info.dims[0]! % block !== 0) {
    throw new HerdError(`${file}: tensor ${info.name} has rows of ${info.dims[0]} values, not a multiple of ${GgmlType[info.type]}'s block of ${block}`);
  }
  return tensorByteLength(info.type, info.dims);
}

/**
 * Tensor data regions must not overlap: sorted by offset, each tensor has to end before the next
 * begins (a smaller offset gap than the tensor's size means its type or shape is wrong).
 */
function checkNoOverlap(tensors: GgufTensorInfo[], file: string): void {
  const byStart = [...tensors].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < byStart.length; i++) {
    const previous = byStart[i - 1]!;
    const current = byStart[i]!;
    if (previous.begin + previous.byteLength > current.begin) {
      throw new HerdError(`${file}: tensor ${previous.name} (${GgmlType[previous.type]} [${previous.dims.join(', ')}], ${previous.byteLength} bytes) runs into tensor ${current.name}, which starts ${current.begin - previous.begin} bytes after it`);
    }
  }
}

/** Sequential reads of the header, in chunks. */
class Reader {
  position = 0;
  private buffer = Buffer.alloc(0);
  private bufferStart = 0;

  private readonly name: string;

  constructor(private readonly fd: number, private readonly size: number, private readonly file: string) {
    this.name = path.basename(file);
  }

  private take(length: number): Buffer {
    if (this.position + length > this.size) throw modelError(`${this.name}: the GGUF header runs past the end of the file`, this.file);
    const from = this.position - this.bufferStart;
    if (from < 0 || from + length > this.buffer.length) {
      this.buffer = Buffer.alloc(Math.max(length, 1 << 20));
      const read = fs.readSync(this.fd, this.buffer, 0, this.buffer.length, this.position);
      this.buffer = this.buffer.subarray(0, read);
      this.bufferStart = this.position;
    }
    const start = this.position - this.bufferStart;
    this.position += length;
    return this.buffer.subarray(start, start + length);
  }

  u32(): number {
    return this.take(4).readUInt32LE(0);
  }

  u64(): number {
    const value = this.take(8).readBigUInt64LE(0);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw modelError(`${this.name}: a 64-bit count is implausibly large; the file is corrupt`, this.file);
    return Number(value);
  }

  string(): string {
    return this.take(this.u64()).toString('utf8');
  }

  value(type: number): unknown {
    switch (type) {
      case GgufValueType.UINT8: return this.take(1).readUInt8(0);
      case GgufValueType.INT8: return this.take(1).readInt8(0);
      case GgufValueType.UINT16: return this.take(2).readUInt16LE(0);
      case GgufValueType.INT16: return this.take(2).readInt16LE(0);
      case GgufValueType.UINT32: return this.u32();
      case GgufValueType.INT32: return this.take(4).readInt32LE(0);
      case GgufValueType.FLOAT32: return this.take(4).readFloatLE(0);
      case GgufValueType.BOOL: return this.take(1).readUInt8(0) !== 0;
      case GgufValueType.STRING: return this.string();
      case GgufValueType.UINT64: return this.u64();
      case GgufValueType.INT64: return Number(this.take(8).readBigInt64LE(0));
      case GgufValueType.FLOAT64: return this.take(8).readDoubleLE(0);
      case GgufValueType.ARRAY: {
        const itemType = this.u32();
        const count = this.u64();
        if (count > this.size) throw modelError(`${this.name}: an array of ${count} items cannot fit in the file; it is corrupt`, this.file);
        return Array.from({ length: count }, () => this.value(itemType));
      }
      default: throw modelError(`${this.name}: unknown GGUF value type ${type}; the file is corrupt`, this.file);
    }
  }
}
