import { kvBytesPerToken, kvCacheBytes, parseKvDtype } from '../src/memory/kv-cache.js';
import { compareWithPost, roundsTo } from '../src/memory/post-tables.js';
import { presetModel } from '../src/memory/presets.js';

const GIB = 2 ** 30;
const arch = (preset: string) => presetModel(preset).architecture;

describe('KV cache = 2 × layers × kv_heads × head_dim × bytes × tokens × batch', () => {
  test('per token in fp16: 8B 131,072 bytes, 70B 327,680, 405B 516,096', () => {
    expect(kvBytesPerToken(arch('llama-3.1-8b'), 'fp16')).toBe(2 * 32 * 8 * 128 * 2);
    expect(kvBytesPerToken(arch('llama-3.1-70b'), 'fp16')).toBe(2 * 80 * 8 * 128 * 2);
    expect(kvBytesPerToken(arch('llama-3.1-405b'), 'fp16')).toBe(2 * 126 * 8 * 128 * 2);
  });

  test('scales with tokens and batch, and with the element size of each cache type', () => {
    const a = arch('llama-3.1-8b');
    expect(kvCacheBytes(a, 'bf16', 131072, 4)).toBe(131072 * 131072 * 4);
    expect(kvBytesPerToken(a, 'fp8')).toBe(65536);
    expect(kvBytesPerToken(a, 'q8_0')).toBe((131072 / 2) * (34 / 32));
    expect(kvBytesPerToken(a, 'q4_0')).toBe((131072 / 2) * (18 / 32));
  });

  test('an unknown cache type is one clear error', () => {
    expect(() => parseKvDtype('int2')).toThrow(/unknown KV cache type "int2"/);
  });
});

describe("the post's KV table (GiB; 1k = 1,024 tokens, 16k = 16,000, 128k = 128,000)", () => {
  test('8B and 70B values are exactly these binary fractions', () => {
    const a8 = arch('llama-3.1-8b');
    const a70 = arch('llama-3.1-70b');
    expect([1024, 16000, 128000].map((t) => kvCacheBytes(a8, 'fp16', t, 1) / GIB)).toEqual([0.125, 1.953125, 15.625]);
    expect([1024, 16000, 128000].map((t) => kvCacheBytes(a70, 'fp16', t, 1) / GIB)).toEqual([0.3125, 4.8828125, 39.0625]);
  });

  const cells = compareWithPost().filter((cell) => cell.table === 'kv-cache');

  test.each([
    ['llama-3.1-8b', ['0.125', '1.95', '15.62']],
    ['llama-3.1-70b', ['0.313', '4.88', '39.06']],
  ])('%s reproduces the printed %j', (model, printed) => {
    const row = cells.filter((cell) => cell.model === model);
    expect(row.map((cell) => cell.matches)).toEqual([true, true, true]);
    row.forEach((cell, index) => expect(roundsTo(cell.computed, printed[index] ?? '')).toBe(true));
  });

  test('405B: the consistent figure is half the printed one, and the row is flagged', () => {
    const row = cells.filter((cell) => cell.model === 'llama-3.1-405b');
    expect(row.map((cell) => cell.computed)).toEqual([0.4921875, 7.6904296875, 61.5234375]);
    expect(row.map((cell) => cell.matches)).toEqual([false, false, false]);
    ['0.984', '15.38', '123.05'].forEach((printed, index) => expect(roundsTo(2 * (row[index]?.computed ?? 0), printed)).toBe(true));
    for (const cell of row) expect(cell.note).toMatch(/twice/);
  });

  test('matching means within half a unit of the last printed digit', () => {
    expect(roundsTo(15.625, '15.62')).toBe(true);
    expect(roundsTo(15.63, '15.62')).toBe(false);
  });
});
