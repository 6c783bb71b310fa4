import { DEFAULT_MODEL_DIR, loadModel, type LoadedModel } from '../engine/load.js';
import { progressBar } from './progress.js';

/** Loads --model (or the embedded default) with a progress bar for a person at a terminal. */
export async function loadModelWithProgress(flags: { model?: string; backend?: string; threads?: number; json: boolean }): Promise<LoadedModel> {
  const progress = progressBar('Loading weights', !flags.json);
  try {
    return await loadModel(flags.model ?? DEFAULT_MODEL_DIR, { backend: flags.backend, threads: flags.threads, onProgress: (done, total) => progress.update(done, total) });
  } finally {
    progress.stop();
  }
}
