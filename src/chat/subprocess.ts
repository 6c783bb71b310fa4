/**
 * Runs a tool's program: an argv array (never a shell), input on stdin, a time limit that kills
 * the whole process group, and a cap on the output kept.
 */
import { spawn } from 'node:child_process';

export interface SubprocessLimits {
  timeoutMs: number;
  /** Bytes of stdout (and of stderr) kept; the process is killed once stdout passes it. */
  maxOutputBytes: number;
}

export interface SubprocessResult {
  stdout: string;
  stderr: string;
  exitCode: number | null;
  timedOut: boolean;
  /** stdout passed the cap and was cut. */
  truncated: boolean;
  /** Set when the program could not be started (not found, not executable). */
  startError?: string;
}

export function runSubprocess(argv: readonly string[], input: string, options: SubprocessLimits & { cwd: string; env?: NodeJS.ProcessEnv }): Promise<SubprocessResult> {
  return new Promise((resolve) => {
    // detached: the child leads its own process group, so a timeout also stops what it started.
    const child = spawn(argv[0]!, argv.slice(1), { cwd: options.cwd, env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const stdout = new CappedBuffer(options.maxOutputBytes);
    const stderr = new CappedBuffer(options.maxOutputBytes);
    let timedOut = false;
    let startError: string | undefined;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, options.timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      if (!stdout.add(chunk)) killGroup();
    });
    child.stderr.on('data', (chunk: Buffer) => stderr.add(chunk));
    child.on('error', (error) => {
      startError = error.message;
    });
    child.stdin.on('error', () => {
      // The program exited without reading its input; its output still counts.
    });
    child.stdin.end(input);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ stdout: stdout.text(), stderr: stderr.text(), exitCode: code, timedOut, truncated: stdout.truncated, startError });
    });
  });
}

/** Keeps the first `limit` bytes. */
class CappedBuffer {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  truncated = false;

  constructor(private readonly limit: number) {}

  /** Adds a chunk; false once the cap is passed. */
  add(chunk: Buffer): boolean {
    const room = this.limit - this.size;
    if (chunk.length > room) this.truncated = true;
    const kept = chunk.subarray(0, Math.max(room, 0));
    this.chunks.push(kept);
    this.size += kept.length;
    return !this.truncated;
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}
