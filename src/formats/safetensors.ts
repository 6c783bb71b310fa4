import fs from 'node:fs';
import path from 'node:path';
import { HerdError, modelError } from '../errors.js';
import { openForReading, writeFileAtomically } from './files.js';
import { halfToFloat } from './half.js';

/** Bytes per element of every dtype the safetensors format defines. */
const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};

/** The float dtypes the engine computes from (widened to float32 exactly). */
export type FloatDtype = 'F32' | 'F16' | 'BF16';
export const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];

/** One tensor of a safetensors file: where its bytes are, validated against the file. */
export interface TensorEntry {
  name: string;
  dtype: string;
  shape: number[];
  file: string;
  /** Absolute byte offsets in the file. */
  begin: number;
  end: number;
}

/** A float tensor in host memory, widened to float32, in the layout the file stores. */
export interface HostTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

// A header larger than this is not a real checkpoint header but a corrupt length field.
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/**
 * Reads and checks the header of one safetensors file: the length field, the JSON, every
 * tensor's dtype, shape and offsets, and that the data section holds all of them (a truncated
 * shard fails here, before anything is computed).
 */
export function readSafetensorsHeader(file: string): TensorEntry[] {
  const name = path.basename(file);
  const fd = openForReading(file);
  try {
    const fileSize = fs.fstatSync(fd).size;
    if (fileSize < 8) throw modelError(`${name}: too short to be a safetensors file (${fileSize} bytes)`, file);
    const lengthBytes = readBytes(fd, 0, 8);
    const headerLength = Number(lengthBytes.readBigUInt64LE(0));
    if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > fileSize) {
      throw modelError(`${name}: header length ${headerLength} does not fit in the file (${fileSize} bytes); the file is truncated or not safetensors`, file);
    }
    const header = parseHeaderJson(readBytes(fd, 8, headerLength).toString('utf8'), file);
    const dataStart = 8 + headerLength;
    const entries = Object.entries(header)
      .filter(([tensorName]) => tensorName !== '__metadata__')
      .map(([tensorName, value]) => parseEntry(tensorName, value, file, dataStart));
    checkDataSection(entries, fileSize, name);
    return entries;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Reads one float tensor from its file straight into a float32 array: F32 bytes land in their
 * final place; BF16 and F16 are widened exactly from one read of their bytes.
 */
export function readFloatTensor(entry: TensorEntry, fd: number): HostTensor {
  const count = elementCount(entry.shape);
  const data = new Float32Array(count);
  if (entry.dtype === 'F32') {
    readBytesInto(fd, entry.begin, new Uint8Array(data.buffer), entry);
  } else if (entry.dtype === 'BF16' || entry.dtype === 'F16') {
    const halves = new Uint16Array(count);
    readBytesInto(fd, entry.begin, new Uint8Array(halves.buffer), entry);
    if (entry.dtype === 'BF16') bf16ToFloat32(halves, data);
    else f16ToFloat32(halves, data);
  } else {
    throw modelError(`${path.basename(entry.file)}: tensor ${entry.name} has dtype ${entry.dtype}; the engine reads F32, F16 and BF16`, entry.file, entry.name);
  }
  return { name: entry.name, shape: entry.shape, data };
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, size) => product * size, 1);
}

/** BF16 is the upper half of a float32, so widening is a 16-bit shift and exact. */
export function bf16ToFloat32(halves: Uint16Array, out: Float32Array): void {
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < halves.length; i++) bits[i] = halves[i]! << 16;
}

/** IEEE half to float32, exact for normals, subnormals, infinities and NaN. */
export function f16ToFloat32(halves: Uint16Array, out: Float32Array): void {
  for (let i = 0; i < halves.length; i++) out[i] = halfToFloat(halves[i]!);
}

function readBytes(fd: number, position: number, length: number): Buffer {
  const buffer = Buffer.alloc(length);
  const read = fs.readSync(fd, buffer, 0, length, position);
  if (read !== length) throw new HerdError(`short read at byte ${position}: the file changed or is truncated`);
  return buffer;
}

/** Reads a tensor's bytes from `position` until `target` is full. */
export function readBytesInto(fd: number, position: number, target: Uint8Array, entry: TensorEntry): void {
  let done = 0;
  while (done < target.length) {
    const read = fs.readSync(fd, target, done, target.length - done, position + done);
    if (read === 0) throw modelError(`${path.basename(entry.file)}: tensor ${entry.name} is truncated`, entry.file, entry.name);
    done += read;
  }
}

function parseHeaderJson(text: string, file: string): Record<string, unknown> {
  const name = path.basename(file);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch {
    throw modelError(`${name}: the safetensors header is not valid JSON`, file);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw modelError(`${name}: the safetensors header is not a JSON object`, file);
  }
  return header as Record<string, unknown>;
}

function parseEntry(name: string, value: unknown, file: string, dataStart: number): TensorEntry {
  const where = `${path.basename(file)}: tensor ${name}`;
  const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
  if (typeof info !== 'object' || info === null) throw modelError(`${where}: header entry is not an object`, file, name);
  const { dtype, shape, data_offsets: offsets } = info;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) throw modelError(`${where}: unknown dtype ${JSON.stringify(dtype)}`, file, name);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw modelError(`${where}: shape ${JSON.stringify(shape)} is not a list of sizes`, file, name);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
    throw modelError(`${where}: data_offsets ${JSON.stringify(offsets)} are invalid`, file, name);
  }
  const expectedBytes = elementCount(shape as number[]) * DTYPE_BYTES[dtype]!;
  if (offsets[1] - offsets[0] !== expectedBytes) {
    throw modelError(`${where}: holds ${offsets[1] - offsets[0]} bytes but ${dtype} ${JSON.stringify(shape)} needs ${expectedBytes}`, file, name);
  }
  return { name, dtype, shape: shape as number[], file, begin: dataStart + offsets[0], end: dataStart + offsets[1] };
}

function checkDataSection(entries: TensorEntry[], fileSize: number, name: string): void {
  const byStart = [...entries].sort((a, b) => a.begin - b.begin);
  for (let i = 0; i < byStart.length; i++) {
    const entry = byStart[i]!;
    if (entry.end > fileSize) {
      throw modelError(`${name}: tensor ${entry.name} ends at byte ${entry.end} but the file has ${fileSize} bytes (truncated)`, entry.file, entry.name);
    }
    const next = byStart[i + 1];
    if (next && next.begin < entry.end) throw modelError(`${name}: tensors ${entry.name} and ${next.name} overlap`, entry.file, next.name);
  }
}

/** A tensor to write: raw little-endian bytes of the given dtype. */
export interface TensorToWrite {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/**
 * Writes a safetensors file the way transformers does (`__metadata__` first, tensors by name,
 * header padded with spaces to 8 bytes), to a temporary file renamed into place when complete.
 */
export function writeSafetensors(file: string, tensors: TensorToWrite[], metadata: Record<string, string> = { format: 'pt' }): void {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const tensor of sorted) {
    header[tensor.name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + tensor.bytes.length] };
    offset += tensor.bytes.length;
  }
  let headerText = JSON.stringify(header);
  headerText += ' '.repeat((8 - (Buffer.byteLength(headerText) % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(headerText)));
  writeFileAtomically(file, [length, Buffer.from(headerText, 'utf8'), ...sorted.map((t) => t.bytes)]);
}
