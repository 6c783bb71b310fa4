import chalk from 'chalk';

/** How a cell should stand out; colour is applied only in the terminal rendering. */
export type Tone = 'plain' | 'good' | 'warn' | 'bad' | 'dim' | 'strong';

export interface Cell {
  text: string;
  tone?: Tone;
}

export interface Column {
  header: string;
  align: 'left' | 'right';
}

/** A titled table with notes: rendered either for the terminal or as Markdown. */
export interface Section {
  title: string;
  columns: Column[];
  rows: Cell[][];
  notes: string[];
}

const TONES: Record<Tone, (text: string) => string> = {
  plain: (text) => text,
  good: chalk.green,
  warn: chalk.yellow,
  bad: chalk.red,
  dim: chalk.dim,
  strong: chalk.bold,
};

/** Aligned columns; widths come from the plain text, so colour codes never skew them. */
export function renderSectionText(section: Section): string {
  const widths = section.columns.map((column, index) =>
    Math.max(column.header.length, ...section.rows.map((row) => row[index]?.text.length ?? 0)),
  );
  const line = (cells: Cell[]): string =>
    cells
      .map((cell, index) => {
        const width = widths[index] ?? 0;
        const padded = section.columns[index]?.align === 'right' ? cell.text.padStart(width) : cell.text.padEnd(width);
        return TONES[cell.tone ?? 'plain'](padded);
      })
      .join('  ')
      .trimEnd();
  const header = line(section.columns.map((column) => ({ text: column.header, tone: 'strong' })));
  const notes = section.notes.map((note) => chalk.dim(`  ${note}`));
  return [chalk.bold.underline(section.title), header, ...section.rows.map(line), ...notes].join('\n');
}

export function renderSectionMarkdown(section: Section): string {
  const escape = (text: string): string => text.replace(/\|/g, '\\|');
  const header = `| ${section.columns.map((column) => escape(column.header)).join(' | ')} |`;
  const rule = `| ${section.columns.map((column) => (column.align === 'right' ? '---:' : '---')).join(' | ')} |`;
  const rows = section.rows.map((row) => `| ${row.map((cell) => escape(cell.text)).join(' | ')} |`);
  const notes = section.notes.length > 0 ? ['', ...section.notes.map((note) => `- ${note}`)] : [];
  return [`## ${section.title}`, '', header, rule, ...rows, ...notes].join('\n');
}
