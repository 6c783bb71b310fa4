/** The messages of one chat and the edits slash commands make to them. */
import type { ChatMessage } from '../templates/chat-template.js';

export class Conversation {
  constructor(public messages: ChatMessage[] = []) {}

  get system(): string | undefined {
    return this.messages[0]?.role === 'system' ? this.messages[0].content : undefined;
  }

  /** Sets (or with an empty text, removes) the system message, which always comes first. */
  setSystem(text: string): void {
    const rest = this.system === undefined ? this.messages : this.messages.slice(1);
    this.messages = text === '' ? rest : [{ role: 'system', content: text }, ...rest];
  }

  add(message: ChatMessage): void {
    this.messages.push(message);
  }

  /** Forgets everything but the system message. */
  clear(): void {
    this.messages = this.messages.filter((message) => message.role === 'system');
  }

  /** Removes the last user message and everything after it; returns its text, or undefined if none. */
  undo(): string | undefined {
    const index = this.lastUserIndex();
    if (index < 0) return undefined;
    const text = this.messages[index]!.content;
    this.messages = this.messages.slice(0, index);
    return text;
  }

  /** Removes the answer to the last user message so it can be generated again; false if there is no user message. */
  dropLastAnswer(): boolean {
    const index = this.lastUserIndex();
    if (index < 0) return false;
    this.messages = this.messages.slice(0, index + 1);
    return true;
  }

  private lastUserIndex(): number {
    return this.messages.map((message) => message.role).lastIndexOf('user');
  }
}
