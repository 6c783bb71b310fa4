import { parseLlamaConfig } from '../src/spec/llama-config.js';
import { countParameters } from '../src/memory/parameters.js';
import { presetModel } from '../src/memory/presets.js';
import { PRESET_NAMES } from '../src/spec/presets.js';
import { HerdError } from '../src/errors.js';

const total = (preset: string): number => countParameters(presetModel(preset).architecture).total;

describe('exact parameter counts of the published configs', () => {
  test.each([
    ['llama-3.1-8b', 8_030_261_248],
    ['llama-3.1-70b', 70_553_706_496],
    ['llama-3.1-405b', 405_853_388_800],
    ['llama-3.2-1b', 1_235_814_400],
    ['llama-3.2-3b', 3_212_749_824],
    ['llama-guard-3-8b', 8_030_261_248],
    ['llama-guard-3-8b-int8', 8_030_261_248],
    ['llama-guard-3-1b', 1_498_482_688],
  ])('%s has %d parameters', (preset, expected) => {
    expect(total(preset)).toBe(expected);
  });

  test('8B splits into components computed by hand', () => {
    // vocab 128256 × hidden 4096; per layer q,o 4096², k,v 4096×1024; MLP 3 × 4096 × 14336; 2 norms of 4096.
    expect(countParameters(presetModel('llama-3.1-8b').architecture)).toEqual({
      embeddings: 128256 * 4096,
      attention: 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024),
      mlp: 32 * 3 * 4096 * 14336,
      norms: 32 * 2 * 4096 + 4096,
      outputHead: 128256 * 4096,
      total: 8_030_261_248,
    });
  });

  test('a tied head is counted once', () => {
    const parameters = countParameters(presetModel('llama-3.2-1b').architecture);
    expect(parameters.outputHead).toBe(0);
    expect(parameters.embeddings).toBe(128256 * 2048);
  });

  test('preset names are matched without regard to case and all eight exist', () => {
    expect(PRESET_NAMES).toHaveLength(8);
    expect(presetModel('Llama-3.1-8B').name).toBe('llama-3.1-8b');
  });
});

describe('reading a config.json', () => {
  const minimal = { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 100 };

  test('takes the transformers defaults for optional fields', () => {
    const arch = parseLlamaConfig(minimal, 'config.json');
    expect(arch).toMatchObject({ numKeyValueHeads: 4, headDim: 16, tieWordEmbeddings: false, attentionBias: false });
  });

  test('counts biases when the config asks for them', () => {
    const plain = countParameters(parseLlamaConfig(minimal, 'config.json')).total;
    const biased = countParameters(parseLlamaConfig({ ...minimal, attention_bias: true, mlp_bias: true }, 'config.json')).total;
    // Per layer: q, k, v, o biases (4 × 64) and gate, up, down biases (128 + 128 + 64).
    expect(biased - plain).toBe(2 * (4 * 64 + 128 + 128 + 64));
  });

  test('names a missing required field in one line', () => {
    expect(() => parseLlamaConfig({ hidden_size: 64 }, 'x/config.json')).toThrow(
      new HerdError('x/config.json: num_attention_heads must be a positive number, got undefined'),
    );
  });

  test('rejects a field that is not a positive whole number', () => {
    expect(() => parseLlamaConfig({ ...minimal, num_hidden_layers: -2 }, 'config.json')).toThrow(/num_hidden_layers must be a positive number, got -2/);
  });
});
