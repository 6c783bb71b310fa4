import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { HerdError } from '../errors.js';
import { renderSectionMarkdown, type Section } from './table.js';

export function markdownReport(title: string, sections: Section[]): string {
  return [`# ${title}`, '', ...sections.map((section) => renderSectionMarkdown(section) + '\n')].join('\n');
}

/** Writes beside the target and renames, so a reader never sees half a report. */
export async function writeFileAtomically(path: string, text: string): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    await writeFile(temporary, text, 'utf8');
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw new HerdError(`cannot write ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}
