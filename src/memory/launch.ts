/**
 * `herd memory --launch vllm|tgi|llama.cpp`: the command that serves a model on the hardware given,
 * with its tensor-parallel size, precision and context taken from the planner's own numbers. The
 * rule: the first precision (16-bit, then FP8) and the smallest power-of-two device count whose
 * per-device weights, KV cache at the wanted context and workspace fit in the memory the engine is
 * allowed (--gpu-memory-utilization of each device); when none does, the most devices at the
 * longest context that fits; when not even the weights fit, a refusal that says so.
 * Flag names were checked against the engines' own sources (docs/distributed.md lists versions).
 */
import { HerdError } from '../errors.js';
import type { ModelSpec } from './architecture.js';
import type { Hardware } from './hardware.js';
import type { KvCacheDtype } from './kv-cache.js';
import { buildPlan, type InferenceRow, type PlanPrecision } from './plan.js';
import { DEFAULT_RECIPE_OPTIONS } from './precision.js';
import { DEFAULT_TRAINING_OPTIONS } from './training.js';
import { formatBytes } from './units.js';

export const SERVING_ENGINES = ['vllm', 'tgi', 'llama.cpp'] as const;
export type ServingEngine = (typeof SERVING_ENGINES)[number];

export interface LaunchRequest {
  engine: ServingEngine;
  model: ModelSpec;
  /** --model as given (a preset becomes its Hugging Face id). */
  modelArgument: string;
  /** The devices available: the plan uses a power-of-two number of them. */
  hardware: Hardware;
  /** The context wanted (default: the model's). */
  context: number;
  kvDtype: KvCacheDtype;
  /** Share of each device's memory the engine may use (vLLM's default 0.9). */
  gpuMemoryUtilization: number;
  port: number;
}

export interface LaunchPlan {
  engine: ServingEngine;
  precision: PlanPrecision;
  /** The checkpoint served: a Hugging Face id or the path given. */
  checkpoint: string;
  /** Quantized on the fly by the engine (vLLM --quantization / TGI --quantize), or null. */
  onTheFlyQuantization: 'fp8' | null;
  devices: number;
  /** Context the server allows (vLLM --max-model-len, TGI --max-total-tokens, llama.cpp -c). */
  maxModelLength: number;
  /** Whether the context wanted fits (else maxModelLength is the longest that does). */
  fullContext: boolean;
  perDeviceBytes: number;
  usableBytesPerDevice: number;
  command: string[];
  chatCommand: string[];
  notes: string[];
}

/** Contexts below this are not worth serving: the plan moves on rather than offer them. */
const MIN_USEFUL_CONTEXT = 2048;

/** Meta's Hugging Face repositories for the presets (the Instruct models, which carry the tool-calling template). */
const PRESET_REPOSITORIES: Record<string, string> = {
  'llama-3.1-8b': 'meta-llama/Llama-3.1-8B-Instruct',
  'llama-3.1-70b': 'meta-llama/Llama-3.1-70B-Instruct',
  'llama-3.1-405b': 'meta-llama/Llama-3.1-405B-Instruct',
  'llama-3.2-1b': 'meta-llama/Llama-3.2-1B-Instruct',
  'llama-3.2-3b': 'meta-llama/Llama-3.2-3B-Instruct',
};
/** Meta's own FP8 checkpoint (fbgemm rowwise FP8 of the MLPs): what the planner calls fp8-mlp. */
const META_FP8_405B = 'meta-llama/Llama-3.1-405B-Instruct-FP8';

/** vLLM's Llama 3.1 JSON tool-calling template, shipped in its repository's examples/. */
export const VLLM_LLAMA31_TOOL_TEMPLATE = 'examples/tool_chat_template_llama3.1_json.jinja';

interface Candidate {
  precision: PlanPrecision;
  checkpoint: string;
  onTheFlyQuantization: 'fp8' | null;
}

export function planLaunch(request: LaunchRequest): LaunchPlan {
  const candidates = candidatesFor(request);
  const deviceCounts = powersOfTwoUpTo(request.hardware.devices);
  const row = (candidate: Candidate, devices: number, context: number) => inferenceRowFor(request, candidate.precision, devices, context);
  for (const candidate of candidates) {
    for (const devices of deviceCounts) {
      const planned = row(candidate, devices, request.context);
      if (planned.fit!.fits) return launchPlan(request, candidate, devices, request.context, true, planned);
    }
  }
  const most = deviceCounts.at(-1)!;
  for (const candidate of candidates) {
    const longest = roundDownContext(row(candidate, most, request.context).fit!.maxTokens);
    if (longest >= MIN_USEFUL_CONTEXT) return launchPlan(request, candidate, most, longest, false, row(candidate, most, longest));
  }
  throw cannotFit(request, candidates.at(-1)!, most, row(candidates.at(-1)!, most, MIN_USEFUL_CONTEXT));
}

/** The planner's inference row for a precision on `devices` devices at `context` tokens, batch 1. */
export function inferenceRowFor(request: Pick<LaunchRequest, 'model' | 'hardware' | 'kvDtype' | 'gpuMemoryUtilization'>, precision: PlanPrecision, devices: number, context: number): InferenceRow {
  const plan = buildPlan({
    model: request.model,
    precisions: [precision],
    recipe: DEFAULT_RECIPE_OPTIONS,
    contexts: [context],
    batch: 1,
    kvDtype: request.kvDtype,
    trainingMethods: [],
    training: DEFAULT_TRAINING_OPTIONS,
    hardware: engineShare(request.hardware, devices, request.gpuMemoryUtilization),
  });
  return plan.inference[0]!;
}

/** What the engine may use of each device: its share of the memory (the rest is CUDA context, NCCL and slack). */
function engineShare(hardware: Hardware, devices: number, utilization: number): Hardware {
  return { label: hardware.label, devices, bytesPerDevice: Math.floor(hardware.bytesPerDevice * utilization), reserveBytes: 0 };
}

/** 16-bit first; FP8 when it does not fit (Meta's FP8 checkpoint for 405B, the engine's on-the-fly FP8 otherwise). */
function candidatesFor(request: LaunchRequest): Candidate[] {
  const name = request.modelArgument.toLowerCase();
  const repository = PRESET_REPOSITORIES[name] ?? request.modelArgument;
  if (request.engine === 'llama.cpp') {
    if (request.model.storedTensors) return [{ precision: 'file', checkpoint: request.modelArgument, onTheFlyQuantization: null }];
    return (['bf16', 'q8_0', 'q4_k_m'] as const).map((precision) => ({ precision, checkpoint: ggufName(request.modelArgument, precision), onTheFlyQuantization: null }));
  }
  if (request.model.storedTensors) throw new HerdError(`--launch ${request.engine} serves Hugging Face checkpoints, not a GGUF file; use --launch llama.cpp`);
  const fp8: Candidate[] = name === 'llama-3.1-405b'
    ? [{ precision: 'fp8-mlp', checkpoint: META_FP8_405B, onTheFlyQuantization: null }, { precision: 'fp8', checkpoint: repository, onTheFlyQuantization: 'fp8' }]
    : [{ precision: 'fp8', checkpoint: repository, onTheFlyQuantization: 'fp8' }];
  return [{ precision: 'bf16', checkpoint: repository, onTheFlyQuantization: null }, ...fp8];
}

function ggufName(model: string, precision: string): string {
  const base = model.replace(/\/+$/, '').split('/').at(-1)!;
  return `${base}-${precision === 'bf16' ? 'bf16' : precision}.gguf`;
}

function powersOfTwoUpTo(devices: number): number[] {
  const counts: number[] = [];
  for (let n = 1; n <= devices; n *= 2) counts.push(n);
  return counts;
}

/** Whole thousands of tokens (k = 1,024), as contexts are usually given. */
function roundDownContext(tokens: number): number {
  return tokens >= 1024 ? Math.floor(tokens / 1024) * 1024 : tokens;
}

function launchPlan(request: LaunchRequest, candidate: Candidate, devices: number, context: number, fullContext: boolean, row: InferenceRow): LaunchPlan {
  const notes: string[] = [];
  if (!fullContext) notes.push(`the ${request.context}-token context does not fit; ${context} tokens is the longest that does on ${devices} device(s) in ${candidate.precision}`);
  if (devices < request.hardware.devices) notes.push(`${devices} of the ${request.hardware.devices} devices suffice; the others can serve another replica`);
  if (request.engine === 'llama.cpp' && candidate.precision !== 'file') notes.push(`make the GGUF with: herd quantize --model DIR --format gguf-${candidate.precision === 'bf16' ? 'bf16' : candidate.precision}`);
  const plan = {
    engine: request.engine,
    precision: candidate.precision,
    checkpoint: candidate.checkpoint,
    onTheFlyQuantization: candidate.onTheFlyQuantization,
    devices,
    maxModelLength: context,
    fullContext,
    perDeviceBytes: row.fit!.perDeviceBytes,
    usableBytesPerDevice: row.fit!.usableBytesPerDevice,
    notes,
  };
  return { ...plan, command: COMMANDS[request.engine](plan, request), chatCommand: chatCommand(request, candidate) };
}

/** The matching herd chat: raw mode (exact template, built-in tools) with a local tokenizer folder. */
function chatCommand(request: LaunchRequest, candidate: Candidate): string[] {
  const servedName = request.engine === 'llama.cpp' ? [] : ['--endpoint-model', candidate.checkpoint];
  const repository = PRESET_REPOSITORIES[request.modelArgument.toLowerCase()];
  const tokenizerFolder = repository !== undefined ? `~/models/${repository.split('/').at(-1)}`
    : request.model.storedTensors ? 'DIR-WITH-TOKENIZER.JSON' : request.modelArgument.replace(/\/config\.json$/, '');
  return ['herd', 'chat', '--endpoint', `http://127.0.0.1:${request.port}/v1`, ...servedName, '--template-from', tokenizerFolder];
}

type PlanFields = Omit<LaunchPlan, 'command' | 'chatCommand'>;

const COMMANDS: Record<ServingEngine, (plan: PlanFields, request: LaunchRequest) => string[]> = {
  vllm: (plan, request) => [
    'vllm', 'serve', plan.checkpoint,
    '--tensor-parallel-size', String(plan.devices),
    ...(plan.onTheFlyQuantization ? ['--quantization', plan.onTheFlyQuantization] : []),
    ...(request.kvDtype === 'fp8' ? ['--kv-cache-dtype', 'fp8'] : []),
    '--max-model-len', String(plan.maxModelLength),
    '--gpu-memory-utilization', String(request.gpuMemoryUtilization),
    '--enable-auto-tool-choice', '--tool-call-parser', 'llama3_json', '--chat-template', VLLM_LLAMA31_TOOL_TEMPLATE,
    '--port', String(request.port),
  ],
  tgi: (plan, request) => [
    'text-generation-launcher', '--model-id', plan.checkpoint,
    '--num-shard', String(plan.devices),
    ...(plan.onTheFlyQuantization ? ['--quantize', plan.onTheFlyQuantization] : []),
    ...(request.kvDtype === 'fp8' ? ['--kv-cache-dtype', 'fp8_e4m3fn'] : []),
    '--max-input-tokens', String(plan.maxModelLength - 1),
    '--max-total-tokens', String(plan.maxModelLength),
    '--cuda-memory-fraction', String(request.gpuMemoryUtilization),
    '--port', String(request.port),
  ],
  'llama.cpp': (plan, request) => [
    ...(plan.devices > 1 ? [`CUDA_VISIBLE_DEVICES=${Array.from({ length: plan.devices }, (_, i) => i).join(',')}`] : []),
    'llama-server', '-m', plan.checkpoint,
    '-c', String(plan.maxModelLength),
    '-ngl', '999',
    ...(request.kvDtype === 'q8_0' || request.kvDtype === 'q4_0' ? ['--cache-type-k', request.kvDtype, '--cache-type-v', request.kvDtype, '--flash-attn'] : []),
    '--jinja',
    '--port', String(request.port),
  ],
};

function cannotFit(request: LaunchRequest, candidate: Candidate, devices: number, row: InferenceRow): HerdError {
  const weights = formatBytes(row.weightsBytes / devices, 'GiB');
  const usable = formatBytes(row.fit!.usableBytesPerDevice, 'GiB');
  return new HerdError(
    `${request.model.name} cannot be served on ${request.hardware.devices} × ${request.hardware.label} at any context: `
    + `its ${candidate.precision} weights alone need ${weights} per device on ${devices} device(s), `
    + `and ${request.engine} may use ${usable} of each (--gpu-memory-utilization ${request.gpuMemoryUtilization}); add devices or pick larger ones`,
  );
}
