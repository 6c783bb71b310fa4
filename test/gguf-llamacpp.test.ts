/**
 * GGUF files written by llama.cpp's own quantizer (shared/fixtures/gguf-llamacpp), run by herd and
 * compared with what llama.cpp computed on them and with exact math on their dequantized weights
 * (the fixture's dequant_oracle). Tolerances follow the fixture README's "Tolerances".
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { GgmlType } from '../src/formats/gguf.js';
import { readGgufModel } from '../src/formats/gguf-split.js';
import { compareSteps, fixtureFile, KERNEL_TOLERANCES, meanNll, reference } from './gguf-llamacpp-reference.js';
import { copyGguf, patchTensorInfo, writeSplitGguf } from './gguf-rewrite.js';

const longStory = reference.cases.find((c) => c.name === 'long_story')!;
const FILES = ['Q8_0', 'Q6_K', 'Q5_K_M', 'Q4_K_M'];
/** The tfjs path dequantizes every tensor at load and computes in float32: measured ≤ 1.3e-5. */
const FLOAT_VS_ORACLE = 1e-4;

const load = (file: string, backend: string) => loadModel(file, { backend, threads: 1 });

/** The file loaded on `backend` for the enclosing describe block (disposed after it). */
function loadedOn(file: string, backend: string): () => LoadedModel {
  let loaded: LoadedModel;
  beforeAll(async () => {
    loaded = await load(file, backend);
  });
  afterAll(() => loaded.model.dispose());
  return () => loaded;
}

describe.each(FILES)('llama.cpp %s file', (type) => {
  const expected = reference.files[type]!;
  const tolerance = KERNEL_TOLERANCES[type]!;

  /** The NLL and every case against llama.cpp's numbers, and against exact math where `oracle` (the kernels' float activations allow it). */
  function againstLlamaCpp(loaded: () => LoadedModel, oracle: boolean) {
    test('teacher-forced mean NLL on long_story is within 0.02 nats of llama.cpp\'s', () => {
      expect(Math.abs(meanNll(loaded(), longStory.prompt_ids) - expected.llama_cpp.nll.long_story.mean_nll)).toBeLessThan(0.02);
    });

    test.each(reference.cases.map((c) => [c.name, c] as const))(
      `%s: llama.cpp's greedy ids wherever its top-2 gap exceeds ${2 * tolerance.llamaCpp}; logprobs within ${tolerance.llamaCpp} of llama.cpp` +
        (oracle ? ` and ${tolerance.oracle} of exact math` : ''),
      (name, c) => {
        const steps = compareSteps(loaded(), c.prompt_ids, expected.llama_cpp.cases[name]!, 2 * tolerance.llamaCpp);
        expect(steps.argmaxDiffers).toEqual([]);
        expect(steps.maxDiff).toBeLessThan(tolerance.llamaCpp);
        if (!oracle) return;
        const againstOracle = compareSteps(loaded(), c.prompt_ids, expected.dequant_oracle.cases[name]!, 2 * tolerance.oracle);
        expect(againstOracle.argmaxDiffers).toEqual([]);
        expect(againstOracle.maxDiff).toBeLessThan(tolerance.oracle);
      },
    );
  }

  describe('on herd\'s CPU kernels (--backend kernels)', () => {
    const loaded = loadedOn(fixtureFile(type), 'kernels');

    test('the tensor types read from the header are the ones reference.json lists', () => {
      const { tensors } = readGgufModel(fixtureFile(type));
      expect(Object.fromEntries([...tensors].map(([name, info]) => [name, GgmlType[info.type]]))).toEqual(expected.tensor_types);
    });

    test('every case and tokenizer vector tokenizes to llama.cpp\'s ids', () => {
      for (const c of reference.cases) expect(loaded().tokenizer.encode(c.text, c.add_bos)).toEqual(c.prompt_ids);
      for (const vector of reference.tokenizer_vectors) expect(loaded().tokenizer.encode(vector.text, false)).toEqual(vector.ids);
    });

    test('the stop ids are llama.cpp\'s end-of-generation set: end_of_text, eom, eot', () => {
      expect(loaded().generation.eosTokenIds).toEqual([1025, 1032, 1033]);
      expect(loaded().tokenizer.settings.bosToken).toBe('<|begin_of_text|>');
    });

    againstLlamaCpp(loaded, true);
  });

  // The native kernels quantize activations to 8 bits for every K-quant, as llama.cpp does, and
  // compute on the repacked Q8_0, Q4_K, Q5_K and Q6_K layouts (x86; stored rows elsewhere): held
  // to llama.cpp's own numbers at the same tolerances as the WASM kernels.
  // The native kernels quantize activations to 8 bits for every K-quant, as llama.cpp does, and
  // compute on the repacked Q8_0, Q4_K, Q5_K and Q6_K layouts (x86; stored rows elsewhere).
  describe('on herd\'s native kernels (--backend native)', () => {
    againstLlamaCpp(loadedOn(fixtureFile(type), 'native'), false);
  });

  describe('dequantized at load, float32 (tfjs wasm backend)', () => {
    const loaded = loadedOn(fixtureFile(type), 'wasm');

    test('long_story NLL equals exact math\'s within 1e-4', () => {
      expect(Math.abs(meanNll(loaded(), longStory.prompt_ids) - expected.dequant_oracle.nll.long_story.mean_nll)).toBeLessThan(1e-4);
    });

    test.each(reference.cases.map((c) => [c.name, c] as const))(`%s: exact math's greedy ids and logprobs within ${FLOAT_VS_ORACLE}`, (name, c) => {
      const result = compareSteps(loaded(), c.prompt_ids, expected.dequant_oracle.cases[name]!, 2 * FLOAT_VS_ORACLE);
      expect(result.argmaxDiffers).toEqual([]);
      expect(result.maxDiff).toBeLessThan(FLOAT_VS_ORACLE);
    });
  });
});

// The native kernels compute on every tensor type of the four files (Q8_0, Q4_K, Q5_K, Q6_K and F32).
test.each(FILES)('herd\'s native kernels are the backend chosen automatically for the %s file (they compute on its types as stored)', async (type) => {
  const loaded = await loadModel(fixtureFile(type), { threads: 1 });
  expect(loaded.model.backendName).toBe('native');
  loaded.model.dispose();
});

describe('a split GGUF (the Q8_0 file in gguf-split\'s layout)', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-gguf-split-'));
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
  const prefix = path.join(work, 'model');
  const first = `${prefix}-00001-of-00003.gguf`;
  beforeAll(() => writeSplitGguf(fixtureFile('Q8_0'), prefix, 3));

  test('loads from its first part and gives the logits of the single file, bit for bit', async () => {
    expect(fs.readdirSync(work).sort()).toEqual(['model-00001-of-00003.gguf', 'model-00002-of-00003.gguf', 'model-00003-of-00003.gguf']);
    const ids = reference.cases[0]!.prompt_ids;
    const single = await load(fixtureFile('Q8_0'), 'kernels');
    const split = await load(first, 'kernels');
    const logits = (loaded: LoadedModel) => loaded.model.forward(Int32Array.from(ids), loaded.model.createCache(64));
    expect(split.config).toEqual(single.config);
    expect(split.generation.eosTokenIds).toEqual(single.generation.eosTokenIds);
    expect(Array.from(logits(split))).toEqual(Array.from(logits(single)));
    single.model.dispose();
    split.model.dispose();
  });

  test('a missing part is named', async () => {
    fs.renameSync(`${prefix}-00003-of-00003.gguf`, path.join(work, 'elsewhere.gguf'));
    try {
      await expect(load(first, 'kernels')).rejects.toThrow(/^model-00001-of-00003\.gguf: part 3 of 3 of the split model is missing: .*model-00003-of-00003\.gguf$/);
    } finally {
      fs.renameSync(path.join(work, 'elsewhere.gguf'), `${prefix}-00003-of-00003.gguf`);
    }
  });

  test('a later part given as the model names the first part', async () => {
    await expect(load(`${prefix}-00002-of-00003.gguf`, 'kernels')).rejects.toThrow(/^model-00002-of-00003\.gguf: this is part 2 of a split model; give the first part, model-00001-of-00003\.gguf$/);
  });
});

describe('a broken GGUF is one clear line naming the file and the tensor', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-gguf-errors-'));
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
  const source = fixtureFile('Q8_0');
  const broken = (name: string) => path.join(work, name);

  async function loadError(file: string): Promise<string> {
    const error = await load(file, 'kernels').then(() => null, (e: Error) => e);
    expect(error).not.toBeNull();
    expect(error!.message.split('\n')).toHaveLength(1);
    return error!.message;
  }

  test('data cut short: the tensor that runs past the end', async () => {
    const bytes = fs.readFileSync(source);
    fs.writeFileSync(broken('short.gguf'), bytes.subarray(0, bytes.length - 4096));
    const { tensors } = readGgufModel(source);
    const last = [...tensors.values()].sort((a, b) => b.begin - a.begin)[0]!;
    expect(await loadError(broken('short.gguf'))).toBe(`short.gguf: tensor ${last.name} ends past the end of the file (truncated)`);
  });

  test('header cut short', async () => {
    fs.writeFileSync(broken('header.gguf'), fs.readFileSync(source).subarray(0, 200));
    expect(await loadError(broken('header.gguf'))).toBe('header.gguf: the GGUF header runs past the end of the file');
  });

  test('an unknown ggml type id', async () => {
    patchTensorInfo(source, broken('type.gguf'), 'blk.1.ffn_up.weight', (info) => (info.type = 99));
    expect(await loadError(broken('type.gguf'))).toMatch(/^type\.gguf: tensor blk\.1\.ffn_up\.weight has unknown ggml type 99$/);
  });

  test('rows that do not split into whole blocks', async () => {
    patchTensorInfo(source, broken('rows.gguf'), 'blk.0.ffn_gate.weight', (info) => (info.dims[0] = 250));
    expect(await loadError(broken('rows.gguf'))).toBe("rows.gguf: tensor blk.0.ffn_gate.weight has rows of 250 values, not a multiple of Q8_0's block of 32");
  });

  test('a data region too small for the tensor before it (overlapping offsets)', async () => {
    const { tensors } = readGgufModel(source);
    const v = tensors.get('blk.0.attn_v.weight')!;
    patchTensorInfo(source, broken('overlap.gguf'), 'blk.0.attn_v.weight', (info) => (info.dims[1] = 2 * v.dims[1]!));
    expect(await loadError(broken('overlap.gguf'))).toMatch(/^overlap\.gguf: tensor blk\.0\.attn_v\.weight \(Q8_0 \[256, 256\], 69632 bytes\) runs into tensor \S+, which starts 34816 bytes after it$/);
  });

  test('a misaligned tensor offset', async () => {
    patchTensorInfo(source, broken('align.gguf'), 'blk.2.attn_k.weight', (info) => (info.offset += 4));
    expect(await loadError(broken('align.gguf'))).toMatch(/^align\.gguf: tensor blk\.2\.attn_k\.weight starts at data offset \d+, which is not a multiple of the alignment 32$/);
  });

  test.each([
    ['llama.block_count', 3, 'tensor blk.3.attn_k.weight belongs to layer 3 but llama.block_count is 3'],
    ['llama.block_count', 5, 'llama.block_count is 5 but no tensor belongs to layer 4 (blk.4.*)'],
    ['llama.embedding_length', 512, 'tensor token_embd.weight has rows of 256 values but llama.embedding_length is 512'],
    ['llama.attention.head_count', 4, 'tensor blk.0.attn_k.weight has 128 rows but llama.attention.head_count_kv 4 × head size 64 (llama.embedding_length 256 / llama.attention.head_count 4) is 256'],
    ['llama.attention.head_count_kv', 8, 'tensor blk.0.attn_k.weight has 128 rows but llama.attention.head_count_kv 8 × head size 32 (llama.embedding_length 256 / llama.attention.head_count 8) is 256'],
  ] as const)('metadata %s = %d contradicts the tensors', async (key, value, message) => {
    const file = broken(`${key}-${value}.gguf`);
    copyGguf(source, file, (metadata) => metadata.set(key, value));
    expect(await loadError(file)).toBe(`${path.basename(file)}: ${message}`);
  });
});
