import path from 'node:path';
import { parseLlamaConfig } from '../src/spec/llama-config.js';
import { ropeTables } from '../src/engine/rope.js';
import { ropeInverseFrequencies } from '../src/spec/rope.js';
import { STORIES, TINY_LLAMA, readJson } from './fixtures.js';

test('llama3-scaled inverse frequencies of tiny-llama-3.1 (values from the fixture README)', () => {
  const config = parseLlamaConfig(readJson(path.join(TINY_LLAMA, 'config.json')), 'config.json');
  const expected = [1, 0.1939227447, 0.03760603093, 0.007292664737, 0.000524846161, 3.428102196e-5, 6.647869871e-6, 1.289173172e-6];
  const actual = ropeInverseFrequencies(config);
  expected.forEach((value, i) => expect(Math.abs(actual[i]! - value) / value).toBeLessThan(1e-6));
});

test('unscaled and linear-scaled frequencies follow theta^(-2i/d)', () => {
  const config = parseLlamaConfig(readJson(path.join(STORIES, 'config.json')), 'config.json');
  const plain = ropeInverseFrequencies(config);
  [1, 0.1, 0.01, 0.001].forEach((value, i) => expect(plain[i]).toBeCloseTo(value, 7));
  const linear = ropeInverseFrequencies({ ...config, ropeScaling: { type: 'linear', factor: 4 } });
  [0.25, 0.025, 0.0025, 0.00025].forEach((value, i) => expect(linear[i]).toBeCloseTo(value, 8));
});

test('cos/sin tables repeat the frequencies over both halves of a head', () => {
  const tables = ropeTables(Float32Array.of(1, 0.5), 3, 2);
  const row = (table: Float32Array, p: number) => [...table.slice(p * 4, p * 4 + 4)];
  expect(row(tables.cos, 1)).toEqual([4, 2, 4, 2].map((angle) => Math.fround(Math.cos(angle))));
  expect(row(tables.sin, 0)).toEqual([3, 1.5, 3, 1.5].map((angle) => Math.fround(Math.sin(angle))));
});
