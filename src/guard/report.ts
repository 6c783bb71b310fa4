import type { LlamaGuardResult } from './llama-guard.js';
import { decidingScore, type Classification, type TextSource } from './prompt-guard.js';

/** What `herd guard` prints: the herd.guard/1 body (docs/schemas/herd.guard.schema.json) and its text line. */

export interface PromptGuardVerdict {
  source: TextSource;
  threshold: number;
  temperature: number;
  classification: Classification;
}

export function llamaGuardJson(model: string, result: LlamaGuardResult, threshold: number | undefined): Record<string, unknown> {
  return {
    guard: 'llama-guard',
    model,
    verdict: result.verdict,
    categories: result.categories,
    p_unsafe: result.pUnsafe,
    threshold: threshold ?? null,
    role: result.role,
    generated: result.generated,
    scored_after_ids: result.scoredAfterIds,
    prompt: result.prompt,
    prompt_tokens: result.promptTokens,
  };
}

export function llamaGuardText(result: LlamaGuardResult): string {
  const named = result.categories.map((category) => `${category.code} ${category.name}`).join(', ');
  return `${result.verdict}${named === '' ? '' : ` (${named})`}  P(unsafe) ${result.pUnsafe.toFixed(4)}  [${result.role} turn]`;
}

export function promptGuardVerdict(verdict: PromptGuardVerdict): { verdict: 'safe' | 'unsafe'; label: string; score: number } {
  const deciding = decidingScore(verdict.classification.scores, verdict.source);
  return { verdict: deciding.score >= verdict.threshold ? 'unsafe' : 'safe', ...deciding };
}

export function promptGuardJson(model: string, verdict: PromptGuardVerdict): Record<string, unknown> {
  const decided = promptGuardVerdict(verdict);
  const { classification } = verdict;
  return {
    guard: 'prompt-guard',
    model,
    verdict: decided.verdict,
    label: decided.label,
    score: decided.score,
    threshold: verdict.threshold,
    source: verdict.source,
    temperature: verdict.temperature,
    labels: classification.labels,
    scores: classification.scores,
    segments: classification.segments.map((segment) => ({ tokens: segment.ids.length, probs: segment.probs, scores: segment.scores })),
  };
}

export function promptGuardText(verdict: PromptGuardVerdict): string {
  const decided = promptGuardVerdict(verdict);
  const segments = verdict.classification.segments.length;
  return `${decided.verdict}  ${decided.label} ${decided.score.toFixed(4)} (threshold ${verdict.threshold})${segments > 1 ? `  max over ${segments} segments` : ''}`;
}
