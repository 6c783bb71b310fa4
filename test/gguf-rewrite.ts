/**
 * Rewrites of a real GGUF file for tests: the same tensors with edited metadata, the same file in
 * llama.cpp gguf-split's parts, or one tensor info patched in place to make a broken file.
 */
import fs from 'node:fs';
import { GgufValueType, readGgufHeader, writeGguf, type GgufMetadata, type GgufTensorToWrite, type GgufValue } from '../src/formats/gguf.js';
import { splitPartPath } from '../src/formats/gguf-split.js';

/**
 * herd's reader keeps metadata values, not their stored types; the writer needs types. Integers
 * become UINT32 (INT32 when negative), other numbers FLOAT32: herd reads any numeric type alike.
 */
function typedValue(value: unknown): GgufValue {
  const numberType = (x: number) => (!Number.isInteger(x) ? GgufValueType.FLOAT32 : x < 0 ? GgufValueType.INT32 : GgufValueType.UINT32);
  if (typeof value === 'string') return { type: GgufValueType.STRING, value };
  if (typeof value === 'boolean') return { type: GgufValueType.BOOL, value };
  if (typeof value === 'number') return { type: numberType(value), value } as GgufValue;
  if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: value as string[] };
  if (Array.isArray(value) && value.every((item) => typeof item === 'number')) {
    const itemType = value.every((item) => Number.isInteger(item)) ? GgufValueType.INT32 : GgufValueType.FLOAT32;
    return { type: GgufValueType.ARRAY, itemType, value: value as number[] };
  }
  throw new Error(`test GGUF rewrite: cannot type metadata value ${JSON.stringify(value)}`);
}

/** The file's metadata and its tensors (bytes included) in file order. */
function readWhole(file: string): { metadata: GgufMetadata; tensors: GgufTensorToWrite[] } {
  const header = readGgufHeader(file);
  const bytes = fs.readFileSync(file);
  const metadata: GgufMetadata = new Map([...header.metadata].map(([key, value]) => [key, typedValue(value)]));
  const tensors = [...header.tensors.values()]
    .sort((a, b) => a.begin - b.begin)
    .map((info) => ({ name: info.name, type: info.type, dims: info.dims, bytes: bytes.subarray(info.begin, info.begin + info.byteLength) }));
  return { metadata, tensors };
}

/** Writes `source`'s tensors to `target` with metadata changed by `edit` (numbers stored as UINT32). */
export function copyGguf(source: string, target: string, edit: (metadata: Map<string, unknown>) => void): void {
  const { metadata, tensors } = readWhole(source);
  const values = new Map<string, unknown>([...metadata].map(([key, entry]) => [key, entry.value]));
  edit(values);
  writeGguf(target, new Map([...values].map(([key, value]) => [key, typedValue(value)])), tensors);
}

/**
 * Splits a GGUF file as llama.cpp's gguf-split does: tensors in file order cut into `parts`
 * consecutive runs; all metadata in the first part only; every part with split.no (u16),
 * split.count (u16) and split.tensors.count (i32), named PREFIX-0000K-of-0000N.gguf.
 */
export function writeSplitGguf(source: string, prefix: string, parts: number): void {
  const { metadata, tensors } = readWhole(source);
  const perPart = Math.ceil(tensors.length / parts);
  for (let index = 0; index < parts; index++) {
    const partMetadata: GgufMetadata = new Map(index === 0 ? metadata : []);
    partMetadata.set('split.no', { type: GgufValueType.UINT16, value: index });
    partMetadata.set('split.count', { type: GgufValueType.UINT16, value: parts });
    partMetadata.set('split.tensors.count', { type: GgufValueType.INT32, value: tensors.length });
    writeGguf(splitPartPath(prefix, index, parts), partMetadata, tensors.slice(index * perPart, (index + 1) * perPart));
  }
}

/** A tensor info as stored: dims (innermost first), ggml type id, offset in the data section. */
export interface StoredTensorInfo {
  dims: number[];
  type: number;
  offset: number;
}

/** Copies `source` to `target` with one tensor's stored info changed by `edit` (same number of dims). */
export function patchTensorInfo(source: string, target: string, tensorName: string, edit: (info: StoredTensorInfo) => void): void {
  const bytes = Buffer.from(fs.readFileSync(source));
  const name = Buffer.from(tensorName, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(name.length));
  const at = bytes.indexOf(Buffer.concat([length, name]));
  if (at < 0) throw new Error(`test GGUF patch: no tensor info for ${tensorName}`);
  let position = at + 8 + name.length;
  const dimCount = bytes.readUInt32LE(position);
  const dimsAt = position + 4;
  const info: StoredTensorInfo = {
    dims: Array.from({ length: dimCount }, (_, i) => Number(bytes.readBigUInt64LE(dimsAt + 8 * i))),
    type: bytes.readUInt32LE(dimsAt + 8 * dimCount),
    offset: Number(bytes.readBigUInt64LE(dimsAt + 8 * dimCount + 4)),
  };
  edit(info);
  info.dims.forEach((dim, i) => bytes.writeBigUInt64LE(BigInt(dim), dimsAt + 8 * i));
  position = dimsAt + 8 * dimCount;
  bytes.writeUInt32LE(info.type, position);
  bytes.writeBigUInt64LE(BigInt(info.offset), position + 4);
  fs.writeFileSync(target, bytes);
}
