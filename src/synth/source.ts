/**
 * The instructions a pipeline runs on: one column of a jsonl/json/csv/parquet file (read by the
 * same readers as `herd eval`'s data), exact duplicates dropped (the first kept), then --limit.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { readTableFile } from '../eval/data.js';
import { HerdError } from '../errors.js';

export interface Instruction {
  text: string;
  /** 1-based row of the source file, for messages and the output's order. */
  sourceRow: number;
  /** Names the row in the kept progress: the same instruction is the same row in any run. */
  key: string;
}

export interface InstructionSet {
  instructions: Instruction[];
  rowsRead: number;
  duplicatesDropped: number;
}

const EXTENSIONS = ['.jsonl', '.json', '.csv', '.parquet'];

export async function readInstructions(file: string, column: string, limit: number | undefined): Promise<InstructionSet> {
  checkSourceFile(file);
  const rows = await readTableFile(file);
  const seen = new Set<string>();
  const instructions: Instruction[] = [];
  for (const { doc, row } of rows) {
    const value = doc[column];
    if (value === undefined) throw new HerdError(`${file}: row ${row + 1}: no column "${column}" (columns: ${Object.keys(doc).join(', ')})`, { file });
    if (typeof value !== 'string' || value.trim() === '') throw new HerdError(`${file}: row ${row + 1}: column "${column}" is not a non-empty string`, { file });
    if (seen.has(value)) continue;
    seen.add(value);
    instructions.push({ text: value, sourceRow: row + 1, key: instructionKey(value) });
  }
  if (rows.length === 0) throw new HerdError(`${file}: has no rows`, { file });
  return { instructions: instructions.slice(0, limit), rowsRead: rows.length, duplicatesDropped: rows.length - instructions.length };
}

function checkSourceFile(file: string): void {
  if (!fs.existsSync(file)) {
    // A hub id ("HuggingFaceH4/ultrafeedback") is for when hub downloads land; say so rather than "missing".
    throw new HerdError(`instructions file ${file} does not exist (hub dataset ids are not downloaded by herd synth yet: download the file and pass its path)`, { file });
  }
  if (!EXTENSIONS.includes(path.extname(file).toLowerCase())) throw new HerdError(`${file}: instructions are read from ${EXTENSIONS.join(', ')} files`, { file });
}

export function instructionKey(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}
