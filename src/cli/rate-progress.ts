import cliProgress from 'cli-progress';
import type { Progress } from './progress.js';

/** Plain lines at most this often when stderr is not a terminal (a log file gets a line, not a bar). */
const LINE_INTERVAL_MS = 10_000;

/**
 * Progress over rows with their rate and the time left: a bar at a terminal, plain lines on
 * stderr otherwise, nothing when disabled (--json). The rate counts only rows done in this run,
 * so rows resumed from an earlier run do not inflate it.
 */
export function rateProgress(label: string, unit: string, enabled: boolean): Progress {
  if (!enabled) return { update: () => {}, stop: () => {} };
  const started = performance.now();
  let first: number | null = null;
  const rate = (done: number) => {
    const seconds = (performance.now() - started) / 1000;
    return seconds > 0 && first !== null ? (done - first) / seconds : 0;
  };
  const eta = (done: number, total: number) => {
    const perSecond = rate(done);
    return perSecond > 0 ? `${Math.ceil((total - done) / perSecond)} s` : '?';
  };
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {value}/{total} ${unit} | {rate} ${unit}/s | ETA {left}`, stream: process.stderr, clearOnComplete: true, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    return {
      update(done, total) {
        if (first === null) {
          first = done;
          bar.start(total, done, { rate: '0.00', left: '?' });
        }
        bar.update(done, { rate: rate(done).toFixed(2), left: eta(done, total) });
      },
      stop() {
        if (first !== null) bar.stop();
      },
    };
  }
  let lastLine = -Infinity;
  return {
    update(done, total) {
      first ??= done;
      const now = performance.now();
      // No line before the first row of this run finishes: a run that fails at once prints only its error.
      if (done < total && (done === first || now - lastLine < LINE_INTERVAL_MS)) return;
      lastLine = now;
      process.stderr.write(`${label}: ${done}/${total} ${unit}, ${rate(done).toFixed(2)} ${unit}/s, ETA ${eta(done, total)}\n`);
    },
    stop: () => {},
  };
}
