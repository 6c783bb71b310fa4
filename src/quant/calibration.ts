import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { HerdError } from '../errors.js';
import type { Ops } from '../engine/ops.js';
import type { WeightSource } from '../formats/weights.js';
import type { LoadedModel } from '../engine/load.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import type { Activations } from './awq.js';

/** The calibration text shipped with herd (TinyStories validation stories, CDLA-Sharing-1.0; see data/CALIBRATION-SOURCE.md). */
export const DEFAULT_CALIBRATION_FILE = fileURLToPath(new URL('../../data/calibration.txt', import.meta.url));

export interface CalibrationOptions {
  file: string;
  samples: number;
  seqLen: number;
}

/** The texts of a calibration file: plain text, jsonl or parquet (the `text` field, else the first string field). */
export async function readCalibrationTexts(file: string): Promise<string[]> {
  if (!fs.existsSync(file)) throw new HerdError(`calibration file ${file} does not exist`);
  if (file.endsWith('.jsonl')) {
    return fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.trim() !== '').map((line, i) => {
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch {
        throw new HerdError(`${file}: line ${i + 1} is not valid JSON`);
      }
      return textField(row, `${file}: line ${i + 1}`);
    });
  }
  if (file.endsWith('.parquet')) {
    const rows = await parquetReadObjects({ file: await asyncBufferFromFile(file) });
    return rows.map((row, i) => textField(row, `${file}: row ${i}`));
  }
  return [fs.readFileSync(file, 'utf8')];
}

function textField(row: unknown, where: string): string {
  if (typeof row !== 'object' || row === null) throw new HerdError(`${where} is not an object`);
  const record = row as Record<string, unknown>;
  if (typeof record.text === 'string') return record.text;
  const first = Object.values(record).find((value) => typeof value === 'string');
  if (typeof first !== 'string') throw new HerdError(`${where} has no text field`);
  return first;
}

/**
 * `samples` windows of `seqLen` token ids, each starting with BOS, cut one after another from the
 * texts joined by blank lines (the first ones when the text is long enough).
 */
export function calibrationWindows(texts: string[], tokenizer: HerdTokenizer, bosTokenId: number | null, options: CalibrationOptions): Int32Array[] {
  const ids = tokenizer.encode(texts.join('\n\n'), false);
  const body = options.seqLen - (bosTokenId === null ? 0 : 1);
  const windows: Int32Array[] = [];
  for (let start = 0; windows.length < options.samples && start + body <= ids.length; start += body) {
    windows.push(Int32Array.from(bosTokenId === null ? ids.slice(start, start + body) : [bosTokenId, ...ids.slice(start, start + body)]));
  }
  if (windows.length === 0) throw new HerdError(`${options.file}: ${ids.length} tokens are too few for one window of --seq-len ${options.seqLen}`);
  return windows;
}

/**
 * An Ops decorator that records the input rows of chosen linear weights and RMSNorms as the one
 * model definition runs: the calibration activations AWQ and GPTQ need (an input_layernorm's
 * input is its decoder layer's residual input), without a second forward pass.
 */
export class ActivationRecorder {
  private readonly names = new Map<unknown, string>();
  private readonly rows = new Map<string, Float32Array[]>();

  /** `inputWidths`: the weights to record, each with its input features (the `in` of [out, in], or a norm's width). */
  constructor(private readonly inputWidths: Map<string, number>) {}

  wrap<T, W>(ops: Ops<T, W>): Ops<T, W> {
    const { inputWidths } = this;
    const named = (weight: W, name: string): W => {
      if (inputWidths.has(name)) this.names.set(weight, name);
      return weight;
    };
    const record = (x: T, weight: W): void => {
      const name = this.names.get(weight);
      if (name === undefined) return;
      const parts = this.rows.get(name) ?? [];
      parts.push(ops.read(x));
      this.rows.set(name, parts);
    };
    return Object.assign(Object.create(ops) as Ops<T, W>, {
      linearWeight: (name: string, source: WeightSource): W => named(ops.linearWeight(name, source), name),
      vectorWeight: (name: string, source: WeightSource): W => named(ops.vectorWeight(name, source), name),
      // Every product through this wrapper's `linear`, not the wrapped backend's linearMany (inherited otherwise).
      linearMany: undefined,
      linear(x: T, weight: W): T {
        record(x, weight);
        return ops.linear(x, weight);
      },
      rmsNorm(x: T, weight: W, eps: number): T {
        record(x, weight);
        return ops.rmsNorm(x, weight, eps);
      },
    });
  }

  /** All recorded rows of one weight's input, [tokens, in]. */
  activations(name: string): Activations {
    const parts = this.rows.get(name);
    const cols = this.inputWidths.get(name);
    if (!parts || cols === undefined) throw new HerdError(`no calibration activations were recorded for ${name}`);
    const data = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
    let offset = 0;
    for (const part of parts) {
      data.set(part, offset);
      offset += part.length;
    }
    return { rows: data.length / cols, cols, data };
  }
}

/**
 * Runs the calibration windows through a loaded model whose ops a recorder wraps, each window in
 * one part: a float32 product reads its weights once per part, and the native prefill's parts of
 * 32 tokens made this pass twice as long (a 4-layer 1B shape on two threads: 21 → 11 s).
 */
export function runCalibration(loaded: LoadedModel, windows: Int32Array[]): void {
  for (const ids of windows) {
    const cache = loaded.model.createCache(ids.length);
    try {
      loaded.model.forward(ids, cache, { chunkTokens: ids.length });
    } finally {
      cache.dispose();
    }
  }
}
