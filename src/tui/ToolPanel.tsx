import { Box, Text } from 'ink';
import type { ToolState } from '../chat/loop.js';
import type { ToolCall } from '../templates/chat-template.js';

const PREVIEW_LINES = 6;

const STATE_LABELS: Record<ToolState, { text: string; color: string }> = {
  awaiting_approval: { text: 'awaiting approval: y runs it, n refuses, a runs every tool from now on', color: 'yellow' },
  running: { text: 'running…', color: 'cyan' },
  done: { text: 'result', color: 'green' },
  error: { text: 'error', color: 'red' },
  refused: { text: 'refused', color: 'gray' },
};

/** One tool call: its name, its arguments pretty-printed, where it stands, and a preview of the result. */
export function ToolPanel({ call, state, result }: { call: ToolCall; state: ToolState; result?: string }) {
  const label = STATE_LABELS[state];
  return (
    <Box flexDirection="column" borderStyle="round" borderColor={label.color} paddingX={1}>
      <Text bold>tool {call.function.name}</Text>
      <Text>{prettyArguments(call.function.arguments)}</Text>
      <Text color={label.color}>{label.text}</Text>
      {result !== undefined && state !== 'refused' ? <Text dimColor={state === 'done'}>{preview(result)}</Text> : null}
    </Box>
  );
}

function prettyArguments(json: string): string {
  try {
    return JSON.stringify(JSON.parse(json), null, 2);
  } catch {
    return json;
  }
}

function preview(text: string): string {
  const lines = text.split('\n');
  if (lines.length <= PREVIEW_LINES) return text;
  return [...lines.slice(0, PREVIEW_LINES), `… ${lines.length - PREVIEW_LINES} more lines`].join('\n');
}
