/**
 * A token source for tests that emits exactly the ids a Llama 3.1 model would: assistant text
 * encoded by the real tokenizer, with the special ids written out.
 */
import type { FinishReason } from '../src/engine/generate.js';
import { HerdTokenizer, TextStream } from '../src/engine/tokenizer.js';
import type { TokenReply, TokenRequest, TokenSource } from '../src/chat/token-source.js';
import { LLAMA_TOKENIZER } from './fixtures.js';

/** Llama 3.1 special ids (tokenizer.json added tokens). */
export const BEGIN_OF_TEXT = 128000;
export const END_OF_TEXT = 128001;
export const START_HEADER = 128006;
export const END_HEADER = 128007;
export const EOM = 128008;
export const EOT = 128009;
export const PYTHON_TAG_ID = 128010;
export const LLAMA_STOP_IDS = [END_OF_TEXT, EOM, EOT];

export const llamaTokenizer = HerdTokenizer.fromDir(LLAMA_TOKENIZER);

/** Ids of plain text (no BOS). */
export function textIds(text: string): number[] {
  return llamaTokenizer.encode(text, false);
}

export class ScriptedTokenSource implements TokenSource {
  /** The prompt ids of each request, for tests to inspect. */
  readonly prompts: number[][] = [];

  constructor(private readonly replies: number[][], readonly contextLength = 131072) {}

  async next(request: TokenRequest): Promise<TokenReply> {
    this.prompts.push([...request.promptIds]);
    const script = this.replies.shift();
    if (script === undefined) throw new Error('the scripted source has no more replies');
    const stream = new TextStream(llamaTokenizer);
    const generatedIds: number[] = [];
    let text = '';
    let finishReason: FinishReason = 'length';
    let stoppedBy: number | null = null;
    for (const id of script.slice(0, request.maxNewTokens)) {
      if (request.shouldStop()) {
        finishReason = 'abort';
        break;
      }
      generatedIds.push(id);
      request.onToken();
      if (request.stopTokenIds.includes(id)) {
        finishReason = 'stop';
        stoppedBy = id;
        break;
      }
      const delta = stream.push(id);
      text += delta;
      if (delta) request.onText(delta);
      await new Promise((resolve) => setImmediate(resolve));
    }
    return { generatedIds, text, finishReason, stoppedBy, computedPromptTokens: request.promptIds.length, prefillMs: 1, decodeMs: generatedIds.length };
  }

  dispose(): void {}
}
