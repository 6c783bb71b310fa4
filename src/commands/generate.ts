import { Args, Flags } from '@oclif/core';
import chalk from 'chalk';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { jsonLine, SCHEMAS } from '../cli/json-output.js';
import { parseDate } from '../cli/date.js';
import { connectEndpoint, endpointFlags, endpointJson, type EndpointFlags } from '../cli/endpoint.js';
import { modelFlags } from '../cli/flags.js';
import { loadModelWithProgress } from '../cli/load.js';
import { samplingFlags, samplingOptions, type SamplingFlags } from '../cli/sampling.js';
import { describeTimings, measureTimings, type Timings } from '../cli/timings.js';
import { InterruptWatch } from '../cli/interrupt.js';
import { checkPromptIds, checkPromptText, readPromptIds, readPromptText } from '../cli/prompt-input.js';
import { EXIT_INTERRUPTED, HerdError, HerdUsageError } from '../errors.js';
import { generateAsync, type GeneratedToken, type GenerateResult } from '../engine/generate.js';
import { promptIds } from '../engine/prompt.js';
import type { SamplingOptions } from '../engine/sampling.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';
import { generateRemotely } from '../remote/sources.js';

export default class Generate extends HerdCommand {
  static override summary = 'Generate text from a prompt, streamed token by token.';

  static override description = `Loads a Hugging Face Llama model folder (default: the embedded stories260K) and continues the prompt.
When the model has a chat template, the prompt is sent as one user message (with --system as the system message); --raw feeds the text as is.
Sampling defaults come from the model's generation_config.json (greedy when it does not ask for sampling). Generation stops at any of its eos ids, at a --stop string, or after --max-new-tokens.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> generate "Once upon a time"',
    'echo "Once upon a time" | <%= config.bin %> generate --temperature 0.8 --seed 1',
    '<%= config.bin %> generate --model ~/models/Llama-3.1-8B-Instruct --system "Answer briefly." "Why is the sky blue?"',
    '<%= config.bin %> generate --raw --max-new-tokens 20 --json --logprobs 5 "The capital of France is"',
    '<%= config.bin %> generate -m ~/models/Llama-3.1-8B-Instruct --raw --prompt-file rendered-chat.txt --stream-json',
    'echo "[128000, 791, 6864]" | <%= config.bin %> generate -m ~/models/Llama-3.1-8B --prompt-ids - --json',
    '<%= config.bin %> generate --endpoint http://gpu-box:8000 --template-from ~/models/Llama-3.1-70B-Instruct "Why is the sky blue?"',
  ];

  static override args = {
    // ignoreStdin: oclif would otherwise read stdin into a missing argument itself, trimming it
    // (a prompt ending in "\n\n" lost its newlines); readPromptText applies herd's own rule.
    prompt: Args.string({ description: 'The prompt; read from stdin when omitted (one final newline dropped).', ignoreStdin: true }),
  };

  static override flags = {
    ...modelFlags,
    ...endpointFlags,
    'prompt-file': Flags.string({ description: 'Read the prompt from this file, byte for byte (nothing dropped).' }),
    'prompt-ids': Flags.string({ description: 'Feed these token ids exactly (a JSON array, from a file or - for stdin): no tokenizer, no chat template, no BOS added.' }),
    system: Flags.string({ description: 'System message (needs a chat template).' }),
    raw: Flags.boolean({ description: 'Feed the prompt as is, without the chat template; an empty prompt then starts from BOS alone.', default: false }),
    'max-new-tokens': Flags.integer({ char: 'n', description: 'Most tokens to generate.', default: 256, min: 1 }),
    ...samplingFlags,
    stop: Flags.string({ description: 'Stop when the text contains this string (repeatable).', multiple: true, default: [] }),
    logprobs: Flags.integer({ description: 'With --json or --stream-json: for each generated token, its logprob and the top N of the distribution.', min: 0, default: 0 }),
    'stream-json': Flags.boolean({ description: 'Print NDJSON on stdout: one {"id", "text"} object per token, then one with finish_reason, usage and timings.', default: false }),
    date: Flags.string({ description: 'Date passed to the chat template as date_string (YYYY-MM-DD). Default: today.' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Generate);
    const interrupt = new InterruptWatch();
    try {
      const output = outputMode(flags);
      const input = await readInput(args.prompt, flags);
      if (flags.endpoint !== undefined) return await this.runOnEndpoint({ ...flags, endpoint: flags.endpoint }, input, output, () => interrupt.interrupted);
      const loaded = await loadModelWithProgress(flags);
      const ids = input.ids ?? promptIds(loaded.tokenizer, { text: input.text, raw: flags.raw, system: flags.system, date: parseDate(flags.date) });
      if (input.ids) checkPromptIds(ids, loaded.config.vocabSize);
      else if (ids.length === 0) throw new HerdError('the prompt is empty and this tokenizer adds no BOS: there is nothing to feed the model');
      const sampling = samplingOptions(loaded, flags);
      const tokenLines = output === 'stream-json' ? new TokenLines(flags.logprobs > 0) : null;
      const started = performance.now();
      let firstTokenNoted = false;
      const result = await generateAsync(loaded.model, loaded.tokenizer, {
        promptIds: ids,
        maxNewTokens: flags['max-new-tokens'],
        sampling,
        stopTokenIds: loaded.generation.eosTokenIds,
        stopStrings: flags.stop,
        topLogprobs: flags.logprobs,
        onText: output === 'text' ? (delta) => process.stdout.write(delta) : tokenLines ? (delta) => tokenLines.text(delta) : undefined,
        onToken: (token) => {
          if (flags.verbose && !firstTokenNoted) process.stderr.write(chalk.dim(`first token after ${Math.round(performance.now() - started)} ms (Ctrl-C stops and prints what is generated)`) + '\n');
          firstTokenNoted = true;
          tokenLines?.token(token);
        },
        shouldStop: () => interrupt.interrupted,
      });
      const finishReason = interrupt.interrupted && result.finishReason === 'abort' ? 'interrupted' : result.finishReason;
      const report = measureTimings(loaded, ids.length, result);
      if (output === 'text') process.stdout.write('\n');
      else if (tokenLines) {
        tokenLines.end();
        this.printJson(SCHEMAS.generateStream, { type: 'end', finish_reason: finishReason, stopped_by: result.stoppedBy, usage: { prompt_tokens: ids.length, generated_tokens: result.generatedIds.length }, timings: report });
      } else this.printJson(SCHEMAS.generate, jsonReport({ name: loaded.dir, backend: loaded.model.backendName, tokenizer: loaded.tokenizer }, input.ids ? null : input.text, ids, sampling, { ...result, finishReason }, report, flags.logprobs));
      if (flags.verbose) process.stderr.write(chalk.dim(describeTimings(report, loaded.model.backendName)) + '\n');
      if (finishReason === 'interrupted') process.exitCode = EXIT_INTERRUPTED;
    } finally {
      interrupt.dispose();
    }
  }

  /**
   * --endpoint: the same prompt ids (built with --template-from's tokenizer and template), continued
   * by the server's /v1/completions and streamed; --json as locally, plus an "endpoint" field.
   */
  private async runOnEndpoint(flags: RemoteGenerateFlags, input: { text: string; ids?: number[] }, output: OutputMode, shouldStop: () => boolean): Promise<void> {
    if (flags['template-from'] === undefined) throw new HerdUsageError("--endpoint: herd generate needs --template-from, a folder with the served model's tokenizer files, to build the prompt ids as a local run does");
    if (output === 'stream-json' || flags.logprobs > 0) throw new HerdUsageError('--stream-json and --logprobs are not available with --endpoint yet: use --json');
    const target = await connectEndpoint(flags);
    if (!target.capabilities.completions || !target.capabilities.tokenIdPrompts) {
      throw new HerdError(`${target.capabilities.endpoint} has no /v1/completions that takes token ids, which herd generate --endpoint needs (herd chat --endpoint without --template-from uses its chat route)`);
    }
    const { tokenizer, generation } = target.template!;
    const ids = input.ids ?? promptIds(tokenizer, { text: input.text, raw: flags.raw, system: flags.system, date: parseDate(flags.date) });
    if (ids.length === 0) throw new HerdError('the prompt is empty and this tokenizer adds no BOS: there is nothing to send');
    const sampling = samplingOptions({ generation }, flags);
    const result = await generateRemotely(target.client, target.capabilities.model, tokenizer, sampling, {
      promptIds: ids,
      maxNewTokens: flags['max-new-tokens'],
      stopTokenIds: generation.eosTokenIds,
      stopStrings: flags.stop,
      onText: output === 'text' ? (delta) => process.stdout.write(delta) : () => undefined,
      onToken: () => undefined,
      shouldStop,
    });
    const finishReason = shouldStop() && result.finishReason === 'abort' ? 'interrupted' : result.finishReason;
    const report = measureTimings({ loadMs: 0 }, ids.length, result);
    if (output === 'text') process.stdout.write('\n');
    else {
      const source = { name: target.capabilities.model, backend: 'endpoint', tokenizer };
      this.printJson(SCHEMAS.generate, { ...jsonReport(source, input.ids ? null : input.text, ids, sampling, { ...result, tokens: [], finishReason }, report, 0), endpoint: endpointJson(target.capabilities) });
    }
    if (flags.verbose) process.stderr.write(chalk.dim(describeTimings(report, `endpoint ${target.capabilities.endpoint}`)) + '\n');
    if (finishReason === 'interrupted') process.exitCode = EXIT_INTERRUPTED;
  }
}

type OutputMode = 'text' | 'json' | 'stream-json';

type RemoteGenerateFlags = EndpointFlags & SamplingFlags & { endpoint: string; raw: boolean; system?: string; date?: string; 'max-new-tokens': number; stop: string[]; logprobs: number; verbose: boolean };

function outputMode(flags: { json: boolean; 'stream-json': boolean }): OutputMode {
  if (flags.json && flags['stream-json']) throw new HerdUsageError('--json and --stream-json print different things: choose one');
  return flags['stream-json'] ? 'stream-json' : flags.json ? 'json' : 'text';
}

/** The prompt as text (argument, --prompt-file or stdin, see prompt-input.ts) or as ids (--prompt-ids). */
// Conflicts are checked here rather than with oclif's `exclusive`, whose failure adds a warning
// to stderr (the command "did not parse its arguments") after the error line.
async function readInput(argument: string | undefined, flags: { 'prompt-file'?: string; 'prompt-ids'?: string; system?: string; raw: boolean }): Promise<{ text: string; ids?: number[] }> {
  if (flags['prompt-ids'] !== undefined) {
    if (argument !== undefined) throw new HerdUsageError('give the prompt as an argument or with --prompt-ids, not both');
    if (flags['prompt-file'] !== undefined) throw new HerdUsageError('give the prompt with --prompt-file or with --prompt-ids, not both');
    if (flags.system !== undefined) throw new HerdUsageError('--system needs a text prompt; --prompt-ids feeds ids without the chat template');
    return { text: '', ids: await readPromptIds(flags['prompt-ids']) };
  }
  const text = await readPromptText({ argument, promptFile: flags['prompt-file'] });
  checkPromptText(text, flags.raw);
  return { text };
}

/**
 * --stream-json's token lines. A token's line is written when the next token arrives (or at the
 * end), so that the text its bytes complete (which the engine releases after choosing it) is on
 * its line: the lines' texts join to exactly the generated text.
 */
class TokenLines {
  private pending: { id: number; text: string; logprob?: number } | null = null;

  constructor(private readonly withLogprobs: boolean) {}

  token(token: GeneratedToken): void {
    this.end();
    this.pending = { id: token.id, text: '', ...(this.withLogprobs && { logprob: token.logprob }) };
  }

  text(delta: string): void {
    if (this.pending) this.pending.text += delta;
  }

  end(): void {
    if (this.pending) process.stdout.write(`${jsonLine(SCHEMAS.generateStream, { type: 'token', ...this.pending })}\n`);
    this.pending = null;
  }
}

/** What generated: a local model (its folder and backend) or a server (its model name, backend "endpoint"). */
interface GenerationSource {
  name: string;
  backend: string;
  tokenizer: HerdTokenizer;
}

function jsonReport(source: GenerationSource, prompt: string | null, ids: number[], sampling: SamplingOptions, result: Pick<GenerateResult, 'generatedIds' | 'text' | 'stoppedBy' | 'tokens'> & { finishReason: string }, report: Timings, topN: number) {
  const token = (id: number) => source.tokenizer.idToToken(id) ?? null;
  return {
    model: source.name,
    backend: source.backend,
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
