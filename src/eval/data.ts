/**
 * Reading a task's dataset splits from local files in Hugging Face layouts: jsonl/json, csv and
 * parquet (hyparquet), one file or several shards per split, and plain text for perplexity.
 */
import fs from 'node:fs';
import path from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { HerdError } from '../errors.js';
import type { TaskConfig } from './task-config.js';
import type { Doc } from './task-functions.js';

/** A document and where it came from, for error messages and sample logs. */
export interface LocatedDoc {
  doc: Doc;
  file: string;
  /** 0-based row (line for jsonl, record for csv/parquet, paragraph/line for text). */
  row: number;
}

const TABLE_EXTENSIONS = ['.jsonl', '.json', '.csv', '.parquet'];

/** Reads one split, or returns null when no file for it exists (callers decide whether that is an error). */
export async function readSplit(config: TaskConfig, dataDir: string | undefined, split: string): Promise<LocatedDoc[] | null> {
  const files = splitFiles(config, dataDir, split);
  if (files.length === 0) return null;
  const docs: LocatedDoc[] = [];
  for (const file of files) docs.push(...(await readDataFile(file, config)));
  return docs;
}

/** Where a split's files may be, in the order they are tried. */
function splitFiles(config: TaskConfig, dataDir: string | undefined, split: string): string[] {
  const named = config.dataset_kwargs.data_files?.[split];
  if (named !== undefined) {
    const file = path.isAbsolute(named) ? named : path.join(requireDataDir(dataDir, config), named);
    return fs.existsSync(file) ? [file] : [];
  }
  if (config.dataset_path === 'text') return [];
  const root = requireDataDir(dataDir, config);
  const folders = candidateFolders(config).map((folder) => path.join(root, folder));
  for (const folder of folders) {
    for (const where of [folder, path.join(folder, 'data'), ...(config.dataset_name ? [path.join(folder, config.dataset_name)] : [])]) {
      const files = shardsIn(where, split);
      if (files.length > 0) return files;
    }
  }
  return [];
}

/** <task>, <last part of dataset_path>, <dataset_path> (e.g. cais/mmlu), each also under evals/. */
function candidateFolders(config: TaskConfig): string[] {
  const folders = [config.task];
  if (config.dataset_path) folders.push(path.basename(config.dataset_path), config.dataset_path);
  return [...new Set([...folders, ...folders.map((folder) => path.join('evals', folder))])];
}

/** `<split>.<ext>` or Hub-style shards `<split>-00000-of-00002.<ext>` (any `<split>-…` name). */
function shardsIn(folder: string, split: string): string[] {
  if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory()) return [];
  return fs
    .readdirSync(folder)
    .filter((name) => {
      const extension = TABLE_EXTENSIONS.find((ext) => name.endsWith(ext));
      if (!extension) return false;
      const stem = name.slice(0, -extension.length);
      return stem === split || stem.startsWith(`${split}-`);
    })
    .sort()
    .map((name) => path.join(folder, name));
}

function requireDataDir(dataDir: string | undefined, config: TaskConfig): string {
  if (dataDir === undefined) throw new HerdError(`task ${config.task} reads local data: pass --data DIR (the folder holding its dataset files)`);
  return dataDir;
}

async function readDataFile(file: string, config: TaskConfig): Promise<LocatedDoc[]> {
  if (config.dataset_path === 'text') return readText(file, config.dataset_kwargs.sample_by ?? 'line');
  return readTableFile(file);
}

/** One table file by its extension: .jsonl, .json (an array), .csv or .parquet (herd synth reads its instructions so too). */
export async function readTableFile(file: string): Promise<LocatedDoc[]> {
  if (file.endsWith('.jsonl')) return readJsonl(file);
  if (file.endsWith('.json')) return readJsonArray(file);
  if (file.endsWith('.csv')) return readCsv(file);
  return readParquet(file);
}

function readJsonl(file: string): LocatedDoc[] {
  const docs: LocatedDoc[] = [];
  fs.readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, row) => {
      if (line.trim() === '') return;
      let doc: unknown;
      try {
        doc = JSON.parse(line);
      } catch (error) {
        throw new HerdError(`${file}: line ${row + 1}: not valid JSON (${(error as Error).message})`);
      }
      docs.push({ doc: asDoc(doc, file, row), file, row });
    });
  return docs;
}

function readJsonArray(file: string): LocatedDoc[] {
  let rows: unknown;
  try {
    rows = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new HerdError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  if (!Array.isArray(rows)) throw new HerdError(`${file}: a .json split must be an array of objects`);
  return rows.map((doc, row) => ({ doc: asDoc(doc, file, row), file, row }));
}

function asDoc(value: unknown, file: string, row: number): Doc {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HerdError(`${file}: row ${row + 1}: expected a JSON object`);
  return value as Doc;
}

/** RFC 4180 CSV with a header row; whole-number and decimal cells become numbers, as pandas reads them. */
function readCsv(file: string): LocatedDoc[] {
  const records = parseCsv(fs.readFileSync(file, 'utf8'), file);
  const [header, ...rows] = records;
  if (!header) throw new HerdError(`${file}: empty CSV`);
  return rows.map((cells, row) => {
    if (cells.length !== header.length) throw new HerdError(`${file}: record ${row + 2} has ${cells.length} fields, the header ${header.length}`);
    const doc: Doc = Object.fromEntries(header.map((name, i) => [name, csvValue(cells[i]!)]));
    return { doc, file, row };
  });
}

function csvValue(cell: string): string | number {
  return /^-?\d+(\.\d+)?$/.test(cell) ? Number(cell) : cell;
}

function parseCsv(text: string, file: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (char === '"') quoted = false;
      else cell += char;
    } else if (char === '"' && cell === '') quoted = true;
    else if (char === ',') {
      record.push(cell);
      cell = '';
    } else if (char === '\n' || char === '\r') {
      if (char === '\r' && text[i + 1] === '\n') i++;
      record.push(cell);
      records.push(record);
      record = [];
      cell = '';
    } else cell += char;
  }
  if (quoted) throw new HerdError(`${file}: a quoted field is not closed`);
  if (cell !== '' || record.length > 0) records.push([...record, cell]);
  return records;
}

async function readParquet(file: string): Promise<LocatedDoc[]> {
  let rows: Record<string, unknown>[];
  try {
    rows = (await parquetReadObjects({ file: await asyncBufferFromFile(file) })) as Record<string, unknown>[];
  } catch (error) {
    throw new HerdError(`${file}: cannot read parquet (${(error as Error).message})`);
  }
  return rows.map((doc, row) => ({ doc: plainValues(doc) as Doc, file, row }));
}

/** hyparquet gives bigint for int64 columns; JSON-like numbers are what templates expect. */
function plainValues(value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value);
  if (Array.isArray(value)) return value.map(plainValues);
  if (typeof value === 'object' && value !== null && !(value instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plainValues(v)]));
  }
  return value;
}

/** HF's "text" loader: `{text}` per line, per paragraph (blank-line separated) or for the whole file. */
function readText(file: string, sampleBy: 'line' | 'paragraph' | 'document'): LocatedDoc[] {
  const content = fs.readFileSync(file, 'utf8');
  if (sampleBy === 'document') return [{ doc: { text: content }, file, row: 0 }];
  const pieces = sampleBy === 'line' ? content.split('\n') : content.split(/\n\s*\n/);
  return pieces
    .map((piece, row) => ({ doc: { text: piece.replace(/\n+$/, '') }, file, row }))
    .filter((located) => (located.doc.text as string).trim() !== '');
}
