import fs from 'node:fs';
import path from 'node:path';
import { HerdError } from '../errors.js';

/** File helpers every reader and writer of stored models shares. */

export function openForReading(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (error) {
    throw new HerdError(`cannot open ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { kind: 'io', file });
  }
}

/** Writes parts to `file.tmp-PID` and renames it over `file`, so readers never see half a file. */
export function writeFileAtomically(file: string, parts: Uint8Array[]): void {
  const temporary = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(temporary, 'w');
  try {
    for (const part of parts) fs.writeSync(fd, part);
    fs.fsyncSync(fd);
  } catch (error) {
    fs.closeSync(fd);
    fs.rmSync(temporary, { force: true });
    throw error;
  }
  fs.closeSync(fd);
  fs.renameSync(temporary, file);
}

/** Reads a JSON file; a missing optional file gives null, a missing required one a clear error. */
export function readJsonFile(file: string, required: boolean): unknown {
  if (!fs.existsSync(file)) {
    if (required) throw new HerdError(`missing ${path.basename(file)} in ${path.dirname(file)}`, { file });
    return null;
  }
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new HerdError(`${file}: not valid JSON (${(error as Error).message.split('\n')[0]})`, { file });
  }
}
