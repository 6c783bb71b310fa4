/**
 * Tool calls in a Llama 3.1 assistant message, decided as Meta's llama-models decoder does
 * (`ChatFormat.decode_assistant_message_from_content` with `ToolUtils`), plus the several
 * `;`-separated JSON calls vLLM's llama3_json parser accepts. See docs/chat.md.
 */
import { randomUUID } from 'node:crypto';
import type { ToolCall } from './chat-template.js';

export const PYTHON_TAG = '<|python_tag|>';
const END_OF_MESSAGE_TOKENS = ['<|eom_id|>', '<|eot_id|>'];

/** Built-in tools the model calls as `NAME.call(query="…")`; code_interpreter gets plain code. */
const QUERY_TOOLS: ReadonlySet<string> = new Set(['brave_search', 'wolfram_alpha']);
export const CODE_INTERPRETER = 'code_interpreter';

export interface ParsedAssistantMessage {
  /** The message text; empty when the message is tool calls, as in Meta's decoder. */
  content: string;
  toolCalls: ToolCall[];
}

export interface ParseOptions {
  /** Makes call ids (default `call_` + a random UUID). */
  newCallId?: () => string;
}

interface NamedCall {
  name: string;
  arguments: Record<string, unknown>;
}

/** Splits a finished assistant message into text or tool calls. */
export function parseAssistantMessage(text: string, options: ParseOptions = {}): ParsedAssistantMessage {
  const { body, afterPythonTag } = unwrap(text);
  const calls = functionTagCalls(body) ?? jsonCalls(body) ?? (afterPythonTag ? (builtinCall(body) ?? codeInterpreterCall(body)) : undefined);
  if (calls === undefined) return { content: body, toolCalls: [] };
  const newCallId = options.newCallId ?? (() => `call_${randomUUID()}`);
  return { content: '', toolCalls: calls.map((call) => openAiToolCall(call, newCallId())) };
}

/** Meta's decoder: outer spaces go, a leading <|python_tag|> marks ipython mode, a final end token goes. */
function unwrap(text: string): { body: string; afterPythonTag: boolean } {
  let body = text.trim();
  const afterPythonTag = body.startsWith(PYTHON_TAG);
  if (afterPythonTag) body = body.slice(PYTHON_TAG.length);
  const endToken = END_OF_MESSAGE_TOKENS.find((token) => body.endsWith(token));
  if (endToken) body = body.slice(0, -endToken.length);
  return { body: body.trim(), afterPythonTag };
}

/** `<function=NAME>{json}</function>`, anywhere in the message (Meta searches, not matches). */
function functionTagCalls(body: string): NamedCall[] | undefined {
  const calls: NamedCall[] = [];
  for (const tag of body.matchAll(/<function=([^>]+)>/g)) {
    const start = (tag.index ?? 0) + tag[0].length;
    const args = readJsonObject(body, start) ?? readJsonObject(body.replaceAll("'", '"'), start);
    if (args) calls.push(asBuiltinIfNamedSo({ name: tag[1].trim(), arguments: args.value }));
  }
  return calls.length > 0 ? calls : undefined;
}

/**
 * The whole message is one JSON call object `{"name": …, "parameters": {…}}` (or `arguments`), or
 * several separated by `;`. Anything else around them (prose) means the message is not a call.
 */
function jsonCalls(body: string): NamedCall[] | undefined {
  const calls: NamedCall[] = [];
  let position = 0;
  while (position < body.length) {
    const object = readJsonObject(body, position);
    const call = object && callFromJson(object.value);
    if (!object || !call) return undefined;
    calls.push(call);
    const separator = /^\s*(;\s*)?/.exec(body.slice(object.end))?.[0] ?? '';
    position = object.end + separator.length;
    if (position < body.length && !separator.includes(';')) return undefined;
  }
  return calls.length > 0 ? calls : undefined;
}

function callFromJson(value: Record<string, unknown>): NamedCall | undefined {
  const args = 'arguments' in value ? value.arguments : value.parameters;
  if (typeof value.name !== 'string' || value.name === '' || !isPlainObject(args)) return undefined;
  return asBuiltinIfNamedSo({ name: value.name, arguments: args });
}

/** Meta: a built-in tool called in the custom format gets its first argument as `query`. */
function asBuiltinIfNamedSo(call: NamedCall): NamedCall {
  if (!QUERY_TOOLS.has(call.name) || 'query' in call.arguments) return call;
  return { name: call.name, arguments: { query: Object.values(call.arguments)[0] } };
}

/** `brave_search.call(query="…")` or `wolfram_alpha.call(query="…")`, the whole body after the tag. */
function builtinCall(body: string): NamedCall[] | undefined {
  const match = /^(\w+)\.call\(\s*query\s*=\s*"(.*)"\s*\)$/s.exec(body);
  if (!match || !QUERY_TOOLS.has(match[1])) return undefined;
  return [{ name: match[1], arguments: { query: match[2] } }];
}

/** Meta: after <|python_tag|>, anything that is not another kind of call is code to run. */
function codeInterpreterCall(body: string): NamedCall[] | undefined {
  return body === '' ? undefined : [{ name: CODE_INTERPRETER, arguments: { code: body } }];
}

function openAiToolCall(call: NamedCall, id: string): ToolCall {
  return { id, type: 'function', function: { name: call.name, arguments: JSON.stringify(call.arguments) } };
}

/**
 * Reads one JSON object starting at `start` (after optional whitespace), like Python's
 * `JSONDecoder.raw_decode`: its value and the index just past it, or undefined.
 */
function readJsonObject(text: string, start: number): { value: Record<string, unknown>; end: number } | undefined {
  const open = text.slice(start).search(/\S/) + start;
  if (open < start || text[open] !== '{') return undefined;
  const end = closingBraceIndex(text, open);
  if (end === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(text.slice(open, end + 1));
    return isPlainObject(value) ? { value, end: end + 1 } : undefined;
  } catch {
    return undefined;
  }
}

/** The index of the `}` that closes the `{` at `open`, skipping braces inside strings. */
function closingBraceIndex(text: string, open: number): number | undefined {
  let depth = 0;
  let inString = false;
  for (let index = open; index < text.length; index++) {
    const char = text[index];
    if (inString) {
      if (char === '\\') index++;
      else if (char === '"') inString = false;
    } else if (char === '"') inString = true;
    else if (char === '{') depth++;
    else if (char === '}' && --depth === 0) return index;
  }
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
