import fs from 'node:fs';
import path from 'node:path';
import { HerdError } from '../errors.js';
import { floatToHalf } from '../formats/half.js';
import { openModelFolder } from '../engine/load.js';
import { writeSafetensors, type TensorToWrite } from '../formats/safetensors.js';
import { mergeDelta, readPeftAdapter } from '../formats/peft.js';

export interface MergeResult {
  mergedTensors: number;
  files: string[];
}

/**
 * Writes `outDir` as a full model folder: the base model's files with every adapted weight
 * replaced by W + scale · B · A, stored in the weight's own dtype, and every other tensor copied
 * byte for byte into the same shard layout (so the index file stays valid). The source folder is
 * only read.
 */
export function mergeAdapter(modelDir: string, adapterDir: string, outDir: string, onTensor: (done: number, total: number) => void = () => {}): MergeResult {
  if (path.resolve(outDir) === path.resolve(modelDir)) throw new HerdError('--output-dir must differ from --model: herd never modifies a source model');
  const { config, checkpoint } = openModelFolder(modelDir);
  try {
    const adapter = readPeftAdapter(adapterDir, config);
    fs.mkdirSync(outDir, { recursive: true });
    const files: string[] = [];
    for (const name of fs.readdirSync(modelDir)) {
      const source = path.join(modelDir, name);
      if (!name.endsWith('.safetensors') && fs.statSync(source).isFile()) {
        fs.copyFileSync(source, path.join(outDir, name));
        files.push(name);
      }
    }
    const byFile = new Map<string, string[]>();
    for (const name of checkpoint.names()) {
      const file = path.basename(checkpoint.entry(name).file);
      byFile.set(file, [...(byFile.get(file) ?? []), name]);
    }
    const total = checkpoint.names().length;
    let done = 0;
    for (const [file, names] of byFile) {
      const tensors: TensorToWrite[] = names.map((name) => {
        const entry = checkpoint.entry(name);
        const matrices = adapter.matrices.get(name);
        onTensor(++done, total);
        if (!matrices) {
          const bytes = new Uint8Array(entry.end - entry.begin);
          checkpoint.readPackedInto(name, bytes);
          return { name, dtype: entry.dtype, shape: entry.shape, bytes };
        }
        return { name, dtype: entry.dtype, shape: entry.shape, bytes: encodeFloats(mergeDelta(checkpoint.readFloat(name), matrices, adapter.scale).data, entry.dtype) };
      });
      writeSafetensors(path.join(outDir, file), tensors);
      files.push(file);
    }
    return { mergedTensors: adapter.matrices.size, files: files.sort() };
  } finally {
    checkpoint.close();
  }
}

/** float32 values as the bytes of F32, BF16 (round to nearest even, as torch) or F16. */
function encodeFloats(values: Float32Array, dtype: string): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const halves = new Uint16Array(values.length);
  if (dtype === 'F16') {
    for (let i = 0; i < values.length; i++) halves[i] = floatToHalf(values[i]!);
  } else if (dtype === 'BF16') {
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    for (let i = 0; i < values.length; i++) {
      const word = bits[i]!;
      halves[i] = Number.isNaN(values[i]) ? 0x7fc0 : (word + 0x7fff + ((word >>> 16) & 1)) >>> 16;
    }
  } else {
    throw new HerdError(`cannot merge into a ${dtype} tensor`);
  }
  return new Uint8Array(halves.buffer);
}
