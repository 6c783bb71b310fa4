import { loadModel } from '../backends/load.js';
import type { BackendChoice } from '../backends/registry.js';
import { DEFAULT_MODEL_DIR, type LoadedModel, type LoadedWeights } from '../engine/load.js';
import type { KvCacheType } from '../engine/ops.js';
import { resolveModelArgument } from './model-argument.js';
import { progressBar } from './progress.js';

interface ModelLoadFlags {
  model?: string;
  backend?: string;
  threads?: number;
  'kv-cache-type'?: string;
  adapter?: string;
  /** herd serve's context per request: the memory check counts a KV cache that long. */
  'ctx-size'?: number;
  json: boolean;
  verbose?: boolean;
}

/**
 * Loads --model (a folder, a .gguf file or a Hugging Face id, downloaded first when the cache
 * lacks it; or the embedded default) with a progress bar for a person at a terminal; --verbose
 * says which backend was chosen and why.
 */
export async function loadModelWithProgress(flags: ModelLoadFlags, options: { tokenizer: false }): Promise<LoadedWeights>;
export async function loadModelWithProgress(flags: ModelLoadFlags): Promise<LoadedModel>;
export async function loadModelWithProgress(flags: ModelLoadFlags, options: { tokenizer?: false } = {}): Promise<LoadedWeights | LoadedModel> {
  const model = await resolveModelArgument(flags.model, { json: flags.json });
  const progress = progressBar('Loading weights', !flags.json);
  try {
    return await loadModel(model ?? DEFAULT_MODEL_DIR, {
      tokenizer: options.tokenizer,
      backend: flags.backend,
      threads: flags.threads,
      kvCacheType: flags['kv-cache-type'] as KvCacheType | undefined,
      contextTokens: flags['ctx-size'],
      adapter: flags.adapter,
      onBackendChosen: flags.verbose ? reportBackend : undefined,
      onProgress: (done, total) => progress.update(done, total),
    });
  } finally {
    progress.stop();
  }
}

/** One line on stderr: the backend, what it is here, and why it was chosen. */
function reportBackend({ backend, probe, why }: BackendChoice): void {
  process.stderr.write(`herd: backend ${backend.name} (${probe.reason}): ${why}\n`);
}
