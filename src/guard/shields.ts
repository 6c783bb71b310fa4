import type { LlamaGuardOptions } from './llama-guard.js';
import { UnparseableVerdictError, type GuardRole, type GuardTurn, type HazardCategory } from './llama-guard-prompt.js';
import { decidingScore, type Classification, type ClassifyOptions, type TextSource } from './prompt-guard.js';

/**
 * Llama Guard and Prompt Guard as the chat loop's shield (chat/shield.ts's Shield, matched by
 * shape: guard/ does not import chat/). Prompt Guard scans the person's input for jailbreaks and
 * every tool result for injections; Llama Guard judges each user turn and each reply in context.
 */

/** The part of LlamaGuard the shield uses (a scripted one in tests). */
export interface ConversationClassifier {
  classify(turns: readonly GuardTurn[], options?: LlamaGuardOptions): Promise<{ verdict: 'safe' | 'unsafe'; categories: HazardCategory[]; pUnsafe: number }>;
}

/** The part of PromptGuard the shield uses. */
export interface TextClassifier {
  classify(text: string, options?: ClassifyOptions): Classification;
}

export interface ShieldSettings {
  llamaGuard?: { classifier: ConversationClassifier; options?: Omit<LlamaGuardOptions, 'role'> };
  promptGuard?: { classifier: TextClassifier; threshold: number; temperature?: number };
}

interface Block {
  by: 'llama-guard' | 'prompt-guard';
  categories: HazardCategory[];
  /** null when Llama Guard's answer could not be read. */
  score: number | null;
  reason: string;
}

type History = ReadonlyArray<{ role: string; content: string }>;

export class GuardShield {
  constructor(private readonly settings: ShieldSettings) {}

  get checksReplies(): boolean {
    return this.settings.llamaGuard !== undefined;
  }

  async checkUserTurn(history: History, text: string): Promise<Block | null> {
    return this.scan(text, 'user') ?? (await this.judge([...history, { role: 'user', content: text }], 'user'));
  }

  async checkReply(history: History, text: string): Promise<Block | null> {
    if (text.trim() === '') return null;
    return this.judge([...history, { role: 'assistant', content: text }], 'agent');
  }

  async checkToolResult(_name: string, content: string): Promise<Block | null> {
    return this.scan(content, 'third-party');
  }

  /**
   * The whole-conversation check herd serve asks for (serve/context.ts's ChatShield): the tool
   * results in it, then the last message as what it is, a user turn or a reply to be returned.
   */
  async allows(messages: ReadonlyArray<{ role: string; content: string }>): Promise<boolean> {
    for (const message of messages) {
      if ((message.role === 'tool' || message.role === 'ipython') && (await this.checkToolResult(message.role, message.content))) return false;
    }
    const last = messages.at(-1);
    if (last === undefined) return true;
    const history = messages.slice(0, -1);
    if (last.role === 'assistant') return (await this.checkReply(history, last.content)) === null;
    return last.role !== 'user' || (await this.checkUserTurn(history, last.content)) === null;
  }

  private scan(text: string, source: TextSource): Block | null {
    const guard = this.settings.promptGuard;
    if (!guard) return null;
    const { label, score } = decidingScore(guard.classifier.classify(text, { temperature: guard.temperature }).scores, source);
    if (score < guard.threshold) return null;
    return { by: 'prompt-guard', categories: [], score, reason: `Prompt Guard scored it ${score.toFixed(2)} as ${label === 'injection' ? 'a prompt injection' : label === 'jailbreak' ? 'a jailbreak' : 'a malicious prompt'}` };
  }

  private async judge(history: History, role: GuardRole): Promise<Block | null> {
    const guard = this.settings.llamaGuard;
    if (!guard) return null;
    let result: Awaited<ReturnType<ConversationClassifier['classify']>>;
    try {
      result = await guard.classifier.classify(shieldTurns(history), { ...guard.options, role });
    } catch (error) {
      // A shield fails closed: an answer that is not a verdict blocks, as an unsafe one does.
      if (error instanceof UnparseableVerdictError) return { by: 'llama-guard', categories: [], score: null, reason: 'Llama Guard gave no readable verdict' };
      throw error;
    }
    if (result.verdict === 'safe') return null;
    const named = result.categories.map((category) => `${category.code} ${category.name}`).join(', ');
    return { by: 'llama-guard', categories: result.categories, score: result.pUnsafe, reason: `Llama Guard found it unsafe${named === '' ? '' : ` (${named})`}` };
  }
}

/**
 * A chat's messages as the alternating user/agent turns Llama Guard reads: system messages, tool
 * traffic and empty messages are left out, and consecutive turns of one role are joined.
 */
export function shieldTurns(history: History): GuardTurn[] {
  const turns: GuardTurn[] = [];
  for (const message of history) {
    if ((message.role !== 'user' && message.role !== 'assistant') || message.content.trim() === '') continue;
    const last = turns.at(-1);
    if (last?.role === message.role) last.content = `${last.content}\n\n${message.content}`;
    else if (last !== undefined || message.role === 'user') turns.push({ role: message.role, content: message.content });
  }
  return turns;
}
