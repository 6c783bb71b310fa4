/** Starts the Ink UI; imported lazily so that scripted (piped) chats never load Ink or React. */
import { render } from 'ink';
import type { ChatAgent } from '../chat/loop.js';
import type { SlashContext } from '../chat/slash-commands.js';
import { ChatApp } from './ChatApp.js';

export async function runTui(options: { agent: ChatAgent; model: string; approveAll: boolean; session: Omit<SlashContext, 'agent'> }): Promise<void> {
  // Ctrl+C belongs to the chat (it stops a reply), not to Ink.
  const instance = render(<ChatApp {...options} />, { exitOnCtrlC: false });
  await instance.waitUntilExit();
}
