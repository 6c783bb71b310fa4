import { Args, Flags } from '@oclif/core';
import chalk from 'chalk';
import { HerdCommand } from '../cli/base-command.js';
import { SCHEMAS } from '../cli/json-output.js';
import { parseDate } from '../cli/date.js';
import { modelFlags } from '../cli/flags.js';
import { loadModelWithProgress } from '../cli/load.js';
import { samplingFlags, samplingOptions } from '../cli/sampling.js';
import { describeTimings, measureTimings, type Timings } from '../cli/timings.js';
import { HerdError } from '../errors.js';
import { generate, type GenerateResult } from '../engine/generate.js';
import type { LoadedModel } from '../engine/load.js';
import { promptIds } from '../engine/prompt.js';
import type { SamplingOptions } from '../engine/sampling.js';

export default class Generate extends HerdCommand {
  static override summary = 'Generate text from a prompt, streamed token by token.';

  static override description = `Loads a Hugging Face Llama model folder (default: the embedded stories260K) and continues the prompt.
When the model has a chat template, the prompt is sent as one user message (with --system as the system message); --raw feeds the text as is.
Sampling defaults come from the model's generation_config.json (greedy when it does not ask for sampling). Generation stops at any of its eos ids, at a --stop string, or after --max-new-tokens.`;

  static override examples = [
    '<%= config.bin %> generate "Once upon a time"',
    'echo "Once upon a time" | <%= config.bin %> generate --temperature 0.8 --seed 1',
    '<%= config.bin %> generate --model ~/models/Llama-3.1-8B-Instruct --system "Answer briefly." "Why is the sky blue?"',
    '<%= config.bin %> generate --raw --max-new-tokens 20 --json --logprobs 5 "The capital of France is"',
  ];

  static override args = {
    prompt: Args.string({ description: 'The prompt; read from stdin when omitted.' }),
  };

  static override flags = {
    ...modelFlags,
    system: Flags.string({ description: 'System message (needs a chat template).' }),
    raw: Flags.boolean({ description: 'Feed the prompt as is, without the chat template.', default: false }),
    'max-new-tokens': Flags.integer({ char: 'n', description: 'Most tokens to generate.', default: 256, min: 1 }),
    ...samplingFlags,
    stop: Flags.string({ description: 'Stop when the text contains this string (repeatable).', multiple: true, default: [] }),
    logprobs: Flags.integer({ description: 'With --json: for each generated token, its logprob and the top N of the distribution.', min: 0, default: 0 }),
    date: Flags.string({ description: 'Date passed to the chat template as date_string (YYYY-MM-DD). Default: today.' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Generate);
    const text = args.prompt ?? (await readStdin());
    const loaded = await loadModelWithProgress(flags);
    const ids = promptIds(loaded.tokenizer, { text, raw: flags.raw, system: flags.system, date: parseDate(flags.date) });
    const sampling = samplingOptions(loaded, flags);
    const streaming = !flags.json;
    const result = generate(loaded.model, loaded.tokenizer, {
      promptIds: ids,
      maxNewTokens: flags['max-new-tokens'],
      sampling,
      stopTokenIds: loaded.generation.eosTokenIds,
      stopStrings: flags.stop,
      topLogprobs: flags.logprobs,
      onText: streaming ? (delta) => process.stdout.write(delta) : undefined,
    });
    const report = measureTimings(loaded, ids.length, result);
    if (streaming) process.stdout.write('\n');
    else this.printJson(SCHEMAS.generate, jsonReport(loaded, text, ids, sampling, result, report, flags.logprobs));
    if (flags.verbose) process.stderr.write(chalk.dim(describeTimings(report, loaded.model.backendName)) + '\n');
  }
}

function jsonReport(loaded: LoadedModel, prompt: string, ids: number[], sampling: SamplingOptions, result: GenerateResult, report: Timings, topN: number) {
  const token = (id: number) => loaded.tokenizer.idToToken(id) ?? null;
  return {
    model: loaded.dir,
    backend: loaded.model.backendName,
    prompt,
    prompt_ids: ids,
    generated_ids: result.generatedIds,
    text: result.text,
    finish_reason: result.finishReason,
    stopped_by: result.stoppedBy,
    sampling: { temperature: sampling.temperature, top_p: sampling.topP, top_k: sampling.topK, min_p: sampling.minP, repetition_penalty: sampling.repetitionPenalty, seed: sampling.seed },
    timings: report,
    ...(topN > 0 && {
      logprobs: result.tokens.map((t) => ({
        id: t.id,
        token: token(t.id),
        logprob: t.logprob,
        top_logprobs: t.top.map(([id, logprob]) => ({ id, token: token(id), logprob })),
      })),
    }),
  };
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new HerdError('give a prompt as an argument or on stdin');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8').replace(/\n$/, '');
  if (text.length === 0) throw new HerdError('the prompt on stdin is empty');
  return text;
}
