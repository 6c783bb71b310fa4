import { Args, Flags } from '@oclif/core';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { numberFlag } from '../cli/flags.js';
import { downloadProgress } from '../cli/download-progress.js';
import { InterruptWatch } from '../cli/interrupt.js';
import { SCHEMAS } from '../cli/json-output.js';
import { loadModelWithProgress } from '../cli/load.js';
import { rateProgress } from '../cli/rate-progress.js';
import { HerdUsageError } from '../errors.js';
import { openModels } from '../synth/open-models.js';
import { GENERATOR_SAMPLING, JUDGE_SAMPLING, OUTPUT_FORMATS, pipelineFromFlags, type OutputFormat, readPipelineFile, type PipelineConfig } from '../synth/pipeline-config.js';
import { runPipeline, type SynthResult } from '../synth/pipeline.js';
import { ASPECTS, type Aspect } from '../synth/ultrafeedback.js';

export default class Synth extends HerdCommand {
  static override summary = 'Synthetic preference data: generate answers with one or more models, rate them with an UltraFeedback judge, keep chosen/rejected pairs.';

  static override description = `Runs a pipeline described in a YAML file (docs/synth.md) or by flags: instructions from a jsonl/json/csv/parquet file or a Hub dataset split (exact duplicates dropped), text generation by each generator, UltraFeedback rating by a judge for one or more aspects (1-5 with a rationale; a reply that does not parse is kept raw with a null rating, never guessed), and preference pairs (chosen = highest rated, rejected = lowest or a random lower one; ties dropped).
Each model is a local folder / .gguf, or MODEL@URL for an OpenAI-compatible endpoint (vLLM, TGI, herd serve), whose requests run concurrently with retries.
Writes OUTPUT/synth.jsonl (distilabel's columns), OUTPUT/preferences.jsonl (TRL's prompt/chosen/rejected message lists, for herd finetune --method dpo) and OUTPUT/run-card.json (--format parquet or both: synth.parquet and preferences.parquet). Each finished row is kept as it completes: after Ctrl-C or a failure the same command resumes, and the files equal an uninterrupted run's.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> synth pipeline.yaml',
    '<%= config.bin %> synth --instructions prompts.jsonl --generator ~/models/Llama-3.2-1B-Instruct --generator ~/models/Llama-3.2-3B-Instruct --judge ~/models/Llama-3.1-8B-Instruct --output runs/prefs --limit 100',
    '<%= config.bin %> synth --instructions prompts.jsonl --generator meta-llama/Llama-3.1-70B-Instruct@http://gpu1:8000/v1 --generator meta-llama/Llama-3.1-405B-Instruct-FP8@http://gpu2:8000/v1 --judge meta-llama/Llama-3.1-405B-Instruct-FP8@http://gpu2:8000/v1 --output runs/prefs',
  ];

  static override args = {
    pipeline: Args.string({ description: 'Pipeline YAML file (docs/synth.md); without it the flags describe the pipeline.', ignoreStdin: true }),
  };

  static override flags = {
    instructions: Flags.string({ description: 'Instructions file (.jsonl, .json, .csv, .parquet).', exclusive: ['dataset'] }),
    dataset: Flags.string({ description: "Instructions from a Hub dataset (org/name): the split's data files, downloaded into the Hub cache (HF_HUB_OFFLINE: from the cache)." }),
    split: Flags.string({ description: 'The split of --dataset.', default: 'train' }),
    column: Flags.string({ description: 'The column holding the instruction.', default: 'instruction' }),
    generator: Flags.string({ description: 'A generator: a model folder / .gguf, or MODEL@URL for an endpoint (repeatable).', multiple: true, default: [] }),
    judge: Flags.string({ description: 'The UltraFeedback judge: a model folder / .gguf, or MODEL@URL. Without it only generations are written.' }),
    aspect: Flags.string({ description: 'UltraFeedback aspect the judge rates (repeatable: one judge prompt per aspect; pairs follow overall-rating if given, else the first).', options: [...ASPECTS], multiple: true, default: ['overall-rating'] }),
    system: Flags.string({ description: "The generators' system prompt." }),
    'num-generations': Flags.integer({ description: 'Answers per generator per instruction.', default: 1, min: 1 }),
    'max-new-tokens': Flags.integer({ char: 'n', description: 'Most tokens per answer.', default: GENERATOR_SAMPLING.maxNewTokens, min: 1 }),
    temperature: numberFlag({ description: `Generators' sampling temperature (default ${GENERATOR_SAMPLING.temperature}; the judge is greedy).`, min: 0 }),
    'top-p': numberFlag({ description: "Generators' nucleus sampling.", min: 0, max: 1 }),
    'judge-max-new-tokens': Flags.integer({ description: "Most tokens of the judge's reply.", default: JUDGE_SAMPLING.maxNewTokens, min: 1 }),
    rejected: Flags.string({ description: 'Which answer is rejected: the lowest rated, or a random one rated lower than the chosen.', options: ['lowest', 'random-lower'], default: 'lowest' }),
    output: Flags.string({ char: 'o', description: "Output folder (synth.jsonl, preferences.jsonl, run-card.json); with a YAML file it replaces the file's output.dir." }),
    format: Flags.string({ description: 'Output files: jsonl, parquet (synth.parquet, preferences.parquet with nested list columns) or both. Default: the YAML output.format, else jsonl.', options: [...OUTPUT_FORMATS] }),
    seed: Flags.integer({ description: 'Seed of every draw (sampling, random-lower): the same seed gives the same local outputs. Default: the YAML seed, else 0.' }),
    limit: Flags.integer({ description: 'Only the first N distinct instructions.', min: 1 }),
    retries: Flags.integer({ description: "Retries of an endpoint request answered 429 or 503 (doubling waits from 1 s, or the server's Retry-After).", default: 3, min: 0 }),
    'api-key': Flags.string({ description: 'API key sent to every endpoint as a Bearer token.', env: 'HERD_API_KEY' }),
    'max-concurrent-requests': Flags.integer({ description: 'Requests in flight per endpoint (default 4); for a local model, sequences batched together (default 1: one at a time).', min: 1 }),
    backend: Flags.string({ description: 'Compute backend for local models (as herd generate --backend).' }),
    threads: Flags.integer({ description: "Threads for herd's CPU kernels.", min: 1 }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Synth);
    const config = pipelineOf(args.pipeline, flags);
    const interrupt = new InterruptWatch();
    try {
      const models = await openModels(config, (modelPath) => loadModelWithProgress({ model: modelPath, backend: flags.backend, threads: flags.threads, json: flags.json }), flags['api-key']);
      const progress = rateProgress('synth', 'rows', !flags.json);
      let result: SynthResult;
      try {
        result = await runPipeline(config, models, { limit: flags.limit, shouldStop: () => interrupt.interrupted, onRow: (done, total) => progress.update(done, total), download: flags.json ? undefined : downloadProgress() });
      } finally {
        progress.stop();
        await models.close();
      }
      this.report(result, config, flags.json);
    } finally {
      interrupt.dispose();
    }
  }

  private report(result: SynthResult, config: PipelineConfig, json: boolean): void {
    const { counts, files } = result;
    if (json) return this.printJson(SCHEMAS.synth, { output_dir: config.outputDir, files, counts, seconds: result.seconds });
    this.log(`${counts.rows} rows (${counts.duplicates_dropped} duplicate instructions dropped, ${counts.rows_resumed} resumed), ${counts.generations} generations`);
    if (config.judge) this.log(`${counts.ratings} ratings, ${counts.missing_ratings} missing (unparseable judge replies, kept raw)`);
    if (config.pairs) this.log(`${counts.pairs} preference pairs; dropped: ${counts.dropped.tie} ties, ${counts.dropped['too-few-ratings']} with fewer than two ratings, ${counts.dropped.margin} below the margin`);
    this.log(`wrote ${[files.rows, files.preferences, files.rows_parquet, files.preferences_parquet, files.card].filter((file) => file !== null).join(', ')}`);
  }
}

interface SynthFlags {
  instructions?: string;
  dataset?: string;
  split: string;
  column: string;
  generator: string[];
  judge?: string;
  aspect: string[];
  system?: string;
  'num-generations': number;
  'max-new-tokens': number;
  temperature?: number;
  'top-p'?: number;
  'judge-max-new-tokens': number;
  rejected: string;
  output?: string;
  format?: string;
  seed?: number;
  retries: number;
  'max-concurrent-requests'?: number;
}

/** The YAML file, or the flags; the two are not mixed except for --output, --seed and --limit. */
function pipelineOf(pipelineFile: string | undefined, flags: SynthFlags): PipelineConfig {
  if (pipelineFile !== undefined) {
    const describing = [...(flags.generator.length > 0 ? ['generator'] : []), ...(['instructions', 'dataset', 'judge', 'system'] as const).filter((name) => flags[name] !== undefined)];
    if (describing.length > 0) throw new HerdUsageError(`${pipelineFile} describes the pipeline: drop --${describing.join(', --')} (only --output, --format, --seed, --limit, --api-key and the backend flags go with a file)`);
    const config = readPipelineFile(pipelineFile, flags.output);
    return { ...config, seed: flags.seed ?? config.seed, outputFormat: (flags.format as OutputFormat | undefined) ?? config.outputFormat };
  }
  if (flags.instructions === undefined && flags.dataset === undefined) throw new HerdUsageError('give a pipeline YAML file, or --instructions FILE (or --dataset ORG/NAME) with at least one --generator');
  if (flags.generator.length === 0) throw new HerdUsageError(`--${flags.instructions === undefined ? 'dataset' : 'instructions'} needs at least one --generator (a model folder, .gguf or MODEL@URL)`);
  if (flags.output === undefined) throw new HerdUsageError('--output DIR is needed: the folder the results and the resumable progress go to');
  return pipelineFromFlags({
    instructions: flags.instructions ?? { dataset: flags.dataset!, split: flags.split },
    column: flags.column,
    generators: flags.generator,
    judge: flags.judge,
    aspects: flags.aspect as Aspect[],
    system: flags.system,
    numGenerations: flags['num-generations'],
    generatorSampling: { ...GENERATOR_SAMPLING, maxNewTokens: flags['max-new-tokens'], temperature: flags.temperature ?? GENERATOR_SAMPLING.temperature, topP: flags['top-p'] ?? GENERATOR_SAMPLING.topP },
    judgeMaxNewTokens: flags['judge-max-new-tokens'],
    rejected: flags.rejected as 'lowest' | 'random-lower',
    outputDir: flags.output,
    outputFormat: (flags.format as OutputFormat | undefined) ?? 'jsonl',
    seed: flags.seed ?? 0,
    retries: flags.retries,
    maxConcurrentRequests: flags['max-concurrent-requests'],
  });
}
