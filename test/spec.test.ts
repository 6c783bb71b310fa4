import path from 'node:path';
import { Checkpoint } from '../src/formats/checkpoint.js';
import { GgufValueType } from '../src/formats/gguf.js';
import { llamaMetadata, ropeFreqsTensor } from '../src/formats/gguf-llama.js';
import { countParameters } from '../src/memory/parameters.js';
import { presetModel } from '../src/memory/presets.js';
import { configFromGgufMetadata } from '../src/spec/gguf-metadata.js';
import { parseLlamaConfig } from '../src/spec/llama-config.js';
import { PRESET_NAMES, presetConfig } from '../src/spec/presets.js';
import { ggufNameOf, linearModuleOf, llamaTensors, parameterCount, permutedHeadsOf, tensorShapes } from '../src/spec/tensors.js';
import { GGUF_LLAMACPP, TINY_LLAMA, readJson } from './fixtures.js';

interface LlamaCppReference {
  files: Record<string, { tensor_types: Record<string, string> }>;
}

describe('the presets are the published config.json files', () => {
  test.each(PRESET_NAMES.map((name) => [name]))('%s: the planner and the loader count the same parameters from the one table', (name) => {
    const config = presetConfig(name);
    const loaderCount = [...tensorShapes(config).values()].reduce((sum, shape) => sum + shape.reduce((a, b) => a * b, 1), 0);
    expect(countParameters(presetModel(name).architecture).total).toBe(loaderCount);
    expect(parameterCount(config)).toBe(loaderCount);
  });

  test('Llama 3.1 and 3.2 presets carry their RoPE: theta 500000, llama3 scaling with factor 8 (3.1) or 32 (3.2)', () => {
    for (const name of ['llama-3.1-8b', 'llama-3.1-70b', 'llama-3.1-405b', 'llama-3.2-1b', 'llama-3.2-3b']) {
      const config = presetConfig(name);
      expect(config.ropeTheta).toBe(500000);
      expect(config.ropeScaling).toEqual({
        type: 'llama3', factor: name.startsWith('llama-3.2') ? 32 : 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192,
      });
      expect(config.maxPositionEmbeddings).toBe(131072);
    }
  });

  test('the GGUF metadata bench --synthetic --write-gguf writes for Llama 3.1 8B reads back with its RoPE', () => {
    const config = presetConfig('llama-3.1-8b');
    const metadata = new Map([...llamaMetadata(config, 'synthetic', 'Q8_0')].map(([key, entry]) => [key, entry.value] as const));
    const ropeFreqs = ropeFreqsTensor(config)!;
    expect(llamaMetadata(config, 'synthetic', 'Q8_0').get('llama.rope.freq_base')).toEqual({ type: GgufValueType.FLOAT32, value: 500000 });
    const dims = new Map<string, number[]>([['token_embd.weight', [4096, 128256]], ['output.weight', [4096, 128256]], ['rope_freqs.weight', ropeFreqs.dims]]);
    const read = configFromGgufMetadata({
      metadata,
      tensorDims: (name) => dims.get(name),
      readRopeFactors: () => new Float32Array(ropeFreqs.bytes.buffer, ropeFreqs.bytes.byteOffset, ropeFreqs.dims[0]),
      source: 'synthetic.gguf',
    });
    expect(read.ropeTheta).toBe(500000);
    expect(read.ropeScaling).toEqual(config.ropeScaling);
    expect({ ...read, bosTokenId: config.bosTokenId, eosTokenIds: config.eosTokenIds, torchDtype: config.torchDtype }).toEqual(config);
  });
});

describe('the tensor table', () => {
  test('matches the tiny Llama 3.1 checkpoint tensor for tensor, and its published parameter count', () => {
    const config = parseLlamaConfig(readJson(path.join(TINY_LLAMA, 'config.json')), 'config.json');
    const checkpoint = Checkpoint.open(TINY_LLAMA, null);
    try {
      checkpoint.validateAgainst(config);
    } finally {
      checkpoint.close();
    }
    // The fixture's README: 16,515,392 parameters.
    expect(parameterCount(config)).toBe(16_515_392);
  });

  test('gives the tensor names llama.cpp wrote into its own GGUF file', () => {
    const config = parseLlamaConfig(readJson(path.join(GGUF_LLAMACPP, 'source/config.json')), 'config.json');
    const written = Object.keys(readJson<LlamaCppReference>(path.join(GGUF_LLAMACPP, 'reference.json')).files.Q8_0!.tensor_types);
    const named = llamaTensors(config).map((tensor) => tensor.ggufName);
    expect([...named, 'rope_freqs.weight'].sort()).toEqual([...written].sort());
    expect(llamaTensors(config).every((tensor) => ggufNameOf(tensor.name) === tensor.ggufName)).toBe(true);
  });

  test('names linear modules and the heads llama.cpp permutes', () => {
    const config = presetConfig('llama-3.1-8b');
    expect(linearModuleOf('model.layers.7.mlp.down_proj.weight')).toBe('down_proj');
    expect(linearModuleOf('model.layers.7.input_layernorm.weight')).toBeNull();
    expect(linearModuleOf('lm_head.weight')).toBeNull();
    expect(permutedHeadsOf('model.layers.0.self_attn.q_proj.weight', config)).toBe(32);
    expect(permutedHeadsOf('model.layers.0.self_attn.k_proj.weight', config)).toBe(8);
    expect(permutedHeadsOf('model.layers.0.self_attn.v_proj.weight', config)).toBeNull();
    expect(() => ggufNameOf('model.layers.0.self_attn.rotary_emb.inv_freq')).toThrow('no GGUF name for tensor model.layers.0.self_attn.rotary_emb.inv_freq');
  });

  test('biases appear only when the config has them', () => {
    const plain = presetConfig('llama-3.2-1b');
    const biased = { ...plain, attentionBias: true, mlpBias: true };
    const added = llamaTensors(biased).filter((tensor) => tensor.role === 'bias');
    expect(llamaTensors(plain).some((tensor) => tensor.role === 'bias')).toBe(false);
    expect(added).toHaveLength(16 * 7);
    expect(added[0]).toEqual({ name: 'model.layers.0.self_attn.q_proj.bias', ggufName: 'blk.0.attn_q.bias', role: 'bias', layer: 0, shape: [2048] });
  });
});
