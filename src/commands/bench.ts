import os from 'node:os';
import { Flags } from '@oclif/core';
import chalk from 'chalk';
import { compareEngines, ENGINES, type EngineName } from '../bench/compare.js';
import { deriveRows, describeComparison } from '../bench/compare-table.js';
import { benchPromptIds } from '../bench/prompt-ids.js';
import { measureReadBandwidth, type ReadBandwidth } from '../bench/read-bandwidth.js';
import { describeLoad, runLoad } from '../bench/serve-load.js';
import { mixFormat, SYNTHETIC_MIXES, writeSyntheticGguf } from '../bench/synthetic-gguf.js';
import { describeStreams, measurePrefixCache, measureStreams, parsePositiveIntegers } from '../bench/streams.js';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { SCHEMAS } from '../cli/json-output.js';
import { modelFlags } from '../cli/flags.js';
import { loadModelWithProgress } from '../cli/load.js';
import { resolveModelArgument } from '../cli/model-argument.js';
import { progressBar } from '../cli/progress.js';
import { round } from '../cli/timings.js';
import { HerdError, HerdUsageError } from '../errors.js';
import { activateBackend } from '../backends/registry.js';
import { isGgufFile, storedTensors } from '../engine/load.js';
import { LlamaForCausalLM } from '../engine/model.js';
import type { PackedFormat } from '../formats/weights.js';
import { argmax } from '../engine/sampling.js';
import { SyntheticWeights, type SyntheticFormat } from '../engine/synthetic.js';
import type { KvCacheType } from '../engine/ops.js';
import { PRESET_NAMES, presetConfig } from '../spec/presets.js';

const FORMATS: Record<string, PackedFormat> = {
  f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0', q4_0: 'Q4_0', q4_k: 'Q4_K', q6_k: 'Q6_K', q5_k: 'Q5_K', q3_k: 'Q3_K', q2_k: 'Q2_K', iq4_xs: 'IQ4_XS',
};

type AnyModel = LlamaForCausalLM<unknown, unknown>;

/** What each --serve request asks the server to continue. */
const SERVE_PROMPT = 'Once upon a time, in a village by the sea,';

export default class Bench extends HerdCommand {
  static override summary = 'Measure load time, prefill and decode speed, memory, and the share of read bandwidth decoding uses.';

  static override description = `Runs the model on a prompt of --prompt-tokens token ids, then decodes --gen-tokens tokens greedily (no sampling, no stop), and prints load time, prefill and decode tokens/s, the bytes of weights each decoded token reads, and peak RSS.
--synthetic PRESET builds a model of a published shape with random weights in --format (nothing to download; random weights are fine for speed).
--bandwidth also measures the machine's read bandwidth on --threads threads (the native addon's probe when it loads, else the WASM kernels') and reports the fraction decoding reached.
--compare llama.cpp runs herd-native, herd-wasm and llama.cpp on the same GGUF --model, each in a child process of its own (so each peak RSS is its own), on every --prompt-tokens length, and prints a row per engine with the ratios to llama.cpp; --competing-load N measures decode again beside N busy processes.
It is a benchmark that prints figures; no test checks its times.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> bench',
    '<%= config.bin %> bench --synthetic llama-3.2-1b --format q8_0 --bandwidth',
    '<%= config.bin %> bench --model ~/models/Llama-3.2-1B --prompt-tokens 512 --gen-tokens 128 --json',
    '<%= config.bin %> bench --model l1b-q8_0.gguf --compare llama.cpp --threads 2 --bandwidth --prompt-tokens 128,1000 --competing-load 1',
    '<%= config.bin %> bench --serve http://127.0.0.1:8080 --concurrency 8 --requests 64 --gen-tokens 128',
  ];

  static override flags = {
    ...modelFlags,
    synthetic: Flags.string({ description: `Random weights of a published shape instead of --model: ${PRESET_NAMES.join(', ')}.`, exclusive: ['model'] }),
    format: Flags.string({ description: 'Stored format of --synthetic weights (q4_k_m: llama.cpp\'s mix, Q4_K with Q6_K for the output and some attn_v and ffn_down).', options: [...Object.keys(FORMATS), ...Object.keys(SYNTHETIC_MIXES)], default: 'q8_0' }),
    'prompt-tokens': Flags.string({ char: 'p', description: 'Prompt length in tokens; with --compare, several separated by commas (128,1000), each measured.', default: '128' }),
    'gen-tokens': Flags.integer({ char: 'g', description: 'Tokens to decode.', default: 64, min: 2 }),
    bandwidth: Flags.boolean({ description: "Measure the machine's read bandwidth and report the fraction decoding reached.", default: false }),
    'write-gguf': Flags.string({ description: 'With --synthetic: also write the model as this GGUF file (for --compare runs on the same file).', dependsOn: ['synthetic', 'tokenizer'] }),
    tokenizer: Flags.string({ description: 'With --write-gguf: the Hugging Face folder whose tokenizer goes into the GGUF (it must fit the preset\'s vocabulary).' }),
    streams: Flags.string({ description: 'Also measure aggregate decode tokens/s of this many concurrent streams through the serving scheduler (continuous batching), e.g. 1,2,4,8; each decodes --gen-tokens.' }),
    'prefix-cache-tokens': Flags.integer({ description: 'Also measure time to first token on a prompt of this many tokens, cold and then from the prefix cache (a repeated system prompt).', min: 2 }),
    serve: Flags.string({ description: 'Instead of a model: a load run against the OpenAI-compatible server at this URL on this machine (http://127.0.0.1:PORT), --requests streamed completions of --gen-tokens tokens, --concurrency at a time.', exclusive: ['model', 'synthetic', 'compare'] }),
    concurrency: Flags.integer({ description: 'With --serve: requests in flight at once.', default: 4, min: 1 }),
    requests: Flags.integer({ description: 'With --serve: requests in all.', default: 32, min: 1 }),
    'api-key': Flags.string({ description: 'With --serve: the server\'s API key.', env: 'HERD_API_KEY' }),
    compare: Flags.string({
      description: 'Run herd-native, herd-wasm and llama.cpp (through node-llama-cpp, installed separately) on the same GGUF --model with the same threads, each in its own process, and print them side by side with the ratios.',
      options: ['llama.cpp'],
    }),
    engines: Flags.string({ description: `With --compare: the engines to run, separated by commas, each in its own process (${ENGINES.join(', ')}; default all).`, dependsOn: ['compare'] }),
    'competing-load': Flags.integer({ description: 'With --compare: measure decode again while this many CPU-bound busy-loop processes run (stopped afterwards), and report the fraction of idle speed each engine keeps.', min: 1, dependsOn: ['compare'] }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Bench);
    if (flags.serve) {
      const report = await runLoad({ url: flags.serve, concurrency: flags.concurrency, requests: flags.requests, maxTokens: flags['gen-tokens'], prompt: SERVE_PROMPT, apiKey: flags['api-key'] });
      if (flags.json) this.printJson(SCHEMAS.benchServe, report);
      else this.log(describeLoad(report));
      return;
    }
    const promptLengths = parsePositiveIntegers(flags['prompt-tokens']);
    if (promptLengths === null) throw new HerdUsageError(`--prompt-tokens takes token counts separated by commas, such as 128,1000; got "${flags['prompt-tokens']}"`);
    const modelPath = flags.synthetic ? undefined : await resolveModelArgument(flags.model, { json: flags.json });
    if (flags.compare) {
      if (!(modelPath && isGgufFile(modelPath))) throw new HerdError('--compare llama.cpp needs --model FILE.gguf (or org/name:QUANT), the file every engine runs');
      await this.compare(modelPath, promptLengths, flags);
      return;
    }
    if (promptLengths.length > 1) throw new HerdUsageError('several --prompt-tokens lengths need --compare; without it, give one');
    const started = performance.now();
    const { model, label, format } = flags.synthetic ? await syntheticModel(flags.synthetic, flags.format, flags) : { ...(await folderModel({ ...flags, model: modelPath })), format: null };
    if (flags.synthetic && flags['write-gguf']) {
      writeSyntheticGguf(flags['write-gguf'], model.config, new SyntheticWeights(model.config, format!), flags.tokenizer!, label, SYNTHETIC_MIXES[flags.format as keyof typeof SYNTHETIC_MIXES]);
    }
    const loadMs = performance.now() - started;
    const prompt = benchPromptIds(promptLengths[0]!, model.config.vocabSize);
    const figures = { model: label, backend: model.backendName, load_ms: Math.round(loadMs), ...measure(model, prompt, flags['gen-tokens']) };
    // Read before the bandwidth probe, whose buffers would count in the peak.
    const peakRss = process.resourceUsage().maxRSS * 1024;
    const bandwidth = flags.bandwidth ? await readBandwidth(flags.threads, figures.decode_bytes_per_second) : {};
    const report = { ...figures, peak_rss_bytes: peakRss, ...bandwidth, ...(await servingFigures(model, flags)) };
    if (flags.json) this.printJson(SCHEMAS.bench, report);
    else this.log([describe(report), ...describeStreams(report.streams, report.prefix_cache)].join('\n'));
  }

  /**
   * --compare: each engine on the same file and threads in a child process of its own (herd's CLI
   * with --backend, llama.cpp through a runner), so each peak RSS is that engine's alone.
   */
  private async compare(file: string, promptTokens: number[], flags: { engines?: string; threads?: number; 'gen-tokens': number; 'kv-cache-type': string; 'competing-load'?: number; bandwidth: boolean; json: boolean }): Promise<void> {
    const engines = flags.engines === undefined ? [...ENGINES] : parseEngines(flags.engines);
    const threads = flags.threads ?? os.availableParallelism();
    // Measured first, alone: it would compete with a child for the memory bus.
    const bandwidth = flags.bandwidth ? await measureReadBandwidth(threads) : undefined;
    const { rows, loaded } = await compareEngines({
      file, engines, promptTokens, genTokens: flags['gen-tokens'], threads, kvCacheType: flags['kv-cache-type'], competingLoad: flags['competing-load'] ?? 0,
      onRun: (run, busy) => {
        if (!flags.json) process.stderr.write(`running ${run.engine} on a ${run.promptTokens}-token prompt${busy ? ` beside ${flags['competing-load']} busy processes` : ''}…\n`);
      },
    });
    const compared = deriveRows(rows, bandwidth?.read_bytes_per_second);
    const report = {
      model: file, threads, gen_tokens: flags['gen-tokens'],
      ...bandwidth,
      rows: compared,
      ...(loaded ? { competing_load: { processes: flags['competing-load'], prompt_tokens: promptTokens[0]!, engines: loaded } } : {}),
    };
    if (flags.json) {
      this.printJson(SCHEMAS.benchCompare, report);
      return;
    }
    const readRate = bandwidth ? `; read bandwidth ${(bandwidth.read_bytes_per_second / 1e9).toFixed(1)} GB/s (${describeProbe(bandwidth)})` : '';
    this.log(describeComparison(`${file} on ${threads} thread${threads === 1 ? '' : 's'}, decoding ${flags['gen-tokens']} tokens${readRate}`, compared, loaded));
  }
}

/** --engines: names from ENGINES, separated by commas. */
function parseEngines(text: string): EngineName[] {
  const names = text.split(',').map((name) => name.trim()).filter((name) => name !== '');
  const unknown = names.filter((name) => !(ENGINES as readonly string[]).includes(name));
  if (names.length === 0 || unknown.length > 0) throw new HerdUsageError(`--engines takes ${ENGINES.join(', ')}, separated by commas; got "${text}"`);
  return names as EngineName[];
}

async function folderModel(flags: { model?: string; backend?: string; threads?: number; json: boolean }): Promise<{ model: AnyModel; label: string }> {
  // Token ids in and out: no tokenizer is built (Llama 3's would hold about 6 MiB beside the weights).
  const loaded = await loadModelWithProgress(flags, { tokenizer: false });
  return { model: loaded.model, label: loaded.dir };
}

async function syntheticModel(preset: string, formatName: string, flags: { backend?: string; threads?: number; 'kv-cache-type': string; json: boolean }): Promise<{ model: AnyModel; label: string; format: SyntheticFormat }> {
  const config = presetConfig(preset);
  const mix = SYNTHETIC_MIXES[formatName as keyof typeof SYNTHETIC_MIXES];
  const format = mix ? mixFormat(config, mix) : FORMATS[formatName]!;
  const weights = new SyntheticWeights(config, format);
  const storedFormats = storedTensors(weights, config).map((tensor) => tensor.format);
  const ops = await activateBackend({ backend: flags.backend, threads: flags.threads, kvCacheType: flags['kv-cache-type'] as KvCacheType, storedFormats });
  const progress = progressBar('Making weights', !flags.json);
  try {
    const model = LlamaForCausalLM.load(config, weights, ops, (done, total) => progress.update(done, total));
    return { model, label: `${preset} (random ${mix ?? format} weights)`, format };
  } finally {
    progress.stop();
  }
}

/** Prefill once, then greedy single-token decode steps from the KV cache. */
function measure(model: AnyModel, prompt: Int32Array, genTokens: number) {
  const promptTokens = prompt.length;
  const context = model.config.maxPositionEmbeddings;
  if (promptTokens + genTokens > context) throw new HerdError(`--prompt-tokens + --gen-tokens (${promptTokens + genTokens}) exceed the model's context of ${context}`);
  const cache = model.createCache(promptTokens + genTokens);
  try {
    // One logits array for every step, as a decode loop keeps it (ForwardOptions.into).
    const logits = new Float32Array(model.config.vocabSize);
    let started = performance.now();
    model.forward(prompt, cache, { into: logits });
    const prefillMs = performance.now() - started;
    started = performance.now();
    for (let step = 1; step < genTokens; step++) model.forward(Int32Array.of(argmax(logits)), cache, { into: logits });
    const decodeMs = performance.now() - started;
    const decodeTokensPerSecond = ((genTokens - 1) / decodeMs) * 1000;
    const bytesPerToken = model.bytesReadPerToken();
    return {
      prompt_tokens: promptTokens,
      gen_tokens: genTokens,
      prefill_tokens_per_second: round((promptTokens / prefillMs) * 1000),
      decode_tokens_per_second: round(decodeTokensPerSecond),
      weight_bytes_per_token: bytesPerToken,
      decode_bytes_per_second: Math.round(bytesPerToken * decodeTokensPerSecond),
    };
  } finally {
    cache.dispose();
  }
}

/** The serving engine's figures that --streams and --prefix-cache-tokens ask for. */
async function servingFigures(model: AnyModel, flags: { streams?: string; 'prefix-cache-tokens'?: number; 'gen-tokens': number }) {
  const counts = flags.streams === undefined ? null : parsePositiveIntegers(flags.streams);
  if (flags.streams !== undefined && counts === null) throw new HerdUsageError(`--streams takes stream counts separated by commas, such as 1,2,4,8; got "${flags.streams}"`);
  const streams = counts ? (await measureStreams(model, counts, flags['gen-tokens'])).map((row) => ({ ...row, decode_tokens_per_second: round(row.decode_tokens_per_second), speedup: round(row.speedup) })) : undefined;
  const prefixTokens = flags['prefix-cache-tokens'];
  const prefix = prefixTokens === undefined ? undefined : await measurePrefixCache(model, prefixTokens);
  const prefixCache = prefix && { ...prefix, cold_ttft_ms: round(prefix.cold_ttft_ms), warm_ttft_ms: round(prefix.warm_ttft_ms), ratio: Number(prefix.ratio.toPrecision(3)) };
  return { ...(streams ? { streams } : {}), ...(prefixCache ? { prefix_cache: prefixCache } : {}) };
}

async function readBandwidth(threads: number | undefined, decodeBytesPerSecond: number) {
  const measured = await measureReadBandwidth(threads);
  return { ...measured, bandwidth_fraction: round(decodeBytesPerSecond / measured.read_bytes_per_second) };
}

/** Which probe read, and for the native one its median repetition beside the best. */
function describeProbe(bandwidth: ReadBandwidth): string {
  const median = bandwidth.read_bytes_per_second_median;
  return median === undefined ? `${bandwidth.bandwidth_probe} probe` : `${bandwidth.bandwidth_probe} probe, best repetition; median ${(median / 1e9).toFixed(2)} GB/s`;
}

function describe(report: Record<string, unknown>): string {
  const gb = (bytes: number) => (bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : `${(bytes / 1e6).toFixed(2)} MB`);
  const lines = [
    `model      ${report.model} (backend ${report.backend})`,
    `load       ${report.load_ms} ms`,
    `prefill    ${report.prompt_tokens} tokens at ${chalk.bold(report.prefill_tokens_per_second)} tok/s`,
    `decode     ${report.gen_tokens} tokens at ${chalk.bold(report.decode_tokens_per_second)} tok/s, reading ${gb(report.weight_bytes_per_token as number)} of weights per token (${gb(report.decode_bytes_per_second as number)}/s)`,
  ];
  if (report.read_bytes_per_second !== undefined) {
    const probe = report as unknown as ReadBandwidth & { bandwidth_fraction: number; decode_bytes_per_second: number };
    const ofMedian = probe.read_bytes_per_second_median ? ` (${Math.round((probe.decode_bytes_per_second / probe.read_bytes_per_second_median) * 100)}% of the median)` : '';
    lines.push(`bandwidth  ${gb(probe.read_bytes_per_second)}/s read on ${probe.bandwidth_threads} threads (${describeProbe(probe)}); decoding reached ${chalk.bold(`${Math.round(probe.bandwidth_fraction * 100)}%`)}${ofMedian}`);
  }
  lines.push(`peak RSS   ${((report.peak_rss_bytes as number) / 2 ** 20).toFixed(1)} MiB`);
  return lines.join('\n');
}
