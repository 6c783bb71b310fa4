/**
 * Renders a model's own chat template (tokenizer_config.json `chat_template`) into the exact prompt
 * text transformers' `apply_chat_template` produces. See docs/chat.md.
 */
import type { TokenizerSettings } from '../engine/tokenizer.js';
import { HerdError } from '../errors.js';
import { parseJsonKeepingFloats } from './python-json.js';
import { parseTemplate, renderProgram, TemplateRaisedError, type JinjaNode } from './jinja-compat.js';
import { strftime } from './strftime.js';

/** A tool call in OpenAI's shape; `arguments` is a JSON object as a string. */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'ipython' | 'tool';
  content: string;
  tool_calls?: ToolCall[];
  /** For a `tool` message: the call it answers (templates may ignore it). */
  tool_call_id?: string;
}

export interface ChatTemplateInput {
  messages: ChatMessage[];
  /** OpenAI function schemas; rendered as JSON into the prompt. */
  tools?: unknown[];
  /** Built-in tools to switch on (`brave_search`, `wolfram_alpha`, `code_interpreter`); leave unset for none. */
  builtinTools?: string[];
  toolsInUserMessage?: boolean;
  /** "%d %b %Y", see formatDateString; unset lets the template choose (Llama 3.1: "26 Jul 2024"). */
  dateString?: string;
  addGenerationPrompt?: boolean;
  bosToken: string;
  eosToken: string;
  /** Where the template came from (a file), named in errors. */
  templateSource?: string;
}

const DEFAULT_SOURCE = 'the chat template';

/** Renders messages through a chat template with the variables transformers passes. */
export function renderChatTemplate(template: string, input: ChatTemplateInput): string {
  return renderTemplateVariables(template, templateVariables(input), input.templateSource);
}

/**
 * Renders a template with raw variables (as `herd prompt --vars` takes them), adding what
 * transformers always passes: `tools` and `documents` as None and `add_generation_prompt` false.
 */
export function renderTemplateVariables(template: string, variables: Record<string, unknown>, source = DEFAULT_SOURCE): string {
  const program = parse(template, source);
  try {
    return renderProgram(program, { tools: null, documents: null, add_generation_prompt: false, ...variables });
  } catch (error) {
    if (error instanceof TemplateRaisedError) throw new HerdError(`${source} refused the conversation: ${error.message}`);
    throw new HerdError(`cannot render ${source}: ${(error as Error).message}`);
  }
}

function parse(template: string, source: string): JinjaNode {
  try {
    return parseTemplate(template);
  } catch (error) {
    throw new HerdError(`cannot parse ${source}: ${(error as Error).message}`);
  }
}

/**
 * Optional variables are passed only when set: the Llama 3.1 template tests `builtin_tools is
 * defined`, `date_string is defined` and so on (renderTemplateVariables supplies transformers' defaults).
 */
function templateVariables(input: ChatTemplateInput): Record<string, unknown> {
  const variables: Record<string, unknown> = {
    messages: input.messages.map(templateMessage),
    bos_token: input.bosToken,
    eos_token: input.eosToken,
  };
  if (input.tools !== undefined) variables.tools = input.tools;
  if (input.addGenerationPrompt !== undefined) variables.add_generation_prompt = input.addGenerationPrompt;
  if (input.builtinTools !== undefined) variables.builtin_tools = input.builtinTools;
  if (input.toolsInUserMessage !== undefined) variables.tools_in_user_message = input.toolsInUserMessage;
  if (input.dateString !== undefined) variables.date_string = input.dateString;
  return variables;
}

/**
 * A message as templates expect it. Absent fields stay absent (`'tool_calls' in message` must be
 * false), and tool-call arguments are decoded from their JSON string into an object, as vLLM does:
 * templates render them with `tojson` or `| items`, and a string would come out double-encoded.
 */
function templateMessage(message: ChatMessage): Record<string, unknown> {
  const { tool_calls: toolCalls, ...rest } = message;
  const plain: Record<string, unknown> = Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined));
  if (toolCalls !== undefined) plain.tool_calls = toolCalls.map(decodedArguments);
  return plain;
}

function decodedArguments(call: ToolCall): Record<string, unknown> {
  let parsed: unknown;
  try {
    // Floats stay floats (`1.0`, not `1`), as Python's json.loads keeps them for the template.
    parsed = parseJsonKeepingFloats(call.function.arguments);
  } catch {
    throw new HerdError(`tool call ${call.function.name}: arguments are not JSON: ${call.function.arguments}`);
  }
  return { ...call, function: { name: call.function.name, arguments: parsed } };
}

/**
 * Picks the template transformers would: a single template as is; among named templates the one
 * asked for, else "tool_use" when tools are given and it exists, else "default".
 */
export function selectChatTemplate(
  chatTemplate: TokenizerSettings['chatTemplate'],
  options: { source: string; hasTools: boolean; name?: string },
): string {
  if (chatTemplate === null) {
    throw new HerdError(`${options.source} has no chat_template: this model has no chat format (use raw text with herd generate)`);
  }
  if (typeof chatTemplate === 'string') return chatTemplate;
  const named = new Map(Object.entries(chatTemplate));
  const name = options.name ?? (options.hasTools && named.has('tool_use') ? 'tool_use' : 'default');
  const template = named.get(name);
  if (template === undefined) {
    throw new HerdError(`${options.source} has no chat template named "${name}" (it has: ${[...named.keys()].join(', ')})`);
  }
  return template;
}

/** Today's date as Llama 3.1's system prompt writes it ("26 Jul 2024"): Python's "%d %b %Y". */
export function formatDateString(date: Date): string {
  return strftime(date, '%d %b %Y');
}
