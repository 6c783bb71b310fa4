import { Flags } from '@oclif/core';
import chalk from 'chalk';
import { EXIT_STATUS_HELP, HerdCommand } from '../../cli/base-command.js';
import { SCHEMAS } from '../../cli/json-output.js';
import { resolveModelArgument } from '../../cli/model-argument.js';
import { DEFAULT_MODEL_DIR } from '../../engine/load.js';
import { HerdTokenizer } from '../../engine/tokenizer.js';
import { HerdUsageError } from '../../errors.js';
import { loadExamples, summarize, type TrainingExample } from '../../train/data.js';
import { dataFlags, methodFlags, renderMasked, type TrainingMethod } from '../../train/cli.js';
import { loadPreferencePairs } from '../../train/preference-data.js';

export default class FinetuneCheck extends HerdCommand {
  static override summary = 'Validate fine-tuning data and show one example as the model will see it.';

  static override description = `Reads every row of a .jsonl or .parquet file in the TRL / mlx-lm layouts ({"messages": [...]}, {"prompt", "completion"} or {"text"}), renders chat rows through the model's chat template and tokenizes them, stopping at the first bad row with its row number.
Prints the counts and one rendered example; the tokens that carry no loss (prompt, system and user turns) are shown in [brackets] (and dimmed on a terminal).
With --method dpo it reads preference rows ({"prompt","chosen","rejected"} or {"chosen","rejected"}) and shows both sides of the pair.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> finetune check --data train.jsonl --model ~/models/Llama-3.1-8B-Instruct',
    '<%= config.bin %> finetune check --data train.jsonl --model ~/models/Llama-3.1-8B-Instruct --row 3 --json',
    '<%= config.bin %> finetune check --method dpo --data preferences.jsonl --model ~/models/Llama-3.1-8B-Instruct',
  ];

  static override flags = {
    model: Flags.string({ char: 'm', description: `Model whose tokenizer and chat template render the data: a folder, or a Hugging Face id org/name[@revision] (only its tokenizer and configs are downloaded). Default: the embedded stories260K.` }),
    method: methodFlags.method,
    ...dataFlags,
    row: Flags.integer({ description: 'Which row to show (1-based).', default: 1, min: 1 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(FinetuneCheck);
    const tokenizer = HerdTokenizer.fromDir((await resolveModelArgument(flags.model, { json: flags.json, part: 'tokenizer' })) ?? DEFAULT_MODEL_DIR);
    const maxSeqLength = flags['max-seq-length'];
    const method = flags.method as TrainingMethod;
    if (method === 'dpo' && flags['train-on-prompt']) throw new HerdUsageError('--train-on-prompt is for --method sft; DPO scores the completions only');
    const rows = method === 'dpo'
      ? (await loadPreferencePairs(flags.data, tokenizer, { maxSeqLength })).map((pair) => [pair.chosen, pair.rejected])
      : (await loadExamples(flags.data, tokenizer, { maxSeqLength, trainOnPrompt: flags['train-on-prompt'] })).map((example) => [example]);
    // A preference row is two examples, its chosen and its rejected side: the counts cover both.
    const summary = { ...summarize(rows.flat()), rows: rows.length, truncatedRows: rows.filter((sides) => sides.some((side) => side.truncated)).length };
    const [example, rejected] = rows[Math.min(flags.row, rows.length) - 1]! as [TrainingExample, TrainingExample?];
    if (flags.json) {
      const exampleJson = (side: TrainingExample) => ({
        row: side.row,
        truncated: side.truncated,
        tokens: [...side.ids].map((id, i) => ({ id, token: tokenizer.idToToken(id) ?? null, trained: side.trained[i] === 1 })),
      });
      this.printJson(SCHEMAS.finetuneCheck, { data: flags.data, ...snakeCase(summary), example: exampleJson(example), ...(rejected ? { rejected_example: exampleJson(rejected) } : {}) });
      return;
    }
    const colour = Boolean(process.stdout.isTTY) && chalk.level > 0;
    this.log(`${summary.rows} rows · ${summary.tokens} tokens · ${summary.trainedTokens} trained · longest ${summary.longest} · ${summary.truncatedRows} truncated to ${maxSeqLength}`);
    this.log(`row ${example.row}${rejected ? ' chosen' : ''} (${example.ids.length} tokens; [masked] tokens carry no loss):`);
    this.log(renderMasked(example, tokenizer, colour));
    if (rejected) {
      this.log(`row ${rejected.row} rejected (${rejected.ids.length} tokens):`);
      this.log(renderMasked(rejected, tokenizer, colour));
    }
  }
}

function snakeCase(summary: ReturnType<typeof summarize>) {
  return { rows: summary.rows, tokens: summary.tokens, trained_tokens: summary.trainedTokens, truncated_rows: summary.truncatedRows, longest: summary.longest };
}
