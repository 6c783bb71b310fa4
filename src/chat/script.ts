/**
 * Chat without a terminal UI (stdin or stdout is not a terminal): each input line is a user
 * turn; replies go to stdout as text, or with --json as NDJSON events. Ink is never loaded here.
 */
import readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { jsonLine, SCHEMAS } from '../cli/json-output.js';
import type { ChatAgent, ChatEvent, TurnHooks } from './loop.js';

export interface ScriptOptions {
  input: Readable;
  output: Writable;
  /** Notes for the person (refused tools), on stderr. */
  warn: (line: string) => void;
  json: boolean;
  /** --yes: tools run without asking (there is nobody to ask). */
  approveAll: boolean;
  /** The server the chat runs on (--endpoint), named in each turn_end event. */
  endpoint?: { url: string; model: string };
}

export async function runScript(agent: ChatAgent, options: ScriptOptions): Promise<void> {
  const write = (line: string) => options.output.write(`${line}\n`);
  const hooks: TurnHooks = {
    onEvent: options.json ? (event) => { const json = ndjsonEvent(event, options.endpoint); if (json) write(jsonLine(SCHEMAS.chat, json)); } : textPrinter(options.output),
    approve: async (call) => {
      if (!options.approveAll) options.warn(`herd: ${call.function.name} was not run: pass --yes to let tools run when chat is not interactive`);
      return options.approveAll;
    },
    shouldStop: () => false,
  };
  const lines = readline.createInterface({ input: options.input, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    await agent.send(line, hooks);
  }
}

/** Text mode prints each finished reply (tool calls are not replies) and a newline per turn. */
function textPrinter(output: Writable): (event: ChatEvent) => void {
  let printed = false;
  return (event) => {
    if (event.type === 'message' && event.toolCalls.length === 0 && event.text !== '') {
      output.write(event.text);
      printed = true;
    } else if (event.type === 'turn_end') {
      if (printed) output.write('\n');
      printed = false;
    }
  };
}

/** The --json events: token, tool_call, tool_result and turn_end, in snake_case. */
function ndjsonEvent(event: ChatEvent, endpoint: ScriptOptions['endpoint']): Record<string, unknown> | undefined {
  switch (event.type) {
    case 'token':
      return { type: 'token', text: event.text };
    case 'tool_call':
      return { type: 'tool_call', id: event.call.id, name: event.call.function.name, arguments: event.call.function.arguments };
    case 'tool_result':
      return { type: 'tool_result', id: event.id, name: event.name, ok: event.ok, content: event.content, ms: event.ms };
    case 'shield':
      return { type: 'shield', stage: event.stage, by: event.block.by, categories: event.block.categories, score: event.block.score, reason: event.block.reason };
    case 'turn_end':
      return {
        type: 'turn_end',
        finish_reason: event.finishReason,
        context_tokens: event.contextTokens,
        prompt_tokens: event.promptTokens,
        computed_prompt_tokens: event.computedPromptTokens,
        generated_tokens: event.generatedTokens,
        tool_calls: event.toolCalls,
        prefill_ms: Math.round(event.prefillMs * 100) / 100,
        decode_ms: Math.round(event.decodeMs * 100) / 100,
        decode_tokens_per_second: event.decodeTokensPerSecond,
        ...(endpoint && { endpoint }),
      };
    default:
      return undefined;
  }
}
