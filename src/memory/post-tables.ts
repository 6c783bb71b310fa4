import { kvCacheBytes } from './kv-cache.js';
import { countParameters } from './parameters.js';
import { presetModel } from './presets.js';
import { DEFAULT_TRAINING_OPTIONS, estimateTraining, type TrainingMethod, type TrainingOptions } from './training.js';

/**
 * The three memory tables of the Llama 3.1 launch post (Hugging Face blog, July 2024), as printed,
 * and herd's values computed under the post's own conventions.
 */
export const POST_MODELS = ['llama-3.1-8b', 'llama-3.1-70b', 'llama-3.1-405b'] as const;
export type PostModel = (typeof POST_MODELS)[number];

/** The post multiplies the nominal size (8B, 70B, 405B), not the exact parameter count. */
const NOMINAL_PARAMETERS: Record<PostModel, number> = { 'llama-3.1-8b': 8e9, 'llama-3.1-70b': 70e9, 'llama-3.1-405b': 405e9 };

/** Inference memory for the weights, decimal GB, rounded to whole GB. */
export const POST_INFERENCE_GB: Record<PostModel, Record<'FP16' | 'FP8' | 'INT4', number>> = {
  'llama-3.1-8b': { FP16: 16, FP8: 8, INT4: 4 },
  'llama-3.1-70b': { FP16: 140, FP8: 70, INT4: 35 },
  'llama-3.1-405b': { FP16: 810, FP8: 405, INT4: 203 },
};
const INFERENCE_BYTES_PER_PARAMETER = { FP16: 2, FP8: 1, INT4: 0.5 } as const;

/** KV cache in fp16 for one sequence, printed as GiB; kept as strings to know the printed precision. */
export const POST_KV_GIB: Record<PostModel, Record<'1k' | '16k' | '128k', string>> = {
  'llama-3.1-8b': { '1k': '0.125', '16k': '1.95', '128k': '15.62' },
  'llama-3.1-70b': { '1k': '0.313', '16k': '4.88', '128k': '39.06' },
  'llama-3.1-405b': { '1k': '0.984', '16k': '15.38', '128k': '123.05' },
};
/** The post's token counts: 1k is 1,024 but 16k and 128k are 16,000 and 128,000. */
export const POST_KV_TOKENS = { '1k': 1024, '16k': 16000, '128k': 128000 } as const;

/** Training memory, decimal GB (the post's 3.25 TB is 3,250 GB). */
export const POST_TRAINING_GB: Record<PostModel, Record<TrainingMethod, number>> = {
  'llama-3.1-8b': { full: 60, lora: 16, qlora: 6 },
  'llama-3.1-70b': { full: 500, lora: 160, qlora: 48 },
  'llama-3.1-405b': { full: 3250, lora: 950, qlora: 250 },
};

/** The post's training cells are rough and not mutually consistent; see docs/memory.md. */
export const TRAINING_TOLERANCE = 0.15;
/** Exact parameter counts versus the post's nominal sizes differ by under 1%. */
export const INFERENCE_TOLERANCE = 0.01;

/**
 * The recipe the post's training figures imply: full fine-tuning in pure bf16 (weights, gradients and
 * both AdamW moments at 2 bytes each: 8 bytes per parameter); LoRA and QLoRA at rank 16 on all seven
 * projections with fp32 adapter states; activations left out because the post gives no batch or length.
 */
export function postTrainingOptions(method: TrainingMethod): TrainingOptions {
  const base = { ...DEFAULT_TRAINING_OPTIONS, method, includeActivations: false };
  return method === 'full' ? { ...base, masterWeights: false, optimizer: 'adamw-bf16' } : base;
}

export interface ComparisonCell {
  table: 'inference' | 'kv-cache' | 'training';
  model: PostModel;
  column: string;
  unit: 'GB' | 'GiB';
  post: number;
  /** herd's value in `unit`, from the exact architecture. */
  computed: number;
  /** computed − post, in `unit`. */
  difference: number;
  relativeDifference: number;
  matches: boolean;
  note?: string;
}

export function compareWithPost(): ComparisonCell[] {
  return POST_MODELS.flatMap((model) => [...inferenceCells(model), ...kvCells(model), ...trainingCells(model)]);
}

function cell(fields: Omit<ComparisonCell, 'difference' | 'relativeDifference'>): ComparisonCell {
  return { ...fields, difference: fields.computed - fields.post, relativeDifference: (fields.computed - fields.post) / fields.post };
}

function inferenceCells(model: PostModel): ComparisonCell[] {
  const parameters = countParameters(presetModel(model).architecture).total;
  return Object.entries(INFERENCE_BYTES_PER_PARAMETER).map(([column, bytes]) => {
    const post = POST_INFERENCE_GB[model][column as keyof typeof INFERENCE_BYTES_PER_PARAMETER];
    const nominalGb = (NOMINAL_PARAMETERS[model] * bytes) / 1e9;
    const computed = (parameters * bytes) / 1e9;
    return cell({
      table: 'inference',
      model,
      column,
      unit: 'GB',
      post,
      computed,
      matches: Math.round(nominalGb) === post && Math.abs(computed - post) / post <= INFERENCE_TOLERANCE,
      note: `post: nominal ${NOMINAL_PARAMETERS[model] / 1e9}B × ${bytes} bytes = ${nominalGb} GB`,
    });
  });
}

function kvCells(model: PostModel): ComparisonCell[] {
  const arch = presetModel(model).architecture;
  return Object.entries(POST_KV_TOKENS).map(([column, tokens]) => {
    const printed = POST_KV_GIB[model][column as keyof typeof POST_KV_TOKENS];
    const post = Number(printed);
    const computed = kvCacheBytes(arch, 'fp16', tokens, 1) / 2 ** 30;
    const matches = roundsTo(computed, printed);
    const doubled = !matches && roundsTo(2 * computed, printed);
    return cell({
      table: 'kv-cache',
      model,
      column: `${column} (${tokens} tokens)`,
      unit: 'GiB',
      post,
      computed,
      matches,
      ...(doubled ? { note: 'the post prints twice the consistent figure for this row' } : {}),
    });
  });
}

/** Whether `value` is within half a unit of the last digit the post printed. */
export function roundsTo(value: number, printed: string): boolean {
  const decimals = printed.split('.')[1]?.length ?? 0;
  return Math.abs(value - Number(printed)) <= 0.5 * 10 ** -decimals + 1e-12;
}

function trainingCells(model: PostModel): ComparisonCell[] {
  const arch = presetModel(model).architecture;
  return (Object.keys(POST_TRAINING_GB[model]) as TrainingMethod[]).map((method) => {
    const post = POST_TRAINING_GB[model][method];
    const computed = estimateTraining(arch, postTrainingOptions(method)).totalBytes / 1e9;
    return cell({
      table: 'training',
      model,
      column: method,
      unit: 'GB',
      post,
      computed,
      matches: Math.abs(computed - post) / post <= TRAINING_TOLERANCE,
    });
  });
}
