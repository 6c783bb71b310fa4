/** What the terminal UI draws, built from chat events (a pure reducer, so it is easy to test). */
import type { ChatEvent, ToolState } from '../chat/loop.js';
import type { ChatMessage, ToolCall } from '../templates/chat-template.js';

export type TranscriptItem =
  | { kind: 'user'; text: string }
  | { kind: 'assistant'; text: string; streaming: boolean }
  | { kind: 'tool'; call: ToolCall; state: ToolState; result?: string }
  | { kind: 'info'; text: string }
  | { kind: 'error'; text: string };

export function applyEvent(items: readonly TranscriptItem[], event: ChatEvent): TranscriptItem[] {
  const last = items.at(-1);
  const streaming = last?.kind === 'assistant' && last.streaming ? last : undefined;
  const before = streaming ? items.slice(0, -1) : [...items];
  switch (event.type) {
    case 'token':
      return [...before, { kind: 'assistant', text: (streaming?.text ?? '') + event.text, streaming: true }];
    case 'message':
      // A message that is tool calls is drawn as their panels, not as its raw text.
      if (event.toolCalls.length > 0 || event.text.trim() === '') return before;
      return [...before, { kind: 'assistant', text: event.text, streaming: false }];
    case 'tool_call':
      return [...items, { kind: 'tool', call: event.call, state: 'awaiting_approval' }];
    case 'tool_state':
      return updateTool(items, event.id, (item) => ({ ...item, state: event.state }));
    case 'tool_result':
      return updateTool(items, event.id, (item) => ({ ...item, result: event.content }));
    case 'shield':
      return [...items, { kind: 'info', text: `${event.block.by === 'llama-guard' ? 'Llama Guard' : 'Prompt Guard'} blocked the ${event.stage.replace('_', ' ')}: ${event.block.reason}` }];
    case 'progress':
      // Status figures, drawn by the status line.
      return [...items];
    case 'turn_end':
      return streaming ? [...before, { ...streaming, streaming: false }] : [...items];
  }
}

function updateTool(items: readonly TranscriptItem[], id: string, change: (item: Extract<TranscriptItem, { kind: 'tool' }>) => TranscriptItem): TranscriptItem[] {
  return items.map((item) => (item.kind === 'tool' && item.call.id === id ? change(item) : item));
}

/** A saved conversation drawn as the UI would have drawn it. */
export function itemsFromMessages(messages: readonly ChatMessage[]): TranscriptItem[] {
  const items: TranscriptItem[] = [];
  for (const message of messages) {
    if (message.role === 'user') items.push({ kind: 'user', text: message.content });
    else if (message.role === 'assistant' && message.tool_calls) {
      items.push(...message.tool_calls.map((call): TranscriptItem => ({ kind: 'tool', call, state: 'done' })));
    } else if (message.role === 'assistant') items.push({ kind: 'assistant', text: message.content, streaming: false });
    else if (message.role === 'ipython' || message.role === 'tool') {
      const result = message.content;
      const ok = !result.startsWith('error: ');
      const index = items.findIndex((item) => item.kind === 'tool' && item.call.id === message.tool_call_id);
      if (index >= 0) items[index] = { ...(items[index] as Extract<TranscriptItem, { kind: 'tool' }>), state: ok ? 'done' : 'error', result };
    }
  }
  return items;
}
