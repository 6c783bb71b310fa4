import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomically } from '../formats/files.js';
import type { SynthRow } from './pipeline.js';

/**
 * What an interrupted `herd synth` keeps: each finished row, appended as one JSON line keyed by
 * its instruction, in DIR/.herd-synth-progress/<settings>.jsonl. The file name is a hash of
 * everything that decides a row's content (models, sampling, prompts, seed), so the same command
 * resumes from it and a changed pipeline starts afresh. The folder goes once the outputs exist.
 */
export class SynthProgress {
  private readonly dir: string;
  private readonly file: string;

  constructor(outputDir: string, settings: unknown) {
    this.dir = path.join(outputDir, '.herd-synth-progress');
    const key = createHash('sha256').update(JSON.stringify(settings)).digest('hex').slice(0, 16);
    this.file = path.join(this.dir, `${key}.jsonl`);
  }

  /** The kept rows by key. A line cut short by a kill is dropped (that row runs again) and cut from the file. */
  kept(): Map<string, SynthRow> {
    const rows = new Map<string, SynthRow>();
    if (!fs.existsSync(this.file)) return rows;
    const text = fs.readFileSync(this.file, 'utf8');
    const whole: string[] = [];
    for (const line of text.split('\n')) {
      const entry = parseLine(line);
      if (entry === null || rows.has(entry.key)) continue;
      rows.set(entry.key, entry.row);
      whole.push(line);
    }
    // Appending after a torn line would glue the next row onto it; keep only whole lines.
    if (whole.length !== text.split('\n').filter((line) => line !== '').length || (text !== '' && !text.endsWith('\n'))) {
      writeFileAtomically(this.file, [Buffer.from(whole.map((line) => `${line}\n`).join(''))]);
    }
    return rows;
  }

  record(key: string, row: SynthRow): void {
    fs.mkdirSync(this.dir, { recursive: true });
    fs.appendFileSync(this.file, `${JSON.stringify({ key, row })}\n`);
  }

  describe(): string {
    return this.dir;
  }

  clear(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function parseLine(line: string): { key: string; row: SynthRow } | null {
  if (line === '') return null;
  try {
    const entry = JSON.parse(line) as { key?: unknown; row?: unknown };
    return typeof entry.key === 'string' && typeof entry.row === 'object' && entry.row !== null ? { key: entry.key, row: entry.row as SynthRow } : null;
  } catch {
    return null;
  }
}
