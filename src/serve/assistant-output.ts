/**
 * Decides, as an assistant message's text arrives, whether it is prose (passed on at once) or a
 * tool call (held until the message ends, then parsed with src/templates' rules). Streamed and
 * non-streamed replies both go through it, so the two always agree.
 *
 * A Llama 3.1 tool call starts the message: a JSON object `{"name": …}`, `<function=NAME>`, or
 * `<|python_tag|>` for a built-in tool. Text that starts any other way is prose.
 */
import type { ToolCall } from '../templates/chat-template.js';
import { PYTHON_TAG, parseAssistantMessage } from '../templates/tool-calls.js';

const CALL_OPENINGS = ['{', PYTHON_TAG, '<function='];

export interface AssistantMessage {
  content: string;
  toolCalls: ToolCall[];
}

export class AssistantOutput {
  private held: string;
  private mode: 'undecided' | 'prose' | 'call';

  /**
   * `toolsOn`: the request offered tools (tool_choice is not "none"). `forcedStart`: text the
   * server wrote into the prompt as the start of the reply (tool_choice "required" or named),
   * which belongs to the call.
   */
  constructor(toolsOn: boolean, forcedStart = '') {
    this.held = forcedStart;
    this.mode = forcedStart !== '' ? 'call' : toolsOn ? 'undecided' : 'prose';
  }

  /** Adds text; returns the prose that may be sent now. */
  push(text: string): string {
    if (this.mode === 'prose') return text;
    this.held += text;
    if (this.mode === 'call') return '';
    const start = this.held.trimStart();
    if (start === '' || CALL_OPENINGS.some((opening) => opening.startsWith(start) && opening !== start)) return '';
    if (CALL_OPENINGS.some((opening) => start.startsWith(opening))) {
      this.mode = 'call';
      return '';
    }
    this.mode = 'prose';
    const prose = this.held;
    this.held = '';
    return prose;
  }

  /** At the end of the message: the prose still held, or the tool calls. */
  finish(): AssistantMessage {
    const held = this.held;
    this.held = '';
    if (this.mode !== 'call') return { content: held, toolCalls: [] };
    return parseAssistantMessage(held);
  }
}
