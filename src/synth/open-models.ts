import type { LoadedModel } from '../engine/load.js';
import type { Scheduler } from '../serve/scheduler.js';
import { batchScheduler, BatchedLocalChatModel } from './batched-model.js';
import { LocalChatModel, RequestLimiter, type ChatModel } from './chat-model.js';
import { EndpointChatModel } from './endpoint-model.js';
import { templateDate, type ModelSpec, type PipelineConfig } from './pipeline-config.js';
import type { PipelineModels } from './pipeline.js';

/** Loads a local model folder or .gguf (the command passes its loader with a progress bar). */
export type ModelLoader = (modelPath: string) => Promise<LoadedModel>;

export interface OpenedModels extends PipelineModels {
  /** Stops the batch schedulers of local models. */
  close(): Promise<void>;
}

/** What the steps on one set of local weights share: the weights, and how they run. */
interface LocalWeights {
  model: Promise<LoadedModel>;
  /** One request at a time… */
  queue: RequestLimiter;
  /** …or, when a step asks for more than one at once, batched through herd serve's scheduler. */
  scheduler: Scheduler | null;
}

/**
 * The pipeline's models: each local model is loaded once, however many steps use it (a generator
 * that also judges shares its weights); a local model whose steps allow several requests at once
 * (`max_concurrent_requests` > 1) batches them; each endpoint gets its own client and request
 * limit, and `apiKey` (--api-key / HERD_API_KEY) goes to every endpoint as a Bearer token.
 */
export async function openModels(config: PipelineConfig, load: ModelLoader, apiKey?: string): Promise<OpenedModels> {
  const specs = [...config.generators, ...(config.judge ? [config.judge] : [])];
  const local = new Map<string, LocalWeights>();
  const open = async (spec: ModelSpec): Promise<ChatModel> => {
    if (spec.location.kind === 'endpoint') {
      return new EndpointChatModel(spec, { retries: config.retries, backoffMs: config.backoffMs, timeoutMs: config.requestTimeoutMs }, apiKey);
    }
    const weights = await localWeights(local, spec.location.path, specs, load);
    const date = templateDate(config);
    return weights.scheduler ? new BatchedLocalChatModel(spec.name, await weights.model, date, weights.scheduler) : new LocalChatModel(spec.name, await weights.model, date, weights.queue);
  };
  const generators: ChatModel[] = [];
  for (const spec of config.generators) generators.push(await open(spec));
  const judge = config.judge ? await open(config.judge) : null;
  return {
    generators,
    judge,
    close: async () => {
      for (const weights of local.values()) await weights.scheduler?.close();
    },
  };
}

async function localWeights(local: Map<string, LocalWeights>, modelPath: string, specs: readonly ModelSpec[], load: ModelLoader): Promise<LocalWeights> {
  if (!local.has(modelPath)) {
    const model = load(modelPath);
    const parallel = Math.max(...specs.filter((spec) => spec.location.kind === 'local' && spec.location.path === modelPath).map((spec) => spec.maxConcurrentRequests));
    local.set(modelPath, { model, queue: new RequestLimiter(1), scheduler: parallel > 1 ? batchScheduler(await model, parallel) : null });
  }
  return local.get(modelPath)!;
}
