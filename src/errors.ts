/**
 * An error meant for the person at the terminal: its message is one complete line that says
 * what is wrong and, where it helps, which file or tensor. Commands print it without a stack.
 */
export class HerdError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HerdError';
  }
}

/** Throws a HerdError unless the condition holds. */
export function ensure(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new HerdError(typeof message === 'function' ? message() : message);
}
