import { HerdError } from '../errors.js';
import type { HostTensor } from './safetensors.js';
import type { QuantizedLayout, QuantizedTensors } from './quantized-layout.js';
import { expectPart, f32Tensor, readF32, u8Tensor, type StoredTensors } from './stored-tensors.js';

/**
 * bitsandbytes NF4 as transformers saves a `Linear4bit` (bitsandbytes/functional.py
 * `quantize_4bit`, `QuantState.as_dict(packed=True)`):
 *
 * - `weight` U8 [numel / 2, 1]: the flattened [out, in] weight in blocks of 64, each element the
 *   index of the nearest of the 16 NormalFloat values after dividing by the block's absmax; two
 *   per byte, the first element in the high nibble ([0.5, −0.25, 0, 1] → 0xC4 0x7F);
 * - `weight.absmax` F32 [blocks] — or, with double quantization, U8 [blocks] codes of the
 *   8-bit dynamic map over absmax − offset, with `weight.nested_absmax` F32 [blocks / 256] and
 *   `weight.nested_quant_map` F32 [256];
 * - `weight.quant_map` F32 [16]: the NF4 table;
 * - `weight.quant_state.bitsandbytes__nf4` U8: UTF-8 JSON of quant_type, blocksize, dtype, shape
 *   (and nested_blocksize, nested_dtype, nested_offset).
 */
export const NF4_TABLE = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

export const NF4_BLOCK = 64;
/** bitsandbytes' block for quantizing the absmax values (double quantization). */
export const NESTED_BLOCK = 256;
const STATE_SUFFIX = 'quant_state.bitsandbytes__nf4';

interface PackedState {
  quant_type: 'nf4';
  blocksize: number;
  dtype: string;
  shape: number[];
  nested_blocksize?: number;
  nested_dtype?: string;
  nested_offset?: number;
}

/** Index of the nearest table value (ties to the lower index, the midpoints bitsandbytes compares with). */
export function nearestIndex(table: Float32Array, x: number): number {
  let best = 0;
  for (let i = 1; i < table.length; i++) if (Math.abs(table[i]! - x) < Math.abs(table[best]! - x)) best = i;
  return best;
}

/** NF4 codes of a flat float array, two per byte, and the absmax of each block. */
export function quantizeNf4Flat(values: Float32Array): { packed: Uint8Array; absmax: Float32Array } {
  if (values.length % 2 !== 0) throw new HerdError('NF4 needs an even number of weights');
  const blocks = Math.ceil(values.length / NF4_BLOCK);
  const absmax = new Float32Array(blocks);
  for (let i = 0; i < values.length; i++) {
    const b = Math.floor(i / NF4_BLOCK);
    absmax[b] = Math.max(absmax[b]!, Math.abs(values[i]!));
  }
  const packed = new Uint8Array(values.length / 2);
  for (let i = 0; i < values.length; i += 2) {
    const scale = absmax[Math.floor(i / NF4_BLOCK)]! || 1;
    packed[i / 2] = (nearestIndex(NF4_TABLE, values[i]! / scale) << 4) | nearestIndex(NF4_TABLE, values[i + 1]! / scale);
  }
  return { packed, absmax };
}

export function dequantizeNf4Flat(packed: Uint8Array, absmax: Float32Array, count: number, table: Float32Array = NF4_TABLE): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const byte = packed[i >> 1]!;
    out[i] = table[i % 2 === 0 ? byte >> 4 : byte & 0xf]! * absmax[Math.floor(i / NF4_BLOCK)]!;
  }
  return out;
}

/**
 * bitsandbytes' signed dynamic 8-bit map (`create_dynamic_map(signed=True)`): for exponents
 * i = 0..6, the midpoints of linspace(0.1, 1, 2^i + 1) times ±10^(i−6), plus 0 and 1, sorted.
 */
export function dynamicMap(): Float32Array {
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const items = 2 ** i + 1;
    const bounds = Array.from({ length: items }, (_, k) => Math.fround(0.1 + (0.9 * k) / (items - 1)));
    for (let k = 0; k < items - 1; k++) {
      const mean = Math.fround((bounds[k]! + bounds[k + 1]!) / 2);
      data.push(10 ** (-6 + i) * mean, -(10 ** (-6 + i)) * mean);
    }
  }
  data.push(0, 1);
  return Float32Array.from(data.sort((a, b) => a - b));
}

export function quantizeNf4(prefix: string, weight: HostTensor, doubleQuant: boolean, dtype: string): QuantizedTensors {
  const { packed, absmax } = quantizeNf4Flat(weight.data);
  const name = `${prefix}.weight`;
  const state: PackedState = { quant_type: 'nf4', blocksize: NF4_BLOCK, dtype, shape: weight.shape };
  const tensors: QuantizedTensors = [
    u8Tensor(name, [packed.length, 1], packed),
    f32Tensor(`${name}.quant_map`, [16], NF4_TABLE.slice()),
  ];
  if (doubleQuant) {
    const nested = quantizeAbsmax(absmax);
    Object.assign(state, { nested_blocksize: NESTED_BLOCK, nested_dtype: 'float32', nested_offset: nested.offset });
    tensors.push(
      u8Tensor(`${name}.absmax`, [absmax.length], nested.codes),
      f32Tensor(`${name}.nested_absmax`, [nested.absmax.length], nested.absmax),
      f32Tensor(`${name}.nested_quant_map`, [256], nested.map),
    );
  } else {
    tensors.push(f32Tensor(`${name}.absmax`, [absmax.length], absmax));
  }
  tensors.push(u8Tensor(`${name}.${STATE_SUFFIX}`, [Buffer.byteLength(JSON.stringify(state))], new Uint8Array(Buffer.from(JSON.stringify(state), 'utf8'))));
  return tensors;
}

/** Double quantization: absmax − mean, blockwise over the dynamic map (bitsandbytes quantize_blockwise). */
function quantizeAbsmax(absmax: Float32Array): { codes: Uint8Array; absmax: Float32Array; map: Float32Array; offset: number } {
  const map = dynamicMap();
  const offset = Math.fround(absmax.reduce((sum, x) => sum + x, 0) / absmax.length);
  const centred = absmax.map((x) => x - offset);
  const blocks = Math.ceil(centred.length / NESTED_BLOCK);
  const nestedAbsmax = new Float32Array(blocks);
  centred.forEach((x, i) => (nestedAbsmax[Math.floor(i / NESTED_BLOCK)] = Math.max(nestedAbsmax[Math.floor(i / NESTED_BLOCK)]!, Math.abs(x))));
  const codes = Uint8Array.from(centred, (x, i) => nearestIndex(map, x / (nestedAbsmax[Math.floor(i / NESTED_BLOCK)]! || 1)));
  return { codes, absmax: nestedAbsmax, map, offset };
}

/** transformers' BitsAndBytesConfig.to_dict() for 4-bit NF4, as save_pretrained writes it. */
export function nf4QuantizationConfig(doubleQuant: boolean, computeDtype: string): Record<string, unknown> {
  return {
    _load_in_4bit: true,
    _load_in_8bit: false,
    bnb_4bit_compute_dtype: computeDtype,
    bnb_4bit_quant_storage: 'uint8',
    bnb_4bit_quant_type: 'nf4',
    bnb_4bit_use_double_quant: doubleQuant,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: null,
    llm_int8_threshold: 6.0,
    load_in_4bit: true,
    load_in_8bit: false,
    quant_method: 'bitsandbytes',
  };
}

function readState(stored: StoredTensors, name: string): PackedState {
  const raw = stored.raw(`${name}.${STATE_SUFFIX}`);
  let state: PackedState;
  try {
    state = JSON.parse(Buffer.from(raw).toString('utf8')) as PackedState;
  } catch {
    throw new HerdError(`tensor ${name}.${STATE_SUFFIX} is not the JSON bitsandbytes packs`);
  }
  if (state.quant_type !== 'nf4' || state.blocksize !== NF4_BLOCK) {
    throw new HerdError(`tensor ${name}: quant_type ${state.quant_type} with blocksize ${state.blocksize}; herd reads nf4 with blocksize ${NF4_BLOCK}`);
  }
  return state;
}

export const NF4_LAYOUT: QuantizedLayout = {
  method: 'bitsandbytes',
  partsOf(name, stored) {
    if (!stored.has(`${name}.${STATE_SUFFIX}`)) return null;
    const nested = stored.has(`${name}.nested_absmax`) ? [`${name}.nested_absmax`, `${name}.nested_quant_map`] : [];
    return [name, `${name}.absmax`, `${name}.quant_map`, `${name}.${STATE_SUFFIX}`, ...nested];
  },
  check(name, shape, stored) {
    const count = shape.reduce((a, b) => a * b, 1);
    const state = readState(stored, name);
    if (state.shape.join() !== shape.join()) throw new HerdError(`tensor ${name}: quant_state shape [${state.shape.join(', ')}] but config.json implies [${shape.join(', ')}]`);
    const blocks = Math.ceil(count / NF4_BLOCK);
    expectPart(stored, name, 'U8', [count / 2, 1]);
    expectPart(stored, `${name}.quant_map`, 'F32', [16]);
    if (state.nested_offset === undefined) {
      expectPart(stored, `${name}.absmax`, 'F32', [blocks]);
    } else {
      expectPart(stored, `${name}.absmax`, 'U8', [blocks]);
      expectPart(stored, `${name}.nested_absmax`, 'F32', [Math.ceil(blocks / NESTED_BLOCK)]);
      expectPart(stored, `${name}.nested_quant_map`, 'F32', [256]);
    }
  },
  dequantize(name, shape, stored) {
    const state = readState(stored, name);
    const table = readF32(stored, `${name}.quant_map`);
    let absmax: Float32Array;
    if (state.nested_offset === undefined) {
      absmax = readF32(stored, `${name}.absmax`);
    } else {
      const codes = stored.raw(`${name}.absmax`);
      const map = readF32(stored, `${name}.nested_quant_map`);
      const nested = readF32(stored, `${name}.nested_absmax`);
      absmax = Float32Array.from(codes, (code, i) => map[code]! * nested[Math.floor(i / NESTED_BLOCK)]! + state.nested_offset!);
    }
    return dequantizeNf4Flat(stored.raw(name), absmax, shape.reduce((a, b) => a * b, 1), table);
  },
};
