import { createHash } from 'node:crypto';
import Ajv2020 from 'ajv/dist/2020.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openModelFolder } from '../src/engine/load.js';
import { GgmlType, readGgufHeader } from '../src/formats/gguf.js';
import { ggufTensor } from '../src/formats/gguf-llama.js';
import { ggmlTypeFor, type GgufMix } from '../src/formats/gguf-recipe.js';
import type { HostTensor } from '../src/formats/safetensors.js';
import type { LlamaConfig } from '../src/spec/llama-config.js';
import type { GgufQuantizer } from '../src/quant/native-gguf.js';
import { GGUF_LLAMACPP, readJson } from './fixtures.js';
import { herd } from './herd-cli.js';
import { PATHS_AND_THREADS, SEARCH_PATHS, quantizerDuringBlock } from './native-quantizer-setup.js';

/**
 * The native Q2_K, Q3_K, IQ4_NL and IQ4_XS quantizers and llama.cpp's mixes that use them, against
 * llama.cpp's own files (test/fixtures/gguf-lowbit: llama_model_quantize's tensor types and the
 * sha256 of every tensor's bytes, on the gguf-llamacpp source with 12 edge-case rows planted in
 * blk.3.ffn_up). The addon must be built: this file fails (it does not skip) when it is missing.
 */
const LOWBIT = path.join(path.dirname(GGUF_LLAMACPP), 'gguf-lowbit');

interface Reference {
  files: Record<string, { file_type: number; tensors: Record<string, { type: string; sha256: string }> }>;
}
const reference = readJson<Reference>(path.join(LOWBIT, 'reference.json'));
const MIXES = ['Q2_K', 'Q3_K_S', 'Q3_K_M', 'Q3_K_L', 'IQ4_NL', 'IQ4_XS'] as const satisfies readonly GgufMix[];

/** The source's tensors once, as llama.cpp got them: the awkward rows over the first rows of blk.3.ffn_up. */
function sourceTensors(): { config: LlamaConfig; tensors: HostTensor[] } {
  const { config, checkpoint } = openModelFolder(path.join(GGUF_LLAMACPP, 'source'));
  try {
    const awkward = new Float32Array(new Uint8Array(fs.readFileSync(path.join(LOWBIT, 'awkward-rows.f32'))).buffer);
    const tensors = checkpoint.names().map((name) => checkpoint.readFloat(name));
    tensors.find((t) => t.name === 'model.layers.3.mlp.up_proj.weight')!.data.set(awkward);
    return { config, tensors };
  } finally {
    checkpoint.close();
  }
}
const source = sourceTensors();

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Every matrix of the source in `mix` by herd ({type, sha256} by GGUF name), with the given quantizer. */
function herdMix(mix: GgufMix, quantize: GgufQuantizer['quantize']): Record<string, { type: string; sha256: string }> {
  const out: Record<string, { type: string; sha256: string }> = {};
  for (const tensor of source.tensors) {
    const written = ggufTensor(tensor, mix, source.config, quantize);
    out[written.name] = { type: GgmlType[written.type], sha256: sha256(written.bytes) };
  }
  return out;
}

/** llama.cpp's tensors of a mix but rope_freqs (herd writes it from the config, not from the source's tensors). */
function llamaCppMix(mix: string): Record<string, { type: string; sha256: string }> {
  const { ['rope_freqs.weight']: _ropeFreqs, ...rest } = reference.files[mix]!.tensors;
  return rest;
}

/**
 * Every path and thread count; the IQ4 mixes (whose own quantizer has no scale search to choose,
 * and whose Q5_K/Q6_K tensors the K mixes cover) on the SIMD searches' path only, where their time goes.
 */
const MIXES_OF_PATH = (isa: string) => MIXES.filter((mix) => isa !== 'scalar' || !mix.startsWith('IQ4'));

describe.each(PATHS_AND_THREADS)('llama.cpp\'s low-bit mixes of the fixture on the %s path, %i thread(s)', (isa, threads) => {
  const quantizer = quantizerDuringBlock(isa, threads);

  test.each(MIXES_OF_PATH(isa))('%s: every tensor has llama.cpp\'s type and bytes (the edge-case rows included)', (mix) => {
    expect(herdMix(mix, quantizer().quantize)).toEqual(llamaCppMix(mix));
  });
});

/** One super-block of 256 equal weights. */
const constant = (value: number, count = 256) => new Float32Array(count).fill(value);

describe('blocks whose bytes follow from first principles', () => {
  const quantizer = quantizerDuringBlock(SEARCH_PATHS.at(-1)!, 1);
  const quantize = (type: GgmlType, values: Float32Array) => Array.from(quantizer().quantize!(type, values, values.length)!);

  test('zeros: Q2_K and Q3_K are all zero bytes (scales, codes and d)', () => {
    expect(quantize(GgmlType.Q2_K, constant(0))).toEqual(new Array(84).fill(0));
    expect(quantize(GgmlType.Q3_K, constant(0))).toEqual(new Array(110).fill(0));
  });

  test('zeros: IQ4_NL stores d = 0 and index 8 (table value 1, nearer 0 than −10) for every weight', () => {
    expect(quantize(GgmlType.IQ4_NL, constant(0, 32))).toEqual([0, 0, ...new Array(16).fill(0x88)]);
  });

  test('zeros: IQ4_XS stores d = −0/32 (f16 0x8000) and every block scale l = 0, stored as 32 (low bits 0, high bits 2)', () => {
    expect(quantize(GgmlType.IQ4_XS, constant(0))).toEqual([0x00, 0x80, 0xaa, 0xaa, 0, 0, 0, 0, ...new Array(128).fill(0x88)]);
  });

  test('a non-negative constant in Q2_K: min 0, every group the same scale 15 of d = c/3, every code 3', () => {
    const bytes = quantize(GgmlType.Q2_K, constant(0.75));
    // make_qkx2_quants on 16 equal x > 0: min clamps to 0 and the fit is scale x/3 with codes 3.
    expect(bytes.slice(0, 16)).toEqual(new Array(16).fill(15));
    expect(bytes.slice(16, 80)).toEqual(new Array(64).fill(0xff));
    // d = (0.75/3)/15 = 1/60 as f16: 2^−6 · (1 + 68/1024), bits 9 << 10 | 68 = 0x2444; dmin 0.
    expect(bytes.slice(80)).toEqual([0x44, 0x24, 0, 0]);
  });
});

describe('the recipe of the new mixes on Llama 3.1 8B and 70B shapes (rules from llama.cpp\'s llama_tensor_get_type)', () => {
  const llama8B: LlamaConfig = { ...source.config, hiddenSize: 4096, intermediateSize: 14336, numHiddenLayers: 32, numAttentionHeads: 32, numKeyValueHeads: 8, vocabSize: 128256 };
  const llama70B: LlamaConfig = { ...llama8B, hiddenSize: 8192, intermediateSize: 28672, numHiddenLayers: 80, numAttentionHeads: 64 };
  const typeOf = (mix: GgufMix, name: string, config: LlamaConfig, shape = [1024, 4096]) => GgmlType[ggmlTypeFor(mix, name, shape, config)];
  const layers = (config: LlamaConfig, mix: GgufMix, tensor: string, type: string) =>
    Array.from({ length: config.numHiddenLayers }, (_, i) => i).filter((i) => typeOf(mix, `blk.${i}.${tensor}.weight`, config) === type);

  test('4 query heads per KV head: Q2_K\'s attn_v is Q4_K, IQ4_NL/IQ4_XS\'s Q5_K (the fixture, 2 per KV head, keeps Q3_K and IQ4)', () => {
    expect(layers(llama8B, 'Q2_K', 'attn_v', 'Q4_K')).toHaveLength(32);
    expect(layers(llama8B, 'IQ4_XS', 'attn_v', 'Q5_K')).toHaveLength(32);
    expect(layers(llama8B, 'IQ4_NL', 'attn_v', 'Q5_K')).toHaveLength(32);
  });

  test('ffn_down: IQ4 mixes Q5_K in the first eighth (4 of 32), Q3_K_M Q5_K in the first sixteenth then Q4_K, Q2_K Q3_K', () => {
    expect(layers(llama8B, 'IQ4_XS', 'ffn_down', 'Q5_K')).toEqual([0, 1, 2, 3]);
    expect(layers(llama8B, 'Q3_K_M', 'ffn_down', 'Q5_K')).toEqual([0, 1]);
    expect(layers(llama8B, 'Q3_K_M', 'ffn_down', 'Q4_K')).toHaveLength(30);
    expect(layers(llama8B, 'Q2_K', 'ffn_down', 'Q3_K')).toHaveLength(32);
  });

  test('70B: an attn_v that would be Q3_K or Q4_K is Q5_K; rows that are not whole super-blocks fall back to IQ4_NL', () => {
    expect(layers(llama70B, 'Q3_K_S', 'attn_v', 'Q5_K')).toHaveLength(80);
    expect(layers(llama70B, 'Q2_K', 'attn_v', 'Q5_K')).toHaveLength(80);
    expect(layers(llama70B, 'Q3_K_S', 'attn_q', 'Q3_K')).toHaveLength(80);
    expect(typeOf('Q2_K', 'blk.0.attn_q.weight', llama8B, [4096, 4000])).toBe('IQ4_NL');
    expect(typeOf('IQ4_XS', 'blk.0.attn_q.weight', llama8B, [4096, 4000])).toBe('IQ4_NL');
    // Not whole blocks of 32 either: F16, as herd does for every mix.
    expect(typeOf('IQ4_NL', 'blk.0.attn_q.weight', llama8B, [4096, 4004])).toBe('F16');
  });
});

describe('herd quantize --format gguf-q2_k,gguf-iq4_xs', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-lowbit-'));
  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));
  const model = path.join(GGUF_LLAMACPP, 'source');

  test('writes llama.cpp\'s tensor types, bytes and general.file_type, and the files generate on the native backend', () => {
    const cli = herd(['quantize', '--model', model, '--format', 'gguf-q2_k,gguf-iq4_xs', '--out', out, '--threads', '2', '--json']);
    expect(cli.status).toBe(0);
    // The --json contract: the new format names are in herd.quantize/1's enum.
    const schema = JSON.parse(fs.readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../docs/schemas/herd.quantize.schema.json'), 'utf8'));
    const validate = new Ajv2020.default({ strict: true, allowUnionTypes: true }).compile(schema);
    expect([validate(JSON.parse(cli.stdout)), validate.errors ?? null]).toEqual([true, null]);
    const results = JSON.parse(cli.stdout).formats as Array<{ path: string }>;
    results.forEach((result, i) => {
      const mix = (['Q2_K', 'IQ4_XS'] as const)[i]!;
      const file = readGgufHeader(result.path);
      expect(file.metadata.get('general.file_type')).toBe(reference.files[mix]!.file_type);
      const bytes = fs.readFileSync(result.path);
      const tensors = Object.fromEntries([...file.tensors.values()].map((t) => [t.name, { type: GgmlType[t.type], sha256: sha256(bytes.subarray(t.begin, t.begin + t.byteLength)) }]));
      // llama.cpp's tensors, but for the one whose rows the reference planted (its type is still compared).
      const planted = 'blk.3.ffn_up.weight';
      expect(tensors[planted]!.type).toBe(reference.files[mix]!.tensors[planted]!.type);
      expect({ ...tensors, [planted]: null }).toEqual({ ...reference.files[mix]!.tensors, [planted]: null });
      const run = herd(['generate', '-m', result.path, '--backend', 'native', '-n', '8', '--temperature', '0', '--threads', '1', '--json', 'Once upon a time']);
      expect(run.status).toBe(0);
      const json = JSON.parse(run.stdout);
      expect([json.backend, json.generated_ids.length]).toEqual(['native', 8]);
    });
  });

  test('without the native addon a format only it writes is refused with one line, before any file is written', () => {
    const cli = herd(['quantize', '--model', model, '--format', 'gguf-iq4_nl', '--out', path.join(out, 'off')], undefined, { HERD_NATIVE: '0' });
    expect(cli.status).not.toBe(0);
    expect(cli.stderr).toBe("herd: --format gguf-iq4_nl needs herd's native quantizers (there is no TypeScript writer for IQ4_NL), and they are unavailable: switched off by HERD_NATIVE=0\n");
    expect(fs.existsSync(path.join(out, 'off', 'source-iq4_nl.gguf'))).toBe(false);
  });
});
