import { round } from '../cli/timings.js';
import type { EngineFigures, LoadedFigures } from './compare.js';

/** A row of the comparison with what is derived from it: ratios to llama.cpp, read rate, bandwidth fraction. */
export type ComparedRow =
  | (Extract<EngineFigures, { available: true }> & {
      /** This engine's tokens/s over llama.cpp's on the same prompt length (absent without a llama.cpp figure). */
      prefill_ratio?: number;
      decode_ratio?: number;
      /** Weight bytes read per second while decoding. */
      decode_bytes_per_second?: number;
      /** That over the machine's measured read bandwidth (with --bandwidth). */
      bandwidth_fraction?: number;
    })
  | Extract<EngineFigures, { available: false }>;

/**
 * Adds ratios to llama.cpp's row of the same prompt length, and the read rate of decoding (llama.cpp
 * reads the same file, so its rows take herd's count of weight bytes a token reads).
 */
export function deriveRows(rows: readonly EngineFigures[], readBytesPerSecond?: number): ComparedRow[] {
  const herdBytes = rows.flatMap((row) => (row.available && row.weight_bytes_per_token !== undefined ? [row.weight_bytes_per_token] : []));
  const fileBytesPerToken = herdBytes.length > 0 ? Math.min(...herdBytes) : undefined;
  return rows.map((row) => {
    if (!row.available) return row;
    const llama = rows.find((other) => other.engine === 'llama.cpp' && other.prompt_tokens === row.prompt_tokens && other.available);
    const bytesPerToken = row.weight_bytes_per_token ?? fileBytesPerToken;
    const decodeBytes = bytesPerToken === undefined ? undefined : Math.round(bytesPerToken * row.decode_tokens_per_second);
    return {
      ...row,
      ...(llama?.available && row.engine !== 'llama.cpp'
        ? { prefill_ratio: round(row.prefill_tokens_per_second / llama.prefill_tokens_per_second), decode_ratio: round(row.decode_tokens_per_second / llama.decode_tokens_per_second) }
        : {}),
      ...(decodeBytes === undefined ? {} : { decode_bytes_per_second: decodeBytes }),
      ...(decodeBytes !== undefined && readBytesPerSecond ? { bandwidth_fraction: round(decodeBytes / readBytesPerSecond) } : {}),
    };
  });
}

const GB = 1e9;
const GIB = 2 ** 30;
const ratioText = (ratio: number | undefined) => (ratio === undefined ? '' : `${ratio.toFixed(2)}×`);
const percent = (fraction: number | undefined) => (fraction === undefined ? '' : `${Math.round(fraction * 100)} %`);
const gbPerSecond = (bytes: number | undefined) => (bytes === undefined ? '' : (bytes / GB).toFixed(1));
const gib = (bytes: number) => `${(bytes / GIB).toFixed(2)} GiB`;

const HEADINGS = ['engine', 'prompt', 'prefill tok/s', '×llama.cpp', 'decode tok/s', '×llama.cpp', 'decode GB/s', 'bandwidth', 'peak RSS'];

/** The cells of one row after the leading columns; an unavailable engine says why instead. */
function cells(row: ComparedRow): string[] {
  const lead = [row.engine, String(row.prompt_tokens)];
  if (!row.available) return [...lead, `not measured: ${row.reason}`];
  return [
    ...lead,
    row.prefill_tokens_per_second.toFixed(1),
    ratioText(row.prefill_ratio),
    row.decode_tokens_per_second.toFixed(1),
    ratioText(row.decode_ratio),
    gbPerSecond(row.decode_bytes_per_second),
    percent(row.bandwidth_fraction),
    gib(row.peak_rss_bytes),
  ];
}

/** The comparison for the terminal: aligned columns, then notes and the busy-machine figures. */
export function describeComparison(header: string, rows: readonly ComparedRow[], loaded?: readonly LoadedFigures[]): string {
  const table = [HEADINGS, ...rows.map(cells)];
  const widths = HEADINGS.map((_, column) => Math.max(...table.filter((line) => line.length === HEADINGS.length).map((line) => line[column]!.length)));
  const align = (line: string[]) => (line.length < HEADINGS.length ? line.join('  ') : line.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  '));
  const lines = [header, ...table.map(align)];
  for (const row of rows) if (row.available && row.note) lines.push(`note: ${row.engine}: ${row.note}`);
  for (const engine of loaded ?? []) lines.push(describeLoaded(engine));
  return lines.join('\n');
}

function describeLoaded(engine: LoadedFigures): string {
  if (!engine.available) return `busy machine  ${engine.engine}: not measured: ${engine.reason}`;
  return `busy machine  ${engine.engine}: decode ${engine.idle_decode_tokens_per_second.toFixed(1)} tok/s idle, ${engine.loaded_decode_tokens_per_second.toFixed(1)} tok/s loaded (${percent(engine.fraction)} kept)`;
}

/** One `herd bench --compare --json` run, labelled for the markdown table (e.g. by its format). */
export interface LabelledComparison {
  label: string;
  threads: number;
  rows: readonly ComparedRow[];
  loaded?: readonly LoadedFigures[];
}

/** A markdown table of several runs (formats × threads), ready for docs/performance.md. */
export function markdownTable(runs: readonly LabelledComparison[]): string {
  const headings = ['format', 'threads', ...HEADINGS];
  // Names left, figures right.
  const lines = [`| ${headings.join(' | ')} |`, `|---|---:|---|${headings.slice(3).map(() => '---:').join('|')}|`];
  const notes: string[] = [];
  for (const run of runs) {
    for (const row of run.rows) {
      const rowCells = [run.label, String(run.threads), ...cells(row)];
      while (rowCells.length < headings.length) rowCells.push('');
      lines.push(`| ${rowCells.join(' | ')} |`);
      if (row.available && row.note) notes.push(`${run.label}, ${run.threads} threads, ${row.engine}: ${row.note}`);
    }
  }
  // Each note once: the same notice comes from every prompt length and thread count.
  if (notes.length > 0) lines.push('', ...[...new Set(notes.map((note) => note.replace(/^([^,]+), \d+ threads, /, '$1, ')))].map((note) => `- ${note}`));
  const loaded = runs.flatMap((run) => (run.loaded ?? []).map((engine) => [run.label, String(run.threads), engine.engine, ...loadedCells(engine)]));
  if (loaded.length === 0) return lines.join('\n');
  const loadedHeadings = ['format', 'threads', 'engine', 'idle decode tok/s', 'loaded decode tok/s', 'kept'];
  return [...lines, '', `| ${loadedHeadings.join(' | ')} |`, `|---|---:|---|---:|---:|---:|`, ...loaded.map((row) => `| ${row.join(' | ')} |`)].join('\n');
}

function loadedCells(engine: LoadedFigures): string[] {
  if (!engine.available) return [`not measured: ${engine.reason}`, '', ''];
  return [engine.idle_decode_tokens_per_second.toFixed(1), engine.loaded_decode_tokens_per_second.toFixed(1), percent(engine.fraction)];
}
