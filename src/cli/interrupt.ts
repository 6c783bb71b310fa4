import { EXIT_INTERRUPTED } from '../errors.js';

/**
 * Ctrl-C while a command works: the first SIGINT only raises a flag the work checks between
 * steps (so it can finish its output and exit 130); a second one exits at once, for when the
 * work is stuck in a step that does not check.
 */
export class InterruptWatch {
  private raised = false;
  private readonly handler = () => {
    if (this.raised) process.exit(EXIT_INTERRUPTED);
    this.raised = true;
  };

  constructor() {
    process.on('SIGINT', this.handler);
  }

  get interrupted(): boolean {
    return this.raised;
  }

  /** Gives SIGINT back to Node's default (ending the process). */
  dispose(): void {
    process.off('SIGINT', this.handler);
  }
}
