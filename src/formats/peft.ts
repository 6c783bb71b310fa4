import fs from 'node:fs';
import path from 'node:path';
import { HerdError } from '../errors.js';
import type { LlamaConfig } from '../spec/llama-config.js';
import type { PackedTensor, WeightSource } from './weights.js';
import { readFloatTensor, readSafetensorsHeader, writeSafetensors, type HostTensor } from './safetensors.js';
import { openForReading, writeFileAtomically } from './files.js';
import { readJsonFile } from './files.js';
import { LINEAR_MODULES, linearModuleOf, tensorShapes, type LinearModule } from '../spec/tensors.js';

/**
 * LoRA adapters in PEFT's layout, so transformers, vLLM and llama.cpp's convert_lora_to_gguf.py
 * read what herd writes and herd reads what they write: adapter_config.json and
 * adapter_model.safetensors with tensors named base_model.model.<module>.lora_A.weight [r, in]
 * and ….lora_B.weight [out, r].
 */

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

/** LoRA settings as adapter_config.json records them (the modules are the spec's linear modules). */
export interface LoraSettings {
  r: number;
  alpha: number;
  dropout: number;
  targetModules: LinearModule[];
}

/** Checks rank, alpha, dropout and module names, with one clear line for each mistake. */
export function validateLoraSettings(settings: { r: number; alpha: number; dropout: number; targetModules: readonly string[] }): LoraSettings {
  if (!Number.isInteger(settings.r) || settings.r < 1) throw new HerdError(`LoRA rank (--lora-r) must be a whole number of at least 1, got ${settings.r}`);
  if (!(settings.alpha > 0)) throw new HerdError(`--lora-alpha must be positive, got ${settings.alpha}`);
  if (!(settings.dropout >= 0 && settings.dropout < 1)) throw new HerdError(`--lora-dropout must be in [0, 1), got ${settings.dropout}`);
  if (settings.targetModules.length === 0) throw new HerdError('--lora-target-modules names no module');
  const unknown = settings.targetModules.filter((name) => !(LINEAR_MODULES as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new HerdError(`target module ${unknown.join(', ')} does not exist in a Llama model; choose from ${LINEAR_MODULES.join(', ')}`);
  }
  return { ...settings, targetModules: [...new Set(settings.targetModules)] as LinearModule[] };
}

/** A's and B's of one adapted module, host-side, row-major. */
export interface LoraMatrices {
  /** The base weight, e.g. model.layers.0.self_attn.q_proj.weight. */
  module: string;
  a: HostTensor;
  b: HostTensor;
}

export interface LoraAdapter {
  settings: LoraSettings;
  /** alpha / r (alpha / √r with use_rslora). */
  scale: number;
  matrices: Map<string, LoraMatrices>;
}

export function peftTensorName(module: string, matrix: 'A' | 'B'): string {
  return `base_model.model.${module.replace(/\.weight$/, '')}.lora_${matrix}.weight`;
}

/** adapter_config.json with every key PEFT 0.13's LoraConfig saves, so PEFT loads it without warnings. */
export function peftConfig(settings: LoraSettings, baseModel: string): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: settings.alpha,
    lora_dropout: settings.dropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: settings.r,
    rank_pattern: {},
    revision: null,
    target_modules: [...settings.targetModules].sort(),
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: false,
  };
}

/** Writes an adapter folder (each file atomically); float32 tensors as PEFT saves a float32 adapter. */
export function writePeftAdapter(dir: string, settings: LoraSettings, baseModel: string, matrices: readonly LoraMatrices[]): void {
  fs.mkdirSync(dir, { recursive: true });
  const tensors = matrices.flatMap(({ module, a, b }) => [
    { name: peftTensorName(module, 'A'), dtype: 'F32', shape: a.shape, bytes: new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength) },
    { name: peftTensorName(module, 'B'), dtype: 'F32', shape: b.shape, bytes: new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength) },
  ]);
  writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), tensors);
  writeFileAtomically(path.join(dir, ADAPTER_CONFIG), [Buffer.from(JSON.stringify(peftConfig(settings, baseModel), null, 2) + '\n')]);
}

/** Reads a PEFT LoRA adapter folder and checks every tensor against the base model's config. */
export function readPeftAdapter(dir: string, config: LlamaConfig): LoraAdapter {
  const json = readJsonFile(path.join(dir, ADAPTER_CONFIG), true) as Record<string, unknown>;
  const where = path.join(dir, ADAPTER_CONFIG);
  if (json.peft_type !== 'LORA') throw new HerdError(`${where}: peft_type is ${JSON.stringify(json.peft_type)}; herd applies LORA adapters`);
  if (json.use_dora === true) throw new HerdError(`${where}: DoRA adapters (use_dora) are not supported`);
  if (json.fan_in_fan_out === true) throw new HerdError(`${where}: fan_in_fan_out adapters (Conv1D models) do not fit Llama`);
  const settings = validateLoraSettings({
    r: Number(json.r),
    alpha: Number(json.lora_alpha),
    dropout: typeof json.lora_dropout === 'number' ? json.lora_dropout : 0,
    targetModules: targetModulesOf(json.target_modules, where),
  });
  const scale = json.use_rslora === true ? settings.alpha / Math.sqrt(settings.r) : settings.alpha / settings.r;
  return { settings, scale, matrices: readAdapterMatrices(path.join(dir, ADAPTER_WEIGHTS), config, settings.r) };
}

function targetModulesOf(value: unknown, where: string): string[] {
  // PEFT also saves a single regex string; herd understands the list form and "all-linear".
  if (value === 'all-linear') return [...LINEAR_MODULES];
  if (!Array.isArray(value) || !value.every((name) => typeof name === 'string')) {
    throw new HerdError(`${where}: target_modules must be a list of module names`);
  }
  return value as string[];
}

function readAdapterMatrices(file: string, config: LlamaConfig, r: number): Map<string, LoraMatrices> {
  if (!fs.existsSync(file)) throw new HerdError(`${path.dirname(file)}: no ${ADAPTER_WEIGHTS} (PEFT's pickled adapter_model.bin is not read)`);
  const shapes = tensorShapes(config);
  const entries = readSafetensorsHeader(file);
  const byName = new Map(entries.map((entry) => [entry.name, entry]));
  const matrices = new Map<string, LoraMatrices>();
  const fd = openForReading(file);
  try {
    for (const entry of entries) {
      const match = /^base_model\.model\.(.+)\.lora_A(?:\.default)?\.weight$/.exec(entry.name);
      if (!match) {
        if (!/\.lora_B(?:\.default)?\.weight$/.test(entry.name)) throw new HerdError(`${path.basename(file)}: unexpected tensor ${entry.name}`);
        continue;
      }
      const module = `${match[1]}.weight`;
      const baseShape = shapes.get(module);
      if (!baseShape || linearModuleOf(module) === null) throw new HerdError(`${path.basename(file)}: ${entry.name} adapts ${module}, which this model does not have`);
      const bEntry = byName.get(entry.name.replace('.lora_A', '.lora_B'));
      if (!bEntry) throw new HerdError(`${path.basename(file)}: ${entry.name} has no matching lora_B`);
      const [out, inFeatures] = baseShape as [number, number];
      checkShape(entry.name, entry.shape, [r, inFeatures]);
      checkShape(bEntry.name, bEntry.shape, [out, r]);
      matrices.set(module, { module, a: readFloatTensor(entry, fd), b: readFloatTensor(bEntry, fd) });
    }
  } finally {
    fs.closeSync(fd);
  }
  return matrices;
}

function checkShape(name: string, shape: readonly number[], expected: readonly number[]): void {
  if (shape.length !== expected.length || shape.some((size, i) => size !== expected[i])) {
    throw new HerdError(`${ADAPTER_WEIGHTS}: ${name} has shape [${shape.join(', ')}], expected [${expected.join(', ')}]`);
  }
}

/** W + scale · B · A for W [out, in], B [out, r], A [r, in], in place on a copy of W's data. */
export function mergeDelta(weight: HostTensor, matrices: LoraMatrices, scale: number): HostTensor {
  const [out, inFeatures] = weight.shape as [number, number];
  const r = matrices.a.shape[0]!;
  const a = matrices.a.data;
  const b = matrices.b.data;
  const merged = Float32Array.from(weight.data);
  const row = new Float64Array(inFeatures);
  for (let o = 0; o < out; o++) {
    row.fill(0);
    for (let k = 0; k < r; k++) {
      const coefficient = b[o * r + k]!;
      if (coefficient === 0) continue;
      const offset = k * inFeatures;
      for (let i = 0; i < inFeatures; i++) row[i]! += coefficient * a[offset + i]!;
    }
    for (let i = 0; i < inFeatures; i++) merged[o * inFeatures + i]! += scale * row[i]!;
  }
  return { name: weight.name, shape: weight.shape, data: merged };
}

/**
 * The base weights with an adapter merged in as each tensor is read, so any backend (herd's
 * kernels included) runs an adapted model with no extra work per token. Adapted tensors are
 * offered only as float; the rest keep their packed form.
 */
export class AdaptedWeights implements WeightSource {
  constructor(private readonly base: WeightSource, private readonly adapter: LoraAdapter) {}

  readFloat(name: string): HostTensor {
    const weight = this.base.readFloat(name);
    const matrices = this.adapter.matrices.get(name);
    return matrices ? mergeDelta(weight, matrices, this.adapter.scale) : weight;
  }

  describePacked(name: string): PackedTensor | null {
    if (this.adapter.matrices.has(name)) return null;
    return this.base.describePacked?.(name) ?? null;
  }

  readPackedInto(name: string, target: Uint8Array, byteOffset?: number): void {
    if (!this.base.readPackedInto) throw new HerdError(`tensor ${name} is not stored packed`);
    this.base.readPackedInto(name, target, byteOffset);
  }
}
