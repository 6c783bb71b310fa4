import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { SampleRecord } from './runner.js';

/**
 * What an interrupted `herd eval --output DIR` keeps: each document's record, appended as it
 * finishes, in DIR/.herd-eval-progress/<task>-<key>.jsonl. The key is a hash of everything that
 * decides the records (model, task definition, run settings), so a later run with the same
 * command takes them instead of running those documents again, and any other run ignores them.
 * The folder goes once results.json is written.
 */
export class EvalProgress {
  private readonly dir: string;

  constructor(outputDir: string, private readonly settings: unknown) {
    this.dir = progressDir(outputDir);
  }

  /** The records kept for this task under these settings, in document order. */
  kept(task: unknown): SampleRecord[] {
    const file = this.fileOf(task);
    if (!fs.existsSync(file)) return [];
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    // A line cut short by the interruption is dropped: that document runs again.
    return lines.flatMap((line) => {
      try {
        return line === '' ? [] : [JSON.parse(line) as SampleRecord];
      } catch {
        return [];
      }
    });
  }

  record(task: unknown, sample: SampleRecord): void {
    fs.mkdirSync(this.dir, { recursive: true });
    fs.appendFileSync(this.fileOf(task), `${JSON.stringify(sample)}\n`);
  }

  /** Where this run's records go, for messages. */
  describe(): string {
    return this.dir;
  }

  private fileOf(task: unknown): string {
    const name = (task as { task?: string }).task ?? 'task';
    const key = createHash('sha256').update(JSON.stringify({ task, settings: this.settings })).digest('hex').slice(0, 16);
    return path.join(this.dir, `${name.replace(/[^\w.-]/g, '_')}-${key}.jsonl`);
  }
}

function progressDir(outputDir: string): string {
  return path.join(outputDir, '.herd-eval-progress');
}

/** Drops what interrupted runs kept, once a run's results are written. */
export function clearEvalProgress(outputDir: string): void {
  fs.rmSync(progressDir(outputDir), { recursive: true, force: true });
}
