import { Text } from 'ink';

export interface StatusLineProps {
  model: string;
  contextTokens: number;
  contextLength: number;
  tokensPerSecond: number;
  busy: boolean;
}

/** Model, context used and decode speed (live while a reply is generated), and what keys do now. */
export function StatusLine({ model, contextTokens, contextLength, tokensPerSecond, busy }: StatusLineProps) {
  const hint = busy ? 'generating · Ctrl+C stops' : 'Enter sends · \\ at line end continues · /help';
  return (
    <Text dimColor>
      {model} · {contextTokens}/{contextLength} tokens · {tokensPerSecond.toFixed(1)} tok/s · {hint}
    </Text>
  );
}
