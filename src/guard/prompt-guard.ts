import fs from 'node:fs';
import path from 'node:path';
import { logSoftmax } from '../engine/sampling.js';
import { HerdTokenizer } from '../engine/tokenizer.js';
import { HerdError, modelError } from '../errors.js';
import { DebertaClassifier } from './deberta.js';

/**
 * Meta's Prompt Guard: a DeBERTa-v2 classifier that scores text for prompt attacks. Prompt Guard 1
 * has three labels (BENIGN, INJECTION, JAILBREAK); Prompt Guard 2 has two (benign, malicious).
 * The model computes on tfjs's active backend; callers activate one first (src/backends/registry.ts).
 */

/** Meta's scores: Prompt Guard 1 gives `jailbreak` and `injection`, a 2-label model `malicious`. */
export type PromptGuardScores = { jailbreak: number; injection: number } | { malicious: number };

export interface SegmentResult {
  /** [CLS] content [SEP] as the model saw it. */
  ids: number[];
  logits: number[];
  probs: number[];
  scores: PromptGuardScores;
}

export interface Classification {
  labels: string[];
  /** One per segment; a text within the window is one segment. */
  segments: SegmentResult[];
  /** Each score's maximum over the segments: an attack anywhere in a long text counts. */
  scores: PromptGuardScores;
}

export interface ClassifyOptions {
  /** Softmax temperature; Meta's reference code uses 1. */
  temperature?: number;
}

export interface PromptGuardOptions {
  /** Tokens per scored sequence, [CLS] and [SEP] included; default the model's max_position_embeddings. */
  window?: number;
}

export class PromptGuard {
  private constructor(
    readonly classifier: DebertaClassifier,
    readonly tokenizer: HerdTokenizer,
    private readonly clsId: number,
    private readonly sepId: number,
    readonly window: number,
  ) {}

  /** Loads a Prompt Guard folder: config.json, model.safetensors, tokenizer.json. */
  static load(dir: string, options: PromptGuardOptions = {}): PromptGuard {
    const tokenizerFile = path.join(dir, 'tokenizer.json');
    // Checked before the weights so a half-downloaded folder says what is missing without reading the model.
    if (!fs.existsSync(tokenizerFile)) throw modelError(`${dir}: no tokenizer.json; Prompt Guard needs the tokenizer.json of its model repository`, tokenizerFile);
    const classifier = DebertaClassifier.load(dir);
    const tokenizer = HerdTokenizer.fromDir(dir);
    const clsId = tokenizer.tokenToId('[CLS]');
    const sepId = tokenizer.tokenToId('[SEP]');
    if (clsId === undefined || sepId === undefined) throw modelError(`${tokenizerFile}: no [CLS] or [SEP] token; not a DeBERTa-v2 tokenizer`, tokenizerFile);
    const window = options.window ?? classifier.config.maxPositionEmbeddings;
    if (!Number.isInteger(window) || window < 3) throw new HerdError(`the window must hold [CLS], [SEP] and at least one token; got ${window}`);
    return new PromptGuard(classifier, tokenizer, clsId, sepId, window);
  }

  dispose(): void {
    this.classifier.dispose();
  }

  /** The text's ids without [CLS]/[SEP]. */
  contentIds(text: string): number[] {
    return this.tokenizer.encode(text, false);
  }

  /**
   * Scores a text. A text longer than the window is cut into consecutive runs of window − 2
   * content tokens, each wrapped [CLS] … [SEP]; all runs go through the model as one padded batch.
   */
  classify(text: string, options: ClassifyOptions = {}): Classification {
    const content = this.contentIds(text);
    const runLength = this.window - 2;
    const runs: number[][] = [];
    for (let start = 0; start < content.length; start += runLength) runs.push(content.slice(start, start + runLength));
    // A blank text still gets scored, as [CLS] [SEP], like the tokenizer's own encoding of it.
    if (runs.length === 0) runs.push([]);
    return this.classifyIds(runs.map((run) => [this.clsId, ...run, this.sepId]), options);
  }

  /** Scores sequences that already carry their special tokens, as one right-padded batch. */
  classifyIds(sequences: number[][], options: ClassifyOptions = {}): Classification {
    const temperature = options.temperature ?? 1;
    if (!(temperature > 0)) throw new HerdError(`temperature must be positive; got ${temperature}`);
    const labels = this.classifier.config.labels;
    const length = Math.max(...sequences.map((ids) => ids.length));
    const pad = this.classifier.config.padTokenId;
    const batchLogits = this.classifier.logits({
      ids: sequences.map((ids) => [...ids, ...new Array<number>(length - ids.length).fill(pad)]),
      attentionMask: sequences.map((ids) => [...new Array<number>(ids.length).fill(1), ...new Array<number>(length - ids.length).fill(0)]),
    });
    const segments = sequences.map((ids, index): SegmentResult => {
      const logits = batchLogits[index]!;
      const probs = softmax(logits, temperature);
      return { ids, logits, probs, scores: scoresOf(probs) };
    });
    return { labels, segments, scores: maxScores(segments.map((segment) => segment.scores)) };
  }
}

/** softmax(logits / temperature): the engine's log-softmax (float64), exponentiated. */
export function softmax(logits: readonly number[], temperature = 1): number[] {
  return Array.from(logSoftmax(Float32Array.from(logits, (logit) => logit / temperature)), Math.exp);
}

/**
 * Meta's scores from the label probabilities. Prompt Guard 1: a jailbreak is also an injection,
 * so `injection` = P(INJECTION) + P(JAILBREAK). A 2-label model: `malicious` = P(label 1).
 */
export function scoresOf(probs: readonly number[]): PromptGuardScores {
  if (probs.length === 3) return { jailbreak: probs[2]!, injection: probs[1]! + probs[2]! };
  if (probs.length === 2) return { malicious: probs[1]! };
  throw new HerdError(`Prompt Guard has 2 or 3 labels; this classifier has ${probs.length}`);
}

function maxScores(all: readonly PromptGuardScores[]): PromptGuardScores {
  const result: Record<string, number> = {};
  for (const scores of all) for (const [name, value] of Object.entries(scores)) result[name] = Math.max(result[name] ?? -Infinity, value);
  return result as PromptGuardScores;
}

/** Where a text comes from: the person (jailbreak check) or third-party data (injection check). */
export type TextSource = 'user' | 'third-party';

/** The score that decides, as Meta uses them: which label it is and its value. */
export interface DecidingScore {
  label: 'jailbreak' | 'injection' | 'malicious';
  score: number;
}

/**
 * Prompt Guard 1 checks a person's input for jailbreaks and third-party data for injections (a
 * jailbreak there counts as one); Prompt Guard 2 has one malicious score for both.
 */
export function decidingScore(scores: PromptGuardScores, source: TextSource): DecidingScore {
  if ('malicious' in scores) return { label: 'malicious', score: scores.malicious };
  return source === 'user' ? { label: 'jailbreak', score: scores.jailbreak } : { label: 'injection', score: scores.injection };
}

/** The threshold of Meta's examples: 0.9 for Prompt Guard 2 (2 labels), 0.5 for Prompt Guard 1. */
export function defaultPromptGuardThreshold(labelCount: number): number {
  return labelCount === 2 ? 0.9 : 0.5;
}
