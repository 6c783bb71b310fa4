/** Token logprobs in the two shapes OpenAI's APIs use: chat's `logprobs.content` and the legacy completions object. */
import type { GeneratedToken } from '../engine/generate.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }>;
}

export function chatLogprobs(tokenizer: HerdTokenizer, tokens: readonly GeneratedToken[]): ChatTokenLogprob[] {
  return tokens.map((token) => {
    const text = tokenizer.decode([token.id]);
    return {
      token: text,
      logprob: token.logprob,
      bytes: [...Buffer.from(text, 'utf8')],
      top_logprobs: token.top.map(([id, logprob]) => {
        const alternative = tokenizer.decode([id]);
        return { token: alternative, logprob, bytes: [...Buffer.from(alternative, 'utf8')] };
      }),
    };
  });
}

/** One scored position: the token there, its logprob and the top alternatives; null for a first prompt token. */
export interface ScoredToken {
  id: number;
  logprob: number | null;
  top: Array<[number, number]> | null;
}

export interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

/**
 * The legacy completions shape. Each top_logprobs entry also holds the token itself, as vLLM's
 * does, so lm-eval's is_greedy (`logprob == max(top.values())`) reads it right. `offset` is where
 * the first token's text starts in the choice's text.
 */
export function legacyLogprobs(tokenizer: HerdTokenizer, scored: readonly ScoredToken[], offset = 0): LegacyLogprobs {
  const out: LegacyLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let position = offset;
  for (const token of scored) {
    const text = tokenizer.decode([token.id]);
    out.tokens.push(text);
    out.token_logprobs.push(token.logprob);
    out.text_offset.push(position);
    position += text.length;
    if (token.top === null || token.logprob === null) {
      out.top_logprobs.push(null);
      continue;
    }
    const top: Record<string, number> = {};
    for (const [id, logprob] of token.top) top[tokenizer.decode([id])] = logprob;
    top[text] = token.logprob;
    out.top_logprobs.push(top);
  }
  return out;
}
