import { HerdError } from '../errors.js';
import { awqLayout } from './awq.js';
import { FP8_LAYOUT } from './fp8.js';
import { gptqLayout } from './gptq.js';
import type { QuantizedLayout } from './quantized-layout.js';
import { NF4_LAYOUT } from './nf4.js';

/**
 * The layout a config.json's `quantization_config` announces, or null for a float checkpoint.
 * Anything herd cannot read is one clear error naming the setting.
 */
export function layoutFromConfig(rawConfig: unknown, source: string): QuantizedLayout | null {
  const quantization = (rawConfig as { quantization_config?: unknown } | null)?.quantization_config;
  if (quantization === undefined || quantization === null) return null;
  if (typeof quantization !== 'object' || Array.isArray(quantization)) throw new HerdError(`${source}: quantization_config must be an object`);
  const q = quantization as Record<string, unknown>;
  const where = `${source}: quantization_config`;
  switch (q.quant_method) {
    case 'fbgemm_fp8':
      return FP8_LAYOUT;
    case 'awq':
      requireValue(q, 'bits', 4, where);
      requireValue(q, 'version', 'gemm', where);
      requireValue(q, 'zero_point', true, where);
      return awqLayout(groupSize(q, where));
    case 'gptq':
      requireValue(q, 'bits', 4, where);
      if (q.checkpoint_format !== undefined) requireValue(q, 'checkpoint_format', 'gptq', where);
      return gptqLayout(groupSize(q, where));
    case 'bitsandbytes':
      if (q.load_in_4bit !== true || q.bnb_4bit_quant_type !== 'nf4') throw new HerdError(`${where}: herd reads bitsandbytes 4-bit NF4 only`);
      return NF4_LAYOUT;
    default:
      throw new HerdError(`${where}: quant_method ${JSON.stringify(q.quant_method)} is not supported (fbgemm_fp8, awq, gptq, bitsandbytes nf4)`);
  }
}

function requireValue(q: Record<string, unknown>, key: string, expected: unknown, where: string): void {
  if (q[key] !== expected) throw new HerdError(`${where}: ${key} is ${JSON.stringify(q[key])}; herd reads ${JSON.stringify(expected)}`);
}

function groupSize(q: Record<string, unknown>, where: string): number {
  const size = q.group_size;
  if (typeof size !== 'number' || !Number.isInteger(size) || size <= 0) {
    throw new HerdError(`${where}: group_size ${JSON.stringify(size)} must be a positive integer (herd does not read per-channel -1)`);
  }
  return size;
}
