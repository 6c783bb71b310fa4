import { HerdError } from '../errors.js';
import type { ModelSpec } from './architecture.js';
import { findAccelerator, type Hardware } from './hardware.js';
import { parseKvDtype } from './kv-cache.js';
import type { PlanPrecision, PlanRequest } from './plan.js';
import { DEFAULT_RECIPE_OPTIONS, parsePrecision } from './precision.js';
import { DEFAULT_TRAINING_OPTIONS, OPTIMIZER_IDS, type OptimizerId, parseLoraTargets, TRAINING_METHODS, type TrainingMethod } from './training.js';
import { type ByteUnit, parsePositiveInteger, parseSize, parseTokenCount } from './units.js';

/** The command's flags as oclif hands them over: strings, validated here so every error is one line. */
export interface MemoryFlags {
  precision?: string[];
  'group-size'?: string;
  'keep-16bit-embeddings': boolean;
  context?: string[];
  batch?: string;
  'kv-dtype': string;
  train?: string[];
  'seq-len'?: string;
  'lora-rank'?: string;
  'lora-targets'?: string;
  optimizer: string;
  'master-weights': boolean;
  'gradient-checkpointing': boolean;
  gpu?: string;
  gpus?: string;
  memory?: string;
  reserve: string;
  units: string;
}

export function planRequestFromFlags(model: ModelSpec, flags: MemoryFlags): PlanRequest {
  const hardware = hardwareFromFlags(flags);
  const batch = flags.batch === undefined ? 1 : parsePositiveInteger(flags.batch, '--batch');
  return {
    model,
    precisions: precisionsFromFlags(model, flags.precision),
    recipe: {
      groupSize: flags['group-size'] === undefined ? DEFAULT_RECIPE_OPTIONS.groupSize : parsePositiveInteger(flags['group-size'], '--group-size'),
      keep16BitEmbeddings: flags['keep-16bit-embeddings'],
    },
    contexts: flags.context?.map((text) => parseTokenCount(text, '--context')) ?? [model.architecture.maxPositionEmbeddings],
    batch,
    kvDtype: parseKvDtype(flags['kv-dtype']),
    trainingMethods: (flags.train ?? []).map(parseTrainingMethod),
    training: {
      ...DEFAULT_TRAINING_OPTIONS,
      batch,
      seqLen: flags['seq-len'] === undefined ? DEFAULT_TRAINING_OPTIONS.seqLen : parseTokenCount(flags['seq-len'], '--seq-len'),
      loraRank: flags['lora-rank'] === undefined ? DEFAULT_TRAINING_OPTIONS.loraRank : parsePositiveInteger(flags['lora-rank'], '--lora-rank'),
      loraTargets: flags['lora-targets'] === undefined ? DEFAULT_TRAINING_OPTIONS.loraTargets : parseLoraTargets(flags['lora-targets']),
      optimizer: parseOptimizer(flags.optimizer),
      masterWeights: flags['master-weights'],
      gradientCheckpointing: flags['gradient-checkpointing'],
    },
    ...(hardware ? { hardware } : {}),
  };
}

/** A GGUF is priced as stored unless asked otherwise, an int8 release as int8; anything else gets the post's three precisions. */
function precisionsFromFlags(model: ModelSpec, given: string[] | undefined): PlanPrecision[] {
  if (given === undefined || given.length === 0) return model.storedTensors ? ['file'] : model.publishedPrecision ? [model.publishedPrecision] : ['bf16', 'fp8', 'int4'];
  return given.map((text) => (text.toLowerCase() === 'file' ? 'file' : parsePrecision(text)));
}

function parseTrainingMethod(text: string): TrainingMethod {
  const method = text.toLowerCase();
  if ((TRAINING_METHODS as readonly string[]).includes(method)) return method as TrainingMethod;
  throw new HerdError(`unknown training method "${text}"; choose from ${TRAINING_METHODS.join(', ')}`);
}

function parseOptimizer(text: string): OptimizerId {
  const id = text.toLowerCase();
  if ((OPTIMIZER_IDS as string[]).includes(id)) return id as OptimizerId;
  throw new HerdError(`unknown optimizer "${text}"; choose from ${OPTIMIZER_IDS.join(', ')}`);
}

export function parseUnit(text: string): ByteUnit {
  const unit = text.toLowerCase();
  if (unit === 'gb') return 'GB';
  if (unit === 'gib') return 'GiB';
  throw new HerdError(`unknown unit "${text}"; choose GB (10^9 bytes) or GiB (2^30 bytes)`);
}

function hardwareFromFlags(flags: MemoryFlags): Hardware | undefined {
  if (flags.gpu !== undefined && flags.memory !== undefined) throw new HerdError('give either --gpu or --memory, not both');
  const devices = flags.gpus === undefined ? 1 : parsePositiveInteger(flags.gpus, '--gpus');
  const reserveBytes = parseSize(flags.reserve, '--reserve');
  if (flags.gpu !== undefined) {
    const accelerator = findAccelerator(flags.gpu);
    return { label: accelerator.label, devices, bytesPerDevice: accelerator.bytes, reserveBytes };
  }
  if (flags.memory !== undefined) {
    const bytes = parseSize(flags.memory, '--memory');
    return { label: `${flags.memory} device`, devices, bytesPerDevice: bytes, reserveBytes };
  }
  if (flags.gpus !== undefined) throw new HerdError('--gpus needs --gpu NAME or --memory SIZE to say what each device holds');
  return undefined;
}
