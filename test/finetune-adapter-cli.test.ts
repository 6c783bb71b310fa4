import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tensorShapes } from '../src/spec/tensors.js';
import { openModelFolder } from '../src/engine/load.js';
import { seededRandom } from '../src/engine/sampling.js';
import { writeSafetensors } from '../src/formats/safetensors.js';
import { mergeDelta, readPeftAdapter, writePeftAdapter, type LoraMatrices } from '../src/formats/peft.js';
import { validateLoraSettings } from '../src/formats/peft.js';
import { DATA, STORIES, TINY_LLAMA } from './fixtures.js';
import { HANG_GUARD_MS } from './hang-guard.js';

// --adapter in herd eval and herd chat, through the built CLI (npm test builds first).
const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/run.js');
const SETTINGS = validateLoraSettings({ r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj', 'v_proj', 'down_proj'] });

function herd(args: string[], input = '') {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', input, timeout: HANG_GUARD_MS });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** A PEFT adapter for `modelDir` with seeded A and B of scale `std` on every targeted module. */
function writeRandomAdapter(modelDir: string, dir: string, std: number): void {
  const { config, checkpoint } = openModelFolder(modelDir);
  checkpoint.close();
  const random = seededRandom(17);
  const draw = (count: number) => Float32Array.from({ length: count }, () => (random() * 2 - 1) * std);
  const matrices: LoraMatrices[] = [];
  for (const [module, shape] of tensorShapes(config)) {
    if (!SETTINGS.targetModules.some((target) => module.endsWith(`.${target}.weight`))) continue;
    const [out, inFeatures] = shape as [number, number];
    matrices.push({ module, a: { name: 'A', shape: [SETTINGS.r, inFeatures], data: draw(SETTINGS.r * inFeatures) }, b: { name: 'B', shape: [out, SETTINGS.r], data: draw(out * SETTINGS.r) } });
  }
  writePeftAdapter(dir, SETTINGS, modelDir, matrices);
}

/** The base model with the adapter merged in float32, every tensor stored F32 in one file (no rounding to the base's BF16). */
function writeMergedF32(modelDir: string, adapterDir: string, outDir: string): void {
  const { config, checkpoint } = openModelFolder(modelDir);
  try {
    const adapter = readPeftAdapter(adapterDir, config);
    fs.mkdirSync(outDir, { recursive: true });
    for (const name of fs.readdirSync(modelDir).filter((file) => file.endsWith('.json') && file !== 'model.safetensors.index.json')) {
      fs.copyFileSync(path.join(modelDir, name), path.join(outDir, name));
    }
    const tensors = checkpoint.names().map((name) => {
      const weight = checkpoint.readFloat(name);
      const matrices = adapter.matrices.get(name);
      const { data, shape } = matrices ? mergeDelta(weight, matrices, adapter.scale) : weight;
      return { name, dtype: 'F32', shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
    });
    writeSafetensors(path.join(outDir, 'model.safetensors'), tensors);
  } finally {
    checkpoint.close();
  }
}

let tmp: string;
beforeAll(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-adaptercli-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('eval --adapter changes the loglikelihood of stories260K, to that of the merged model', () => {
  const adapter = path.join(tmp, 'stories-adapter');
  writeRandomAdapter(STORIES, adapter, 0.3);
  const merged = path.join(tmp, 'stories-merged');
  expect(herd(['finetune', 'merge', '--model', STORIES, '--adapter', adapter, '--output-dir', merged]).status).toBe(0);
  const evaluate = (extra: string[]) => {
    const result = herd(['eval', 'tinystories', '--data', DATA, '--limit', '4', '--backend', 'wasm', '--json', ...extra]);
    expect(result.status).toBe(0);
    return (JSON.parse(result.stdout) as { results: { tinystories: Record<string, number> } }).results.tinystories['bits_per_byte,none']!;
  };
  const base = evaluate(['--model', STORIES]);
  const adapted = evaluate(['--model', STORIES, '--adapter', adapter]);
  expect(Math.abs(adapted - base)).toBeGreaterThan(0.01);
  expect(adapted).toBeCloseTo(evaluate(['--model', merged]), 6);
});

test('eval --compare with --compare-adapter: base against base + adapter; --adapter applies to --model only', () => {
  const adapter = path.join(tmp, 'stories-compare-adapter');
  writeRandomAdapter(STORIES, adapter, 0.3);
  const compare = (extra: string[]) => {
    const result = herd(['eval', 'tinystories', '--data', DATA, '--limit', '4', '--backend', 'wasm', '--json', '--model', STORIES, '--compare', STORIES, ...extra]);
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout) as { deltas: Array<{ metric: string; base: number; variant: number }> };
    return report.deltas.find((delta) => delta.metric === 'bits_per_byte')!;
  };
  const variantAdapted = compare(['--compare-adapter', adapter]);
  expect(Math.abs(variantAdapted.variant - variantAdapted.base)).toBeGreaterThan(0.01);
  const baseAdapted = compare(['--adapter', adapter]);
  expect(baseAdapted.base).toBeCloseTo(variantAdapted.variant, 6);
  expect(baseAdapted.variant).toBeCloseTo(variantAdapted.base, 6);
});

test('chat --adapter (piped) replies as the merged model does, and not as the base', () => {
  const adapter = path.join(tmp, 'tiny-adapter');
  writeRandomAdapter(TINY_LLAMA, adapter, 0.5);
  const merged = path.join(tmp, 'tiny-merged');
  writeMergedF32(TINY_LLAMA, adapter, merged);
  const chat = (extra: string[]) => {
    const result = herd(['chat', '--temperature', '0', '-n', '12', '--date', '2024-07-26', '--backend', 'wasm', ...extra], 'Hello there\n');
    expect(result.status).toBe(0);
    expect(result.stdout.length).toBeGreaterThan(0);
    return result.stdout;
  };
  const adapted = chat(['--model', TINY_LLAMA, '--adapter', adapter]);
  expect(adapted).not.toBe(chat(['--model', TINY_LLAMA]));
  expect(adapted).toBe(chat(['--model', merged]));
});
