import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { readFloatTensor, readSafetensorsHeader, writeSafetensors } from '../src/formats/safetensors.js';
import { openForReading } from '../src/formats/files.js';
import { compareDistributions, pairedDelta } from '../src/eval/compare.js';
import type { MetricValue } from '../src/eval/results.js';
import { DATA, STORIES } from './fixtures.js';

const TEXT = path.join(DATA, 'text/tinystories-valid-head.txt');

/** A copy of stories260K whose matrices are rounded to 16 levels per tensor (a crude 4-bit quantization). */
function writeQuantizedCopy(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-eval-variant-'));
  for (const name of fs.readdirSync(STORIES)) if (name !== 'model.safetensors') fs.copyFileSync(path.join(STORIES, name), path.join(dir, name));
  const file = path.join(STORIES, 'model.safetensors');
  const fd = openForReading(file);
  try {
    const tensors = readSafetensorsHeader(file).map((entry) => {
      const { data } = readFloatTensor(entry, fd);
      if (entry.shape.length === 2) {
        const step = data.reduce((max, value) => Math.max(max, Math.abs(value)), 0) / 8;
        for (let i = 0; i < data.length; i++) data[i] = Math.round(data[i]! / step) * step;
      }
      return { name: entry.name, dtype: 'F32', shape: entry.shape, bytes: new Uint8Array(data.buffer) };
    });
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  } finally {
    fs.closeSync(fd);
  }
  return dir;
}

const metric = (perDoc: number[]): MetricValue => ({ metric: 'acc', filter: 'none', value: perDoc.reduce((a, b) => a + b, 0) / perDoc.length, stderr: 0, higherIsBetter: true, perDoc });

describe('paired significance test (hand-worked)', () => {
  test('3 of 9 documents flip to correct: z = 2, two-sided p = 2(1 − Φ(2)) = 0.0455', () => {
    // Differences: three 1s and six 0s. Mean 1/3; sample variance (3·(2/3)² + 6·(1/3)²)/8 = 1/4,
    // so the standard error is (1/2)/√9 = 1/6 and z = (1/3)/(1/6) = 2. Φ(2) = 0.97724986805.
    const base = metric([0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const variant = metric([1, 1, 1, 0, 0, 0, 0, 0, 0]);
    const delta = pairedDelta('t', base, variant);
    expect(delta.delta).toBeCloseTo(1 / 3, 12);
    expect(delta.stderr).toBeCloseTo(1 / 6, 12);
    expect(delta.pValue).toBeCloseTo(0.0455002639, 6);
    // The direction does not change a two-sided p.
    expect(pairedDelta('t', variant, base).pValue).toBeCloseTo(0.0455002639, 6);
  });

  test('pairing matters: the same accuracies with a constant difference are certain, identical runs give p = 1', () => {
    // Every document gains exactly 0.5: no spread in the differences.
    expect(pairedDelta('t', metric([0, 0.5, 0]), metric([0.5, 1, 0.5]))).toMatchObject({ delta: 0.5, stderr: 0, pValue: 0 });
    expect(pairedDelta('t', metric([1, 0, 1]), metric([1, 0, 1]))).toMatchObject({ delta: 0, pValue: 1 });
    // Corpus metrics carry no per-document values: no test.
    expect(pairedDelta('t', { ...metric([1]), perDoc: undefined }, metric([1]))).toMatchObject({ pValue: null });
  });
});

describe('next-token distributions of stories260K and a quantized copy', () => {
  let base: LoadedModel;
  let variant: LoadedModel;
  let variantDir: string;
  let tokens: number[];
  beforeAll(async () => {
    variantDir = writeQuantizedCopy();
    base = await loadModel(STORIES);
    variant = await loadModel(variantDir);
    tokens = base.tokenizer.encode(fs.readFileSync(TEXT, 'utf8').slice(0, 2000), true).slice(0, 96);
  });

  test('a model against itself: KL 0 and full top-1 agreement', () => {
    expect(compareDistributions(base, base, tokens, 48)).toEqual({ tokens: 96, meanKl: 0, maxKl: 0, top1Agreement: 1 });
  });

  test('against the quantized copy: KL > 0, equal to Σ p (log p − log q) computed here from the logits', () => {
    const result = compareDistributions(base, variant, tokens, 96);
    expect(result.meanKl).toBeGreaterThan(0);
    expect(result.maxKl).toBeGreaterThanOrEqual(result.meanKl);
    const logits = [base, variant].map((loaded) => {
      const cache = loaded.model.createCache(tokens.length);
      const rows = loaded.model.forward(Int32Array.from(tokens), cache, { allPositions: true });
      cache.dispose();
      return rows;
    });
    const vocab = base.config.vocabSize;
    let total = 0;
    let agree = 0;
    for (let row = 0; row < tokens.length; row++) {
      const [p, q] = logits.map((all) => {
        const z = Array.from(all!.subarray(row * vocab, (row + 1) * vocab));
        const max = Math.max(...z);
        const sum = z.reduce((s, v) => s + Math.exp(v - max), 0);
        return z.map((v) => Math.exp(v - max) / sum);
      }) as [number[], number[]];
      total += p.reduce((s, pv, v) => s + pv * Math.log(pv / q[v]!), 0);
      if (p.indexOf(Math.max(...p)) === q.indexOf(Math.max(...q))) agree++;
    }
    expect(result.meanKl).toBeCloseTo(total / tokens.length, 5);
    expect(result.top1Agreement).toBe(agree / tokens.length);
  });

  describe('herd eval --compare', () => {
    const run = promisify(execFile);
    const evalArgs = (variantModel: string) => ['eval', 'boolq', '--model', STORIES, '--compare', variantModel, '--data', DATA, '--limit', '6', '--max-length', '256', '--compare-text', TEXT, '--compare-tokens', '64', '--json'];

    test('with itself: every delta 0 with p = 1, KL 0, agreement 1', async () => {
      const out = JSON.parse((await run(path.resolve('bin/run.js'), evalArgs(STORIES))).stdout);
      expect(out.deltas).toEqual([{ task: 'boolq', metric: 'acc', filter: 'none', base: out.base.results.boolq['acc,none'], variant: out.base.results.boolq['acc,none'], delta: 0, stderr: 0, pValue: 1 }]);
      expect(out.distribution).toEqual({ tokens: 64, meanKl: 0, maxKl: 0, top1Agreement: 1 });
    });

    test('with the quantized copy: the delta is variant − base on the same 6 documents, KL > 0', async () => {
      const out = JSON.parse((await run(path.resolve('bin/run.js'), evalArgs(variantDir))).stdout);
      const [delta] = out.deltas;
      expect(out.variant['n-samples'].boolq.effective).toBe(6);
      expect(delta.delta).toBeCloseTo(out.variant.results.boolq['acc,none'] - out.base.results.boolq['acc,none'], 12);
      expect(delta.pValue === null || (delta.pValue >= 0 && delta.pValue <= 1)).toBe(true);
      expect(out.distribution.tokens).toBe(64);
      expect(out.distribution.meanKl).toBeGreaterThan(0);
    });
  });
});
