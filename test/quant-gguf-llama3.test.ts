import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gguf } from '@huggingface/gguf';
import { loadModel } from '../src/backends/load.js';
import { HerdTokenizer } from '../src/engine/tokenizer.js';
import { DEFAULT_CALIBRATION_FILE } from '../src/quant/calibration.js';
import { runQuantizeJob } from '../src/quant/job.js';
import { TINY_LLAMA } from './fixtures.js';

test('a Llama 3.1 byte-level tokenizer and llama3 RoPE survive the GGUF round trip (tiny-llama, F16)', async () => {
  const tinyOut = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-quant-tiny-'));
  const [result] = await runQuantizeJob({
    modelDir: TINY_LLAMA, outDir: tinyOut, formats: ['gguf-f16'], groupSize: 64,
    calibration: { file: DEFAULT_CALIBRATION_FILE, samples: 1, seqLen: 32 }, gptq: { symmetric: true, actOrder: false, dampPercent: 0.01 }, nf4DoubleQuant: false,
  });
  const parsed = await gguf(result!.path, { allowLocalFile: true });
  const m = parsed.metadata as unknown as Record<string, unknown>;
  expect(m['tokenizer.ggml.model']).toBe('gpt2');
  expect(m['tokenizer.ggml.pre']).toBe('llama-bpe');
  expect((m['tokenizer.ggml.merges'] as string[]).length).toBe(280147);
  expect(m['tokenizer.ggml.eos_token_id']).toBe(128009);
  expect(typeof m['tokenizer.chat_template']).toBe('string');
  expect(parsed.tensorInfos.some((t) => t.name === 'rope_freqs.weight')).toBe(true);
  const loaded = await loadModel(result!.path, { backend: 'wasm' });
  expect(loaded.config.ropeScaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  const original = HerdTokenizer.fromDir(TINY_LLAMA);
  const text = 'The capital of France is Paris. <|eot_id|> 1234567890 naïve';
  expect(loaded.tokenizer.encode(text, true)).toEqual(original.encode(text, true));
  loaded.model.dispose();
});
