/**
 * Reading a /v1/chat/completions request: messages in OpenAI's shape mapped onto herd's
 * ChatMessage (the shape src/chat/render.ts renders through the model's template), and the
 * tools offered with tool_choice.
 */
import { BUILTIN_TOOLS, type FunctionSchema } from '../chat/tools.js';
import type { ChatMessage, ToolCall } from '../templates/chat-template.js';
import { CODE_INTERPRETER, PYTHON_TAG } from '../templates/tool-calls.js';
import { badRequest } from './api-error.js';
import type { RequestFields } from './fields.js';

type Role = ChatMessage['role'];
/** OpenAI's newer "developer" role is the system prompt under another name. */
const ROLES: Record<string, Role> = { system: 'system', developer: 'system', user: 'user', assistant: 'assistant', tool: 'tool', ipython: 'ipython' };

export function readMessages(fields: RequestFields): ChatMessage[] {
  const list = fields.raw('messages');
  if (!Array.isArray(list) || list.length === 0) throw fields.wrong('messages', 'must be a non-empty list of messages');
  return list.map((message, index) => readMessage(message, `messages[${index}]`));
}

function readMessage(value: unknown, where: string): ChatMessage {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badRequest(`"${where}" must be an object`, where);
  const record = value as Record<string, unknown>;
  const role = ROLES[record.role as string];
  if (role === undefined) throw badRequest(`"${where}.role" must be one of ${Object.keys(ROLES).join(', ')}`, `${where}.role`);
  const message: ChatMessage = { role, content: messageText(record.content, `${where}.content`) };
  if (record.tool_calls !== undefined && record.tool_calls !== null) message.tool_calls = readToolCalls(record.tool_calls, `${where}.tool_calls`);
  if (record.tool_call_id !== undefined && record.tool_call_id !== null) {
    if (typeof record.tool_call_id !== 'string') throw badRequest(`"${where}.tool_call_id" must be a string`, `${where}.tool_call_id`);
    message.tool_call_id = record.tool_call_id;
  }
  return message;
}

/** A string, null (an assistant message that only calls tools), or a list of text parts. */
function messageText(content: unknown, where: string): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((part, index) => {
      const { type, text } = (part ?? {}) as { type?: unknown; text?: unknown };
      if (type !== 'text' || typeof text !== 'string') throw badRequest(`"${where}[${index}]" must be a text part {"type": "text", "text": …} (this model reads text only)`, `${where}[${index}]`);
      return text;
    }).join('');
  }
  throw badRequest(`"${where}" must be a string or a list of text parts`, where);
}

function readToolCalls(value: unknown, where: string): ToolCall[] {
  if (!Array.isArray(value)) throw badRequest(`"${where}" must be a list`, where);
  return value.map((call, index) => {
    const record = (call ?? {}) as { id?: unknown; function?: { name?: unknown; arguments?: unknown } };
    const fn = record.function;
    if (typeof fn !== 'object' || fn === null || typeof fn.name !== 'string' || typeof fn.arguments !== 'string') {
      throw badRequest(`"${where}[${index}]" must be {"id", "type": "function", "function": {"name", "arguments": a JSON string}}`, `${where}[${index}]`);
    }
    return { id: typeof record.id === 'string' ? record.id : `call_${index}`, type: 'function', function: { name: fn.name, arguments: fn.arguments } };
  });
}

export interface ToolSetup {
  /** Custom functions the template renders into the prompt. */
  tools: FunctionSchema[];
  /** Llama 3.1's built-in tools asked for by name in `tools` (brave_search, wolfram_alpha, code_interpreter). */
  builtinTools: string[];
  /** Whether the reply is parsed for tool calls. */
  on: boolean;
  /** The start of the reply written into the prompt to make the model call a tool ("required" or a named choice). */
  forcedStart: string;
}

/**
 * `tools` and `tool_choice`. A tool named like one of Llama 3.1's built-in tools switches that
 * tool on in the system prompt (`Tools: brave_search, …`) instead of being rendered as a JSON
 * function. `none` leaves tools out of the prompt; `required` and a named function write the
 * opening of a call into the prompt, which the model continues (herd has no constrained decoding).
 */
export function readToolSetup(fields: RequestFields): ToolSetup {
  const offered = readTools(fields);
  const choice = fields.raw('tool_choice') ?? (offered.length > 0 ? 'auto' : 'none');
  if (choice === 'none') return { tools: [], builtinTools: [], on: false, forcedStart: '' };
  const names = offered.map((tool) => tool.function.name);
  const setup = {
    tools: offered.filter((tool) => !BUILTIN_TOOLS.includes(tool.function.name)),
    builtinTools: names.filter((name) => BUILTIN_TOOLS.includes(name)),
    on: offered.length > 0,
  };
  if (choice === 'auto') return { ...setup, forcedStart: '' };
  if (offered.length === 0) throw fields.wrong('tool_choice', 'needs "tools" to choose from');
  if (choice === 'required') return { ...setup, forcedStart: setup.tools.length > 0 ? '{"name": "' : PYTHON_TAG };
  const named = (choice as { function?: { name?: unknown } } | null)?.function?.name;
  if (typeof named !== 'string') throw fields.wrong('tool_choice', 'must be "none", "auto", "required" or {"type": "function", "function": {"name": …}}');
  if (!names.includes(named)) throw fields.wrong('tool_choice', `names "${named}", which is not in "tools"`);
  return { ...setup, forcedStart: forcedCallStart(named) };
}

function readTools(fields: RequestFields): FunctionSchema[] {
  const list = fields.raw('tools');
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw fields.wrong('tools', 'must be a list');
  return list.map((tool, index) => {
    const record = (tool ?? {}) as { type?: unknown; function?: { name?: unknown } };
    if (record.type !== 'function' || typeof record.function?.name !== 'string' || record.function.name === '') {
      throw badRequest(`"tools[${index}]" must be {"type": "function", "function": {"name", "description", "parameters"}}`, `tools[${index}]`);
    }
    return tool as FunctionSchema;
  });
}

/** How a Llama 3.1 reply calling `name` starts: a built-in call after <|python_tag|>, else the JSON call format. */
function forcedCallStart(name: string): string {
  if (name === CODE_INTERPRETER) return PYTHON_TAG;
  if (BUILTIN_TOOLS.includes(name)) return `${PYTHON_TAG}${name}.call(query="`;
  return `{"name": ${JSON.stringify(name)}, "parameters": `;
}
