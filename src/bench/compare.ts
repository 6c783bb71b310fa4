import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { round } from '../cli/timings.js';
import { withCompetingLoad } from './competing-load.js';

/** The engines `herd bench --compare llama.cpp` runs on the same file, in this order. */
export const ENGINES = ['herd-native', 'herd-wasm', 'llama.cpp'] as const;
export type EngineName = (typeof ENGINES)[number];

/** herd's --backend for each of its engines. */
const HERD_BACKENDS: Record<Exclude<EngineName, 'llama.cpp'>, string> = { 'herd-native': 'native', 'herd-wasm': 'kernels' };

// Both sit two folders below the repository root, from src/bench (tests) and dist/bench alike.
const HERD_BIN = fileURLToPath(new URL('../../bin/run.js', import.meta.url));
const LLAMA_CPP_RUNNER = fileURLToPath(new URL('../../dist/bench/llama-cpp-runner.js', import.meta.url));

/** One measurement in its own child process: one engine, one prompt length. */
export interface EngineRun {
  engine: EngineName;
  file: string;
  promptTokens: number;
  genTokens: number;
  threads: number;
  /** herd's KV cache storage (llama.cpp keeps its default). */
  kvCacheType?: string;
}

/** What a child measured, or why it could not. */
export type EngineFigures =
  | {
      engine: EngineName;
      prompt_tokens: number;
      available: true;
      /** herd's backend, or llama.cpp's version. */
      detail: string;
      load_ms: number;
      prefill_tokens_per_second: number;
      decode_tokens_per_second: number;
      /** Bytes of weights one decoded token reads (herd's count; llama.cpp's rows use herd's for the same file). */
      weight_bytes_per_token?: number;
      peak_rss_bytes: number;
      /** What the child said on stderr while succeeding, such as a format it widened to float32. */
      note?: string;
    }
  | { engine: EngineName; prompt_tokens: number; available: false; reason: string };

/** Runs one engine in a child process and collects its figures; a failure becomes the row's reason. */
export async function runEngine(run: EngineRun): Promise<EngineFigures> {
  const { status, stdout, stderr } = await runChild(childArguments(run));
  const lastLine = (text: string) => text.trim().split('\n').at(-1)?.replace(/^herd: /, '') ?? '';
  const base = { engine: run.engine, prompt_tokens: run.promptTokens };
  if (status !== 0) return { ...base, available: false, reason: lastLine(stderr) || `exited with status ${status}` };
  let report: Record<string, unknown>;
  try {
    report = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
  } catch {
    return { ...base, available: false, reason: `printed no JSON figures: ${lastLine(stdout) || lastLine(stderr)}` };
  }
  const note = lastLine(stderr);
  return {
    ...base,
    available: true,
    detail: String(report.backend ?? `llama.cpp ${report.version} (node-llama-cpp)`),
    load_ms: report.load_ms as number,
    prefill_tokens_per_second: report.prefill_tokens_per_second as number,
    decode_tokens_per_second: report.decode_tokens_per_second as number,
    ...(typeof report.weight_bytes_per_token === 'number' ? { weight_bytes_per_token: report.weight_bytes_per_token } : {}),
    peak_rss_bytes: report.peak_rss_bytes as number,
    ...(note ? { note } : {}),
  };
}

/** The command line of one engine's child: herd's own CLI, or the llama.cpp runner. */
export function childArguments(run: EngineRun): string[] {
  const sizes = [String(run.promptTokens), String(run.genTokens), String(run.threads)];
  if (run.engine === 'llama.cpp') return [LLAMA_CPP_RUNNER, run.file, ...sizes];
  return [
    HERD_BIN, 'bench', '--json', '--model', run.file, '--backend', HERD_BACKENDS[run.engine],
    '--threads', String(run.threads), '--prompt-tokens', String(run.promptTokens), '--gen-tokens', String(run.genTokens),
    ...(run.kvCacheType ? ['--kv-cache-type', run.kvCacheType] : []),
  ];
}

function runChild(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  // As a person runs herd: jest's NODE_ENV=test would add oclif's development warnings to stderr.
  const { NODE_ENV: _test, ...env } = process.env;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.once('error', reject);
    child.once('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Idle and loaded decode speed of one engine: how much of its speed it keeps on a busy machine. */
export type LoadedFigures =
  | { engine: EngineName; available: true; idle_decode_tokens_per_second: number; loaded_decode_tokens_per_second: number; fraction: number }
  | { engine: EngineName; available: false; reason: string };

export interface ComparisonRequest {
  file: string;
  engines: readonly EngineName[];
  promptTokens: readonly number[];
  genTokens: number;
  threads: number;
  kvCacheType?: string;
  /** Busy-loop processes to run during a second, loaded measurement (0: none). */
  competingLoad: number;
  /** Called before each child starts, for progress. */
  onRun?: (run: EngineRun, loaded: boolean) => void;
}

/**
 * Every engine on every prompt length, one child process each (so each peak RSS is that engine's
 * alone), one after another; then, with `competingLoad`, each engine again on the first prompt
 * length while that many busy loops run.
 */
export async function compareEngines(request: ComparisonRequest): Promise<{ rows: EngineFigures[]; loaded?: LoadedFigures[] }> {
  const runFor = (engine: EngineName, promptTokens: number): EngineRun => ({ engine, file: request.file, promptTokens, genTokens: request.genTokens, threads: request.threads, kvCacheType: request.kvCacheType });
  const rows: EngineFigures[] = [];
  for (const promptTokens of request.promptTokens) {
    for (const engine of request.engines) {
      request.onRun?.(runFor(engine, promptTokens), false);
      rows.push(await runEngine(runFor(engine, promptTokens)));
    }
  }
  if (request.competingLoad === 0) return { rows };
  const first = request.promptTokens[0]!;
  const loaded: LoadedFigures[] = [];
  for (const engine of request.engines) {
    const idle = rows.find((row) => row.engine === engine && row.prompt_tokens === first)!;
    if (!idle.available) {
      loaded.push({ engine, available: false, reason: idle.reason });
      continue;
    }
    request.onRun?.(runFor(engine, first), true);
    const busy = await withCompetingLoad(request.competingLoad, () => runEngine(runFor(engine, first)));
    if (!busy.available) loaded.push({ engine, available: false, reason: busy.reason });
    else {
      const fraction = round(busy.decode_tokens_per_second / idle.decode_tokens_per_second);
      loaded.push({ engine, available: true, idle_decode_tokens_per_second: idle.decode_tokens_per_second, loaded_decode_tokens_per_second: busy.decode_tokens_per_second, fraction });
    }
  }
  return { rows, loaded };
}
