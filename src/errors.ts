/**
 * What went wrong, as scripts see it in `{"error": {"type": …}}` (docs/scripting.md):
 * - usage: the command line itself is wrong (unknown flag, bad flag value); exit 2
 * - input: a file or value the person gave is wrong (data, prompt, settings); the default for HerdError
 * - model: a model folder, checkpoint, GGUF or adapter is missing, malformed or unsupported
 * - io: the file system refused (ENOENT, EACCES, ENOSPC, …)
 * - network: a request over the network failed (chat's web tools)
 * - internal: anything herd did not expect: a bug
 * - interrupted: Ctrl-C stopped a long job, which kept what it finished for the next run; exit 130
 */
export const ERROR_TYPES = ['usage', 'input', 'model', 'io', 'network', 'internal', 'interrupted'] as const;
export type ErrorType = (typeof ERROR_TYPES)[number];

export interface HerdErrorDetails {
  /** Which kind of failure; `input` when not given. */
  kind?: ErrorType;
  /** The file at fault, when there is one. */
  file?: string;
  /** The tensor at fault, when there is one. */
  tensor?: string;
  /** What the person can do about it. */
  hint?: string;
}

/**
 * An error meant for the person at the terminal: its message is one complete line that says
 * what is wrong and, where it helps, which file or tensor. Commands print it without a stack.
 */
export class HerdError extends Error {
  readonly kind: ErrorType;
  readonly file?: string;
  readonly tensor?: string;
  readonly hint?: string;

  constructor(message: string, details: HerdErrorDetails = {}) {
    super(message);
    this.name = 'HerdError';
    this.kind = details.kind ?? 'input';
    this.file = details.file;
    this.tensor = details.tensor;
    this.hint = details.hint;
  }
}

/** A HerdError about a model file: the checkpoint, GGUF, config or adapter named in `file`. */
export function modelError(message: string, file: string, tensor?: string): HerdError {
  return new HerdError(message, { kind: 'model', file, tensor });
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
    super(message, { kind: 'usage' });
    this.name = 'HerdUsageError';
  }
}

/**
 * Ctrl-C stopped a long job between two of its steps; the message says what was kept and how the
 * next run resumes. Exit status 130.
 */
export class HerdInterrupted extends HerdError {
  constructor(message: string) {
    super(message, { kind: 'interrupted' });
    this.name = 'HerdInterrupted';
  }
}

/** Exit statuses herd keeps to (README.md "Exit codes"). */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** 128 + SIGINT (2), what shells report for a program ended by Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

/** herd guard: a verdict of unsafe (a result, not a failure) and, so that 1 stays unambiguous, any failure. */
export const EXIT_UNSAFE = 1;
export const EXIT_GUARD_ERROR = 2;
