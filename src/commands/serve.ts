import { Flags } from '@oclif/core';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { SCHEMAS } from '../cli/json-output.js';
import { modelFlags, numberFlag } from '../cli/flags.js';
import { loadModelWithProgress } from '../cli/load.js';
import { isHubModelArgument } from '../cli/model-argument.js';
import { loadShield, shieldFlags } from '../cli/shields.js';
import { HerdUsageError } from '../errors.js';
import { DEFAULT_MAX_BODY_BYTES, HerdServer } from '../serve/server.js';
import { attachModel, DEFAULT_CONTEXT, stopOnSignal, type ServeSettings } from '../serve/start.js';

export default class Serve extends HerdCommand {
  static override summary = 'Serve the model over HTTP: the OpenAI API (chat, completions), TGI\'s /generate, with continuous batching.';

  static override description = `Loads the model once and answers POST /v1/chat/completions, /v1/completions, /tokenize, /detokenize, /generate and /generate_stream, GET /v1/models, /health (503 while loading) and /metrics (Prometheus). Up to --parallel requests share each forward pass; --max-queue more wait; beyond that a request gets 429 with Retry-After.
Binds 127.0.0.1 unless --host says otherwise. SIGINT or SIGTERM stops taking requests, gives those in flight --grace seconds, cancels the rest and exits 0. See docs/serve.md.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> serve --model ~/models/Llama-3.1-8B-Instruct',
    '<%= config.bin %> serve -m ~/models/Llama-3.2-1B-Instruct-q8_0.gguf --port 8000 --parallel 8 --api-key secret',
    'HERD_API_KEY=secret <%= config.bin %> serve -m ~/models/Llama-3.1-8B-Instruct --host 0.0.0.0 --cors "*" --json',
  ];

  static override flags = {
    ...modelFlags,
    host: Flags.string({ description: 'Address to listen on (0.0.0.0 for every interface).', default: '127.0.0.1' }),
    port: Flags.integer({ description: 'TCP port (0: any free port, printed).', default: 8080, min: 0, max: 65535 }),
    parallel: Flags.integer({ description: 'Requests generated at once, sharing each forward pass.', default: 4, min: 1 }),
    'max-queue': Flags.integer({ description: 'Requests that may wait for a slot; more get 429 with Retry-After.', default: 64, min: 0 }),
    'ctx-size': Flags.integer({ description: `Most tokens (prompt + reply) of one request. Default: ${DEFAULT_CONTEXT}, or the model's context if smaller.`, min: 2 }),
    'prefix-cache': Flags.integer({ description: 'MiB of KV kept for prompts that start alike (system prompt, tools); 0 disables it.', default: 1024, min: 0 }),
    'api-key': Flags.string({ description: 'Require "Authorization: Bearer KEY" on every endpoint but /health and /metrics.', env: 'HERD_API_KEY' }),
    'model-name': Flags.string({ description: 'The model id clients send as "model". Default: the Hugging Face id given to --model, else the model folder\'s name.' }),
    cors: Flags.string({ description: 'Allow browsers from this origin ("*" for any): Access-Control-Allow-Origin.' }),
    timeout: numberFlag({ description: 'Seconds a request may run before it is cancelled (504). Default: no limit.', min: 0.001 }),
    grace: numberFlag({ description: 'Seconds requests in flight get to finish after SIGINT or SIGTERM.', min: 0 }),
    'max-body-bytes': Flags.integer({ description: 'Largest request body accepted (413 beyond).', default: DEFAULT_MAX_BODY_BYTES, min: 1 }),
    // Chat completions only: a blocked request or reply is answered with finish_reason "content_filter" (docs/safety.md).
    ...shieldFlags,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Serve);
    if (flags['api-key'] === '') throw new HerdUsageError('--api-key (or HERD_API_KEY) is empty');
    const settings: ServeSettings = {
      host: flags.host,
      port: flags.port,
      apiKey: flags['api-key'],
      corsOrigin: flags.cors,
      maxBodyBytes: flags['max-body-bytes'],
      timeoutSeconds: flags.timeout ?? null,
      // A Hugging Face id is served under that id, as vLLM does; a folder under its name.
      modelName: flags['model-name'] ?? (flags.model !== undefined && isHubModelArgument(flags.model) ? flags.model : undefined),
      scheduler: { parallel: flags.parallel, maxQueue: flags['max-queue'], contextLength: flags['ctx-size'], prefixCacheBytes: flags['prefix-cache'] * 2 ** 20 },
    };
    const server = new HerdServer(settings);
    const url = await server.listen(settings.port, settings.host);
    const stopped = stopOnSignal(server, (flags.grace ?? 10) * 1000, (signal) => {
      if (!flags.json) process.stderr.write(`herd serve: ${signal}: finishing requests in flight\n`);
    });
    const loaded = await loadModelWithProgress(flags);
    const guards = await loadShield(flags, loaded);
    const { scheduler, modelId: model } = attachModel(server, loaded, settings, guards?.shield);
    if (flags.json) {
      this.printJson(SCHEMAS.serve, { event: 'ready', url, model, backend: loaded.model.backendName, parallel: flags.parallel, max_queue: flags['max-queue'], context_length: scheduler.contextLength });
    } else {
      this.log(`herd serve: ${model} on ${loaded.model.backendName} at ${url}/v1 (parallel ${flags.parallel}, context ${scheduler.contextLength}); Ctrl-C stops`);
    }
    await stopped;
    if (flags.json) this.printJson(SCHEMAS.serve, { event: 'stopped' });
    loaded.model.dispose();
    guards?.dispose();
  }
}
