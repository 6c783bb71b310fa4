import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generate } from '../src/engine/generate.js';
import { loadModel } from '../src/backends/load.js';
import { openModelFolder } from '../src/engine/load.js';
import { GREEDY } from '../src/engine/sampling.js';
import { readGgufHeader, GgmlType } from '../src/formats/gguf.js';
import { DEFAULT_CALIBRATION_FILE } from '../src/quant/calibration.js';
import { runQuantizeJob, type QuantFormat } from '../src/quant/job.js';
import { GGUF_LLAMACPP, STORIES, readJson } from './fixtures.js';

/**
 * The native kernels of src/native/blocks32.h under the one model definition: models whose
 * matrices are stored as Q4_1, Q5_0 and Q5_1 (herd's llama.cpp mixes of stories260K) and as
 * INT4_G128 rows (round-to-nearest int4 of the llama.cpp fixture's 256-wide source in GPTQ's
 * layout) are put on the native backend by automatic selection, and generate the WASM kernels'
 * greedy tokens. The kernels' arithmetic is checked in native-kernels.test.ts.
 */
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-native-blocks32-'));
afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

const quantizeOptions = { outDir: out, calibration: { file: DEFAULT_CALIBRATION_FILE, samples: 1, seqLen: 32 }, gptq: { symmetric: true, actOrder: false, dampPercent: 0.01 }, nf4DoubleQuant: false };
const files = new Map<QuantFormat, string>();

beforeAll(async () => {
  const stories = await runQuantizeJob({ ...quantizeOptions, modelDir: STORIES, formats: ['gguf-q4_1', 'gguf-q4_k_m', 'gguf-q5_k_m'] });
  const int4 = await runQuantizeJob({ ...quantizeOptions, modelDir: path.join(GGUF_LLAMACPP, 'source'), formats: ['int4-rtn'] });
  for (const result of [...stories, ...int4]) files.set(result.format, result.path);
});

async function greedy(model: string, backend: string | undefined, promptIds: number[]) {
  const loaded = await loadModel(model, { backend, threads: 2 });
  const result = generate(loaded.model, loaded.tokenizer, { promptIds, maxNewTokens: 12, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs: 0 });
  return { ids: result.generatedIds, backend: loaded.model.backendName };
}

// On stories260K, ffn_down's 172 columns fit no block of 32, so those matrices are F16 (quant-gguf-mixes.test.ts).
test.each([
  ['gguf-q4_1', 'Q4_1'],
  ['gguf-q4_k_m', 'Q5_0'],
  ['gguf-q5_k_m', 'Q5_1'],
] as const)('%s of stories260K (%s matrices): automatically native, with the WASM kernels\' greedy tokens', async (format, matrixType) => {
  const file = files.get(format)!;
  const types = new Set([...readGgufHeader(file).tensors.values()].map((tensor) => GgmlType[tensor.type]));
  expect(types).toContain(matrixType);
  const [native, kernels] = [await greedy(file, undefined, [1]), await greedy(file, 'kernels', [1])];
  expect([native.backend, kernels.backend]).toEqual(['native', 'kernels']);
  expect(native.ids).toHaveLength(12);
  expect(native.ids).toEqual(kernels.ids);
});

test('int4 (GPTQ layout, group 128) of the 256-wide fixture model: INT4_G128 rows, automatically native, with the WASM kernels\' greedy tokens', async () => {
  const dir = files.get('int4-rtn')!;
  const { checkpoint } = openModelFolder(dir);
  expect(checkpoint.describePacked('model.layers.3.mlp.down_proj.weight')?.format).toBe('INT4_G128');
  checkpoint.close();
  const prompt = readJson<{ cases: Array<{ name: string; prompt_ids: number[] }> }>(path.join(GGUF_LLAMACPP, 'reference.json')).cases[0]!.prompt_ids;
  const [native, kernels] = [await greedy(dir, undefined, prompt), await greedy(dir, 'kernels', prompt)];
  expect([native.backend, kernels.backend]).toEqual(['native', 'kernels']);
  expect(native.ids).toHaveLength(12);
  expect(native.ids).toEqual(kernels.ids);
});
