import type { LoadedModel } from '../engine/load.js';
import { LocalChatModel, RequestLimiter, type ChatModel } from './chat-model.js';
import { EndpointChatModel } from './endpoint-model.js';
import { templateDate, type ModelSpec, type PipelineConfig } from './pipeline-config.js';
import type { PipelineModels } from './pipeline.js';

/** Loads a local model folder or .gguf (the command passes its loader with a progress bar). */
export type ModelLoader = (modelPath: string) => Promise<LoadedModel>;

/**
 * The pipeline's models: each local model is loaded once, however many steps use it (a generator
 * that also judges shares its weights); each endpoint gets its own client and request limit, and
 * `apiKey` (--api-key / HERD_API_KEY) goes to every endpoint as a Bearer token.
 */
export async function openModels(config: PipelineConfig, load: ModelLoader, apiKey?: string): Promise<PipelineModels> {
  const loaded = new Map<string, { model: Promise<LoadedModel>; queue: RequestLimiter }>();
  const open = async (spec: ModelSpec): Promise<ChatModel> => {
    if (spec.location.kind === 'endpoint') {
      return new EndpointChatModel(spec, { retries: config.retries, backoffMs: config.backoffMs, timeoutMs: config.requestTimeoutMs }, apiKey);
    }
    const modelPath = spec.location.path;
    if (!loaded.has(modelPath)) loaded.set(modelPath, { model: load(modelPath), queue: new RequestLimiter(1) });
    const shared = loaded.get(modelPath)!;
    return new LocalChatModel(spec.name, await shared.model, templateDate(config), shared.queue);
  };
  const generators: ChatModel[] = [];
  for (const spec of config.generators) generators.push(await open(spec));
  return { generators, judge: config.judge ? await open(config.judge) : null };
}
