import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Checkpoint } from '../src/formats/checkpoint.js';
import { parseLlamaConfig } from '../src/spec/llama-config.js';
import { openModelFolder } from '../src/engine/load.js';
import { bf16ToFloat32, f16ToFloat32, readSafetensorsHeader, writeSafetensors } from '../src/formats/safetensors.js';
import { STORIES, TINY_LLAMA, readJson } from './fixtures.js';

function scratchCopy(source: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-checkpoint-'));
  for (const name of fs.readdirSync(source)) fs.copyFileSync(path.join(source, name), path.join(dir, name));
  for (const name of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, name), 0o644);
  return dir;
}

const floats = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);

describe('safetensors', () => {
  test('reads the sharded fixture: 20 tensors in shard 1, lm_head in shard 2, all BF16', () => {
    const first = readSafetensorsHeader(path.join(TINY_LLAMA, 'model-00001-of-00002.safetensors'));
    const second = readSafetensorsHeader(path.join(TINY_LLAMA, 'model-00002-of-00002.safetensors'));
    expect(first).toHaveLength(20);
    expect(second.map((e) => [e.name, e.dtype, e.shape])).toEqual([['lm_head.weight', 'BF16', [128256, 64]]]);
    // The data section is exactly the tensors: the shard's size is where the last one ends.
    expect(Math.max(...second.map((e) => e.end))).toBe(16_416_896);
  });

  test('written files read back, with the header padded to 8 bytes', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-st-'));
    const file = path.join(dir, 'x.safetensors');
    writeSafetensors(file, [
      { name: 'b', dtype: 'F32', shape: [3], bytes: floats([1, 2, 3]) },
      { name: 'a', dtype: 'F32', shape: [1, 2], bytes: floats([4, 5]) },
    ]);
    const headerLength = Number(fs.readFileSync(file).readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    expect(readSafetensorsHeader(file).map((e) => [e.name, e.shape, e.begin - 8 - headerLength])).toEqual([
      ['a', [1, 2], 0],
      ['b', [3], 8],
    ]);
    expect(fs.readdirSync(dir)).toEqual(['x.safetensors']);
  });

  test('BF16 and F16 widen exactly', () => {
    const out = new Float32Array(4);
    bf16ToFloat32(Uint16Array.of(0x3f80, 0xc000, 0x7f80, 0x0001), out);
    expect([...out]).toEqual([1, -2, Infinity, 2 ** -133]);
    f16ToFloat32(Uint16Array.of(0x3c00, 0xc000, 0x0001, 0x7bff), out);
    expect([...out]).toEqual([1, -2, 2 ** -24, 65504]);
  });

  test('a truncated file names the file and the tensor that runs past its end', () => {
    const dir = scratchCopy(STORIES);
    const file = path.join(dir, 'model.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 100);
    expect(() => readSafetensorsHeader(file)).toThrow(/^model\.safetensors: tensor model\.norm\.weight ends at byte \d+ but the file has \d+ bytes \(truncated\)$/);
  });

  test('a header length beyond the file is caught before parsing', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-st-'));
    const file = path.join(dir, 'bad.safetensors');
    const bytes = Buffer.alloc(16);
    bytes.writeBigUInt64LE(1000n);
    fs.writeFileSync(file, bytes);
    expect(() => readSafetensorsHeader(file)).toThrow(/bad\.safetensors: header length 1000 does not fit/);
  });

  test('offsets that disagree with dtype and shape are rejected', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-st-'));
    const file = path.join(dir, 'x.safetensors');
    writeSafetensors(file, [{ name: 'w', dtype: 'F16', shape: [3], bytes: floats([1, 2, 3]) }]);
    expect(() => readSafetensorsHeader(file)).toThrow('x.safetensors: tensor w: holds 12 bytes but F16 [3] needs 6');
  });
});

describe('checkpoint validation against config.json', () => {
  const storiesConfig = () => parseLlamaConfig(readJson(path.join(STORIES, 'config.json')), 'config.json');

  test('the fixtures validate', () => {
    expect(() => openModelFolder(TINY_LLAMA).checkpoint.close()).not.toThrow();
    expect(() => openModelFolder(STORIES).checkpoint.close()).not.toThrow();
  });

  test('a shape that contradicts config.json', () => {
    const config = { ...storiesConfig(), intermediateSize: 100 };
    const checkpoint = Checkpoint.open(STORIES);
    expect(() => checkpoint.validateAgainst(config)).toThrow(
      'model.safetensors: tensor model.layers.0.mlp.gate_proj.weight has shape [172, 64] but config.json implies [100, 64]',
    );
  });

  test('missing and unexpected tensors', () => {
    const fewerLayers = { ...storiesConfig(), numHiddenLayers: 4 };
    expect(() => Checkpoint.open(STORIES).validateAgainst(fewerLayers)).toThrow('model.safetensors: unexpected tensor model.layers.4.input_layernorm.weight for this config.json');
    const untied = { ...storiesConfig(), tieWordEmbeddings: false };
    expect(() => Checkpoint.open(STORIES).validateAgainst(untied)).toThrow('missing tensor lm_head.weight (expected by config.json)');
  });

  test('a tensor stored in two shards', () => {
    const dir = scratchCopy(TINY_LLAMA);
    const index = readJson<{ weight_map: Record<string, string> }>(path.join(dir, 'model.safetensors.index.json'));
    writeSafetensors(path.join(dir, 'model-00003-of-00003.safetensors'), [{ name: 'model.norm.weight', dtype: 'F32', shape: [1], bytes: floats([1]) }]);
    index.weight_map['extra'] = 'model-00003-of-00003.safetensors';
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    expect(() => Checkpoint.open(dir)).toThrow(/^tensor model\.norm\.weight appears twice: in model-0000[13]-of-0000[23]\.safetensors and model-0000[13]-of-0000[23]\.safetensors$/);
  });

  test('an index that names a missing shard', () => {
    const dir = scratchCopy(TINY_LLAMA);
    fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
    expect(() => Checkpoint.open(dir)).toThrow('model.safetensors.index.json names shard model-00002-of-00002.safetensors, which does not exist');
  });

  test('config.json with a missing or invalid field', () => {
    const raw = readJson<Record<string, unknown>>(path.join(STORIES, 'config.json'));
    expect(() => parseLlamaConfig({ ...raw, hidden_size: undefined }, 'config.json')).toThrow('config.json: hidden_size must be a positive number, got undefined');
    expect(() => parseLlamaConfig({ ...raw, num_key_value_heads: 3 }, 'config.json')).toThrow('num_attention_heads (8) must be a multiple of num_key_value_heads (3)');
    expect(() => parseLlamaConfig({ ...raw, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'config.json')).toThrow('rope type "yarn" is not supported');
    expect(() => parseLlamaConfig({ ...raw, model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }, 'config.json')).toThrow('not a Llama model');
  });
});
