import type { HostTensor } from '../formats/safetensors.js';
import { INT4_MAX, quantizeInt4Groups, roundHalfEven, type GroupParams, type Int4Matrix } from '../formats/int4.js';

/**
 * AutoAWQ's `pseudo_quantize_tensor` with zero-point: scale = max(max − min, 1e-5) / 15 and
 * zero = clamp(−round(min / scale), 0, 15) per group. Unlike GPTQ's parameters, the range is the
 * group's own min..max, not widened to contain 0.
 */
export function awqGroupParams(values: ArrayLike<number>): GroupParams {
  let low = Infinity;
  let high = -Infinity;
  for (let i = 0; i < values.length; i++) {
    low = Math.min(low, values[i]!);
    high = Math.max(high, values[i]!);
  }
  const scale = Math.fround(Math.max(high - low, 1e-5) / INT4_MAX);
  return { scale, zero: Math.min(INT4_MAX, Math.max(0, -roundHalfEven(low / scale))) };
}

/** AWQ's 4-bit quantization of a (scaled, clipped) weight [out, in]. */
export function quantizeAwq(weight: HostTensor, groupSize: number): Int4Matrix {
  return quantizeInt4Groups(weight, groupSize, awqGroupParams);
}

/** Activations X [tokens, in] that reach a group of linears sharing one input. */
export interface Activations {
  rows: number;
  cols: number;
  data: Float32Array;
}

/** Multiplies the input columns of W by s (in place). */
export function scaleColumns(weight: HostTensor, scales: Float32Array): void {
  const cols = weight.shape[1]!;
  for (let i = 0; i < weight.data.length; i++) weight.data[i] = weight.data[i]! * scales[i % cols]!;
}

/** Divides the output rows of a projection (or a norm vector) by s, in place. */
export function divideRows(weight: HostTensor, scales: Float32Array): void {
  const cols = weight.shape.length === 2 ? weight.shape[1]! : 1;
  for (let i = 0; i < weight.data.length; i++) weight.data[i] = weight.data[i]! / scales[Math.floor(i / cols)]!;
}
