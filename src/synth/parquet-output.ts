/**
 * The outputs as parquet, with native nested types as `datasets` writes them: `generations`,
 * `model_names` and `rationales*` are list<string>, `ratings*` list<int32> (a missing rating is
 * a null element), and the conversations (`chosen`, `rejected`, `prompt`) are
 * list<struct<role: string, content: string>>, so `datasets.load_dataset("parquet", …)` and
 * TRL read the same values as from the jsonl files.
 */
import { parquetWriteBuffer, type SchemaElement } from 'hyparquet-writer';
import { writeFileAtomically } from '../formats/files.js';

type ColumnKind = 'string' | 'int' | 'strings' | 'ints' | 'messages';

const text = (name: string): SchemaElement => ({ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' });

/** Parquet's three-level LIST: an optional group, its repeated `list`, then the `element`. */
function listOf(name: string, element: SchemaElement[]): SchemaElement[] {
  return [{ name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 }, { name: 'list', repetition_type: 'REPEATED', num_children: 1 }, ...element];
}

function columnSchema(name: string, kind: ColumnKind): SchemaElement[] {
  switch (kind) {
    case 'string':
      return [text(name)];
    case 'int':
      return [{ name, type: 'INT32', repetition_type: 'OPTIONAL' }];
    case 'strings':
      return listOf(name, [text('element')]);
    case 'ints':
      return listOf(name, [{ name: 'element', type: 'INT32', repetition_type: 'OPTIONAL' }]);
    case 'messages':
      return listOf(name, [{ name: 'element', repetition_type: 'OPTIONAL', num_children: 2 }, text('role'), text('content')]);
  }
}

/** The type of each column herd synth writes, by its name (per-aspect columns by their prefix). */
export function columnKind(name: string): ColumnKind {
  if (name === 'chosen' || name === 'rejected' || name === 'prompt') return 'messages';
  if (name === 'ratings' || name.startsWith('ratings_')) return 'ints';
  if (name === 'generations' || name === 'model_names' || name === 'rationales' || name.startsWith('rationales_')) return 'strings';
  if (name === 'chosen_rating' || name === 'rejected_rating') return 'int';
  return 'string';
}

/** Writes the records as one parquet file, atomically; `columns` names them in order (an empty file still has its schema). */
export function writeParquet(file: string, columns: readonly string[], records: readonly object[]): void {
  const schema: SchemaElement[] = [{ name: 'root', num_children: columns.length }, ...columns.flatMap((name) => columnSchema(name, columnKind(name)))];
  const columnData = columns.map((name) => ({ name, data: records.map((record) => (record as Record<string, unknown>)[name] ?? null) }));
  writeFileAtomically(file, [new Uint8Array(parquetWriteBuffer({ schema, columnData }))]);
}

/** Every column of the rows, in first-seen order (rows of one run share them). */
export function columnsOf(records: readonly object[]): string[] {
  return [...new Set(records.flatMap((record) => Object.keys(record)))];
}
