import { seededRandom } from '../src/engine/sampling.js';
import { dequantizeGgml } from '../src/formats/ggml-dequantize.js';
import { GgmlType } from '../src/formats/gguf.js';
import { floatToHalf, halfToFloat } from '../src/formats/half.js';
import { dequantizeInt4, emptyInt4 } from '../src/formats/int4.js';
import { spanGroups, writeInt4Rows } from '../src/formats/int4-rows.js';
import { packedBytes, INT4_GROUP_COLUMNS } from '../src/formats/weights.js';

/**
 * Stored weights made of random bytes, for kernel tests: in these formats every code (and every
 * Q5 high bit, K-quant or IQ4_XS sub-block scale, INT4 zero-point 0..16) is valid, so random bytes reach all
 * of them; only the f16 scales and minimums are set, to finite values of either sign. The weights
 * they stand for come from the formats layer's own dequantizers (held to ggml's definitions by the
 * ggml-*.test.ts files, and to the AWQ/GPTQ checkpoints by kernels-int4.test.ts).
 */
export type RandomPackedFormat = 'Q6_K' | 'Q5_K' | 'Q3_K' | 'Q2_K' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'IQ4_NL' | 'IQ4_XS' | 'INT4_G128';
export const RANDOM_PACKED_FORMATS: readonly RandomPackedFormat[] = ['Q6_K', 'Q5_K', 'Q3_K', 'Q2_K', 'Q4_1', 'Q5_0', 'Q5_1', 'IQ4_NL', 'IQ4_XS', 'INT4_G128'];

/** Bytes per block, and where its f16 scale and minimum are. */
const GGML_HEADERS: Record<Exclude<RandomPackedFormat, 'INT4_G128'>, { block: number; bytes: number; halves: number[] }> = {
  Q6_K: { block: 256, bytes: 210, halves: [208] },
  Q5_K: { block: 256, bytes: 176, halves: [0, 2] },
  Q3_K: { block: 256, bytes: 110, halves: [108] },
  Q2_K: { block: 256, bytes: 84, halves: [80, 82] },
  Q4_1: { block: 32, bytes: 20, halves: [0, 2] },
  Q5_0: { block: 32, bytes: 22, halves: [0] },
  Q5_1: { block: 32, bytes: 24, halves: [0, 2] },
  IQ4_NL: { block: 32, bytes: 18, halves: [0] },
  IQ4_XS: { block: 256, bytes: 136, halves: [0] },
};

export function randomPacked(format: RandomPackedFormat, rows: number, cols: number, seed: number): { bytes: Uint8Array; weights: Float32Array } {
  const random = seededRandom(seed);
  // Up to 0.05 either way: products of a few hundred weights stay near 1.
  const randomHalf = () => floatToHalf((random() - 0.5) * 0.1);
  if (format === 'INT4_G128') {
    const m = emptyInt4(rows, cols, INT4_GROUP_COLUMNS);
    m.codes.forEach((_, i) => (m.codes[i] = Math.floor(random() * 16)));
    m.zeros.forEach((_, i) => (m.zeros[i] = Math.floor(random() * 17)));
    m.scales.forEach((_, i) => (m.scales[i] = halfToFloat(randomHalf())));
    const bytes = new Uint8Array(packedBytes('INT4_G128', rows, cols));
    writeInt4Rows(m, spanGroups(m.groupOfColumn)!, 0, bytes);
    return { bytes, weights: dequantizeInt4(m) };
  }
  const { block, bytes: blockBytes, halves } = GGML_HEADERS[format];
  const bytes = Uint8Array.from({ length: ((rows * cols) / block) * blockBytes }, () => Math.floor(random() * 256));
  const view = new DataView(bytes.buffer);
  for (let at = 0; at < bytes.length; at += blockBytes) for (const offset of halves) view.setUint16(at + offset, randomHalf(), true);
  return { bytes, weights: dequantizeGgml(GgmlType[format], bytes, rows * cols) };
}
