import { DEFAULT_MODEL_DIR, loadModel, type LoadedModel } from '../engine/load.js';
import type { KvCacheType } from '../kernels/wasm-ops.js';
import { resolveModelArgument } from './model-argument.js';
import { progressBar } from './progress.js';

/**
 * Loads --model (a folder, a .gguf file or a Hugging Face id, downloaded first when the cache
 * lacks it; or the embedded default) with a progress bar for a person at a terminal.
 */
export async function loadModelWithProgress(flags: { model?: string; backend?: string; threads?: number; 'kv-cache-type'?: string; adapter?: string; json: boolean }): Promise<LoadedModel> {
  const model = await resolveModelArgument(flags.model, { json: flags.json });
  const progress = progressBar('Loading weights', !flags.json);
  try {
    return await loadModel(model ?? DEFAULT_MODEL_DIR, { backend: flags.backend, threads: flags.threads, kvCacheType: flags['kv-cache-type'] as KvCacheType | undefined, adapter: flags.adapter, onProgress: (done, total) => progress.update(done, total) });
  } finally {
    progress.stop();
  }
}
