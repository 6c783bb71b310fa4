import { Args, Flags } from '@oclif/core';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { HUB_ID_FORMS, modelFlags } from '../cli/flags.js';
import { InterruptWatch } from '../cli/interrupt.js';
import { SCHEMAS } from '../cli/json-output.js';
import { modelDisplayName, resolveModelArgument } from '../cli/model-argument.js';
import { progressBar } from '../cli/progress.js';
import { HerdError } from '../errors.js';
import { loadModel } from '../backends/load.js';
import { DEFAULT_MODEL_DIR } from '../engine/load.js';
import { DEFAULT_CALIBRATION_FILE } from '../quant/calibration.js';
import { FORMATS, runQuantizeJob, type FormatResult, type QuantFormat } from '../quant/job.js';
import { QUANT_BACKEND, readScoreText, scoreAgainstBase, type Scorecard } from '../quant/scorecard.js';

export default class Quantize extends HerdCommand {
  static override summary = 'Write FP8, AWQ, GPTQ, NF4 and GGUF checkpoints of a model, and score what they lose.';

  static override description = `Runs several formats in one job (--format fp8,awq,gptq,nf4,gguf-q4_k_m). Safetensors formats become folders <model>-<format> that transformers, vLLM and herd load; GGUF formats become <model>-<type>.gguf files for llama.cpp, Ollama and herd, with llama.cpp's per-tensor types for its mixes (gguf-q4_k_m, gguf-q5_k_m, gguf-q6_k, gguf-q5_0, gguf-q4_1, gguf-q8_0, and, with the native addon, gguf-q3_k_m, gguf-q3_k_s, gguf-q3_k_l, gguf-q2_k, gguf-iq4_xs, gguf-iq4_nl). The source folder is only read. Each layer is written as it finishes, so an interrupted job resumes where it stopped; outputs already complete with the same settings are kept. With --score TEXT (or "herd quantize score --base DIR --quant DIR") it prints perplexity, KL divergence and top-1 agreement against the base model. See docs/quantization.md.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> quantize --model ~/models/Llama-3.2-1B --format fp8,awq,gptq,nf4,gguf-q4_k_m --out ~/models/quantized',
    '<%= config.bin %> quantize --format gguf-q8_0,int4-rtn,gptq --group-size 64 --out /tmp/q --score story.txt --json',
    '<%= config.bin %> quantize score --base ~/models/Llama-3.2-1B --quant ~/models/quantized/Llama-3.2-1B-awq --score wiki.txt',
  ];

  static override args = {
    action: Args.string({ description: '"score" to compare an existing quantized model with its base.', options: ['score'], required: false, ignoreStdin: true }),
  };

  static override flags = {
    model: Flags.string({ char: 'm', description: `Source model: a Hugging Face model folder, or a Hugging Face id ${HUB_ID_FORMS}. Default: the embedded stories260K.` }),
    format: Flags.string({ char: 'f', description: `Formats, comma-separated: ${FORMATS.join(', ')}.`, default: 'gguf-q8_0' }),
    out: Flags.string({ char: 'o', description: 'Folder for the outputs (created if missing).' }),
    'group-size': Flags.integer({ description: 'Input columns per scale for awq, gptq and int4-rtn. Default: 128, or the largest of 64, 32, 16, 8 that the model\'s hidden size splits into (64 for stories260K).', min: 8 }),
    calibration: Flags.string({ description: 'Calibration text (.txt, .jsonl or .parquet with a text field). Default: the TinyStories text shipped with herd.' }),
    samples: Flags.integer({ description: 'Calibration windows.', default: 16, min: 1 }),
    'seq-len': Flags.integer({ description: 'Tokens per calibration window.', default: 256, min: 2 }),
    asym: Flags.boolean({ description: 'GPTQ / int4-rtn with zero-points (sym=false).', default: false }),
    'act-order': Flags.boolean({ description: 'GPTQ act-order (desc_act): columns by descending Hessian diagonal.', default: false }),
    damp: Flags.string({ description: 'GPTQ damp_percent.', default: '0.01' }),
    threads: modelFlags.threads,
    backend: Flags.string({ description: "Backend of the calibration pass and AWQ's layer runs: native (herd's C kernels) or kernels (herd's WASM kernels). Default: native when the addon loads.", options: ['native', 'kernels'] }),
    'double-quant': Flags.boolean({ description: 'NF4 double quantization of the absmax values.', default: false }),
    score: Flags.string({ description: 'Text file to score each output (or --quant) against the base model on.' }),
    'score-tokens': Flags.integer({ description: 'Most tokens of --score text to use.', default: 4096, min: 2 }),
    base: Flags.string({ description: `score: the base model (folder or Hugging Face id ${HUB_ID_FORMS}).` }),
    quant: Flags.string({ description: `score: the quantized model (folder, .gguf, or Hugging Face id ${HUB_ID_FORMS}).` }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Quantize);
    if (args.action === 'score') {
      if (!flags.base || !flags.quant || !flags.score) throw new HerdError('quantize score needs --base DIR, --quant DIR and --score TEXTFILE');
      const [base, quant] = [await resolveModelArgument(flags.base, { json: flags.json }), await resolveModelArgument(flags.quant, { json: flags.json })];
      const card = await this.score(base!, quant!, flags.score, flags['score-tokens']);
      if (flags.json) this.printJson(SCHEMAS.quantizeScore, { base: flags.base, quant: flags.quant, ...snake(card) });
      else this.log(describeCard(flags.quant, card));
      return;
    }
    if (!flags.out) throw new HerdError('--out DIR is required: where the quantized models are written');
    const formats = parseFormats(flags.format);
    const damp = Number(flags.damp);
    if (!(damp > 0 && damp < 1)) throw new HerdError(`--damp must be a number between 0 and 1, got "${flags.damp}"`);
    const modelDir = (await resolveModelArgument(flags.model, { json: flags.json })) ?? DEFAULT_MODEL_DIR;
    const bars = new Map<QuantFormat, ReturnType<typeof progressBar>>();
    let results: FormatResult[];
    const interrupt = new InterruptWatch();
    try {
      results = await runQuantizeJob({
        shouldStop: () => interrupt.interrupted,
        modelDir, modelName: modelDisplayName(modelDir).split('/').pop(), outDir: flags.out, formats, groupSize: flags['group-size'],
        calibration: { file: flags.calibration ?? DEFAULT_CALIBRATION_FILE, samples: flags.samples, seqLen: flags['seq-len'] },
        gptq: { symmetric: !flags.asym, actOrder: flags['act-order'], dampPercent: damp },
        nf4DoubleQuant: flags['double-quant'],
        threads: flags.threads,
        backend: flags.backend,
        onLayer: (format, done, total) => {
          if (!bars.has(format)) bars.set(format, progressBar(`${format} layers`, !flags.json));
          bars.get(format)!.update(done, total);
          if (done === total) bars.get(format)!.stop();
        },
      });
    } finally {
      interrupt.dispose();
      for (const bar of bars.values()) bar.stop();
    }
    const cards = new Map<string, Scorecard>();
    if (flags.score) for (const r of results) cards.set(r.path, await this.score(modelDir, r.path, flags.score, flags['score-tokens']));
    if (flags.json) {
      this.printJson(SCHEMAS.quantize, { model: modelDir, out: flags.out, formats: results.map((r) => ({ ...snake(r), ...(cards.has(r.path) ? { score: snake(cards.get(r.path)!) } : {}) })) });
      return;
    }
    for (const r of results) {
      const state = r.alreadyDone ? 'already complete' : r.resumedLayers > 0 ? `resumed ${r.resumedLayers} layers` : `${r.seconds.toFixed(1)} s`;
      this.log(`${r.format.padEnd(12)} ${r.path}  ${(r.bytes / 2 ** 20).toFixed(2)} MiB  ${r.bitsPerWeight.toFixed(2)} bits/weight${r.groupSize === null ? '' : `  group ${r.groupSize}`}  ${state}`);
      for (const note of r.notes) this.log(`             note: ${note}`);
      if (cards.has(r.path)) this.log(`             ${describeCard('', cards.get(r.path)!).trim()}`);
    }
  }

  private async score(baseDir: string, quantPath: string, textFile: string, maxTokens: number): Promise<Scorecard> {
    const text = readScoreText(textFile);
    const base = await loadModel(baseDir, { backend: QUANT_BACKEND });
    const quant = await loadModel(quantPath, { backend: QUANT_BACKEND });
    try {
      return scoreAgainstBase(base, quant, text, Math.min(512, base.config.maxPositionEmbeddings), maxTokens);
    } finally {
      base.model.dispose();
      quant.model.dispose();
    }
  }
}

function parseFormats(list: string): QuantFormat[] {
  const formats = list.split(',').map((f) => f.trim().toLowerCase()).filter((f) => f !== '');
  for (const format of formats) {
    if (!(FORMATS as readonly string[]).includes(format)) throw new HerdError(`unknown format "${format}"; choose from ${FORMATS.join(', ')}`);
  }
  if (formats.length === 0) throw new HerdError('--format names no format');
  return [...new Set(formats)] as QuantFormat[];
}

function describeCard(label: string, c: Scorecard): string {
  return `${label} perplexity ${c.basePerplexity.toFixed(4)} → ${c.quantPerplexity.toFixed(4)} · KL mean ${c.meanKl.toExponential(2)} p99 ${c.p99Kl.toExponential(2)} · top-1 agreement ${(c.top1Agreement * 100).toFixed(2)}% over ${c.tokens} tokens`;
}

/** camelCase fields as snake_case for --json. */
function snake(object: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(object).map(([key, value]) => [key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), value]));
}

