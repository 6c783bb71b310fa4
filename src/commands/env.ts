import os from 'node:os';
import chalk from 'chalk';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { SCHEMAS } from '../cli/json-output.js';
import { connectEndpoint, endpointFlags, type RemoteTarget } from '../cli/endpoint.js';
import { automaticOrder, firstAvailable, probeBackends } from '../backends/registry.js';
import { chooseChatMode, describeChatMode } from '../remote/capabilities.js';

export default class Env extends HerdCommand {
  static override summary = 'Show the machine and which compute backends herd found, and why.';

  static override description = `herd runs its one model definition on tfjs, on its own WASM SIMD kernels, or on its native C kernels (built at install when a compiler is present; HERD_CPU_ISA forces their instruction-set path, HERD_NATIVE=0 switches them off). For tfjs it tries @tensorflow/tfjs-node-gpu, then @tensorflow/tfjs-node (both optional: install one to use it), then @tensorflow/tfjs-backend-wasm, which is always installed. Without a GPU, 16-bit and quantized checkpoints run on herd's native kernels when they compute on all of the model's weight types, else on the WASM kernels; both compute on the stored weights. The pure-JavaScript cpu backend is only used when forced with --backend cpu.
${EXIT_STATUS_HELP}`;

  static override examples = ['<%= config.bin %> env', '<%= config.bin %> env --json', '<%= config.bin %> env --endpoint http://gpu-box:8000 --template-from ~/models/Llama-3.1-70B-Instruct'];

  static override flags = {
    endpoint: endpointFlags.endpoint,
    'api-key': endpointFlags['api-key'],
    'endpoint-model': endpointFlags['endpoint-model'],
    'endpoint-timeout': endpointFlags['endpoint-timeout'],
    'template-from': endpointFlags['template-from'],
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Env);
    const endpoint = flags.endpoint === undefined ? null : endpointFindings(await connectEndpoint({ ...flags, endpoint: flags.endpoint }));
    const backends = await probeBackends();
    // A 16-bit model stands for every packed one whose types all backends compute on.
    const automatic = { float32: firstAvailable(automaticOrder(['F32']), backends), packed: firstAvailable(automaticOrder(['F16']), backends) };
    const machine = {
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      cpus: os.availableParallelism(),
      cpu_model: os.cpus()[0]?.model ?? 'unknown',
      memory_bytes: os.totalmem(),
    };
    if (flags.json) {
      this.printJson(SCHEMAS.env, { ...machine, backends, default_backend: automatic, ...(endpoint && { endpoint }) });
      return;
    }
    this.log(`node ${machine.node} on ${machine.platform}, ${machine.cpus} cores (${machine.cpu_model}), ${(machine.memory_bytes / 2 ** 30).toFixed(1)} GiB memory`);
    this.log('backends, in detection order:');
    for (const backend of backends) {
      const mark = backend.available ? chalk.green('found  ') : chalk.yellow('missing');
      this.log(`  ${backend.name.padEnd(9)}${mark}  ${backend.reason}`);
    }
    this.log(`default: ${chalk.bold(automatic.float32 ?? 'none')} for float32 checkpoints, ${chalk.bold(automatic.packed ?? 'none')} for 16-bit and quantized ones (native only when it computes on all of the model's weight types; --backend overrides)`);
    if (endpoint) this.printEndpoint(endpoint);
  }

  private printEndpoint(found: EndpointFindings): void {
    const mark = (ok: boolean) => (ok ? chalk.green('yes') : chalk.yellow('no '));
    this.log(`endpoint ${found.url}: models ${found.models.join(', ')} (using ${found.model}${found.context_length === null ? '' : `, context ${found.context_length}`})`);
    this.log(`  /v1/completions       ${mark(found.completions)}  raw prompts: generate, eval`);
    this.log(`  token-id prompts      ${mark(found.token_id_prompts)}  the exact ids herd renders: generate, chat's raw mode`);
    this.log(`  prompt logprobs       ${mark(found.prompt_logprobs)}  echo + logprobs: loglikelihood and perplexity tasks`);
    this.log(`  /v1/chat/completions  ${mark(found.chat_completions)}  the server's template and tool parsing: chat's chat mode`);
    this.log(`  /tokenize             ${mark(found.tokenize)}  the server's token counts (herd prompt)`);
    this.log(`chat mode: ${found.chat_mode_reason}`);
  }
}

type EndpointFindings = ReturnType<typeof endpointFindings>;

/** What the server offers and which chat mode herd will use with it (snake_case, for --json). */
function endpointFindings({ capabilities, template }: RemoteTarget) {
  const haveTemplate = template !== null;
  return {
    url: capabilities.endpoint,
    models: capabilities.models,
    model: capabilities.model,
    context_length: capabilities.contextLength,
    completions: capabilities.completions,
    chat_completions: capabilities.chat,
    prompt_logprobs: capabilities.promptLogprobs,
    tokenize: capabilities.tokenize,
    token_id_prompts: capabilities.tokenIdPrompts,
    chat_mode: chooseChatMode(capabilities, haveTemplate),
    chat_mode_reason: describeChatMode(capabilities, haveTemplate),
  };
}
