import { HerdError } from '../errors.js';
import type { ModelSpec } from './architecture.js';
import { buildPlan } from './plan.js';
import { DEFAULT_RECIPE_OPTIONS } from './precision.js';
import type { Measurement } from './report.js';
import { DEFAULT_TRAINING_OPTIONS } from './training.js';

/** What loading a model and running one forward pass cost this process. */
export interface MeasuredRun {
  /** Peak resident set size of the process (getrusage maxrss). */
  peakRssBytes: number;
  /** Resident set size just before the model was loaded: the runtime's own share. */
  rssBeforeLoadBytes: number;
  backend: string;
  /** Positions the KV cache was allocated for. */
  cacheTokens: number;
  /** How the backend holds the weights: herd's kernels keep 16-bit checkpoints as stored, tfjs widens to fp32. */
  weightPrecision: 'fp32' | 'bf16';
}

/**
 * Loads a Hugging Face folder with herd's engine, runs one token through it and reads the process's
 * peak RSS. The engine is imported lazily so that plain planning never loads a tensor backend.
 */
export async function measurePeakMemory(dir: string, options: { backend?: string } = {}): Promise<MeasuredRun> {
  const { loadModel } = await import('../backends/load.js');
  const rssBeforeLoadBytes = process.memoryUsage().rss;
  const loaded = await loadModel(dir, options.backend === undefined ? {} : { backend: options.backend });
  const cacheTokens = 2;
  const bos = loaded.config.bosTokenId ?? 0;
  loaded.model.forward(Int32Array.from([bos]), loaded.model.createCache(cacheTokens));
  const peakRssBytes = process.resourceUsage().maxRSS * 1024;
  if (!(peakRssBytes > 0)) throw new HerdError('this platform does not report peak memory (getrusage maxrss)');
  const sixteenBit = loaded.config.torchDtype === 'bfloat16' || loaded.config.torchDtype === 'float16';
  // herd's kernels (WASM and native) keep 16-bit weights as stored; tfjs widens them.
  const weightPrecision = ['kernels', 'native'].includes(loaded.model.backendName) && sixteenBit ? 'bf16' : 'fp32';
  return { peakRssBytes, rssBeforeLoadBytes, backend: loaded.model.backendName, cacheTokens, weightPrecision };
}

/**
 * Measures `dir` and sets the figure beside herd's estimate for what the engine holds: weights as
 * the backend keeps them (fp32 on tfjs, as stored on herd's kernels), an fp32 KV cache for the
 * cache it allocates, plus the workspace.
 */
export async function measureAgainstEstimate(model: ModelSpec, dir: string, backend?: string): Promise<Measurement> {
  if (model.source === 'preset' || model.storedTensors) throw new HerdError('--measure needs --model DIR, a Hugging Face folder with weights');
  const run = await measurePeakMemory(dir, backend === undefined ? {} : { backend });
  const plan = buildPlan({
    model,
    precisions: [run.weightPrecision],
    recipe: DEFAULT_RECIPE_OPTIONS,
    contexts: [run.cacheTokens],
    batch: 1,
    kvDtype: 'fp32',
    trainingMethods: [],
    training: DEFAULT_TRAINING_OPTIONS,
  });
  return {
    peakRssBytes: run.peakRssBytes,
    rssBeforeLoadBytes: run.rssBeforeLoadBytes,
    estimateBytes: plan.inference[0]?.totalBytes ?? 0,
    estimateLabel: `${run.weightPrecision} weights + fp32 KV cache for ${run.cacheTokens} tokens + workspace`,
    method: `loading ${dir} with herd's engine (${run.backend} backend) and running one token through it`,
  };
}
