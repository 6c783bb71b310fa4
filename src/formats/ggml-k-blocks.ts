import { floatToHalf, halfToFloat } from './half.js';
import { HerdError } from '../errors.js';
// ggml's nearest_int rounds half to even.
import { roundHalfEven as nearestInt } from './int4.js';

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

function quantizeBlock(x: Float32Array, out: Uint8Array): void {
  const codes = new Uint8Array(QK_K);
  const scales = new Float32Array(8);
  const mins = new Float32Array(8);
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    const sub = x.subarray(j * 32, j * 32 + 32);
    let sumSquares = 0;
    for (const v of sub) sumSquares += v * v;
    const average = Math.sqrt(sumSquares / 32);
    const weights = Float32Array.from(sub, (v) => average + Math.abs(v));
    const fit = makeQkx2Quants(15, sub, weights, codes.subarray(j * 32, j * 32 + 32), -1, 0.1, 20);
    scales[j] = fit.scale;
    mins[j] = fit.min;
    maxScale = Math.max(maxScale, fit.scale);
    maxMin = Math.max(maxMin, fit.min);
  }
  const inverseScale = maxScale > 0 ? 63 / maxScale : 0;
  const inverseMin = maxMin > 0 ? 63 / maxMin : 0;
  const packed = out.subarray(4, 16);
  for (let j = 0; j < 8; j++) {
    const ls = Math.min(63, nearestInt(inverseScale * scales[j]!));
    const lm = Math.min(63, nearestInt(inverseMin * mins[j]!));
    if (j < 4) {
      packed[j] = ls;
      packed[j + 4] = lm;
    } else {
      packed[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
      packed[j - 4] = packed[j - 4]! | ((ls >> 4) << 6);
      packed[j] = packed[j]! | ((lm >> 4) << 6);
    }
  }
  const dBits = floatToHalf(maxScale / 63);
  const dminBits = floatToHalf(maxMin / 63);
  out[0] = dBits & 0xff;
  out[1] = dBits >> 8;
  out[2] = dminBits & 0xff;
  out[3] = dminBits >> 8;
  const d = halfToFloat(dBits);
  const dmin = halfToFloat(dminBits);
  for (let j = 0; j < 8; j++) {
    const [sc, m] = scaleMin(j, packed);
    const scale = Math.fround(d * sc);
    if (!scale) continue;
    const offset = Math.fround(dmin * m);
    for (let l = 0; l < 32; l++) codes[j * 32 + l] = Math.max(0, Math.min(15, nearestInt((x[j * 32 + l]! + offset) / scale)));
  }
  const qs = out.subarray(16);
  for (let quarter = 0; quarter < 4; quarter++) {
    for (let l = 0; l < 32; l++) qs[quarter * 32 + l] = codes[quarter * 64 + l]! | (codes[quarter * 64 + 32 + l]! << 4);
  }
}

/**
 * make_qkx2_quants: the scale and (non-negative, subtracted) min of one sub-block that minimise
 * the weighted squared error, trying nstep+1 rescalings of the naive range fit.
 */
function makeQkx2Quants(
  nmax: number, x: Float32Array, weights: Float32Array, codes: Uint8Array, rmin: number, rdelta: number, nstep: number,
): { scale: number; min: number } {
  let min = x[0]!;
  let max = x[0]!;
  let sumW = 0;
  let sumX = 0;
  x.forEach((v, i) => {
    min = Math.min(min, v);
    max = Math.max(max, v);
    sumW += weights[i]!;
    sumX += weights[i]! * v;
  });
  if (min > 0) min = 0;
  if (max === min) {
    codes.fill(0);
    return { scale: 0, min: -min };
  }
  let inverse = nmax / (max - min);
  let scale = 1 / inverse;
  let bestError = 0;
  x.forEach((v, i) => {
    codes[i] = Math.max(0, Math.min(nmax, nearestInt(inverse * (v - min))));
    bestError += weights[i]! * (scale * codes[i]! + min - v) ** 2;
  });
  const trial = new Uint8Array(x.length);
  for (let step = 0; step <= nstep; step++) {
    inverse = (rmin + rdelta * step + nmax) / (max - min);
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    x.forEach((v, i) => {
      const l = Math.max(0, Math.min(nmax, nearestInt(inverse * (v - min))));
      trial[i] = l;
      sumL += weights[i]! * l;
      sumL2 += weights[i]! * l * l;
      sumXL += weights[i]! * l * v;
    });
    const det = sumW * sumL2 - sumL * sumL;
    if (det <= 0) continue;
    let thisScale = (sumW * sumXL - sumX * sumL) / det;
    let thisMin = (sumL2 * sumX - sumL * sumXL) / det;
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = sumXL / sumL2;
    }
    let error = 0;
    x.forEach((v, i) => (error += weights[i]! * (thisScale * trial[i]! + thisMin - v) ** 2));
    if (error < bestError) {
      codes.set(trial);
      bestError = error;
      scale = thisScale;
      min = thisMin;
    }
  }
  return { scale, min: -min };
}
