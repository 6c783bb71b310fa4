import { Flags } from '@oclif/core';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { SCHEMAS } from '../cli/json-output.js';
import { HerdError } from '../errors.js';
import { ACCELERATORS } from '../memory/hardware.js';
import { KV_CACHE_DTYPES } from '../memory/kv-cache.js';
import { markdownReport, writeFileAtomically } from '../memory/markdown-file.js';
import { measureAgainstEstimate } from '../memory/measure.js';
import { resolveModel } from '../memory/model-source.js';
import { isHubModelArgument, resolveModelArgument } from '../cli/model-argument.js';
import { HUB_ID_FORMS } from '../cli/flags.js';
import { buildPlan } from '../memory/plan.js';
import { compareWithPost } from '../memory/post-tables.js';
import { PRECISION_IDS } from '../memory/precision.js';
import { classifierPlan, classifierSections, resolveClassifier } from '../memory/classifier.js';
import { isPresetName, PRESET_NAMES } from '../spec/presets.js';
import { PROMPT_GUARD_PRESETS } from '../spec/deberta.js';
import { comparisonSections, measurementSection, planSections } from '../memory/report.js';
import { parseUnit, planRequestFromFlags } from '../memory/request.js';
import { renderSectionText, type Section } from '../memory/table.js';
import { OPTIMIZER_IDS } from '../memory/training.js';

export default class Memory extends HerdCommand {
  static override summary = 'Plan memory for a Llama model: weights, KV cache, training, and whether it fits.';

  static override description = `Computes the exact parameter count from the model's config, the memory of its weights at each precision, the KV cache for a context and batch, and (with --train) full fine-tuning, LoRA and QLoRA with every term shown. With --gpu or --memory it says whether each configuration fits, the largest context that does, or how many devices it needs.

MODEL is a preset (${PRESET_NAMES.join(', ')}; Prompt Guard: ${Object.keys(PROMPT_GUARD_PRESETS).join(', ')}), a Hugging Face folder or its config.json, a GGUF file (only its header is read), or a Hugging Face id org/name[@revision][:QUANT] (docs/models.md).
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
  ];

  static override flags = {
    model: Flags.string({ char: 'm', description: `Preset name, Hugging Face folder, config.json or .gguf file, or a Hugging Face id ${HUB_ID_FORMS} (only its config.json is downloaded, or the whole model with --measure).` }),
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
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Memory);
    const unit = parseUnit(flags.units);
    if (flags.model === undefined && !flags['compare-post']) {
      throw new HerdError('give a model with --model (a preset, folder, config.json or .gguf), or use --compare-post');
    }
    if (flags.measure && flags.model === undefined) throw new HerdError('--measure needs --model DIR, a Hugging Face folder');
    const classifier = flags.model === undefined ? undefined : resolveClassifier(flags.model);
    if (classifier) {
      const plan = classifierPlan(classifier);
      if (flags.json) this.printJson(SCHEMAS.memory, { units: 'bytes', plan: null, measurement: null, comparePost: null, classifier: plan });
      else this.log(classifierSections(plan, unit).map(renderSectionText).join('\n\n'));
      return;
    }
    const modelPath = await memoryModelPath(flags.model, flags);
    const model = modelPath === undefined ? undefined : { ...(await resolveModel(modelPath)), ...(modelPath !== flags.model && { name: flags.model! }) };
    const plan = model ? buildPlan(planRequestFromFlags(model, flags)) : undefined;
    const comparison = flags['compare-post'] ? compareWithPost() : undefined;
    const measurement = flags.measure && model && modelPath ? await measureAgainstEstimate(model, modelPath, flags.backend) : undefined;

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
}

/**
 * What --model reads: a preset or a path as they are (resolveModel names unknown presets and
 * missing paths); a Hugging Face id through the cache: its config.json alone, or the whole model
 * for --measure.
 */
async function memoryModelPath(model: string | undefined, flags: { measure: boolean; json: boolean }): Promise<string | undefined> {
  if (model === undefined || isPresetName(model) || !isHubModelArgument(model)) return model;
  return resolveModelArgument(model, { json: flags.json, part: flags.measure ? 'weights' : 'config' });
}
