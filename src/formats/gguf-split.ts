import fs from 'node:fs';
import path from 'node:path';
import { modelError } from '../errors.js';
import { readGgufHeader, type GgufFile } from './gguf.js';

/**
 * A model split by llama.cpp's gguf-split: parts named `PREFIX-00001-of-0000N.gguf`. The first
 * part holds all the metadata; every part holds `split.no` (0-based), `split.count` and
 * `split.tensors.count` (the tensors of all parts together), its own tensor infos and its own data
 * section, with offsets relative to that part.
 */

const SPLIT_NAME = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i;

/** `PREFIX-00001-of-00003.gguf` for part 0 of 3, as llama.cpp's llama_split_path writes it. */
export function splitPartPath(prefix: string, index: number, count: number): string {
  const digits = (n: number) => String(n).padStart(5, '0');
  return `${prefix}-${digits(index + 1)}-of-${digits(count)}.gguf`;
}

/**
 * Reads a GGUF file, or every part of a split model when given its first part: the first part's
 * metadata with the tensors of all parts (each tensor remembers the part that holds it).
 * `headerOnly` as for readGgufHeader.
 */
export function readGgufModel(file: string, options: { headerOnly?: boolean } = {}): GgufFile {
  const first = readGgufHeader(file, options);
  const count = first.metadata.get('split.count');
  if (count === undefined || count === 1) return first;
  const name = path.basename(file);
  const match = SPLIT_NAME.exec(file);
  if (typeof count !== 'number' || !match) throw modelError(`${name}: split.count is ${JSON.stringify(count)} but the file is not named PREFIX-00001-of-0000N.gguf`, file);
  if (Number(match[2]) !== 1) throw modelError(`${name}: this is part ${Number(match[2])} of a split model; give the first part, ${path.basename(splitPartPath(match[1]!, 0, count))}`, file);
  if (Number(match[3]) !== count) throw modelError(`${name}: split.count is ${count} but the name says ${Number(match[3])} parts`, file);
  const tensors = new Map(first.tensors);
  for (let index = 1; index < count; index++) {
    const partPath = splitPartPath(match[1]!, index, count);
    if (!fs.existsSync(partPath)) throw modelError(`${name}: part ${index + 1} of ${count} of the split model is missing: ${partPath}`, file);
    const part = readGgufHeader(partPath, options);
    checkPartNumber(part, index, count);
    for (const [tensorName, info] of part.tensors) {
      const earlier = tensors.get(tensorName);
      if (earlier) throw modelError(`${path.basename(partPath)}: tensor ${tensorName} is also in ${path.basename(earlier.file)}`, partPath);
      tensors.set(tensorName, info);
    }
  }
  checkPartNumber(first, 0, count);
  const expected = first.metadata.get('split.tensors.count');
  if (expected !== tensors.size) throw modelError(`${name}: split.tensors.count is ${JSON.stringify(expected)} but the ${count} parts hold ${tensors.size} tensors`, file);
  return { ...first, tensors };
}

function checkPartNumber(part: GgufFile, index: number, count: number): void {
  const name = path.basename(part.file);
  if (part.metadata.get('split.no') !== index) throw modelError(`${name}: split.no is ${JSON.stringify(part.metadata.get('split.no'))}; as part ${index + 1} of ${count} it should be ${index}`, part.file);
  if (part.metadata.get('split.count') !== count) throw modelError(`${name}: split.count is ${JSON.stringify(part.metadata.get('split.count'))} but the first part says ${count}`, part.file);
}
