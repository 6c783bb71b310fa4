import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HerdInterrupted } from '../src/errors.js';
import { loadModel } from '../src/backends/load.js';
import { DEFAULT_CALIBRATION_FILE } from '../src/quant/calibration.js';
import { runQuantizeJob, type QuantizeJobOptions } from '../src/quant/job.js';
import { QUANT_BACKEND, scoreAgainstBase } from '../src/quant/scorecard.js';
import { DATA, STORIES } from './fixtures.js';

function options(outDir: string, overrides: Partial<QuantizeJobOptions> = {}): QuantizeJobOptions {
  return {
    modelDir: STORIES, outDir, formats: ['gptq'], groupSize: 64,
    calibration: { file: DEFAULT_CALIBRATION_FILE, samples: 2, seqLen: 64 },
    gptq: { symmetric: true, actOrder: false, dampPercent: 0.01 }, nf4DoubleQuant: false, ...overrides,
  };
}

test('an interrupted job resumes from its finished layers and writes the same bytes as an uninterrupted one', async () => {
  const whole = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-quant-whole-'));
  const [complete] = await runQuantizeJob(options(whole));
  const interrupted = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-quant-resume-'));
  // Ctrl-C while the second layer is quantized: the job stops once that layer is written.
  let asked = 0;
  const partial = path.join(interrupted, 'stories260K-gptq.partial');
  await expect(runQuantizeJob(options(interrupted, { shouldStop: () => ++asked === 2 }))).rejects.toThrow(
    new HerdInterrupted(`interrupted after layer 2 of 5 of gptq: the finished layers are kept in ${partial}; the same command resumes from them`),
  );
  expect(fs.existsSync(path.join(interrupted, 'stories260K-gptq'))).toBe(false);
  const [resumed] = await runQuantizeJob(options(interrupted));
  expect(resumed!.resumedLayers).toBe(2);
  expect(fs.readFileSync(path.join(resumed!.path, 'model.safetensors'))).toEqual(fs.readFileSync(path.join(complete!.path, 'model.safetensors')));
  const [again] = await runQuantizeJob(options(interrupted));
  expect(again!.alreadyDone).toBe(true);
});

test('Ctrl-C while a GGUF file is built stops the job and leaves no file', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-quant-gguf-stop-'));
  let asked = 0;
  await expect(runQuantizeJob(options(out, { formats: ['gguf-q8_0'], shouldStop: () => ++asked === 3 }))).rejects.toThrow(
    new HerdInterrupted('interrupted after layer 3 of 5 of gguf-q8_0: a GGUF file is written whole, so nothing of it is kept; the formats finished before it are complete'),
  );
  expect(fs.readdirSync(out)).toEqual([]);
  fs.rmSync(out, { recursive: true, force: true });
});

test('corrupt or unsupported input models give one clear error', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-quant-bad-'));
  const broken = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-quant-broken-'));
  for (const name of fs.readdirSync(STORIES)) fs.copyFileSync(path.join(STORIES, name), path.join(broken, name));
  const weights = path.join(broken, 'model.safetensors');
  fs.truncateSync(weights, fs.statSync(weights).size - 100);
  await expect(runQuantizeJob(options(out, { modelDir: broken }))).rejects.toThrow(/truncated/);
  await expect(runQuantizeJob(options(out, { groupSize: 128 }))).rejects.toThrow('hidden size 64 is not a multiple of --group-size 128');
  const quantized = (await runQuantizeJob(options(out, { formats: ['nf4'] })))[0]!.path;
  await expect(runQuantizeJob(options(out, { modelDir: quantized }))).rejects.toThrow(/already quantized/);
  const config = JSON.parse(fs.readFileSync(path.join(quantized, 'config.json'), 'utf8'));
  config.quantization_config.quant_method = 'hqq';
  fs.writeFileSync(path.join(quantized, 'config.json'), JSON.stringify(config));
  await expect(loadModel(quantized, { backend: QUANT_BACKEND })).rejects.toThrow('config.json: quantization_config: quant_method "hqq" is not supported');
});

test('without --group-size the 4-bit formats take 128, or the largest group the hidden size splits into (64 here), and say which', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-quant-group-'));
  const [rtn] = await runQuantizeJob(options(out, { formats: ['int4-rtn'], groupSize: undefined }));
  expect(rtn!.groupSize).toBe(64);
  const config = JSON.parse(fs.readFileSync(path.join(rtn!.path, 'config.json'), 'utf8'));
  expect(config.quantization_config.group_size).toBe(64);
  const [again] = await runQuantizeJob(options(out, { formats: ['int4-rtn'], groupSize: undefined }));
  expect(again!.alreadyDone).toBe(true);
  expect(again!.notes).toEqual(rtn!.notes);
});

const scoreText = fs.readFileSync(path.join(DATA, 'text/tinystories-valid-head.txt'), 'utf8');

test('scorecard: Q8_0 perplexity on TinyStories within 1 % of the base', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-quant-score-'));
  const [q8] = await runQuantizeJob(options(out, { formats: ['gguf-q8_0'] }));
  const base = await loadModel(STORIES, { backend: QUANT_BACKEND });
  const quant = await loadModel(q8!.path, { backend: QUANT_BACKEND });
  const card = scoreAgainstBase(base, quant, scoreText, 256, 1024);
  expect(card.tokens).toBe(1024);
  expect(Math.abs(card.quantPerplexity / card.basePerplexity - 1)).toBeLessThan(0.01);
  expect(card.top1Agreement).toBeGreaterThan(0.95);
  expect(card.meanKl).toBeGreaterThanOrEqual(0);
  expect(card.p99Kl).toBeGreaterThanOrEqual(card.meanKl);
});

test('scorecard: AWQ and GPTQ perplexity on TinyStories no worse than round-to-nearest 4-bit at the same group size', async () => {
  // Kept small, since AWQ's scale search and GPTQ cost in proportion to the calibration tokens:
  // 2 windows of 64 and 512 scored tokens (it was 4 of 128 and 1024, over 120 s on a busy
  // machine). The margins stay clear: perplexity 4.82 for round-to-nearest, 4.64 AWQ, 4.55 GPTQ
  // (base 4.21); with 4 windows of 128 and 1024 tokens they were 5.17, 4.97 and 4.76.
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-quant-int4-'));
  const results = await runQuantizeJob(options(out, {
    formats: ['int4-rtn', 'awq', 'gptq'], groupSize: 32,
    calibration: { file: DEFAULT_CALIBRATION_FILE, samples: 2, seqLen: 64 },
    gptq: { symmetric: false, actOrder: false, dampPercent: 0.01 },
  }));
  const base = await loadModel(STORIES, { backend: QUANT_BACKEND });
  const perplexity: Record<string, number> = {};
  for (const result of results) {
    const quant = await loadModel(result.path, { backend: QUANT_BACKEND });
    perplexity[result.format] = scoreAgainstBase(base, quant, scoreText, 256, 512).quantPerplexity;
  }
  expect(perplexity.awq).toBeLessThanOrEqual(perplexity['int4-rtn']!);
  expect(perplexity.gptq).toBeLessThanOrEqual(perplexity['int4-rtn']!);
});
