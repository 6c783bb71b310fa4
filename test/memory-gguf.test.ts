import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { countParameters } from '../src/memory/parameters.js';
import { resolveModel } from '../src/memory/model-source.js';
import { buildPlan } from '../src/memory/plan.js';
import { DEFAULT_RECIPE_OPTIONS } from '../src/memory/precision.js';
import { DEFAULT_TRAINING_OPTIONS } from '../src/memory/training.js';

/** GGUF v3 value types and GGML tensor types used below (from the GGUF specification). */
const UINT32 = 4;
const STRING = 8;
const FLOAT32 = 6;
const F32 = 0;
const F16 = 1;
const Q4_0 = 2;
const Q8_0 = 8;

type Kv = [key: string, type: typeof UINT32 | typeof FLOAT32 | typeof STRING, value: number | string];
type Tensor = [name: string, dims: number[], type: number];

/** Writes a GGUF v3 header: magic, version, tensor count, kv count, typed metadata, tensor table. */
function ggufHeader(kvs: Kv[], tensors: Tensor[]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (value: number) => parts.push(Buffer.from(new Uint32Array([value]).buffer));
  const u64 = (value: number) => parts.push(Buffer.from(new BigUint64Array([BigInt(value)]).buffer));
  const string = (text: string) => {
    u64(Buffer.byteLength(text));
    parts.push(Buffer.from(text, 'utf8'));
  };
  parts.push(Buffer.from('GGUF', 'ascii'));
  u32(3);
  u64(tensors.length);
  u64(kvs.length);
  for (const [key, type, value] of kvs) {
    string(key);
    u32(type);
    if (type === STRING) string(String(value));
    else if (type === FLOAT32) parts.push(Buffer.from(new Float32Array([Number(value)]).buffer));
    else u32(Number(value));
  }
  let offset = 0;
  for (const [name, dims, type] of tensors) {
    string(name);
    u32(dims.length);
    dims.forEach(u64);
    u32(type);
    u64(offset);
    offset += 32 * 1024; // offsets are never read by herd; any aligned value will do
  }
  const header = Buffer.concat(parts);
  return Buffer.concat([header, Buffer.alloc((32 - (header.length % 32)) % 32)]);
}

const METADATA: Kv[] = [
  ['general.architecture', STRING, 'llama'],
  ['general.name', STRING, 'tiny-test'],
  ['llama.block_count', UINT32, 2],
  ['llama.embedding_length', UINT32, 64],
  ['llama.feed_forward_length', UINT32, 128],
  ['llama.attention.head_count', UINT32, 4],
  ['llama.attention.head_count_kv', UINT32, 2],
  ['llama.attention.layer_norm_rms_epsilon', FLOAT32, 1e-5],
  ['llama.context_length', UINT32, 256],
  ['llama.vocab_size', UINT32, 96],
];

/** GGUF dims list the input size first: [columns, rows]. */
function tinyTensors(withOutput: boolean): Tensor[] {
  const layer = (i: number): Tensor[] => [
    [`blk.${i}.attn_norm.weight`, [64], F32],
    [`blk.${i}.attn_q.weight`, [64, 64], Q8_0],
    [`blk.${i}.attn_k.weight`, [64, 32], Q8_0],
    [`blk.${i}.attn_v.weight`, [64, 32], Q8_0],
    [`blk.${i}.attn_output.weight`, [64, 64], Q8_0],
    [`blk.${i}.ffn_norm.weight`, [64], F32],
    [`blk.${i}.ffn_gate.weight`, [64, 128], Q4_0],
    [`blk.${i}.ffn_up.weight`, [64, 128], Q4_0],
    [`blk.${i}.ffn_down.weight`, [128, 64], Q4_0],
  ];
  return [
    ['token_embd.weight', [64, 96], F16],
    ['rope_freqs.weight', [8], F32],
    ...layer(0),
    ...layer(1),
    ['output_norm.weight', [64], F32],
    ...(withOutput ? ([['output.weight', [64, 96], Q8_0]] as Tensor[]) : []),
  ];
}

const directory = mkdtempSync(join(tmpdir(), 'herd-memory-gguf-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

const write = (name: string, bytes: Buffer): string => {
  const path = join(directory, name);
  writeFileSync(path, bytes);
  return path;
};

describe('GGUF input (header only)', () => {
  test('reads the architecture and counts the stored tensors exactly', async () => {
    const model = await resolveModel(write('tiny.gguf', ggufHeader(METADATA, tinyTensors(true))));
    expect(model.name).toBe('tiny-test');
    expect(model.architecture).toMatchObject({
      hiddenSize: 64,
      intermediateSize: 128,
      numHiddenLayers: 2,
      numAttentionHeads: 4,
      numKeyValueHeads: 2,
      headDim: 16,
      vocabSize: 96,
      maxPositionEmbeddings: 256,
      tieWordEmbeddings: false,
    });
    // embeddings 96×64, per layer 2×64 norms + 64² + 2×64×32 + 64² + 3×64×128, final norm 64, head 96×64.
    const expected = 6144 + 2 * (128 + 4096 + 4096 + 4096 + 3 * 8192) + 64 + 6144;
    expect(model.storedTensors?.reduce((sum, t) => sum + t.elements, 0)).toBe(expected);
    expect(countParameters(model.architecture).total).toBe(expected);
  });

  test('prices the file as stored: F16 2 bytes, F32 4, Q8_0 34 per 32, Q4_0 18 per 32', async () => {
    const model = await resolveModel(write('tiny-priced.gguf', ggufHeader(METADATA, tinyTensors(true))));
    const plan = buildPlan({
      model,
      precisions: ['file'],
      recipe: DEFAULT_RECIPE_OPTIONS,
      contexts: [256],
      batch: 1,
      kvDtype: 'fp16',
      trainingMethods: [],
      training: DEFAULT_TRAINING_OPTIONS,
    });
    const q8Elements = 2 * (4096 + 2048 + 2048 + 4096) + 6144;
    const q4Elements = 2 * 3 * 8192;
    expect(plan.inference[0]?.weightsBytes).toBe(6144 * 2 + 5 * 64 * 4 + (q8Elements * 34) / 32 + (q4Elements * 18) / 32);
    expect(plan.inference[0]?.kvCacheBytes).toBe(2 * 2 * 2 * 16 * 2 * 256);
  });

  test('a file without output.weight has a tied head', async () => {
    const model = await resolveModel(write('tied.gguf', ggufHeader(METADATA, tinyTensors(false))));
    expect(model.architecture.tieWordEmbeddings).toBe(true);
  });

  test('a non-Llama architecture is one clear error', async () => {
    const metadata = METADATA.map((kv): Kv => (kv[0] === 'general.architecture' ? [kv[0], STRING, 'gpt2'] : kv));
    await expect(resolveModel(write('gpt2.gguf', ggufHeader(metadata, [])))).rejects.toThrow(/general.architecture is "gpt2"/);
  });

  test('a file that is not GGUF is one clear error', async () => {
    await expect(resolveModel(write('bad.gguf', Buffer.from('not a gguf file at all')))).rejects.toThrow('bad.gguf: not a GGUF file (bad magic)');
  });
});

describe('Hugging Face folder input', () => {
  test('reads config.json from a folder', async () => {
    const folder = join(directory, 'hf');
    mkdirSync(folder);
    writeFileSync(join(folder, 'config.json'), JSON.stringify({ hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 96, tie_word_embeddings: true }));
    const model = await resolveModel(folder);
    expect(model.name).toBe('hf');
    expect(model.architecture.tieWordEmbeddings).toBe(true);
  });

  test('a folder without config.json is one clear error', async () => {
    const folder = join(directory, 'empty');
    mkdirSync(folder);
    await expect(resolveModel(folder)).rejects.toThrow(/cannot read .*config.json; a model folder needs a config.json/);
  });
});
