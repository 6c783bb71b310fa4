import { Flags } from '@oclif/core';
import { EXIT_STATUS_HELP, HerdCommand } from '../../cli/base-command.js';
import { SCHEMAS } from '../../cli/json-output.js';
import { HUB_ID_FORMS } from '../../cli/flags.js';
import { resolveModelArgument } from '../../cli/model-argument.js';
import { progressBar } from '../../cli/progress.js';
import { DEFAULT_MODEL_DIR } from '../../engine/load.js';
import { mergeAdapter } from '../../train/merge.js';

export default class FinetuneMerge extends HerdCommand {
  static override summary = 'Merge a LoRA adapter into its base model and write a full model folder.';

  static override description = `Writes --output-dir as a Hugging Face model folder: each adapted weight becomes W + (alpha / r) · B · A in the weight's own dtype, every other tensor and file is copied unchanged (same shards, same index). The result loads anywhere a model does, with no adapter.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> finetune merge --model ~/models/Llama-3.1-8B-Instruct --adapter out --output-dir merged',
    '<%= config.bin %> generate --model merged "Hello"',
  ];

  static override flags = {
    model: Flags.string({ char: 'm', description: `Base model: a folder, or a Hugging Face id ${HUB_ID_FORMS}. Default: the embedded stories260K.` }),
    adapter: Flags.string({ description: 'PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors).', required: true }),
    'output-dir': Flags.string({ char: 'o', description: 'Folder for the merged model (must differ from --model).', required: true }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(FinetuneMerge);
    const modelDir = (await resolveModelArgument(flags.model, { json: flags.json })) ?? DEFAULT_MODEL_DIR;
    const progress = progressBar('Merging', !flags.json);
    const result = (() => {
      try {
        return mergeAdapter(modelDir, flags.adapter, flags['output-dir'], (done, total) => progress.update(done, total));
      } finally {
        progress.stop();
      }
    })();
    if (flags.json) this.printJson(SCHEMAS.finetuneMerge, { model: modelDir, adapter: flags.adapter, output_dir: flags['output-dir'], merged_tensors: result.mergedTensors, files: result.files });
    else this.log(`merged ${result.mergedTensors} weights into ${flags['output-dir']} (${result.files.join(', ')})`);
  }
}
