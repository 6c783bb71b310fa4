/**
 * One sequence from ids to text: submits it, turns its tokens into text deltas as they come
 * (engine/tokenizer's TextStream), holds back text that may be the start of a stop string
 * (engine/generate's StopStringWatcher), and ends the sequence at the next step once a stop
 * string appears. The scheduler works in ids; text is this layer's business.
 */
import type { GeneratedToken } from '../engine/generate.js';
import { StopStringWatcher } from '../engine/generate.js';
import { TextStream } from '../engine/tokenizer.js';
import type { ServeContext } from './context.js';
import type { SequenceRequest, SequenceResult } from './scheduler.js';

export type TextFinishReason = 'stop' | 'length';

export interface TextSequenceRequest extends Omit<SequenceRequest, 'onToken' | 'signal'> {
  stopStrings: readonly string[];
  /** The request's own cancellation (client gone, timeout, shutdown). */
  signal: AbortSignal;
  /** Text as soon as it is final, with the tokens generated since the last delta. */
  onText?: (delta: string, tokens: GeneratedToken[]) => void;
  /** Each token as it is chosen (time to first token, inter-token latency). */
  onToken?: (token: GeneratedToken) => void;
}

export interface TextSequence {
  text: string;
  finishReason: TextFinishReason;
  /** The tokens that count: up to the stop id or the token that completed a stop string. */
  tokens: GeneratedToken[];
  result: SequenceResult;
}

export async function runTextSequence(context: ServeContext, request: TextSequenceRequest): Promise<TextSequence> {
  const { stopStrings, signal, onText, onToken, ...sequence } = request;
  const stream = new TextStream(context.model.tokenizer);
  const watcher = new StopStringWatcher(stopStrings);
  const stopStringSeen = new AbortController();
  const tokens: GeneratedToken[] = [];
  let unreported: GeneratedToken[] = [];
  let matched: string | null = null;
  const emit = (text: string) => {
    if (text === '') return;
    onText?.(text, unreported);
    unreported = [];
  };

  const result = await context.generator.submit({
    ...sequence,
    signal: AbortSignal.any([signal, stopStringSeen.signal]),
    onToken: (token) => {
      // The scheduler may finish the step in which the stop string appeared: those tokens are not the reply's.
      if (matched !== null) return;
      onToken?.(token);
      tokens.push(token);
      unreported.push(token);
      if (sequence.stopTokenIds.includes(token.id)) return;
      const step = watcher.feed(stream.push(token.id));
      emit(step.text);
      if (step.matched !== null) {
        matched = step.matched;
        stopStringSeen.abort();
      }
    },
  });
  if (result.finishReason === 'abort' && matched === null) throw signal.reason ?? new Error('the sequence was cancelled');
  if (matched === null) {
    // Bytes of a character the output never completed, then text held back as a possible stop string that was not one.
    const tail = watcher.feed(stream.flush());
    emit(tail.text);
    if (tail.matched !== null) matched = tail.matched;
    else emit(watcher.flush());
  }
  const finishReason: TextFinishReason = matched !== null || result.finishReason === 'stop' ? 'stop' : 'length';
  return { text: watcher.text, finishReason, tokens, result };
}
