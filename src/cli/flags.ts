import { Flags } from '@oclif/core';
import { BACKEND_CHOICES } from '../backends/registry.js';
import { KV_CACHE_TYPES } from '../engine/ops.js';

/** A decimal flag that must be a finite number within [min, max]. */
export function numberFlag(options: { description: string; min?: number; max?: number; char?: 't' }) {
  const { min = -Infinity, max = Infinity } = options;
  return Flags.custom<number>({
    description: options.description,
    char: options.char,
    parse: async (input) => {
      const value = Number(input);
      if (input.trim() === '' || !Number.isFinite(value) || value < min || value > max) {
        throw new Error(`expected a number${rangeText(min, max)}, got "${input}"`);
      }
      return value;
    },
  })();
}

function rangeText(min: number, max: number): string {
  if (min > -Infinity && max < Infinity) return ` from ${min} to ${max}`;
  if (min > -Infinity) return ` of at least ${min}`;
  return max < Infinity ? ` of at most ${max}` : '';
}

/** How --model names a model on the Hugging Face Hub, for every command's --model description. */
export const HUB_ID_FORMS = 'org/name[@revision][:QUANT]';

/** --model and --backend, shared by every command that runs a model. */
export const modelFlags = {
  model: Flags.string({ char: 'm', description: `Model: a Hugging Face model folder (config.json, safetensors, tokenizer.json; quantized fbgemm_fp8, awq, gptq or bitsandbytes nf4 too) or a .gguf file, or a Hugging Face id ${HUB_ID_FORMS}, downloaded into the Hugging Face cache on first use (docs/models.md). Default: the embedded stories260K.` }),
  backend: Flags.string({
    description: `Compute backend (${BACKEND_CHOICES.join(', ')}). Default: node-gpu when installed, else herd's kernels for 16-bit and quantized weights, else the first tfjs backend that loads.`,
  }),
  threads: Flags.integer({ description: "Threads for herd's CPU kernels. Default: the cores available.", min: 1 }),
  'kv-cache-type': Flags.string({ description: "KV cache storage on herd's CPU kernels (tfjs keeps f32).", options: [...KV_CACHE_TYPES], default: 'f32' }),
  adapter: Flags.string({ description: 'PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) to apply to the model, as herd finetune writes.' }),
};
