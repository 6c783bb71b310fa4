import fs from 'node:fs';
import { HerdError } from '../errors.js';
import type { LoadedModel } from '../engine/load.js';
import { logSoftmax } from '../engine/sampling.js';

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
 * Scores both models over the text's tokens in windows of `window` (each starting with BOS when
 * the tokenizer has one), through the engine's forward with logits for every position.
 */
export function scoreAgainstBase(base: LoadedModel, quant: LoadedModel, text: string, window: number, maxTokens: number): Scorecard {
  if (base.config.vocabSize !== quant.config.vocabSize) throw new HerdError(`the models' vocabularies differ (${base.config.vocabSize} vs ${quant.config.vocabSize})`);
  const bos = base.config.bosTokenId;
  const ids = base.tokenizer.encode(text, false).slice(0, maxTokens);
  const vocab = base.config.vocabSize;
  const kls: number[] = [];
  let baseNll = 0;
  let quantNll = 0;
  let agree = 0;
  const body = window - (bos === null ? 0 : 1);
  for (let start = 0; start + 1 < ids.length; start += body) {
    const chunk = ids.slice(start, start + body);
    const input = Int32Array.from(bos === null ? chunk : [bos, ...chunk]);
    const [p, q] = [base, quant].map((loaded) => allPositionLogits(loaded, input));
    // Row i predicts input[i + 1]; with BOS prepended every chunk token is predicted.
    for (let row = 0; row + 1 < input.length; row++) {
      const logP = logSoftmax(p!.subarray(row * vocab, (row + 1) * vocab));
      const logQ = logSoftmax(q!.subarray(row * vocab, (row + 1) * vocab));
      const next = input[row + 1]!;
      baseNll -= logP[next]!;
      quantNll -= logQ[next]!;
      let kl = 0;
      let bestP = 0;
      let bestQ = 0;
      for (let v = 0; v < vocab; v++) {
        kl += Math.exp(logP[v]!) * (logP[v]! - logQ[v]!);
        if (logP[v]! > logP[bestP]!) bestP = v;
        if (logQ[v]! > logQ[bestQ]!) bestQ = v;
      }
      kls.push(Math.max(kl, 0));
      if (bestP === bestQ) agree++;
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

function allPositionLogits(loaded: LoadedModel, ids: Int32Array): Float32Array {
  const cache = loaded.model.createCache(ids.length);
  try {
    return loaded.model.forward(ids, cache, { allPositions: true });
  } finally {
    cache.dispose();
  }
}

export function readScoreText(file: string): string {
  if (!fs.existsSync(file)) throw new HerdError(`score text ${file} does not exist`);
  return fs.readFileSync(file, 'utf8');
}
