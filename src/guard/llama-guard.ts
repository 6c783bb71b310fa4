import { generateAsync } from '../engine/generate.js';
import type { LoadedModel } from '../engine/load.js';
import { GREEDY } from '../engine/sampling.js';
import { modelError } from '../errors.js';
import {
  LLAMA_GUARD_3_CATEGORIES, conversationFor, parseVerdict, renderLlamaGuardPrompt, type GuardRole, type GuardTurn, type HazardCategory,
} from './llama-guard-prompt.js';

/**
 * Llama Guard 3 as a classifier: the prompt of llama-guard-prompt.ts, one greedy generation, the
 * verdict read strictly, and P(unsafe) from the distribution of the verdict's first token.
 */

/** Enough for "unsafe" and every one of 14 category codes, comma-separated. */
const VERDICT_MAX_TOKENS = 48;

export interface LlamaGuardOptions {
  role?: GuardRole;
  categories?: readonly HazardCategory[];
  /**
   * Classifier use: the verdict is P(unsafe) ≥ threshold instead of the generated text (which
   * then only names the categories of an unsafe verdict).
   */
  threshold?: number;
}

export interface LlamaGuardResult {
  role: GuardRole;
  verdict: 'safe' | 'unsafe';
  /** The violated categories (empty when safe). */
  categories: HazardCategory[];
  /** softmax over the "safe" and "unsafe" tokens' logits at the verdict's first token. */
  pUnsafe: number;
  /** The prompt text exactly as the model read it. */
  prompt: string;
  promptTokens: number;
  /** What the model generated, up to its end-of-turn token. */
  generated: string;
  /** Tokens generated before the verdict's first token (Llama Guard 3 opens with "\n\n"); the score is read after them. */
  scoredAfterIds: number[];
}

export class LlamaGuard {
  private readonly safeId: number;
  private readonly unsafeId: number;
  readonly defaultCategories: readonly HazardCategory[];

  constructor(readonly loaded: LoadedModel) {
    // As Meta scores it: the first token of each answer word.
    this.safeId = singleTokenId(loaded, 'safe');
    this.unsafeId = singleTokenId(loaded, 'unsafe');
    this.defaultCategories = defaultCategoriesFor(loaded.tokenizer.settings.chatTemplate);
  }

  async classify(turns: readonly GuardTurn[], options: LlamaGuardOptions = {}): Promise<LlamaGuardResult> {
    const conversation = conversationFor(turns, options.role);
    const categories = options.categories ?? this.defaultCategories;
    const prompt = renderLlamaGuardPrompt(conversation.turns, categories);
    // The template writes <|begin_of_text|> itself: no special tokens are added.
    const promptIds = this.loaded.tokenizer.encode(prompt, false);
    const stepScores: number[] = [];
    let wordScore: number | undefined;
    let text = '';
    const result = await generateAsync(this.loaded.model, this.loaded.tokenizer, {
      promptIds,
      maxNewTokens: VERDICT_MAX_TOKENS,
      sampling: GREEDY,
      stopTokenIds: this.loaded.generation.eosTokenIds,
      stopStrings: [],
      topLogprobs: 0,
      onLogits: (logits) => stepScores.push(twoWaySoftmax(logits[this.safeId]!, logits[this.unsafeId]!)),
      onToken: (token) => {
        if (wordScore === undefined && !this.isWhitespace(token.id)) wordScore = stepScores.at(-1);
      },
      onText: (delta) => {
        text += delta;
      },
      // Below the threshold the verdict is safe whatever follows: no category text is needed. An
      // answer that has stopped looking like one cannot become one: generating on is wasted.
      shouldStop: () => (options.threshold !== undefined && wordScore !== undefined && wordScore < options.threshold) || !couldBeVerdict(text),
    });
    const scoredStep = this.firstWordStep(result.generatedIds);
    const pUnsafe = stepScores[scoredStep] ?? stepScores[0]!;
    const base = { role: conversation.role, pUnsafe, prompt, promptTokens: promptIds.length, generated: result.text, scoredAfterIds: result.generatedIds.slice(0, scoredStep) };
    if (options.threshold !== undefined && pUnsafe < options.threshold) return { ...base, verdict: 'safe', categories: [] };
    const parsed = parseVerdict(result.text, categories);
    if (parsed.safe) {
      // Only with a threshold can the score call unsafe what the text calls safe; the text then names no category.
      return { ...base, verdict: options.threshold === undefined ? 'safe' : 'unsafe', categories: [] };
    }
    return { ...base, verdict: 'unsafe', categories: parsed.categories };
  }

  /** The step of the first generated token that is not whitespace only: where the verdict word starts. */
  private firstWordStep(ids: readonly number[]): number {
    const step = ids.findIndex((id) => !this.isWhitespace(id));
    return step === -1 ? 0 : step;
  }

  private isWhitespace(id: number): boolean {
    return this.loaded.tokenizer.decode([id]).trim() === '';
  }
}

/** Whether an answer so far can still read "safe" or "unsafe" on its first line. */
function couldBeVerdict(text: string): boolean {
  const firstLine = text.trimStart().split('\n')[0]!;
  return ['safe', 'unsafe'].some((word) => word.startsWith(firstLine));
}

/** P(unsafe) against safe: softmax over the two logits, computed stably. */
export function twoWaySoftmax(safeLogit: number, unsafeLogit: number): number {
  return 1 / (1 + Math.exp(safeLogit - unsafeLogit));
}

function singleTokenId(loaded: LoadedModel, word: string): number {
  const ids = loaded.tokenizer.encode(word, false);
  if (ids.length !== 1) throw modelError(`${loaded.dir}: "${word}" is not one token in this tokenizer (${JSON.stringify(ids)}); not a Llama Guard 3 tokenizer`, loaded.dir);
  return ids[0]!;
}

/**
 * Llama Guard 3 1B was trained without S14 (Code Interpreter Abuse): a model whose own Llama Guard
 * template lists categories but not S14 is prompted without it.
 */
export function defaultCategoriesFor(chatTemplate: string | Record<string, string> | null): readonly HazardCategory[] {
  const template = typeof chatTemplate === 'string' ? chatTemplate : Object.values(chatTemplate ?? {}).join('\n');
  if (template.includes('UNSAFE CONTENT CATEGORIES') && !template.includes('S14')) return LLAMA_GUARD_3_CATEGORIES.filter((category) => category.code !== 'S14');
  return LLAMA_GUARD_3_CATEGORIES;
}
