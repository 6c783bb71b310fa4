/**
 * The instructions a pipeline runs on: one column of a jsonl/json/csv/parquet file, or of a Hub
 * dataset split's data files (downloaded into the Hub cache), read by the same readers as
 * `herd eval`'s data; exact duplicates dropped (the first kept), then --limit.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { readTableFile } from '../eval/data.js';
import { HerdError } from '../errors.js';
import type { DownloadProgress } from '../hub/download-files.js';
import { pullDatasetSplit } from '../hub/dataset.js';
import type { InstructionSource } from './pipeline-config.js';

export interface Instruction {
  text: string;
  /** The file it came from (a dataset split may have several), for messages. */
  sourceFile: string;
  /** 1-based row of that file, for messages. */
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

export interface SourceOptions {
  limit?: number;
  /** Draws a Hub dataset's download. */
  download?: DownloadProgress;
  shouldStop?: () => boolean;
  /** Where the Hub and its cache are (HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE…); process.env by default. */
  env?: NodeJS.ProcessEnv;
}

/** The source's instructions: its file, or its dataset split's files (from the Hub cache, downloaded when missing). */
export async function readSource(source: InstructionSource, options: SourceOptions = {}): Promise<InstructionSet> {
  if (source.file !== null) return readInstructions([source.file], source.column, options.limit);
  const { id, split, revision } = source.dataset;
  const pulled = await pullDatasetSplit(id, split, { revision, progress: options.download, shouldStop: options.shouldStop, env: options.env });
  return readInstructions(pulled.files, source.column, options.limit);
}

/** The instructions of the files in order (a split's shards), one row set. */
export async function readInstructions(files: readonly string[], column: string, limit: number | undefined): Promise<InstructionSet> {
  const seen = new Set<string>();
  const instructions: Instruction[] = [];
  let rowsRead = 0;
  for (const file of files) {
    checkSourceFile(file);
    const rows = await readTableFile(file);
    rowsRead += rows.length;
    for (const { doc, row } of rows) {
      const value = doc[column];
      if (value === undefined) throw new HerdError(`${file}: row ${row + 1}: no column "${column}" (columns: ${Object.keys(doc).join(', ')})`, { file });
      if (typeof value !== 'string' || value.trim() === '') throw new HerdError(`${file}: row ${row + 1}: column "${column}" is not a non-empty string`, { file });
      if (seen.has(value)) continue;
      seen.add(value);
      instructions.push({ text: value, sourceFile: file, sourceRow: row + 1, key: instructionKey(value) });
    }
  }
  if (rowsRead === 0) throw new HerdError(`${files.join(', ')}: has no rows`, { file: files[0] });
  return { instructions: instructions.slice(0, limit), rowsRead, duplicatesDropped: rowsRead - instructions.length };
}

function checkSourceFile(file: string): void {
  if (!fs.existsSync(file)) {
    throw new HerdError(`instructions file ${file} does not exist (a Hub dataset is source.dataset in a pipeline file, or --dataset)`, { file });
  }
  if (!EXTENSIONS.includes(path.extname(file).toLowerCase())) throw new HerdError(`${file}: instructions are read from ${EXTENSIONS.join(', ')} files`, { file });
}

export function instructionKey(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}
