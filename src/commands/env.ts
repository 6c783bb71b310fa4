import os from 'node:os';
import chalk from 'chalk';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { SCHEMAS } from '../cli/json-output.js';
import { probeBackends } from '../engine/backends/select.js';

export default class Env extends HerdCommand {
  static override summary = 'Show the machine and which compute backends herd found, and why.';

  static override description = `herd runs its one model definition on tfjs, on its own WASM SIMD kernels, or on its native C kernels (built at install when a compiler is present; HERD_CPU_ISA forces their instruction-set path, HERD_NATIVE=0 switches them off). For tfjs it tries @tensorflow/tfjs-node-gpu, then @tensorflow/tfjs-node (both optional: install one to use it), then @tensorflow/tfjs-backend-wasm, which is always installed. Without a GPU, 16-bit and quantized checkpoints run on herd's native kernels when they compute on all of the model's weight types, else on the WASM kernels; both compute on the stored weights. The pure-JavaScript cpu backend is only used when forced with --backend cpu.
${EXIT_STATUS_HELP}`;

  static override examples = ['<%= config.bin %> env', '<%= config.bin %> env --json'];

  async run(): Promise<void> {
    const { flags } = await this.parse(Env);
    const backends = await probeBackends();
    const available = (name: string) => backends.some((b) => b.name === name && b.available);
    const firstTfjs = (['node-gpu', 'node', 'wasm'] as const).find(available) ?? null;
    const automatic = {
      float32: firstTfjs,
      packed: available('node-gpu') ? 'node-gpu' : available('native') ? 'native' : available('kernels') ? 'kernels' : firstTfjs,
    };
    const machine = {
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      cpus: os.availableParallelism(),
      cpu_model: os.cpus()[0]?.model ?? 'unknown',
      memory_bytes: os.totalmem(),
    };
    if (flags.json) {
      this.printJson(SCHEMAS.env, { ...machine, backends, default_backend: automatic });
      return;
    }
    this.log(`node ${machine.node} on ${machine.platform}, ${machine.cpus} cores (${machine.cpu_model}), ${(machine.memory_bytes / 2 ** 30).toFixed(1)} GiB memory`);
    this.log('backends, in detection order:');
    for (const backend of backends) {
      const mark = backend.available ? chalk.green('found  ') : chalk.yellow('missing');
      this.log(`  ${backend.name.padEnd(9)}${mark}  ${backend.reason}`);
    }
    this.log(`default: ${chalk.bold(automatic.float32 ?? 'none')} for float32 checkpoints, ${chalk.bold(automatic.packed ?? 'none')} for 16-bit and quantized ones (native only when it computes on all of the model's weight types; --backend overrides)`);
  }
}
