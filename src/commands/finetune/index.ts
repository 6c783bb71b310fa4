import path from 'node:path';
import { Flags } from '@oclif/core';
import { EXIT_STATUS_HELP, HerdCommand } from '../../cli/base-command.js';
import { HUB_ID_FORMS } from '../../cli/flags.js';
import { isHubModelArgument, resolveModelArgument } from '../../cli/model-argument.js';
import { parseHubName } from '../../hub/model-name.js';
import { progressBar } from '../../cli/progress.js';
import { InterruptWatch } from '../../cli/interrupt.js';
import { HerdError, HerdUsageError } from '../../errors.js';
import { DEFAULT_MODEL_DIR } from '../../engine/load.js';
import type { HerdTokenizer } from '../../engine/tokenizer.js';
import { dataFlags, loraFlags, methodFlags, optimizationFlags, trainingReporter, type TrainingMethod } from '../../train/cli.js';
import { loadExamples, summarize, type DataOptions } from '../../train/data.js';
import { DEFAULT_BETA, DpoObjective } from '../../train/dpo.js';
import { validateLoraSettings } from '../../formats/peft.js';
import type { SchedulerType } from '../../train/optimizer.js';
import { loadPreferencePairs } from '../../train/preference-data.js';
import { loadLoraModel, train, trainObjective, type LoraModel, type TrainEvent, type TrainOptions, type TrainResult } from '../../train/trainer.js';

/** A loaded data set, ready to train on with its objective. */
type TrainingRun = (model: LoraModel, options: TrainOptions, onEvent: (event: TrainEvent) => void) => Promise<TrainResult>;

export default class Finetune extends HerdCommand {
  static override summary = 'Fine-tune a Llama model with LoRA (supervised or DPO) and write a PEFT adapter.';

  static override description = `Supervised fine-tuning as TRL's SFTTrainer does it, on herd's own engine: LoRA matrices on the chosen projections of a frozen base model, AdamW with warmup and a linear, cosine or constant schedule, gradient accumulation and clipping. The loss is taken only on assistant / completion tokens unless --train-on-prompt.
--method dpo trains on preference pairs as TRL's DPOTrainer (sigmoid loss, --beta): rows of {"prompt","chosen","rejected"} or {"chosen","rejected"}; the reference model is the base with the adapter switched off, and rewards/chosen, rewards/rejected, rewards/margins and rewards/accuracies are logged.
Training runs on a tfjs backend (tfjs-node-gpu when installed, else wasm or cpu). The adapter is written to --output-dir as PEFT files (adapter_config.json, adapter_model.safetensors) that transformers, vLLM and llama.cpp's convert_lora_to_gguf.py load; use it with --adapter in generate, or merge it with herd finetune merge.
Flag names follow TRL / transformers / PEFT (learning_rate → --learning-rate). See docs/finetune.md.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> finetune --model ~/models/Llama-3.1-8B-Instruct --data train.jsonl --output-dir out --lora-r 16 --lora-alpha 32 --lora-target-modules q_proj k_proj v_proj o_proj --learning-rate 2e-4 --per-device-train-batch-size 1 --gradient-accumulation-steps 8 --num-train-epochs 1',
    '<%= config.bin %> finetune --data stories.jsonl --max-steps 200 --eval-data held-out.jsonl --eval-steps 50 --save-steps 50 --output-dir out',
    '<%= config.bin %> finetune --data stories.jsonl --max-steps 200 --save-steps 50 --output-dir out --resume',
    '<%= config.bin %> finetune --model ~/models/Llama-3.1-8B-Instruct --data train.jsonl --output-dir out --load-in-4bit --gradient-checkpointing',
    '<%= config.bin %> finetune --method dpo --beta 0.1 --model ~/models/Llama-3.1-8B-Instruct --data preferences.jsonl --output-dir dpo-out --learning-rate 5e-6',
  ];

  static override flags = {
    model: Flags.string({ char: 'm', description: `Base model: a folder (Hugging Face layout) or a Hugging Face id ${HUB_ID_FORMS}. Default: the embedded stories260K.` }),
    backend: Flags.string({ description: 'tfjs backend to train on (node-gpu, node, wasm, cpu, or tfjs for the first that loads).', default: 'tfjs' }),
    ...methodFlags,
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
    const method = flags.method as TrainingMethod;
    if (method === 'sft' && flags.beta !== undefined) throw new HerdUsageError('--beta is the DPO loss temperature; it needs --method dpo');
    if (method === 'dpo' && flags['train-on-prompt']) throw new HerdUsageError('--train-on-prompt is for --method sft; DPO scores the completions only');
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
      const files = { data: flags.data, evalData: flags['eval-data'] };
      const training = method === 'dpo'
        ? await preferenceRun(files, model.loaded.tokenizer, dataOptions, flags.beta ?? DEFAULT_BETA)
        : await supervisedRun(files, model.loaded.tokenizer, dataOptions);
      const reporter = trainingReporter(flags.json, (line) => this.log(line));
      const interrupt = new InterruptWatch();
      try {
        await training(model, {
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

interface DataFiles {
  data: string;
  evalData: string | undefined;
}

async function supervisedRun(files: DataFiles, tokenizer: HerdTokenizer, dataOptions: DataOptions): Promise<TrainingRun> {
  const examples = await loadExamples(files.data, tokenizer, dataOptions);
  const evalExamples = files.evalData ? await loadExamples(files.evalData, tokenizer, dataOptions) : null;
  if (summarize(examples).trainedTokens === 0) throw new HerdError(`${files.data}: no token carries a loss (every row is masked or truncated away)`);
  return (model, options, onEvent) => train(model, examples, evalExamples, options, onEvent);
}

async function preferenceRun(files: DataFiles, tokenizer: HerdTokenizer, dataOptions: DataOptions, beta: number): Promise<TrainingRun> {
  const pairs = await loadPreferencePairs(files.data, tokenizer, dataOptions);
  const evalPairs = files.evalData ? await loadPreferencePairs(files.evalData, tokenizer, dataOptions) : null;
  return (model, options, onEvent) => trainObjective(new DpoObjective(beta), model, pairs, evalPairs, options, onEvent);
}

/** What PEFT records as the base: a Hub model's id (without revision or tag), else the folder's absolute path. */
function baseModelName(arg: string | undefined, modelDir: string): string {
  return arg !== undefined && isHubModelArgument(arg) ? parseHubName(arg).repo : path.resolve(modelDir);
}
