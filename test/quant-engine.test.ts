import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gguf, GGMLQuantizationType } from '@huggingface/gguf';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { HerdTokenizer } from '../src/engine/tokenizer.js';
import { DEFAULT_CALIBRATION_FILE } from '../src/quant/calibration.js';
import { runQuantizeJob, type QuantFormat } from '../src/quant/job.js';
import { STORIES } from './fixtures.js';

function copyOf(dir: string): string {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-quant-src-'));
  const target = path.join(copy, path.basename(dir));
  fs.cpSync(dir, target, { recursive: true });
  return target;
}

function hashes(dir: string): Record<string, string> {
  return Object.fromEntries(fs.readdirSync(dir).sort().map((name) => [name, crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, name))).digest('hex')]));
}

function greedy(loaded: LoadedModel, prompt: number[], steps: number): number[] {
  const cache = loaded.model.createCache(prompt.length + steps);
  const out: number[] = [];
  try {
    let logits = loaded.model.forward(Int32Array.from(prompt), cache);
    for (let i = 0; i < steps; i++) {
      let best = 0;
      for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[best]!) best = v;
      out.push(best);
      logits = loaded.model.forward(Int32Array.from([best]), cache);
    }
  } finally {
    cache.dispose();
  }
  return out;
}

const source = copyOf(STORIES);
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-quant-out-'));
const before = hashes(source);
const formats: QuantFormat[] = ['fp8', 'awq', 'gptq', 'int4-rtn', 'nf4', 'gguf-q8_0', 'gguf-q4_k', 'gguf-f16'];
let results: Awaited<ReturnType<typeof runQuantizeJob>>;

beforeAll(async () => {
  results = await runQuantizeJob({
    modelDir: source, outDir: out, formats, groupSize: 64,
    calibration: { file: DEFAULT_CALIBRATION_FILE, samples: 4, seqLen: 128 },
    gptq: { symmetric: false, actOrder: true, dampPercent: 0.01 }, nf4DoubleQuant: true,
  });
});

test('every format is written and the source folder is byte-identical', () => {
  expect(results.map((r) => r.format)).toEqual(formats);
  expect(hashes(source)).toEqual(before);
  for (const r of results) expect(fs.existsSync(r.path)).toBe(true);
});

test('the engine loads every format and follows the source model greedily for the first tokens', async () => {
  const base = await loadModel(source, { backend: 'wasm' });
  const prompt = base.tokenizer.encode('Once upon a time', true);
  const reference = greedy(base, prompt, 12);
  for (const r of results) {
    const loaded = await loadModel(r.path, { backend: 'wasm' });
    const tokens = greedy(loaded, prompt, 12);
    // Q8_0 and F16 must match exactly (the check); the 4-bit and FP8 formats keep at least the first tokens.
    if (r.format === 'gguf-q8_0' || r.format === 'gguf-f16') expect(tokens).toEqual(reference);
    else expect(tokens.slice(0, 4)).toEqual(reference.slice(0, 4));
    loaded.model.dispose();
  }
});

test('@huggingface/gguf parses the Q8_0 GGUF: llama metadata, tokenizer, tensor types and aligned offsets', async () => {
  const file = results.find((r) => r.format === 'gguf-q8_0')!.path;
  const parsed = await gguf(file, { allowLocalFile: true });
  const m = parsed.metadata as unknown as Record<string, unknown>;
  expect(m['general.architecture']).toBe('llama');
  expect(m['llama.block_count']).toBe(5);
  expect(m['llama.embedding_length']).toBe(64);
  expect(m['llama.feed_forward_length']).toBe(172);
  expect(m['llama.attention.head_count']).toBe(8);
  expect(m['llama.attention.head_count_kv']).toBe(4);
  expect(m['llama.context_length']).toBe(512);
  expect(m['tokenizer.ggml.model']).toBe('llama');
  expect((m['tokenizer.ggml.tokens'] as string[]).length).toBe(512);
  expect(m['tokenizer.ggml.bos_token_id']).toBe(1);
  expect(m['tokenizer.ggml.eos_token_id']).toBe(2);
  const types = Object.fromEntries(parsed.tensorInfos.map((t) => [t.name, t.dtype]));
  expect(types['blk.0.attn_q.weight']).toBe(GGMLQuantizationType.Q8_0);
  expect(types['token_embd.weight']).toBe(GGMLQuantizationType.Q8_0);
  // 172 columns do not split into blocks of 32: F16, as llama.cpp's converter falls back.
  expect(types['blk.0.ffn_down.weight']).toBe(GGMLQuantizationType.F16);
  expect(types['blk.0.attn_norm.weight']).toBe(GGMLQuantizationType.F32);
  expect(parsed.tensorInfos.find((t) => t.name === 'blk.0.attn_q.weight')!.shape).toEqual([64n, 64n]);
  expect(parsed.tensorInfos.some((t) => t.name === 'output.weight')).toBe(false);
  for (const t of parsed.tensorInfos) expect(Number(t.offset) % 32).toBe(0);
  expect(parsed.tensorDataOffset % 32n).toBe(0n);
});

test('the tokenizer rebuilt from GGUF metadata encodes and decodes like the source tokenizer.json', async () => {
  const loaded = await loadModel(results.find((r) => r.format === 'gguf-q8_0')!.path, { backend: 'wasm' });
  const original = HerdTokenizer.fromDir(STORIES);
  const text = fs.readFileSync(DEFAULT_CALIBRATION_FILE, 'utf8').slice(0, 3000) + ' héllo 😀';
  expect(loaded.tokenizer.encode(text, true)).toEqual(original.encode(text, true));
  expect(loaded.tokenizer.decode(original.encode(text, false))).toBe(original.decode(original.encode(text, false)));
  loaded.model.dispose();
});
