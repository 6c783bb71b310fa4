import { floatToHalf, halfToFloat } from './half.js';
import { HerdError } from '../errors.js';
import { roundHalfEven } from './int4.js';

/**
 * GGUF's Q4_K super-blocks of 256 weights, 144 bytes, as llama.cpp's reference code writes and
 * reads them (`quantize_row_q4_K_ref`, `dequantize_row_q4_K`, `make_qkx2_quants` in
 * ggml-quants.c): f16 d and dmin, 12 bytes packing eight 6-bit scales and eight 6-bit mins, then
 * 128 bytes of 4-bit codes. Sub-block j (32 weights) decodes as d·sc_j·q − dmin·m_j.
 */
export const QK_K = 256;
export const Q4_K_BYTES = 144;

export function quantizeQ4K(values: Float32Array): Uint8Array {
  if (values.length % QK_K !== 0) throw new HerdError(`Q4_K needs rows that are a multiple of ${QK_K} long`);
  const blocks = values.length / QK_K;
  const out = new Uint8Array(blocks * Q4_K_BYTES);
  for (let b = 0; b < blocks; b++) quantizeBlock(values.subarray(b * QK_K, (b + 1) * QK_K), out.subarray(b * Q4_K_BYTES, (b + 1) * Q4_K_BYTES));
  return out;
}

export function dequantizeQ4K(bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let b = 0; b < count / QK_K; b++) {
    const block = bytes.subarray(b * Q4_K_BYTES, (b + 1) * Q4_K_BYTES);
    const d = halfToFloat(block[0]! | (block[1]! << 8));
    const dmin = halfToFloat(block[2]! | (block[3]! << 8));
    const scales = block.subarray(4, 16);
    const qs = block.subarray(16);
    for (let j = 0; j < 8; j++) {
      const [sc, m] = scaleMin(j, scales);
      const quarter = qs.subarray((j >> 1) * 32, (j >> 1) * 32 + 32);
      for (let l = 0; l < 32; l++) {
        const q = j % 2 === 0 ? quarter[l]! & 0xf : quarter[l]! >> 4;
        out[b * QK_K + j * 32 + l] = Math.fround(d * sc) * q - Math.fround(dmin * m);
      }
    }
  }
  return out;
}

/** get_scale_min_k4: the 6-bit scale and min of sub-block j from the 12 packed bytes (Q4_K and Q5_K share them). */
export function scaleMin(j: number, q: Uint8Array): [number, number] {
  if (j < 4) return [q[j]! & 63, q[j + 4]! & 63];
  return [(q[j + 4]! & 0xf) | ((q[j - 4]! >> 6) << 4), (q[j + 4]! >> 4) | ((q[j]! >> 6) << 4)];
}

/** Q4_K's search for each sub-block's scale and min (`make_qkx2_quants(32, 15, …, -1, 0.1, 20)`). */
const Q4_K_SEARCH: ScaleMinSearch = { nmax: 15, rmin: -1, rdelta: 0.1, nstep: 20 };

function quantizeBlock(x: Float32Array, out: Uint8Array): void {
  const codes = new Uint8Array(QK_K);
  fitScaleMinSuperBlock(x, Q4_K_SEARCH, out.subarray(0, 16), codes);
  const qs = out.subarray(16);
  for (let quarter = 0; quarter < 4; quarter++) {
    for (let l = 0; l < 32; l++) qs[quarter * 32 + l] = codes[quarter * 64 + l]! | (codes[quarter * 64 + 32 + l]! << 4);
  }
}

/** The parameters of make_qkx2_quants' search: codes 0..nmax, nstep+1 trial scales (rmin + rdelta·step + nmax) / range. */
export interface ScaleMinSearch {
  nmax: number;
  rmin: number;
  rdelta: number;
  nstep: number;
}

// llama.cpp computes in float32: every product, sum and quotient below is rounded with f() where the C code rounds
// to float, so the chosen codes (which flip on exact ties) and the f16 scales come out bit for bit as llama.cpp's.
const f = Math.fround;

/**
 * ggml's nearest_int: a float plus 1.5·2^23 rounds to an integer, half to even (exact for |x| < 2^22,
 * the range ggml asserts; roundHalfEven beyond). Also far faster than Math.round under Jest's VM
 * contexts, where Math.round, Math.min and Math.max cost 20–30× more.
 */
export function nearestInt(x: number): number {
  return Math.abs(x) < 4194304 ? f(x + 12582912) - 12582912 : roundHalfEven(x);
}

/** l limited to low..high (ggml's MAX(low, MIN(high, l))). */
export function clamp(l: number, low: number, high: number): number {
  return l < low ? low : l > high ? high : l;
}

/**
 * The part of `quantize_row_q4_K_ref` and `quantize_row_q5_K_ref` the two share: fits each of the 8 sub-blocks of
 * 32 (make_qkx2_quants, weighted by rms + |x|), writes f16 d and dmin and the 12 bytes of 6-bit scales and mins
 * into `header` (16 bytes), and the final codes 0..nmax of all 256 weights into `codes`.
 */
export function fitScaleMinSuperBlock(x: Float32Array, search: ScaleMinSearch, header: Uint8Array, codes: Uint8Array): void {
  const scales = new Float32Array(8);
  const mins = new Float32Array(8);
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    const sub = x.subarray(j * 32, j * 32 + 32);
    let sumSquares = 0;
    for (const v of sub) sumSquares = f(sumSquares + f(v * v));
    const average = f(Math.sqrt(f(sumSquares / 32)));
    const weights = Float32Array.from(sub, (v) => f(average + Math.abs(v)));
    const fit = makeQkx2Quants(search, sub, weights, codes.subarray(j * 32, j * 32 + 32));
    scales[j] = fit.scale;
    mins[j] = fit.min;
    if (fit.scale > maxScale) maxScale = fit.scale;
    if (fit.min > maxMin) maxMin = fit.min;
  }
  const inverseScale = maxScale > 0 ? f(63 / maxScale) : 0;
  const inverseMin = maxMin > 0 ? f(63 / maxMin) : 0;
  const packed = header.subarray(4, 16);
  for (let j = 0; j < 8; j++) {
    const ls = clamp(nearestInt(f(inverseScale * scales[j]!)), 0, 63);
    const lm = clamp(nearestInt(f(inverseMin * mins[j]!)), 0, 63);
    if (j < 4) {
      packed[j] = ls;
      packed[j + 4] = lm;
    } else {
      packed[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
      packed[j - 4] = packed[j - 4]! | ((ls >> 4) << 6);
      packed[j] = packed[j]! | ((lm >> 4) << 6);
    }
  }
  const dBits = floatToHalf(f(maxScale / 63));
  const dminBits = floatToHalf(f(maxMin / 63));
  header[0] = dBits & 0xff;
  header[1] = dBits >> 8;
  header[2] = dminBits & 0xff;
  header[3] = dminBits >> 8;
  const d = halfToFloat(dBits);
  const dmin = halfToFloat(dminBits);
  for (let j = 0; j < 8; j++) {
    const [sc, m] = scaleMin(j, packed);
    const scale = f(d * sc);
    // A sub-block whose scale rounds to 0 keeps make_qkx2_quants' codes, as llama.cpp does.
    if (!scale) continue;
    const offset = f(dmin * m);
    for (let l = 0; l < 32; l++) codes[j * 32 + l] = clamp(nearestInt(f(f(x[j * 32 + l]! + offset) / scale)), 0, search.nmax);
  }
}

/**
 * make_qkx2_quants: the scale and (non-negative, subtracted) min of one sub-block that minimise
 * the weighted squared error, trying nstep+1 rescalings of the naive range fit.
 */
export function makeQkx2Quants(search: ScaleMinSearch, x: Float32Array, weights: Float32Array, codes: Uint8Array): { scale: number; min: number } {
  const { nmax, nstep } = search;
  const rmin = f(search.rmin);
  const rdelta = f(search.rdelta);
  const code = (v: number, inverse: number) => clamp(nearestInt(f(inverse * f(v - min))), 0, nmax);
  let min = x[0]!;
  let max = x[0]!;
  let sumW = weights[0]!;
  let sumX = f(sumW * x[0]!);
  for (let i = 1; i < x.length; i++) {
    if (x[i]! < min) min = x[i]!;
    if (x[i]! > max) max = x[i]!;
    sumW = f(sumW + weights[i]!);
    sumX = f(sumX + f(weights[i]! * x[i]!));
  }
  if (min > 0) min = 0;
  if (max === min) {
    codes.fill(0);
    return { scale: 0, min: -min };
  }
  let inverse = f(nmax / f(max - min));
  let scale = f(1 / inverse);
  let bestError = 0;
  x.forEach((v, i) => {
    codes[i] = code(v, inverse);
    const diff = f(f(f(scale * codes[i]!) + min) - v);
    bestError = f(bestError + f(weights[i]! * f(diff * diff)));
  });
  const trial = new Uint8Array(x.length);
  for (let step = 0; step <= nstep; step++) {
    // min is the best fit's so far, as in llama.cpp: later trials start from it.
    inverse = f(f(f(rmin + f(rdelta * step)) + nmax) / f(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    x.forEach((v, i) => {
      const l = code(v, inverse);
      const wl = f(weights[i]! * l);
      trial[i] = l;
      sumL = f(sumL + wl);
      sumL2 = f(sumL2 + f(wl * l));
      sumXL = f(sumXL + f(wl * v));
    });
    const det = f(f(sumW * sumL2) - f(sumL * sumL));
    if (!(det > 0)) continue;
    let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / det);
    let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / det);
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = f(sumXL / sumL2);
    }
    let error = 0;
    x.forEach((v, i) => {
      const diff = f(f(f(thisScale * trial[i]!) + thisMin) - v);
      error = f(error + f(weights[i]! * f(diff * diff)));
    });
    if (error < bestError) {
      codes.set(trial);
      bestError = error;
      scale = thisScale;
      min = thisMin;
    }
  }
  return { scale, min: -min };
}
