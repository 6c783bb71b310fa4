import { Command, Flags } from '@oclif/core';
import { HerdError } from '../errors.js';

type CommandError = Error & { code?: string; oclif?: { exit?: number } };

/**
 * What every herd command shares: `--json` and `--verbose`, and the rule that a failure is one
 * clear line on stderr with a non-zero exit (the stack only with --verbose).
 */
export abstract class HerdCommand extends Command {
  static override baseFlags = {
    json: Flags.boolean({ description: 'Print one JSON object on stdout instead of text.', default: false }),
    verbose: Flags.boolean({ description: 'Print timings and details on stderr; show stack traces on errors.', default: false }),
  };

  protected override async catch(error: CommandError): Promise<void> {
    // oclif ends --help and --version by throwing an exit "error"; let it through.
    if (error.code === 'EEXIT') return super.catch(error);
    const verbose = this.argv.includes('--verbose');
    if (verbose && !(error instanceof HerdError)) process.stderr.write(`${error.stack ?? error.message}\n`);
    process.stderr.write(`herd: ${oneLine(error.message)}\n`);
    // oclif's parse errors carry exit 2 (usage); everything else is 1.
    process.exitCode = error.oclif?.exit ?? 1;
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
