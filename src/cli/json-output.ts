import { EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, HerdError, type ErrorType } from '../errors.js';

/**
 * Every JSON object herd prints names its shape in a "schema" field, "herd.<name>/<version>",
 * and docs/schemas/herd.<name>.schema.json describes it. The version changes only when a field
 * is removed or changes meaning, so scripts can check it once and rely on the rest.
 */
export const SCHEMAS = {
  generate: 'herd.generate/1',
  generateStream: 'herd.generate-stream/1',
  chat: 'herd.chat/1',
  prompt: 'herd.prompt/1',
  memory: 'herd.memory/1',
  quantize: 'herd.quantize/1',
  quantizeScore: 'herd.quantize-score/1',
  eval: 'herd.eval/1',
  evalCompare: 'herd.eval-compare/1',
  finetune: 'herd.finetune/1',
  finetuneCheck: 'herd.finetune-check/1',
  finetuneMerge: 'herd.finetune-merge/1',
  bench: 'herd.bench/1',
  benchServe: 'herd.bench-serve/1',
  benchCompare: 'herd.bench-compare/1',
  serve: 'herd.serve/1',
  env: 'herd.env/1',
  guard: 'herd.guard/1',
  models: 'herd.models/1',
  rm: 'herd.rm/1',
  pull: 'herd.pull/1',
  synth: 'herd.synth/1',
  error: 'herd.error/1',
} as const;

export type SchemaId = (typeof SCHEMAS)[keyof typeof SCHEMAS];

/** The one way herd renders JSON for scripts: one line, the schema first. */
export function jsonLine(schema: SchemaId, body: object): string {
  return JSON.stringify({ schema, ...body });
}

/** What a failure tells a script: the herd.error/1 object's "error" field. */
export interface FailureReport {
  message: string;
  type: ErrorType;
  file?: string;
  tensor?: string;
  hint?: string;
}

type SystemError = Error & { code?: unknown; path?: unknown; cause?: unknown; oclif?: { exit?: number } };

// Node's codes for a file system that refused, and for a network that did.
const IO_CODES = new Set(['ENOENT', 'EACCES', 'EPERM', 'ENOSPC', 'EDQUOT', 'EISDIR', 'ENOTDIR', 'EEXIST', 'ENOTEMPTY', 'EROFS', 'EMFILE', 'ENFILE', 'EBUSY', 'EIO', 'EXDEV', 'ENAMETOOLONG', 'EPIPE']);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET']);

/**
 * Sorts a failure into one of the documented types: oclif's parse errors (exit 2) are usage; a
 * HerdError says its own kind (input unless the thrower chose another); a Node error with a file
 * system or network code (on it or on its cause, as fetch reports) is io or network; the rest is
 * internal.
 */
export function classifyFailure(error: SystemError, message: string): FailureReport {
  if (error instanceof HerdError) return withDetails({ message, type: error.kind }, error);
  if (error.oclif?.exit === 2) return { message, type: 'usage' };
  const code = systemCode(error) ?? systemCode(error.cause);
  if (code !== undefined && IO_CODES.has(code)) return withDetails({ message, type: 'io' }, { file: typeof error.path === 'string' ? error.path : undefined });
  if (code !== undefined && NETWORK_CODES.has(code)) return { message, type: 'network' };
  return { message, type: 'internal' };
}

/** The herd.error/1 line for a failure. */
export function errorJson(report: FailureReport): string {
  return jsonLine(SCHEMAS.error, { error: report });
}

/** Exit status for a failure: 2 when the command line was wrong, 130 when Ctrl-C stopped a job, 1 otherwise. */
export function exitCodeFor(report: FailureReport): number {
  if (report.type === 'usage') return EXIT_USAGE;
  return report.type === 'interrupted' ? EXIT_INTERRUPTED : EXIT_FAILURE;
}

function systemCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function withDetails(report: FailureReport, details: { file?: string; tensor?: string; hint?: string }): FailureReport {
  return {
    ...report,
    ...(details.file !== undefined && { file: details.file }),
    ...(details.tensor !== undefined && { tensor: details.tensor }),
    ...(details.hint !== undefined && { hint: details.hint }),
  };
}
