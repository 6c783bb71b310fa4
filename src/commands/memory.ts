import { Flags } from '@oclif/core';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { numberFlag } from '../cli/flags.js';
import { SCHEMAS } from '../cli/json-output.js';
import { HerdError } from '../errors.js';
import { ACCELERATORS } from '../memory/hardware.js';
import { KV_CACHE_DTYPES } from '../memory/kv-cache.js';
import { markdownReport, writeFileAtomically } from '../memory/markdown-file.js';
import { measureAgainstEstimate } from '../memory/measure.js';
import { resolveModel } from '../memory/model-source.js';
import { planLaunch, SERVING_ENGINES, type LaunchPlan, type ServingEngine } from '../memory/launch.js';
import { buildPlan } from '../memory/plan.js';
import { compareWithPost } from '../memory/post-tables.js';
import { PRECISION_IDS } from '../memory/precision.js';
import { PRESET_NAMES } from '../spec/presets.js';
import { comparisonSections, measurementSection, planSections } from '../memory/report.js';
import { parseUnit, planRequestFromFlags, type MemoryFlags } from '../memory/request.js';
import type { ModelSpec } from '../memory/architecture.js';
import { renderSectionText, type Section } from '../memory/table.js';
import { OPTIMIZER_IDS } from '../memory/training.js';

export default class Memory extends HerdCommand {
  static override summary = 'Plan memory for a Llama model: weights, KV cache, training, and whether it fits.';

  static override description = `Computes the exact parameter count from the model's config, the memory of its weights at each precision, the KV cache for a context and batch, and (with --train) full fine-tuning, LoRA and QLoRA with every term shown. With --gpu or --memory it says whether each configuration fits, the largest context that does, or how many devices it needs.

MODEL is a preset (${PRESET_NAMES.join(', ')}), a Hugging Face folder or its config.json, or a GGUF file (only its header is read).
Every size names its unit: GiB = 2^30 bytes, GB = 10^9 bytes (--units). Token counts take k = 1,024 (128k = 131,072).
--compare-post prints the Llama 3.1 post's three memory tables beside herd's values under the post's own conventions.
Formulas and assumptions: docs/memory.md.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> memory -m llama-3.1-8b',
    '<%= config.bin %> memory -m llama-3.1-70b --precision bf16,fp8-mlp,int4,q4_k_m --context 8k,32k --gpu h100 --gpus 2',
    '<%= config.bin %> memory -m ./Meta-Llama-3.1-8B-Instruct --train full,lora,qlora --seq-len 4k --gpu a100-80gb',
    '<%= config.bin %> memory -m ./llama-3.1-8b-instruct-q4_k_m.gguf --memory 16GiB',
    '<%= config.bin %> memory -m llama-3.2-3b --kv-dtype q8_0 --batch 4 --json',
    '<%= config.bin %> memory --compare-post --markdown memory-report.md',
    '<%= config.bin %> memory --measure -m ./models/stories260K',
    '<%= config.bin %> memory --launch vllm -m llama-3.1-405b --gpu h100 --gpus 8',
    '<%= config.bin %> memory --launch tgi -m llama-3.1-70b --gpu a100-80gb --gpus 4 --context 32k',
  ];

  static override flags = {
    model: Flags.string({ char: 'm', description: 'Preset name, Hugging Face folder, config.json or .gguf file.' }),
    precision: Flags.string({
      char: 'p',
      multiple: true,
      delimiter: ',',
      description: `Weight precisions, comma-separated: ${PRECISION_IDS.join(', ')}, or file (a GGUF as stored). Default: bf16,fp8,int4 (file for a GGUF).`,
    }),
    'group-size': Flags.string({ description: 'Group size of int4 scales and zero points (AWQ/GPTQ). Default: 128.' }),
    'keep-16bit-embeddings': Flags.boolean({ description: 'Keep the embedding matrix and output head in bf16 whatever the precision.', default: false }),
    context: Flags.string({ char: 'c', multiple: true, delimiter: ',', description: "Context lengths in tokens (8192, 8k, 128k; k = 1,024). Default: the model's maximum." }),
    batch: Flags.string({ char: 'b', description: 'Sequences served (inference) or per device (training). Default: 1.' }),
    'kv-dtype': Flags.string({ description: `KV cache element type: ${KV_CACHE_DTYPES.join(', ')}.`, default: 'bf16' }),
    train: Flags.string({ multiple: true, delimiter: ',', description: 'Training methods to estimate: full, lora, qlora (comma-separated).' }),
    'seq-len': Flags.string({ description: 'Training sequence length in tokens. Default: 2048.' }),
    'lora-rank': Flags.string({ description: 'LoRA rank. Default: 16.' }),
    'lora-targets': Flags.string({ description: 'LoRA target projections, comma-separated from q,k,v,o,gate,up,down. Default: all seven.' }),
    optimizer: Flags.string({ description: `Optimizer states: ${OPTIMIZER_IDS.join(', ')}.`, default: 'adamw' }),
    'master-weights': Flags.boolean({ description: 'Keep fp32 master weights (mixed precision); --no-master-weights for pure bf16.', default: true, allowNo: true }),
    'gradient-checkpointing': Flags.boolean({ description: 'Recompute activations layer by layer in the backward pass.', default: true, allowNo: true }),
    gpu: Flags.string({ description: `Accelerator: ${ACCELERATORS.map((gpu) => gpu.id).join(', ')}.` }),
    gpus: Flags.string({ description: 'Number of devices (tensor parallel for inference, FSDP for training). Default: 1.' }),
    memory: Flags.string({ description: 'Memory of each device instead of --gpu, e.g. 24GiB for a CPU box.' }),
    reserve: Flags.string({ description: 'Memory per device kept back for driver, runtime and fragmentation.', default: '1GiB' }),
    units: Flags.string({ description: 'Units for sizes: GiB (2^30 bytes) or GB (10^9 bytes).', default: 'GiB' }),
    markdown: Flags.string({ description: 'Also write the report as Markdown to this file.' }),
    'compare-post': Flags.boolean({ description: "Print the Llama 3.1 post's memory tables beside herd's values, cell by cell.", default: false }),
    measure: Flags.boolean({ description: 'Load the --model folder with the engine, run one token, and print measured peak memory beside the estimate.', default: false }),
    backend: Flags.string({ description: 'Engine backend for --measure.' }),
    launch: Flags.string({ description: 'Print the command that serves --model on --gpu × --gpus with this engine, sized by the plan (docs/distributed.md).', options: [...SERVING_ENGINES] }),
    'gpu-memory-utilization': numberFlag({ description: 'With --launch: share of each device the engine may use (default 0.9, vLLM\'s).', min: 0.05, max: 1 }),
    port: Flags.integer({ description: 'With --launch: the port the server listens on (default: vLLM 8000, TGI 3000, llama.cpp 8080).', min: 1, max: 65535 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Memory);
    const unit = parseUnit(flags.units);
    if (flags.model === undefined && !flags['compare-post']) {
      throw new HerdError('give a model with --model (a preset, folder, config.json or .gguf), or use --compare-post');
    }
    if (flags.measure && flags.model === undefined) throw new HerdError('--measure needs --model DIR, a Hugging Face folder');
    const model = flags.model === undefined ? undefined : await resolveModel(flags.model);
    if (flags.launch !== undefined) return this.launch(flags.launch as ServingEngine, model, flags);
    const plan = model ? buildPlan(planRequestFromFlags(model, flags)) : undefined;
    const comparison = flags['compare-post'] ? compareWithPost() : undefined;
    const measurement = flags.measure && model && flags.model ? await measureAgainstEstimate(model, flags.model, flags.backend) : undefined;

    const sections: Section[] = [
      ...(plan ? planSections(plan, unit) : []),
      ...(measurement ? [measurementSection(measurement, unit)] : []),
      ...(comparison ? comparisonSections(comparison) : []),
    ];
    if (flags.markdown !== undefined) {
      await writeFileAtomically(flags.markdown, markdownReport(`herd memory: ${model?.name ?? 'Llama 3.1 post tables'}`, sections));
    }
    if (flags.json) {
      this.printJson(SCHEMAS.memory, { units: 'bytes', plan: plan ?? null, measurement: measurement ?? null, comparePost: comparison ?? null });
      return;
    }
    this.log(sections.map(renderSectionText).join('\n\n'));
  }

  /** --launch: the serving command sized by the plan, and the herd chat line that talks to it. */
  private launch(engine: ServingEngine, model: ModelSpec | undefined, flags: MemoryFlags & { model?: string; json: boolean; 'gpu-memory-utilization'?: number; port?: number }): void {
    if (model === undefined || flags.model === undefined) throw new HerdError('--launch needs --model (a preset such as llama-3.1-70b, a folder or a .gguf)');
    const request = planRequestFromFlags(model, flags);
    if (request.hardware === undefined) throw new HerdError('--launch needs the hardware: --gpu NAME (and --gpus N) or --memory SIZE');
    if (request.contexts.length > 1) throw new HerdError('--launch takes one --context');
    const plan = planLaunch({
      engine,
      model,
      modelArgument: flags.model,
      hardware: request.hardware,
      context: request.contexts[0]!,
      kvDtype: request.kvDtype,
      gpuMemoryUtilization: flags['gpu-memory-utilization'] ?? 0.9,
      port: flags.port ?? DEFAULT_PORTS[engine],
    });
    if (flags.json) return this.printJson(SCHEMAS.memory, { units: 'bytes', plan: null, measurement: null, comparePost: null, launch: plan });
    this.log(launchSummary(plan, request.hardware.label));
  }
}

const DEFAULT_PORTS: Record<ServingEngine, number> = { vllm: 8000, tgi: 3000, 'llama.cpp': 8080 };

function launchSummary(plan: LaunchPlan, device: string): string {
  const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  const quantization = plan.onTheFlyQuantization ? `, quantized to ${plan.onTheFlyQuantization} by the engine as it loads` : '';
  return [
    `${plan.engine}: ${plan.checkpoint} in ${plan.precision}${quantization} on ${plan.devices} × ${device}, context ${plan.maxModelLength} tokens`,
    `per device: ${gib(plan.perDeviceBytes)} of ${gib(plan.usableBytesPerDevice)} the engine may use (weights, KV cache and workspace, from the plan)`,
    ...plan.notes.map((note) => `note: ${note}`),
    '',
    shellLine(plan.command),
    '',
    'then:',
    shellLine(plan.chatCommand),
  ].join('\n');
}

/** A command as one shell line per flag, quoted where the shell would split or expand. */
function shellLine(argv: readonly string[]): string {
  const quoted = argv.map((arg) => (/^[\w@%+=:,./~-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`));
  const lines: string[] = [];
  for (const arg of quoted) {
    if (arg.startsWith('-') && lines.length > 0) lines.push(arg);
    else if (lines.length === 0) lines.push(arg);
    else lines[lines.length - 1] += ` ${arg}`;
  }
  return lines.join(' \\\n  ');
}
