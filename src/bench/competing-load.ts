import { spawn, type ChildProcess } from 'node:child_process';

/**
 * A CPU-bound busy loop for a child process. It checks now and then that its parent is still the
 * one that started it: if herd dies without its `finally` running (SIGKILL), the loop ends itself
 * instead of spinning forever as an orphan.
 */
const BUSY_LOOP = `const parent = process.ppid;
for (;;) {
  for (let i = 0; i < 2e7; i++);
  if (process.ppid !== parent) process.exit(0);
}`;

/**
 * Runs `work` while `processes` busy-loop child processes compete for the CPU (the "busy
 * machine" measurement of `herd bench --competing-load`), and always stops them afterwards,
 * whether `work` succeeded or threw. `work` receives their process ids.
 */
export async function withCompetingLoad<T>(processes: number, work: (pids: number[]) => Promise<T>): Promise<T> {
  const children = Array.from({ length: processes }, () => spawn(process.execPath, ['-e', BUSY_LOOP], { stdio: 'ignore' }));
  const stopOnExit = () => children.forEach((child) => child.kill('SIGKILL'));
  // A plain exit (process.exit, an uncaught error) skips the finally below.
  process.once('exit', stopOnExit);
  try {
    await Promise.all(children.map(started));
    return await work(children.map((child) => child.pid!));
  } finally {
    process.off('exit', stopOnExit);
    await Promise.all(children.map(stop));
  }
}

function started(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
}

/** Kills one child and waits until it has exited (and is reaped). */
function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}
