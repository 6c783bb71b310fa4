import path from 'node:path';
import { Flags } from '@oclif/core';
import { EXIT_STATUS_HELP, HerdCommand } from '../../cli/base-command.js';
import { HUB_ID_FORMS } from '../../cli/flags.js';
import { isHubModelArgument, resolveModelArgument } from '../../cli/model-argument.js';
import { parseHubName } from '../../hub/model-name.js';
import { progressBar } from '../../cli/progress.js';
import { InterruptWatch } from '../../cli/interrupt.js';
import { HerdError } from '../../errors.js';
import { DEFAULT_MODEL_DIR } from '../../engine/load.js';
import { dataFlags, loraFlags, optimizationFlags, trainingReporter } from '../../train/cli.js';
import { loadExamples, summarize } from '../../train/data.js';
import { validateLoraSettings } from '../../formats/peft.js';
import type { SchedulerType } from '../../train/optimizer.js';
import { loadLoraModel, train } from '../../train/trainer.js';

export default class Finetune extends HerdCommand {
  static override summary = 'Fine-tune a Llama model with LoRA and write a PEFT adapter.';

  static override description = `Supervised fine-tuning as TRL's SFTTrainer does it, on herd's own engine: LoRA matrices on the chosen projections of a frozen base model, AdamW with warmup and a linear, cosine or constant schedule, gradient accumulation and clipping. The loss is taken only on assistant / completion tokens unless --train-on-prompt.
Training runs on a tfjs backend (tfjs-node-gpu when installed, else wasm or cpu). The adapter is written to --output-dir as PEFT files (adapter_config.json, adapter_model.safetensors) that transformers, vLLM and llama.cpp's convert_lora_to_gguf.py load; use it with --adapter in generate, or merge it with herd finetune merge.
Flag names follow TRL / transformers / PEFT (learning_rate → --learning-rate). See docs/finetune.md.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> finetune --model ~/models/Llama-3.1-8B-Instruct --data train.jsonl --output-dir out --lora-r 16 --lora-alpha 32 --lora-target-modules q_proj k_proj v_proj o_proj --learning-rate 2e-4 --per-device-train-batch-size 1 --gradient-accumulation-steps 8 --num-train-epochs 1',
    '<%= config.bin %> finetune --data stories.jsonl --max-steps 200 --eval-data held-out.jsonl --eval-steps 50 --save-steps 50 --output-dir out',
    '<%= config.bin %> finetune --data stories.jsonl --max-steps 200 --save-steps 50 --output-dir out --resume',
    '<%= config.bin %> finetune --model ~/models/Llama-3.1-8B-Instruct --data train.jsonl --output-dir out --load-in-4bit --gradient-checkpointing',
  ];

  static override flags = {
    model: Flags.string({ char: 'm', description: `Base model: a folder (Hugging Face layout) or a Hugging Face id ${HUB_ID_FORMS}. Default: the embedded stories260K.` }),
    backend: Flags.string({ description: 'tfjs backend to train on (node-gpu, node, wasm, cpu, or tfjs for the first that loads).', default: 'tfjs' }),
    ...dataFlags,
    'eval-data': Flags.string({ description: 'Held-out data in the same layouts; its loss is reported every --eval-steps and at the end.' }),
    'output-dir': Flags.string({ char: 'o', description: 'Where checkpoints and the final adapter go.', required: true }),
    ...loraFlags,
    ...optimizationFlags,
    'logging-steps': Flags.integer({ description: 'Log the training loss every N updates.', default: 10, min: 1 }),
    'eval-steps': Flags.integer({ description: 'Eval loss every N updates (0: only at the end).', default: 0, min: 0 }),
    'save-steps': Flags.integer({ description: 'Write output-dir/checkpoint-N every N updates (0: only the final adapter).', default: 0, min: 0 }),
    resume: Flags.boolean({ description: 'Continue from the newest checkpoint-N in --output-dir: same step, optimizer state and data order.', default: false }),
    'gradient-checkpointing': Flags.boolean({ description: "Keep only each decoder layer's input and recompute its activations in the backward pass (less memory, about a third more compute).", default: false }),
    'load-in-4bit': Flags.boolean({ description: "QLoRA: hold the decoder layers' frozen projections in NF4 (4.5 bits a weight), dequantized inside each matmul.", default: false }),
    'base-model-name': Flags.string({ description: 'base_model_name_or_path written in adapter_config.json. Default: the --model path, or its Hugging Face id (org/name) as PEFT writes it.' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Finetune);
    const settings = validateLoraSettings({
      r: flags['lora-r'],
      alpha: flags['lora-alpha'] ?? 32,
      dropout: flags['lora-dropout'] ?? 0.05,
      targetModules: flags['lora-target-modules'].flatMap((value) => value.split(/[\s,]+/)).filter((name) => name !== ''),
    });
    const modelDir = (await resolveModelArgument(flags.model, { json: flags.json })) ?? DEFAULT_MODEL_DIR;
    const progress = progressBar('Loading weights', !flags.json);
    const model = await loadLoraModel(modelDir, settings, flags.seed, {
      backend: flags.backend,
      gradientCheckpointing: flags['gradient-checkpointing'],
      loadIn4bit: flags['load-in-4bit'],
      onProgress: (done, total) => progress.update(done, total),
    }).finally(() => progress.stop());
    try {
      const dataOptions = { maxSeqLength: flags['max-seq-length'], trainOnPrompt: flags['train-on-prompt'] };
      const examples = await loadExamples(flags.data, model.loaded.tokenizer, dataOptions);
      const evalExamples = flags['eval-data'] ? await loadExamples(flags['eval-data'], model.loaded.tokenizer, dataOptions) : null;
      const summary = summarize(examples);
      if (summary.trainedTokens === 0) throw new HerdError(`${flags.data}: no token carries a loss (every row is masked or truncated away)`);
      const reporter = trainingReporter(flags.json, (line) => this.log(line));
      const interrupt = new InterruptWatch();
      try {
        await train(model, examples, evalExamples, {
          learningRate: flags['learning-rate'] ?? 2e-4,
          schedulerType: flags['lr-scheduler-type'] as SchedulerType,
          warmupSteps: flags['warmup-steps'],
          warmupRatio: flags['warmup-ratio'] ?? 0,
          weightDecay: flags['weight-decay'] ?? 0,
          maxGradNorm: flags['max-grad-norm'] ?? 1,
          batchSize: flags['per-device-train-batch-size'],
          gradientAccumulationSteps: flags['gradient-accumulation-steps'],
          numEpochs: flags['num-train-epochs'] ?? 3,
          maxSteps: flags['max-steps'],
          seed: flags.seed,
          loggingSteps: flags['logging-steps'],
          evalSteps: flags['eval-steps'],
          saveSteps: flags['save-steps'],
          outputDir: flags['output-dir'],
          resume: flags.resume,
          baseModelName: flags['base-model-name'] ?? baseModelName(flags.model, modelDir),
          shouldStop: () => interrupt.interrupted,
        }, reporter.onEvent);
      } finally {
        interrupt.dispose();
        reporter.stop();
      }
    } finally {
      model.loaded.model.dispose();
    }
  }
}

/** What PEFT records as the base: a Hub model's id (without revision or tag), else the folder's absolute path. */
function baseModelName(arg: string | undefined, modelDir: string): string {
  return arg !== undefined && isHubModelArgument(arg) ? parseHubName(arg).repo : path.resolve(modelDir);
}
