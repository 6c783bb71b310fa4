import fs from 'node:fs';
import { HerdError } from '../errors.js';
import type { LoadedModel } from '../engine/load.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import { allLogits, positionDivergence } from '../eval/compare.js';

/** Quality of a quantized model against its base on the same text. */
export interface Scorecard {
  tokens: number;
  basePerplexity: number;
  quantPerplexity: number;
  /** KL(base ‖ quantized) of the next-token distributions, nats: mean and 99th percentile over positions. */
  meanKl: number;
  p99Kl: number;
  /** Positions where both models' most likely next token agree. */
  top1Agreement: number;
}

/**
 * The backend scoring runs on, and calibration where the native addon does not load
 * (layerRunnerBackend): herd's WASM kernels. tfjs's cpu backend broadcasts
 * element by element (the causal mask and RoPE tables of every layer), which made one 256-token
 * forward of stories260K take about a second; the kernels take tens of milliseconds. Both models
 * of a scorecard run on the same backend, so backend rounding never counts as quantization loss.
 */
export const QUANT_BACKEND = 'kernels';

/**
 * Scores both models over the text's tokens in windows of `window` (each starting with BOS when
 * the tokenizer has one), through the engine's forward with logits for every position.
 */
export function scoreAgainstBase(base: LoadedModel, quant: LoadedModel, text: string, window: number, maxTokens: number): Scorecard {
  if (base.config.vocabSize !== quant.config.vocabSize) throw new HerdError(`the models' vocabularies differ (${base.config.vocabSize} vs ${quant.config.vocabSize})`);
  const bos = base.config.bosTokenId;
  const ids = encodePrefix(base.tokenizer, text, maxTokens);
  const vocab = base.config.vocabSize;
  const kls: number[] = [];
  let baseNll = 0;
  let quantNll = 0;
  let agree = 0;
  const body = window - (bos === null ? 0 : 1);
  for (let start = 0; start + 1 < ids.length; start += body) {
    const chunk = ids.slice(start, start + body);
    const input = Int32Array.from(bos === null ? chunk : [bos, ...chunk]);
    const [p, q] = [base, quant].map((loaded) => allLogits(loaded, input));
    // Row i predicts input[i + 1]; with BOS prepended every chunk token is predicted.
    for (let row = 0; row + 1 < input.length; row++) {
      const { logP, logQ, kl, sameTop1 } = positionDivergence(p!.subarray(row * vocab, (row + 1) * vocab), q!.subarray(row * vocab, (row + 1) * vocab));
      const next = input[row + 1]!;
      baseNll -= logP[next]!;
      quantNll -= logQ[next]!;
      kls.push(Math.max(kl, 0));
      if (sameTop1) agree++;
    }
  }
  if (kls.length === 0) throw new HerdError('the score text has too few tokens');
  const sorted = [...kls].sort((a, b) => a - b);
  return {
    tokens: kls.length,
    basePerplexity: Math.exp(baseNll / kls.length),
    quantPerplexity: Math.exp(quantNll / kls.length),
    meanKl: kls.reduce((a, b) => a + b, 0) / kls.length,
    p99Kl: sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)]!,
    top1Agreement: agree / kls.length,
  };
}

/**
 * The first `maxTokens` tokens of the text, tokenizing only as much of it as that takes: a long
 * score file (the TinyStories head is 0.8 MB) took seconds to tokenize whole. The text is cut
 * after a line, and only tokens before the last one (which a merge across the cut could change)
 * are kept.
 */
function encodePrefix(tokenizer: HerdTokenizer, text: string, maxTokens: number): number[] {
  for (let chars = maxTokens * 8; ; chars *= 2) {
    const end = chars >= text.length ? text.length : text.lastIndexOf('\n', chars) + 1;
    if (end <= 0 && chars < text.length) continue;
    const ids = tokenizer.encode(text.slice(0, end), false);
    if (ids.length > maxTokens || end === text.length) return ids.slice(0, maxTokens);
  }
}

export function readScoreText(file: string): string {
  if (!fs.existsSync(file)) throw new HerdError(`score text ${file} does not exist`);
  return fs.readFileSync(file, 'utf8');
}
