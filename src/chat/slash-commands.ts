/** The chat's slash commands, shared by the terminal UI and its tests. */
import type { ChatAgent } from './loop.js';

export const SLASH_HELP: ReadonlyArray<readonly [string, string]> = [
  ['/help', 'this list'],
  ['/system [TEXT]', 'show the system message, or set it'],
  ['/tools', 'the tools the model may call'],
  ['/clear', 'forget the conversation (the system message stays)'],
  ['/undo', 'remove your last message and its answer'],
  ['/regen', 'generate the last answer again'],
  ['/save [FILE]', 'save the session as JSON'],
  ['/load FILE', 'continue a saved session'],
  ['/exit', 'leave (Ctrl+C twice at an empty prompt too)'],
];

export interface SlashContext {
  agent: ChatAgent;
  /** Saves the session; returns the file written. */
  save(file: string | undefined): string;
  /** Replaces the conversation with a saved one. */
  load(file: string): void;
}

export type SlashOutcome = { kind: 'info'; text: string } | { kind: 'regen' } | { kind: 'exit' };

/** True when a line is a command rather than a message. */
export function isSlashCommand(line: string): boolean {
  return /^\/[a-z]+(\s|$)/.test(line.trimStart());
}

/** Runs one command line; errors are thrown (HerdError) for the caller to show. */
export function runSlashCommand(line: string, context: SlashContext): SlashOutcome {
  const trimmed = line.trim();
  const name = trimmed.split(/\s/, 1)[0]!;
  const argument = trimmed.slice(name.length).trim();
  const conversation = context.agent.conversation;
  switch (name) {
    case '/help':
      return info(SLASH_HELP.map(([usage, what]) => `${usage.padEnd(15)} ${what}`).join('\n') + '\nEnd a line with \\ to continue on the next one.');
    case '/system':
      if (argument === '') return info(`system: ${conversation.system ?? '(none)'}`);
      conversation.setSystem(argument);
      return info('system message set');
    case '/tools': {
      const tools = context.agent.tools.describe();
      return info(tools.length === 0 ? 'no tools (use --tools FILE or --builtin-tools)' : tools.join('\n'));
    }
    case '/clear':
      conversation.clear();
      return info('conversation cleared');
    case '/undo':
      return info(conversation.undo() === undefined ? 'nothing to undo' : 'removed your last message and its answer');
    case '/regen':
      return conversation.dropLastAnswer() ? { kind: 'regen' } : info('nothing to regenerate');
    case '/save':
      return info(`saved ${context.save(argument === '' ? undefined : argument)}`);
    case '/load':
      if (argument === '') return info('usage: /load FILE');
      context.load(argument);
      return info(`loaded ${argument} (${conversation.messages.length} messages)`);
    case '/exit':
      return { kind: 'exit' };
    default:
      return info(`unknown command ${name}; /help lists them`);
  }
}

function info(text: string): SlashOutcome {
  return { kind: 'info', text };
}
