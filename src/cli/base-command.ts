import { Command, Flags } from '@oclif/core';
import { HerdError } from '../errors.js';

/**
 * What every herd command shares: `--json` and `--verbose`, and the rule that a failure is one
 * clear line on stderr with a non-zero exit (the stack only with --verbose).
 */
export abstract class HerdCommand extends Command {
  static override baseFlags = {
    json: Flags.boolean({ description: 'Print one JSON object on stdout instead of text.', default: false }),
    verbose: Flags.boolean({ description: 'Print timings and details on stderr; show stack traces on errors.', default: false }),
  };

  protected override async catch(error: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<void> {
    // oclif's own exits (help, version) and flag-parsing errors keep their behaviour.
    if (error.oclif?.exit !== undefined && !(error instanceof HerdError)) return super.catch(error);
    const verbose = process.argv.includes('--verbose');
    const message = error instanceof HerdError || !verbose ? error.message : (error.stack ?? error.message);
    process.stderr.write(`herd: ${firstLine(message, verbose)}\n`);
    process.exitCode = 1;
  }
}

function firstLine(message: string, verbose: boolean): string {
  return verbose ? message : (message.split('\n')[0] ?? message);
}
