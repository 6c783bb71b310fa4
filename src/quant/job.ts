import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { HerdError, HerdInterrupted } from '../errors.js';
import { stopRequested, type ShouldStop } from '../stop-signal.js';
import type { Checkpoint } from '../formats/checkpoint.js';
import type { LlamaConfig } from '../spec/llama-config.js';
import { activateBackend } from '../backends/registry.js';
import { loadModel } from '../backends/load.js';
import { openModelFolder } from '../engine/load.js';
import { elementCount, readSafetensorsHeader, writeSafetensors, type HostTensor, type TensorToWrite } from '../formats/safetensors.js';
import { readJsonFile } from '../formats/files.js';
import { quantizeAwq, type Activations } from './awq.js';
import { awqQuantizationConfig, packAwq } from '../formats/awq.js';
import { awqLayer } from './awq-search.js';
import { DecoderLayerRunner, padColumns, padMlp, type LayerWeights } from './layer-runner.js';
import { ActivationRecorder, calibrationWindows, readCalibrationTexts, runCalibration, type CalibrationOptions } from './calibration.js';
import { fp8QuantizationConfig, fp8Quantizes, quantizeFp8 } from '../formats/fp8.js';
import { GgufValueType, readGgufHeader, writeGguf, type GgufTensorToWrite } from '../formats/gguf.js';
import { ggufTensor, llamaMetadata, ropeFreqsTensor, type BlockQuantizer } from '../formats/gguf-llama.js';
import type { GgufMix } from '../formats/gguf-recipe.js';
import { tokenizerMetadata } from '../formats/gguf-tokenizer.js';
import { ggufQuantizer, refuseWithoutNativeWriter } from './native-gguf.js';
import { quantizeGptq } from './gptq.js';
import { layerRunnerBackend } from './native-calibration.js';
import { GPTQ_MIN_ZERO, gptqQuantizationConfig, packGptq, type GptqOptions } from '../formats/gptq.js';
import { quantizeInt4Rtn } from '../formats/int4.js';
import { nf4QuantizationConfig, quantizeNf4 } from '../formats/nf4.js';
import { f32Tensor } from '../formats/stored-tensors.js';

/**
 * Every format `herd quantize --format` writes. int4-rtn is plain round-to-nearest in GPTQ's layout, the baseline.
 * gguf-<mix> writes llama.cpp's mix of that name (src/formats/gguf-recipe.ts).
 */
export const FORMATS = [
  'fp8', 'awq', 'gptq', 'int4-rtn', 'nf4',
  'gguf-q8_0', 'gguf-q6_k', 'gguf-q5_k_m', 'gguf-q5_0', 'gguf-q4_k_m', 'gguf-q4_k', 'gguf-q4_1', 'gguf-q4_0', 'gguf-f16',
  'gguf-iq4_xs', 'gguf-iq4_nl', 'gguf-q3_k_l', 'gguf-q3_k_m', 'gguf-q3_k_s', 'gguf-q2_k',
] as const;
export type QuantFormat = (typeof FORMATS)[number];

export interface QuantizeJobOptions {
  modelDir: string;
  /**
   * The model's name in output file names and GGUF general.name; the folder's name by default (a
   * Hugging Face cache snapshot's folder is a commit hash, so its caller names the model).
   */
  modelName?: string;
  outDir: string;
  formats: QuantFormat[];
  /** Input columns per 4-bit group; absent: 128, or the largest of 64, 32, 16, 8 that the model's widths split into. */
  groupSize?: number;
  calibration: CalibrationOptions;
  gptq: Omit<GptqOptions, 'groupSize' | 'blockSize'>;
  nf4DoubleQuant: boolean;
  /** Threads of the native GGUF quantizers (default: the cores available). */
  threads?: number;
  /**
   * The backend the calibration pass and AWQ's layer runs compute on: native or kernels (herd's
   * WASM kernels). Default: layerRunnerBackend(), native where the addon loads. Their sums differ
   * in order (about 1e-7 relative), so a rounding tie can go the other way on the other backend.
   */
  backend?: string;
  /** Called after each layer of each format (and once with done = total when a format is complete). */
  onLayer?: (format: QuantFormat, done: number, total: number) => void;
  /** Asked after each layer written: Ctrl-C stops there (HerdInterrupted), the finished layers kept for the next run. */
  shouldStop?: ShouldStop;
}

export interface FormatResult {
  format: QuantFormat;
  path: string;
  bytes: number;
  bitsPerWeight: number;
  /** Input columns per 4-bit group (awq, gptq, int4-rtn), else null. */
  groupSize: number | null;
  seconds: number;
  /** Layers taken from an interrupted run instead of being quantized again. */
  resumedLayers: number;
  /** The output was already complete with the same source and settings. */
  alreadyDone: boolean;
  notes: string[];
}

const LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const;
const COMPANION_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json', 'LICENSE', 'README.md'];
const MARKER = 'herd-quantize.json';
const CALIBRATED: readonly QuantFormat[] = ['awq', 'gptq'];
const INT4: readonly QuantFormat[] = ['awq', 'gptq', 'int4-rtn'];

/** Runs every requested format over one source model; the source is only ever read. */
export async function runQuantizeJob(options: QuantizeJobOptions): Promise<FormatResult[]> {
  const { config, checkpoint } = openModelFolder(options.modelDir);
  try {
    const rawConfig = readJsonFile(path.join(options.modelDir, 'config.json'), true) as Record<string, unknown>;
    if (rawConfig.quantization_config) throw new HerdError(`${options.modelDir}: already quantized (${JSON.stringify((rawConfig.quantization_config as { quant_method?: unknown }).quant_method)}); quantize the float model`);
    const resolved = { ...options, groupSize: options.groupSize ?? largestGroup(intWidths(config)) };
    checkIntFormats(resolved, config);
    fs.mkdirSync(options.outDir, { recursive: true });
    const context = new JobContext(resolved, config, checkpoint, rawConfig);
    const results: FormatResult[] = [];
    for (const format of options.formats) results.push(await context.run(format));
    return results;
  } finally {
    checkpoint.close();
  }
}

type ResolvedOptions = QuantizeJobOptions & { groupSize: number };

/** The widths 4-bit groups must divide: the inputs of q/k/v, gate/up (hidden) and of o (heads × head_dim). */
function intWidths(config: LlamaConfig): number[] {
  return [config.hiddenSize, config.numAttentionHeads * config.headDim];
}

function checkIntFormats(options: ResolvedOptions, config: LlamaConfig): void {
  if (!options.formats.some((f) => INT4.includes(f))) return;
  const g = options.groupSize;
  if (g % 8 !== 0) throw new HerdError(`--group-size ${g} must be a multiple of 8 for 4-bit packing`);
  const bad = intWidths(config).find((w) => w % g !== 0);
  if (bad !== undefined) throw new HerdError(`hidden size ${bad} is not a multiple of --group-size ${g}; choose a group size that divides it (e.g. ${largestGroup([bad])})`);
}

/** AWQ's and GPTQ's usual 128, or the largest smaller power of two every width splits into. */
function largestGroup(widths: number[]): number {
  for (const g of [128, 64, 32, 16, 8]) if (widths.every((w) => w % g === 0)) return g;
  return 8;
}

/** What one job shares across formats: the source, its fingerprint and (lazily) the calibration activations. */
class JobContext {
  private recorder: ActivationRecorder | null = null;
  private runner: DecoderLayerRunner | undefined;
  readonly fingerprint: string;
  private readonly parameters: number;
  readonly paddedIntermediate: number;

  constructor(
    readonly options: ResolvedOptions,
    readonly config: LlamaConfig,
    readonly source: Checkpoint,
    readonly rawConfig: Record<string, unknown>,
  ) {
    this.fingerprint = sourceFingerprint(options.modelDir);
    this.parameters = source.names().reduce((sum, name) => sum + elementCount(source.entry(name).shape), 0);
    const g = options.groupSize;
    this.paddedIntermediate = Math.ceil(config.intermediateSize / g) * g;
  }

  private modelName(): string {
    return this.options.modelName ?? path.basename(path.resolve(this.options.modelDir));
  }

  async run(format: QuantFormat): Promise<FormatResult> {
    const started = performance.now();
    const base = this.modelName();
    const isGguf = format.startsWith('gguf-');
    const target = path.join(this.options.outDir, isGguf ? `${base}-${format.slice(5)}.gguf` : `${base}-${format}`);
    const settings = this.settingsOf(format);
    const result = (resumedLayers: number, alreadyDone: boolean, notes: string[]): FormatResult => {
      const bytes = isGguf ? fs.statSync(target).size : weightBytes(target);
      return { format, path: target, bytes, bitsPerWeight: (bytes * 8) / this.parameters, groupSize: INT4.includes(format) ? this.options.groupSize : null, seconds: (performance.now() - started) / 1000, resumedLayers, alreadyDone, notes };
    };
    if (isGguf) {
      if (fs.existsSync(target) && ggufSettings(target) === settings) return result(0, true, []);
      const quantizer = ggufQuantizer(this.options.threads);
      try {
        refuseWithoutNativeWriter(format, quantizer);
        await this.writeGguf(format.slice(5).toUpperCase() as GgufMix, target, settings, format, quantizer.quantize);
      } finally {
        quantizer.close();
      }
      // An F16 file holds halves and floats, no blocks: no quantizer wrote it.
      return result(0, false, format === 'gguf-f16' ? [] : [quantizer.description]);
    }
    const done = fs.existsSync(path.join(target, MARKER)) ? (readJsonFile(path.join(target, MARKER), true) as { settings?: string; notes?: string[] }) : null;
    if (done?.settings === settings) return result(0, true, done.notes ?? []);
    const { resumedLayers, notes } = await this.writeSafetensorsFormat(format, target, settings);
    return result(resumedLayers, false, notes);
  }

  /** Everything that decides the output bytes: source fingerprint and the format's settings. */
  private settingsOf(format: QuantFormat): string {
    const { groupSize, calibration, gptq, nf4DoubleQuant } = this.options;
    const relevant: Record<string, unknown> = { format, source: this.fingerprint };
    if (INT4.includes(format)) relevant.groupSize = groupSize;
    if (CALIBRATED.includes(format)) relevant.calibration = { file: path.resolve(calibration.file), samples: calibration.samples, seqLen: calibration.seqLen };
    if (format === 'gptq' || format === 'int4-rtn') relevant.gptq = gptq;
    if (format === 'nf4') relevant.doubleQuant = nf4DoubleQuant;
    return crypto.createHash('sha256').update(JSON.stringify(relevant)).digest('hex').slice(0, 16);
  }

  private async activations(name: string): Promise<Activations> {
    if (!this.recorder) {
      const widths = new Map<string, number>();
      for (let layer = 0; layer < this.config.numHiddenLayers; layer++) {
        for (const linear of LINEARS) widths.set(`model.layers.${layer}.${linear}.weight`, this.source.entry(`model.layers.${layer}.${linear}.weight`).shape[1]!);
        widths.set(`model.layers.${layer}.input_layernorm.weight`, this.config.hiddenSize);
      }
      const recorder = new ActivationRecorder(widths);
      // Native where the addon loads: the pass's float32 products take several minutes at the 1B
      // shape on the WASM kernels.
      const loaded = await loadModel(this.options.modelDir, { backend: this.backend, wrapOps: (ops) => recorder.wrap(ops) });
      try {
        const texts = await readCalibrationTexts(this.options.calibration.file);
        runCalibration(loaded, calibrationWindows(texts, loaded.tokenizer, this.config.bosTokenId, this.options.calibration));
      } finally {
        loaded.model.dispose();
      }
      this.recorder = recorder;
    }
    return this.recorder.activations(name);
  }

  private get backend(): string {
    return this.options.backend ?? layerRunnerBackend();
  }

  /** Runs single decoder layers for AWQ's block-output loss, on one backend for the whole job. */
  private async layerRunner(): Promise<DecoderLayerRunner> {
    this.runner ??= new DecoderLayerRunner(await activateBackend({ backend: this.backend }), this.config, this.options.calibration.seqLen);
    return this.runner;
  }

  private async writeSafetensorsFormat(format: QuantFormat, target: string, settings: string): Promise<{ resumedLayers: number; notes: string[] }> {
    const partial = `${target}.partial`;
    const partialMarker = path.join(partial, MARKER);
    if (fs.existsSync(partial) && (!fs.existsSync(partialMarker) || (readJsonFile(partialMarker, true) as { settings?: string }).settings !== settings)) {
      fs.rmSync(partial, { recursive: true, force: true });
    }
    fs.mkdirSync(partial, { recursive: true });
    fs.writeFileSync(partialMarker, JSON.stringify({ settings }));
    const layers = this.config.numHiddenLayers;
    let resumedLayers = 0;
    for (let layer = 0; layer < layers; layer++) {
      const file = path.join(partial, `layer-${layer}.safetensors`);
      if (fs.existsSync(file)) {
        resumedLayers++;
      } else {
        writeSafetensors(file, await this.quantizeLayer(format, layer));
        if (layer + 1 < layers && (await stopRequested(this.options.shouldStop))) {
          throw new HerdInterrupted(`interrupted after layer ${layer + 1} of ${layers} of ${format}: the finished layers are kept in ${partial}; the same command resumes from them`);
        }
      }
      this.options.onLayer?.(format, layer + 1, layers);
    }
    const tensors: TensorToWrite[] = [...this.nonLayerTensors()];
    for (let layer = 0; layer < layers; layer++) tensors.push(...readTensors(path.join(partial, `layer-${layer}.safetensors`)));
    writeSafetensors(path.join(partial, 'model.safetensors'), tensors);
    for (let layer = 0; layer < layers; layer++) fs.rmSync(path.join(partial, `layer-${layer}.safetensors`));
    const notes: string[] = [];
    const config: Record<string, unknown> = { ...this.rawConfig, quantization_config: this.quantizationConfig(format) };
    if (INT4.includes(format) && this.paddedIntermediate !== this.config.intermediateSize) {
      config.intermediate_size = this.paddedIntermediate;
      notes.push(`intermediate_size padded from ${this.config.intermediateSize} to ${this.paddedIntermediate} with zero rows/columns (the same function) so the MLP splits into groups of ${this.options.groupSize}`);
    }
    fs.writeFileSync(path.join(partial, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    fs.writeFileSync(partialMarker, JSON.stringify({ settings, notes }));
    for (const name of COMPANION_FILES) {
      const from = path.join(this.options.modelDir, name);
      if (fs.existsSync(from)) fs.copyFileSync(from, path.join(partial, name));
    }
    fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(partial, target);
    return { resumedLayers, notes };
  }

  private quantizationConfig(format: QuantFormat): Record<string, unknown> {
    const gptq = { ...this.options.gptq, groupSize: this.options.groupSize, blockSize: 128 };
    switch (format) {
      case 'fp8': {
        const kept: string[] = [];
        for (let layer = 0; layer < this.config.numHiddenLayers; layer++) {
          for (const linear of LINEARS) if (!fp8Quantizes(`model.layers.${layer}.${linear}`)) kept.push(`model.layers.${layer}.${linear}`);
        }
        return fp8QuantizationConfig([...kept, 'lm_head']);
      }
      case 'awq': return awqQuantizationConfig(this.options.groupSize);
      case 'gptq': return gptqQuantizationConfig(gptq);
      case 'int4-rtn': return gptqQuantizationConfig({ ...gptq, actOrder: false });
      case 'nf4': return nf4QuantizationConfig(this.options.nf4DoubleQuant, this.config.torchDtype ?? 'float32');
      default: throw new HerdError(`${format} is not a safetensors format`);
    }
  }

  /** Embeddings, final norm and head, as stored (no format quantizes them). */
  private nonLayerTensors(): TensorToWrite[] {
    return this.source.names().filter((name) => !name.startsWith('model.layers.')).map((name) => rawTensor(this.source, name));
  }

  private async quantizeLayer(format: QuantFormat, layer: number): Promise<TensorToWrite[]> {
    const prefix = `model.layers.${layer}`;
    const read = (linear: string): HostTensor => this.source.readFloat(`${prefix}.${linear}.weight`);
    const norms = { input: `${prefix}.input_layernorm.weight`, post: `${prefix}.post_attention_layernorm.weight` };
    if (format === 'fp8' || format === 'nf4') {
      const out = [rawTensor(this.source, norms.input), rawTensor(this.source, norms.post)];
      for (const linear of LINEARS) {
        const name = `${prefix}.${linear}`;
        const weight = read(linear);
        if (format === 'nf4') out.push(...quantizeNf4(name, weight, this.options.nf4DoubleQuant, this.config.torchDtype ?? 'float32'));
        else out.push(...(fp8Quantizes(name) ? quantizeFp8(name, weight) : [rawTensor(this.source, `${name}.weight`)]));
      }
      return out;
    }
    const inputNorm = this.source.readFloat(norms.input);
    const postNorm = this.source.readFloat(norms.post);
    const weights: LayerWeights = new Map([
      ...LINEARS.map((linear): [string, HostTensor] => [`${linear}.weight`, read(linear)]),
      ['input_layernorm.weight', inputNorm],
      ['post_attention_layernorm.weight', postNorm],
    ]);
    padMlp(weights, this.paddedIntermediate);
    const act = async (linear: string): Promise<Activations> => padColumns(await this.activations(`${prefix}.${linear}.weight`), linear === 'mlp.down_proj' ? this.paddedIntermediate : 0);
    const g = this.options.groupSize;
    if (format === 'awq') {
      const inputs = {
        hidden: await this.activations(norms.input),
        attention: await act('self_attn.q_proj'),
        attentionOutput: await act('self_attn.o_proj'),
        mlp: await act('mlp.gate_proj'),
        down: await act('mlp.down_proj'),
      };
      awqLayer(weights, inputs, await this.layerRunner(), g);
    }
    const out: TensorToWrite[] = [f32Tensor(norms.input, inputNorm.shape, inputNorm.data), f32Tensor(norms.post, postNorm.shape, postNorm.data)];
    for (const linear of LINEARS) {
      const name = `${prefix}.${linear}`;
      const weight = weights.get(`${linear}.weight`)!;
      if (format === 'awq') out.push(...packAwq(name, quantizeAwq(weight, g)));
      else if (format === 'int4-rtn') out.push(...packGptq(name, quantizeInt4Rtn(weight, g, this.options.gptq.symmetric, GPTQ_MIN_ZERO)));
      else out.push(...packGptq(name, quantizeGptq(weight, await act(linear), { ...this.options.gptq, groupSize: g, blockSize: 128 })));
    }
    return out;
  }

  private async writeGguf(mix: GgufMix, target: string, settings: string, format: QuantFormat, quantize: BlockQuantizer | undefined): Promise<void> {
    const metadata = llamaMetadata(this.config, this.modelName(), mix);
    for (const [key, value] of tokenizerMetadata(this.options.modelDir, this.config.bosTokenId, this.config.eosTokenIds)) metadata.set(key, value);
    metadata.set('herd.quantize.settings', { type: GgufValueType.STRING, value: settings });
    const tensors: GgufTensorToWrite[] = [];
    const ropeFreqs = ropeFreqsTensor(this.config);
    if (ropeFreqs) tensors.push(ropeFreqs);
    const layers = this.config.numHiddenLayers;
    const add = (name: string) => tensors.push(ggufTensor(this.source.readFloat(name), mix, this.config, quantize));
    add('model.embed_tokens.weight');
    for (let layer = 0; layer < layers; layer++) {
      const prefix = `model.layers.${layer}`;
      add(`${prefix}.input_layernorm.weight`);
      add(`${prefix}.post_attention_layernorm.weight`);
      for (const linear of LINEARS) add(`${prefix}.${linear}.weight`);
      this.options.onLayer?.(format, layer + 1, layers);
      // A GGUF file is written whole at the end: stopping keeps nothing of it, but ends the job now.
      if (layer + 1 < layers && (await stopRequested(this.options.shouldStop))) {
        throw new HerdInterrupted(`interrupted after layer ${layer + 1} of ${layers} of ${format}: a GGUF file is written whole, so nothing of it is kept; the formats finished before it are complete`);
      }
    }
    add('model.norm.weight');
    if (!this.config.tieWordEmbeddings) add('lm_head.weight');
    writeGguf(target, metadata, tensors);
  }
}

function rawTensor(source: Checkpoint, name: string): TensorToWrite {
  const entry = source.entry(name);
  return { name, dtype: entry.dtype, shape: entry.shape, bytes: source.raw(name) };
}

function readTensors(file: string): TensorToWrite[] {
  const bytes = fs.readFileSync(file);
  return readSafetensorsHeader(file).map((entry) => ({ name: entry.name, dtype: entry.dtype, shape: entry.shape, bytes: new Uint8Array(bytes.subarray(entry.begin, entry.end)) }));
}

function weightBytes(dir: string): number {
  return fs.readdirSync(dir).filter((name) => name.endsWith('.safetensors')).reduce((sum, name) => sum + fs.statSync(path.join(dir, name)).size, 0);
}

function ggufSettings(file: string): string | null {
  try {
    const value = readGgufHeader(file).metadata.get('herd.quantize.settings');
    return typeof value === 'string' ? value : null;
  } catch {
    return null;
  }
}

/** Names, sizes and modification times of the source files: a changed source is not resumed from. */
function sourceFingerprint(dir: string): string {
  const files = fs.readdirSync(dir).sort().map((name) => {
    const stat = fs.statSync(path.join(dir, name));
    return `${name}:${stat.size}:${stat.mtimeMs}`;
  });
  return crypto.createHash('sha256').update(files.join('\n')).digest('hex');
}
