import { floatsToHalves, floatToHalf, halfToFloat } from '../src/formats/half.js';
import { dequantizeBlocks, quantizeBlocks } from '../src/formats/ggml-blocks.js';

test('Q4_0 packs element j in the low nibble and j + 16 in the high nibble, offset by 8', () => {
  // Largest magnitude −8 gives scale d = −8 / −8 = 1, so each code is x + 8.
  const values = Float32Array.from({ length: 32 }, (_, i) => (i % 16) - 8);
  const block = quantizeBlocks('Q4_0', values);
  expect(block).toHaveLength(18);
  expect(halfToFloat(block[0]! | (block[1]! << 8))).toBe(1);
  expect([...block.subarray(2)]).toEqual(Array.from({ length: 16 }, (_, j) => j | (j << 4)));
  expect([...dequantizeBlocks('Q4_0', block, 32)]).toEqual([...values]);
});

test('Q8_0 stores d = max|x| / 127 as f16 and round(x / d) as int8', () => {
  const values = Float32Array.from({ length: 32 }, (_, i) => (i - 16) / 4); // max |x| = 4
  const block = quantizeBlocks('Q8_0', values);
  expect(block).toHaveLength(34);
  const d = 4 / 127;
  expect(block[0]! | (block[1]! << 8)).toBe(floatToHalf(d));
  const codes = [...new Int8Array(block.buffer, 2, 32)];
  expect(codes).toEqual(Array.from(values, (x) => Math.sign(x) * Math.round(Math.abs(x / d))));
  expect(codes[0]).toBe(-127);
});

test('f16 conversion rounds to nearest even and keeps subnormals', () => {
  expect(floatToHalf(1)).toBe(0x3c00);
  expect(floatToHalf(-2)).toBe(0xc000);
  expect(floatToHalf(65504)).toBe(0x7bff);
  expect(floatToHalf(1e6)).toBe(0x7c00);
  expect(floatToHalf(2 ** -24)).toBe(0x0001);
  // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1).
  expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00);
  expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
});

test('every finite half survives the round trip, and the point halfway to the next one rounds to the even of the two', () => {
  const wrong: number[] = [];
  for (let h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) === 0x7c00) continue; // infinities and NaNs
    if (floatToHalf(halfToFloat(h)) !== h) wrong.push(h);
    const next = h + 1;
    if ((h & 0x7fff) === 0x7bff) continue; // the largest finite half: halfway to it is 65520, which overflows to infinity
    const halfway = (halfToFloat(h) + halfToFloat(next)) / 2; // exact in float32
    if (floatToHalf(halfway) !== (h % 2 === 0 ? h : next)) wrong.push(h);
  }
  expect(wrong).toEqual([]);
  expect(floatToHalf(65520)).toBe(0x7c00);
});

test('floatsToHalves equals floatToHalf on every element, on an array that is a view into a larger buffer too', () => {
  const buffer = new Float32Array(1003).map((_, i) => (i % 2 ? -1 : 1) * 1.37 ** ((i % 97) - 60) + (i === 500 ? NaN : 0));
  buffer[501] = Infinity;
  buffer[502] = -0;
  const view = buffer.subarray(3, 1000);
  const halves = floatsToHalves(view);
  expect(halves).toHaveLength(997);
  expect(Array.from(view, floatToHalf).filter((h, i) => halves[i] !== h)).toEqual([]);
  expect([halves[497], halves[498], halves[499]]).toEqual([0x7e00, 0x7c00, 0x8000]);
});
