import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generate } from '../src/engine/generate.js';
import { floatToHalf } from '../src/formats/half.js';
import { loadModel } from '../src/backends/load.js';
import { readSafetensorsHeader, writeSafetensors } from '../src/formats/safetensors.js';
import { Checkpoint } from '../src/formats/checkpoint.js';
import { GREEDY } from '../src/engine/sampling.js';
import { STORIES, readJson } from './fixtures.js';

/** stories260K re-stored in F16 or BF16 (rounded to nearest even), in a scratch folder. */
function storiesAs(dtype: 'F16' | 'BF16'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `herd-${dtype}-`));
  for (const name of fs.readdirSync(STORIES)) if (name !== 'model.safetensors') fs.copyFileSync(path.join(STORIES, name), path.join(dir, name));
  const checkpoint = Checkpoint.open(STORIES);
  const tensors = checkpoint.names().map((name) => {
    const { shape, data } = checkpoint.readFloat(name);
    const halves = dtype === 'F16' ? Uint16Array.from(data, floatToHalf) : Uint16Array.from(data, bf16Bits);
    return { name, dtype, shape, bytes: new Uint8Array(halves.buffer) };
  });
  checkpoint.close();
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return dir;
}

function bf16Bits(value: number): number {
  const bits = new Uint32Array(Float32Array.of(value).buffer)[0]!;
  return (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
}

const reference = readJson<{ generated_ids: number[] }>(`${STORIES}/reference.json`);

describe.each(['F16', 'BF16'] as const)('a %s checkpoint', (dtype) => {
  const dir = storiesAs(dtype);

  test('is stored as asked', () => {
    expect(new Set(readSafetensorsHeader(path.join(dir, 'model.safetensors')).map((entry) => entry.dtype))).toEqual(new Set([dtype]));
  });

  test.each(['kernels', 'wasm'])('greedy decoding on %s follows the float32 reference for its first 20 tokens', async (backend) => {
    const loaded = await loadModel(dir, { backend, threads: 1 });
    const result = generate(loaded.model, loaded.tokenizer, { promptIds: [1], maxNewTokens: 20, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs: 0 });
    // 16-bit weights move logits slightly; the reference's smallest top-1 margin (0.13) absorbs it.
    expect(result.generatedIds).toEqual(reference.generated_ids.slice(0, 20));
  });
});
