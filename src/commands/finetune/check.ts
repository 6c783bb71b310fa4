import { Flags } from '@oclif/core';
import chalk from 'chalk';
import { EXIT_STATUS_HELP, HerdCommand } from '../../cli/base-command.js';
import { SCHEMAS } from '../../cli/json-output.js';
import { resolveModelArgument } from '../../cli/model-argument.js';
import { DEFAULT_MODEL_DIR } from '../../engine/load.js';
import { HerdTokenizer } from '../../engine/tokenizer.js';
import { loadExamples, summarize } from '../../train/data.js';
import { dataFlags, renderMasked } from '../../train/cli.js';

export default class FinetuneCheck extends HerdCommand {
  static override summary = 'Validate fine-tuning data and show one example as the model will see it.';

  static override description = `Reads every row of a .jsonl or .parquet file in the TRL / mlx-lm layouts ({"messages": [...]}, {"prompt", "completion"} or {"text"}), renders chat rows through the model's chat template and tokenizes them, stopping at the first bad row with its row number.
Prints the counts and one rendered example; the tokens that carry no loss (prompt, system and user turns) are shown in [brackets] (and dimmed on a terminal).
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> finetune check --data train.jsonl --model ~/models/Llama-3.1-8B-Instruct',
    '<%= config.bin %> finetune check --data train.jsonl --model ~/models/Llama-3.1-8B-Instruct --row 3 --json',
  ];

  static override flags = {
    model: Flags.string({ char: 'm', description: `Model whose tokenizer and chat template render the data: a folder, or a Hugging Face id org/name[@revision] (only its tokenizer and configs are downloaded). Default: the embedded stories260K.` }),
    ...dataFlags,
    row: Flags.integer({ description: 'Which row to show (1-based).', default: 1, min: 1 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(FinetuneCheck);
    const tokenizer = HerdTokenizer.fromDir((await resolveModelArgument(flags.model, { json: flags.json, part: 'tokenizer' })) ?? DEFAULT_MODEL_DIR);
    const examples = await loadExamples(flags.data, tokenizer, { maxSeqLength: flags['max-seq-length'], trainOnPrompt: flags['train-on-prompt'] });
    const summary = summarize(examples);
    const example = examples[Math.min(flags.row, examples.length) - 1]!;
    if (flags.json) {
      const tokens = [...example.ids].map((id, i) => ({ id, token: tokenizer.idToToken(id) ?? null, trained: example.trained[i] === 1 }));
      this.printJson(SCHEMAS.finetuneCheck, { data: flags.data, ...snakeCase(summary), example: { row: example.row, truncated: example.truncated, tokens } });
      return;
    }
    this.log(`${summary.rows} rows · ${summary.tokens} tokens · ${summary.trainedTokens} trained · longest ${summary.longest} · ${summary.truncatedRows} truncated to ${flags['max-seq-length']}`);
    this.log(`row ${example.row} (${example.ids.length} tokens; [masked] tokens carry no loss):`);
    this.log(renderMasked(example, tokenizer, Boolean(process.stdout.isTTY) && chalk.level > 0));
  }
}

function snakeCase(summary: ReturnType<typeof summarize>) {
  return { rows: summary.rows, tokens: summary.tokens, trained_tokens: summary.trainedTokens, truncated_rows: summary.truncatedRows, longest: summary.longest };
}
