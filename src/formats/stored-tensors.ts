import path from 'node:path';
import { HerdError } from '../errors.js';
import { floatsToHalves } from './half.js';
import { f16ToFloat32, type TensorEntry, type TensorToWrite } from './safetensors.js';

/** Little-endian tensor bytes to write, and typed views of stored bytes, for the quantized layouts. */

export function f32Tensor(name: string, shape: number[], data: Float32Array): TensorToWrite {
  return { name, dtype: 'F32', shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

export function f16Tensor(name: string, shape: number[], data: Float32Array): TensorToWrite {
  const halves = floatsToHalves(data);
  return { name, dtype: 'F16', shape, bytes: new Uint8Array(halves.buffer) };
}

export function i32Tensor(name: string, shape: number[], data: Int32Array): TensorToWrite {
  return { name, dtype: 'I32', shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

export function u8Tensor(name: string, shape: number[], data: Uint8Array): TensorToWrite {
  return { name, dtype: 'U8', shape, bytes: data };
}

/** Stored tensors a layout reads: header entries and raw bytes. */
export interface StoredTensors {
  has(name: string): boolean;
  entry(name: string): TensorEntry;
  raw(name: string): Uint8Array;
}

/** Throws one clear line unless the stored tensor has this dtype and shape. */
export function expectPart(stored: StoredTensors, name: string, dtype: string, shape: number[]): void {
  if (!stored.has(name)) throw new HerdError(`missing tensor ${name} of the quantized layout`);
  const entry = stored.entry(name);
  const where = `${path.basename(entry.file)}: tensor ${name}`;
  if (entry.dtype !== dtype) throw new HerdError(`${where} has dtype ${entry.dtype}; the layout needs ${dtype}`);
  if (entry.shape.length !== shape.length || entry.shape.some((size, i) => size !== shape[i])) {
    throw new HerdError(`${where} has shape [${entry.shape.join(', ')}] but the layout needs [${shape.join(', ')}]`);
  }
}

export function readF32(stored: StoredTensors, name: string): Float32Array {
  const raw = stored.raw(name);
  return new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
}

export function readI32(stored: StoredTensors, name: string): Int32Array {
  const raw = stored.raw(name);
  return new Int32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
}

export function readF16(stored: StoredTensors, name: string): Float32Array {
  const raw = stored.raw(name);
  const out = new Float32Array(raw.byteLength / 2);
  f16ToFloat32(new Uint16Array(raw.buffer, raw.byteOffset, out.length), out);
  return out;
}

/** `model.layers.0.mlp.up_proj.weight` → `model.layers.0.mlp.up_proj`. */
export function moduleOf(weightName: string): string {
  return weightName.replace(/\.weight$/, '');
}
