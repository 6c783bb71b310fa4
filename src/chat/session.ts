/**
 * Chat sessions on disk: /save and --resume use one JSON file (messages with their tool calls
 * and results, and the chat's settings); --export writes `{"messages": […]}` JSONL for finetune.
 */
import { writeFileAtomically } from '../formats/files.js';
import { readJsonFile } from '../formats/files.js';
import { HerdError } from '../errors.js';
import type { ChatMessage, ToolCall } from '../templates/chat-template.js';

export const SESSION_FORMAT = 'herd-chat-session';
export const SESSION_VERSION = 1;

/** What a chat was run with, so a resumed chat runs the same way. */
export interface SessionSettings {
  model: string;
  builtin_tools: string[];
  /** The --tools file, as given. */
  tools_file: string | null;
  /** --date (YYYY-MM-DD), or null for the day the chat runs. */
  date: string | null;
  max_new_tokens: number;
  sampling: Record<string, number>;
}

export interface ChatSession {
  format: typeof SESSION_FORMAT;
  version: typeof SESSION_VERSION;
  settings: SessionSettings;
  messages: ChatMessage[];
}

export function saveSession(file: string, session: ChatSession): void {
  writeFileAtomically(file, [Buffer.from(`${JSON.stringify(session, null, 2)}\n`, 'utf8')]);
}

export function loadSession(file: string): ChatSession {
  const session = readJsonFile(file, true) as Partial<ChatSession> | null;
  if (session?.format !== SESSION_FORMAT || session.version !== SESSION_VERSION) {
    throw new HerdError(`${file}: not a herd chat session (expected "format": "${SESSION_FORMAT}", "version": ${SESSION_VERSION})`);
  }
  checkSettings(file, session.settings);
  if (!Array.isArray(session.messages)) throw new HerdError(`${file}: "messages" must be an array`);
  session.messages.forEach((message, index) => checkMessage(message, `${file}: message ${index}`));
  return session as ChatSession;
}

/** One training example per line: the whole conversation, as finetune reads it. */
export function exportSession(file: string, messages: readonly ChatMessage[]): void {
  writeFileAtomically(file, [Buffer.from(`${JSON.stringify({ messages })}\n`, 'utf8')]);
}

/** A messages file (herd prompt --messages, herd guard --messages): a JSON array of messages or {"messages": [...]}. */
export function readMessagesFile(file: string): ChatMessage[] {
  const parsed = readJsonFile(file, true);
  const list = Array.isArray(parsed) ? parsed : (parsed as { messages?: unknown } | null)?.messages;
  if (!Array.isArray(list)) throw new HerdError(`${file}: expected a JSON array of messages or {"messages": [...]}`);
  list.forEach((message, index) => checkMessage(message, `${file}: message ${index}`));
  return list as ChatMessage[];
}

const ROLES: ReadonlySet<string> = new Set(['system', 'user', 'assistant', 'ipython', 'tool']);

/** Checks a message read from a file (sessions, herd prompt --messages). */
export function checkMessage(value: unknown, where: string): asserts value is ChatMessage {
  const message = value as Partial<ChatMessage> | null;
  if (typeof message !== 'object' || message === null || !ROLES.has(message.role as string)) {
    throw new HerdError(`${where}: "role" must be one of ${[...ROLES].join(', ')}`);
  }
  if (typeof message.content !== 'string') throw new HerdError(`${where}: "content" must be a string`);
  if (message.tool_call_id !== undefined && typeof message.tool_call_id !== 'string') throw new HerdError(`${where}: "tool_call_id" must be a string`);
  if (message.tool_calls !== undefined) {
    if (!Array.isArray(message.tool_calls)) throw new HerdError(`${where}: "tool_calls" must be an array`);
    message.tool_calls.forEach((call, index) => checkToolCall(call, `${where}, tool call ${index}`));
  }
}

function checkToolCall(value: unknown, where: string): asserts value is ToolCall {
  const call = value as Partial<ToolCall> | null;
  const ok = typeof call === 'object' && call !== null && typeof call.id === 'string' && call.type === 'function'
    && typeof call.function?.name === 'string' && typeof call.function.arguments === 'string';
  if (!ok) throw new HerdError(`${where}: expected {"id", "type": "function", "function": {"name", "arguments": JSON string}}`);
}

function checkSettings(file: string, value: unknown): asserts value is SessionSettings {
  const settings = value as Partial<SessionSettings> | null;
  const ok = typeof settings === 'object' && settings !== null && typeof settings.model === 'string'
    && Array.isArray(settings.builtin_tools) && settings.builtin_tools.every((name) => typeof name === 'string')
    && (settings.tools_file === null || typeof settings.tools_file === 'string')
    && (settings.date === null || typeof settings.date === 'string')
    && typeof settings.max_new_tokens === 'number' && typeof settings.sampling === 'object' && settings.sampling !== null;
  if (!ok) throw new HerdError(`${file}: "settings" must hold model, builtin_tools, tools_file, date, max_new_tokens and sampling`);
}
