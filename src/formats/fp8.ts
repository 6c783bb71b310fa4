import type { HostTensor } from './safetensors.js';
import type { QuantizedLayout, QuantizedTensors } from './quantized-layout.js';
import { matrixShape } from './int4.js';
import { expectPart, f32Tensor, moduleOf, readF32 } from './stored-tensors.js';

/**
 * FP8 E4M3 ("fn": bias 7, no infinities, largest finite 448) with one float32 scale per output
 * row, in the layout of Meta's Llama 3.1 FP8 checkpoints that transformers loads with
 * `FbgemmFp8Config` (integrations/fbgemm_fp8.py, FbgemmFp8Linear): `weight` F8_E4M3 [out, in],
 * `weight_scale` F32 [out, 1], w ≈ code · scale. As in Meta's recipe only the MLP projections are
 * quantized; everything else is listed in `modules_to_not_convert`.
 */

export const FP8_MAX = 448;

/** Meta's upper bound on dynamic activation scales (their config.json value). */
export const ACTIVATION_SCALE_UB = 1200.0;

const DECODED = decodeTable();
/** Codes 0x00..0x7E in increasing value, for nearest-value search (0x7F is NaN). */
const POSITIVE_CODES = 0x7f;

export function fp8E4m3ToFloat(code: number): number {
  return DECODED[code & 0xff]!;
}

function decodeTable(): Float32Array {
  const table = new Float32Array(256);
  for (let code = 0; code < 256; code++) {
    const sign = code & 0x80 ? -1 : 1;
    const exponent = (code >> 3) & 0xf;
    const mantissa = code & 0x7;
    if (exponent === 0xf && mantissa === 0x7) table[code] = NaN;
    else if (exponent === 0) table[code] = sign * (mantissa / 8) * 2 ** -6;
    else table[code] = sign * (1 + mantissa / 8) * 2 ** (exponent - 7);
  }
  return table;
}

/** Nearest E4M3 code, ties to the even code, saturating at ±448 (as torch's cast after clamping). */
export function floatToFp8E4m3(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const magnitude = Math.min(Math.abs(x), FP8_MAX);
  let low = 0;
  let high = POSITIVE_CODES - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (DECODED[middle]! <= magnitude) low = middle;
    else high = middle - 1;
  }
  let code = low;
  if (code < POSITIVE_CODES - 1) {
    const below = magnitude - DECODED[code]!;
    const above = DECODED[code + 1]! - magnitude;
    if (above < below || (above === below && (code & 1) === 1)) code++;
  }
  return sign | code;
}

/** Row-wise FP8: scale = max|row| / 448. */
export function quantizeFp8(prefix: string, weight: HostTensor): QuantizedTensors {
  const [rows, cols] = matrixShape(weight);
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = weight.data.subarray(r * cols, (r + 1) * cols);
    let amax = 0;
    for (const x of row) amax = Math.max(amax, Math.abs(x));
    const scale = Math.fround(amax / FP8_MAX) || 1;
    scales[r] = scale;
    for (let c = 0; c < cols; c++) codes[r * cols + c] = floatToFp8E4m3(row[c]! / scale);
  }
  return [
    { name: `${prefix}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], bytes: codes },
    f32Tensor(`${prefix}.weight_scale`, [rows, 1], scales),
  ];
}

/** transformers' FbgemmFp8Config keys, as in Meta's Llama-3.1-405B-Instruct-FP8 config.json. */
export function fp8QuantizationConfig(modulesNotConverted: string[]): Record<string, unknown> {
  return { activation_scale_ub: ACTIVATION_SCALE_UB, modules_to_not_convert: modulesNotConverted, quant_method: 'fbgemm_fp8' };
}

export const FP8_LAYOUT: QuantizedLayout = {
  method: 'fbgemm_fp8',
  partsOf(name, stored) {
    const scale = `${moduleOf(name)}.weight_scale`;
    return stored.has(scale) ? [name, scale] : null;
  },
  check(name, [rows, cols], stored) {
    expectPart(stored, name, 'F8_E4M3', [rows!, cols!]);
    expectPart(stored, `${moduleOf(name)}.weight_scale`, 'F32', [rows!, 1]);
  },
  dequantize(name, [rows, cols], stored) {
    const codes = stored.raw(name);
    const scales = readF32(stored, `${moduleOf(name)}.weight_scale`);
    const out = new Float32Array(rows! * cols!);
    for (let i = 0; i < out.length; i++) out[i] = DECODED[codes[i]!]! * scales[Math.floor(i / cols!)]!;
    return out;
  },
};

/** Meta's recipe: the MLP projections only. */
export function fp8Quantizes(moduleName: string): boolean {
  return /\.mlp\.(gate|up|down)_proj$/.test(moduleName);
}
