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

/**
 * A command used wrongly (flags or arguments that conflict, a missing input): exit status 2, as
 * oclif's own parse errors, which carry the same `oclif.exit`.
 */
export class HerdUsageError extends HerdError {
  readonly oclif = { exit: 2 };

  constructor(message: string) {
    super(message);
    this.name = 'HerdUsageError';
  }
}

/** Exit statuses herd keeps to (README.md "Exit codes"). */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** 128 + SIGINT (2), what shells report for a program ended by Ctrl-C. */
export const EXIT_INTERRUPTED = 130;
