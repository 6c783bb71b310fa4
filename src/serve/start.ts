/**
 * Starting and stopping `herd serve`: listen first (so /health answers 503 while the weights
 * load), then hand the loaded model to the server; on SIGINT or SIGTERM stop taking requests,
 * give those in flight a grace period, cancel the rest, and resolve so the process exits 0.
 */
import path from 'node:path';
import type { LoadedModel } from '../engine/load.js';
import { isGgufFile } from '../engine/load.js';
import { Scheduler, type SchedulerOptions } from './scheduler.js';
import { HerdServer, type ServerOptions } from './server.js';

export interface ServeSettings extends ServerOptions {
  host: string;
  port: number;
  /** The id clients name in "model"; default: the model folder's or file's name. */
  modelName?: string;
  scheduler: Omit<SchedulerOptions, 'contextLength'> & { contextLength: number | undefined };
}

/** Default context per sequence: each running sequence holds a KV cache of this many positions at most. */
export const DEFAULT_CONTEXT = 8192;

/** The served model's id: the folder's name, or the GGUF file's without its extension. */
export function defaultModelName(dir: string): string {
  const base = path.basename(path.resolve(dir));
  return isGgufFile(dir) ? base.replace(/\.gguf$/i, '') : base;
}

export function attachModel(server: HerdServer, loaded: LoadedModel, settings: ServeSettings): { scheduler: Scheduler; modelId: string } {
  const contextLength = Math.min(settings.scheduler.contextLength ?? DEFAULT_CONTEXT, loaded.config.maxPositionEmbeddings);
  const scheduler = new Scheduler(loaded.model, { ...settings.scheduler, contextLength });
  const modelId = settings.modelName ?? defaultModelName(loaded.dir);
  server.ready({
    generator: scheduler,
    model: {
      id: modelId,
      tokenizer: loaded.tokenizer,
      generation: loaded.generation,
      vocabSize: loaded.config.vocabSize,
      created: Math.floor(Date.now() / 1000),
    },
  });
  return { scheduler, modelId };
}

/** Resolves once SIGINT or SIGTERM has stopped the server (requests in flight get `graceMs` to finish). */
export function stopOnSignal(server: HerdServer, graceMs: number, onSignal: (signal: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      onSignal(signal);
      server.shutdown(graceMs).then(resolve, reject);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
