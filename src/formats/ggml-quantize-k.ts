import { HerdError } from '../errors.js';
import { floatToHalf, halfToFloat } from './half.js';
import { QK_K, clamp, fitScaleMinSuperBlock, nearestInt, type ScaleMinSearch } from './ggml-k-blocks.js';

/**
 * Writers of GGUF's Q5_K and Q6_K super-blocks of 256 weights, as llama.cpp's reference quantizers
 * (`quantize_row_q5_K_ref`, `quantize_row_q6_K_ref` in ggml-quants.c) write them when no importance
 * matrix is given, in float32 like the C code (every rounding to float is a Math.fround here), so
 * the bytes equal llama.cpp's. Q4_K is in ggml-k-blocks.ts, whose sub-block fit Q5_K shares.
 *
 *   Q5_K 176 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins (as Q4_K), qh[32] holding
 *        the 5th bit of each code, qs[128] the low 4 bits; weight ≈ d·sc·q − dmin·m, q in 0..31.
 *   Q6_K 210 bytes: ql[128] low 4 bits, qh[64] high 2 bits, 16 int8 scales (one per 16 weights),
 *        f16 d; weight ≈ d·scale·(q − 32), q in 0..63.
 */

export const Q5_K_BYTES = 176;
export const Q6_K_BYTES = 210;

const f = Math.fround;
/** GROUP_MAX_EPS: a group whose largest magnitude is below it is stored as zeros. */
const GROUP_MAX_EPS = f(1e-15);

/** Q5_K's search for each sub-block's scale and min (`make_qkx2_quants(32, 31, …, -0.5, 0.1, 15)`). */
const Q5_K_SEARCH: ScaleMinSearch = { nmax: 31, rmin: -0.5, rdelta: 0.1, nstep: 15 };

export function quantizeQ5K(values: Float32Array): Uint8Array {
  return eachSuperBlock('Q5_K', values, Q5_K_BYTES, quantizeQ5KBlock);
}

export function quantizeQ6K(values: Float32Array): Uint8Array {
  return eachSuperBlock('Q6_K', values, Q6_K_BYTES, quantizeQ6KBlock);
}

function eachSuperBlock(type: string, values: Float32Array, blockBytes: number, quantize: (x: Float32Array, out: Uint8Array) => void): Uint8Array {
  if (values.length % QK_K !== 0) throw new HerdError(`${type} needs rows that are a multiple of ${QK_K} long`);
  const blocks = values.length / QK_K;
  const out = new Uint8Array(blocks * blockBytes);
  for (let b = 0; b < blocks; b++) quantize(values.subarray(b * QK_K, (b + 1) * QK_K), out.subarray(b * blockBytes, (b + 1) * blockBytes));
  return out;
}

function quantizeQ5KBlock(x: Float32Array, out: Uint8Array): void {
  const codes = new Uint8Array(QK_K);
  fitScaleMinSuperBlock(x, Q5_K_SEARCH, out.subarray(0, 16), codes);
  const qh = out.subarray(16, 48);
  const qs = out.subarray(48, 176);
  // Each 64 weights: low nibbles of the first 32, high nibbles of the next 32; their 5th bits go to
  // bit pair 2·(n/64), 2·(n/64)+1 of qh[j].
  for (let n = 0; n < QK_K / 64; n++) {
    for (let j = 0; j < 32; j++) {
      const low = codes[n * 64 + j]!;
      const high = codes[n * 64 + 32 + j]!;
      qs[n * 32 + j] = (low & 0xf) | ((high & 0xf) << 4);
      qh[j] = qh[j]! | ((low >> 4) << (2 * n)) | ((high >> 4) << (2 * n + 1));
    }
  }
}

function quantizeQ6KBlock(x: Float32Array, out: Uint8Array): void {
  const codes = new Uint8Array(QK_K);
  const scales = new Float32Array(16);
  let maxScale = 0;
  let maxAbsScale = 0;
  for (let ib = 0; ib < 16; ib++) {
    const scale = makeQxQuants(32, x.subarray(ib * 16, ib * 16 + 16), codes.subarray(ib * 16, ib * 16 + 16));
    scales[ib] = scale;
    if (Math.abs(scale) > maxAbsScale) {
      maxAbsScale = Math.abs(scale);
      maxScale = scale;
    }
  }
  if (maxAbsScale < GROUP_MAX_EPS) return; // all zeros, d = 0
  const inverse = f(-128 / maxScale);
  const dBits = floatToHalf(f(1 / inverse));
  out[208] = dBits & 0xff;
  out[209] = dBits >> 8;
  const d = halfToFloat(dBits);
  const intScales = new Int8Array(out.buffer, out.byteOffset + 192, 16);
  for (let ib = 0; ib < 16; ib++) intScales[ib] = clamp(nearestInt(f(inverse * scales[ib]!)), -128, 127);
  for (let ib = 0; ib < 16; ib++) {
    const step = f(d * intScales[ib]!);
    // A group whose scale rounds to 0 keeps make_qx_quants' codes, as llama.cpp does.
    if (!step) continue;
    for (let i = ib * 16; i < ib * 16 + 16; i++) codes[i] = clamp(nearestInt(f(x[i]! / step)), -32, 31) + 32;
  }
  packQ6K(codes, out.subarray(0, 128), out.subarray(128, 192));
}

/**
 * Each 128 weights w[0..127] fill 64 bytes of ql and 32 of qh: ql[l] = w[l] | w[l+64] << 4,
 * ql[l+32] = w[l+32] | w[l+96] << 4 (low 4 bits), qh[l] = the high 2 bits of w[l], w[l+32],
 * w[l+64], w[l+96] at bits 0, 2, 4, 6.
 */
function packQ6K(codes: Uint8Array, ql: Uint8Array, qh: Uint8Array): void {
  for (let half = 0; half < 2; half++) {
    const w = codes.subarray(half * 128, half * 128 + 128);
    for (let l = 0; l < 32; l++) {
      ql[half * 64 + l] = (w[l]! & 0xf) | ((w[l + 64]! & 0xf) << 4);
      ql[half * 64 + l + 32] = (w[l + 32]! & 0xf) | ((w[l + 96]! & 0xf) << 4);
      qh[half * 32 + l] = (w[l]! >> 4) | ((w[l + 32]! >> 4) << 2) | ((w[l + 64]! >> 4) << 4) | ((w[l + 96]! >> 4) << 6);
    }
  }
}

/**
 * make_qx_quants with rmse_type 1 (weights x²) and no importance: the signed scale of one group
 * that best fits codes −nmax..nmax−1, trying 18 rescalings around −nmax / (value of largest
 * magnitude). Writes codes + nmax (0..2·nmax−1) into `codes`.
 */
function makeQxQuants(nmax: number, x: Float32Array, codes: Uint8Array): number {
  let max = 0;
  let amax = 0;
  for (const v of x) {
    if (Math.abs(v) > amax) {
      amax = Math.abs(v);
      max = v;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    codes.fill(0);
    return 0;
  }
  const code = (inverse: number, v: number) => clamp(nearestInt(f(inverse * v)), -nmax, nmax - 1);
  /** The weighted sums Σ w·x·l and Σ w·l² of the codes one inverse scale gives. */
  const fit = (inverse: number) => {
    let sumLX = 0;
    let sumL2 = 0;
    for (const v of x) {
      const l = code(inverse, v);
      const w = f(v * v);
      sumLX = f(sumLX + f(f(w * v) * l));
      sumL2 = f(sumL2 + f(f(w * l) * l));
    }
    return { sumLX, sumL2 };
  };
  const setCodes = (inverse: number) => x.forEach((v, i) => (codes[i] = code(inverse, v) + nmax));
  let inverse = f(-nmax / max);
  setCodes(inverse);
  const first = fit(inverse);
  let scale = first.sumL2 ? f(first.sumLX / first.sumL2) : 0;
  let best = f(scale * first.sumLX);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    inverse = f(-f(nmax + f(f(0.1) * is)) / max);
    const { sumLX, sumL2 } = fit(inverse);
    if (sumL2 > 0 && f(sumLX * sumLX) > f(best * sumL2)) {
      setCodes(inverse);
      scale = f(sumLX / sumL2);
      best = f(scale * sumLX);
    }
  }
  return scale;
}
