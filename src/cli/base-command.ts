import { Command, Flags } from '@oclif/core';
import { closeStartedBackends } from '../backends/open-backends.js';
import { HerdError } from '../errors.js';
import { classifyFailure, errorJson, exitCodeFor, jsonLine, type SchemaId } from './json-output.js';

type CommandError = Error & { code?: string; oclif?: { exit?: number } };

/**
 * What every herd command shares: `--json` and `--verbose`, and the rule that a failure is one
 * clear line on stderr with a non-zero exit (the stack only with --verbose); with --json the
 * failure is also one herd.error/1 object on stdout (docs/scripting.md).
 */
export abstract class HerdCommand extends Command {
  static override baseFlags = {
    json: Flags.boolean({ description: 'Print JSON on stdout instead of text (docs/scripting.md; failures too).', default: false }),
    verbose: Flags.boolean({ description: 'Print timings and details on stderr; show stack traces on errors.', default: false }),
  };

  /** Prints one JSON object for scripts, named by its schema. */
  protected printJson(schema: SchemaId, body: object): void {
    this.log(jsonLine(schema, body));
  }

  /** However the command ended, the backends it started end their threads (herd's kernels' workers, the native pool). */
  protected override async finally(error: Error | undefined): Promise<void> {
    await closeStartedBackends();
    await super.finally(error);
  }

  protected override async catch(error: CommandError): Promise<void> {
    // oclif ends --help and --version by throwing an exit "error"; let it through.
    if (error.code === 'EEXIT') return super.catch(error);
    const message = oneLine(error.message);
    const report = classifyFailure(error, message);
    if (this.flagGiven('--verbose') && !(error instanceof HerdError)) process.stderr.write(`${error.stack ?? error.message}\n`);
    process.stderr.write(`herd: ${message}${report.hint === undefined ? '' : ` (${report.hint})`}\n`);
    // Read from the raw argv: when parsing failed there are no parsed flags.
    if (this.flagGiven('--json')) process.stdout.write(`${errorJson(report)}\n`);
    // oclif's parse errors carry exit 2 (usage); everything else is 1.
    process.exitCode = error.oclif?.exit ?? exitCodeFor(report);
  }

  /** Whether a boolean flag is on the command line, before any `--` that ends the flags. */
  private flagGiven(flag: string): boolean {
    const end = this.argv.indexOf('--');
    return (end === -1 ? this.argv : this.argv.slice(0, end)).includes(flag);
  }
}

/** oclif's flag errors span lines ("Parsing --x\n\tExpected …\nSee more help with --help"). */
function oneLine(message: string): string {
  return message
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('See more help'))
    .join(': ')
    .replace(/:\s*:/g, ':');
}

/** The exit statuses every command keeps to, appended to each command's --help description. */
export const EXIT_STATUS_HELP = 'Exit status: 0 success, 1 failure, 2 usage error, 130 interrupted (Ctrl-C).';
