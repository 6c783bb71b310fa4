import cliProgress from 'cli-progress';
import { readableBytes } from '../hub/disk-space.js';
import type { DownloadProgress } from '../hub/download-files.js';
import type { RepoFile } from '../hub/select-files.js';
import { hubSettings } from '../hub/settings.js';

/**
 * How a download shows itself on stderr: one combined bar (bytes, rate, ETA) at a terminal, plain
 * lines (what started, each file done, the total) in a pipe or a log, nothing at all under
 * HF_HUB_DISABLE_PROGRESS_BARS. Undefined when nothing is to be shown.
 */
export function downloadProgress(env: NodeJS.ProcessEnv = process.env, stream: NodeJS.WriteStream = process.stderr): DownloadProgress | undefined {
  if (hubSettings(env).progressDisabled) return undefined;
  return stream.isTTY ? new BarProgress(stream) : new LineProgress(stream);
}

/** Bytes so far and when counting began: the rate both displays show. */
class ByteTally {
  done = 0;
  total = 0;
  private readonly started = Date.now();

  /** Bytes per second since the start, resumed bytes left out. */
  rate(resumed: number): number {
    const seconds = (Date.now() - this.started) / 1000;
    return seconds > 0 ? Math.max(0, this.done - resumed) / seconds : 0;
  }

  seconds(): number {
    return (Date.now() - this.started) / 1000;
  }
}

class LineProgress implements DownloadProgress {
  private tally = new ByteTally();
  private resumed = 0;

  constructor(private readonly stream: NodeJS.WritableStream) {}

  start(plan: { label: string; files: number; totalBytes: number; resumedBytes: number }): void {
    this.tally = new ByteTally();
    this.tally.total = plan.totalBytes;
    this.tally.done = plan.resumedBytes;
    this.resumed = plan.resumedBytes;
    const resuming = plan.resumedBytes > 0 ? `, resuming with ${readableBytes(plan.resumedBytes)} already here` : '';
    this.stream.write(`downloading ${plan.label}: ${plan.files} file${plan.files === 1 ? '' : 's'}, ${readableBytes(plan.totalBytes)}${resuming}\n`);
  }

  advance(bytes: number): void {
    this.tally.done += bytes;
  }

  fileDone(file: RepoFile): void {
    this.stream.write(`  ${file.path} (${readableBytes(file.size)})\n`);
  }

  waiting(file: RepoFile): void {
    this.stream.write(`  ${file.path}: another herd process is downloading it; waiting\n`);
  }

  stop(): void {
    this.stream.write(`downloaded ${readableBytes(this.tally.done - this.resumed)} in ${this.tally.seconds().toFixed(1)} s (${readableBytes(this.tally.rate(this.resumed))}/s)\n`);
  }
}

class BarProgress implements DownloadProgress {
  private tally = new ByteTally();
  private resumed = 0;
  private readonly bar: cliProgress.SingleBar;

  constructor(stream: NodeJS.WriteStream) {
    this.bar = new cliProgress.SingleBar(
      { format: '{label} [{bar}] {percentage}% | {bytes} | {rate}/s | ETA {eta_formatted}', stream, clearOnComplete: false, hideCursor: true, etaBuffer: 50 },
      cliProgress.Presets.shades_classic,
    );
  }

  start(plan: { label: string; files: number; totalBytes: number; resumedBytes: number }): void {
    this.tally = new ByteTally();
    this.tally.total = plan.totalBytes;
    this.tally.done = plan.resumedBytes;
    this.resumed = plan.resumedBytes;
    this.bar.start(plan.totalBytes, plan.resumedBytes, { label: plan.label, ...this.payload() });
  }

  advance(bytes: number): void {
    this.tally.done += bytes;
    this.bar.update(this.tally.done, this.payload());
  }

  fileDone(): void {}

  waiting(file: RepoFile): void {
    this.bar.update(this.tally.done, { label: `waiting for another herd process (${file.path})` });
  }

  stop(): void {
    this.bar.stop();
  }

  private payload(): { bytes: string; rate: string } {
    return { bytes: `${readableBytes(this.tally.done)}/${readableBytes(this.tally.total)}`, rate: readableBytes(this.tally.rate(this.resumed)) };
  }
}
