import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openModelFolder } from '../src/engine/load.js';
import { seededRandom } from '../src/engine/sampling.js';
import { GgmlType, readGgufHeader, type GgufFile } from '../src/formats/gguf.js';
import { encodeTensor, ggufTensor } from '../src/formats/gguf-llama.js';
import type { GgufMix } from '../src/formats/gguf-recipe.js';
import { requireNativeAddon } from '../src/native/addon.js';
import { DEFAULT_CALIBRATION_FILE } from '../src/quant/calibration.js';
import { runQuantizeJob } from '../src/quant/job.js';
import { NATIVE_ONLY_TYPES, NATIVE_QUANT_TYPES, ggufQuantizer } from '../src/quant/native-gguf.js';
import { GGUF_LLAMACPP, STORIES, readJson } from './fixtures.js';
import { herd } from './herd-cli.js';
import { PATHS_AND_THREADS, SEARCH_PATHS, quantizerDuringBlock } from './native-quantizer-setup.js';

/**
 * herd's native GGUF block quantizers (src/native/quantize.c) write the same bytes as its
 * TypeScript writers (the reference, themselves byte-identical to llama.cpp's reference
 * quantizers), on 1 and 3 threads, on matrices built to hit the edge cases of each scale search;
 * and they reproduce llama.cpp's own files of the gguf-llamacpp fixture. The addon must be built:
 * this file fails (it does not skip) when it is missing.
 */
const addon = requireNativeAddon();
const bestPath = addon.info().isa;

/** The types both languages write (the native-only ones are compared with llama.cpp in native-quantize-lowbit.test.ts). */
const TYPES = [...NATIVE_QUANT_TYPES].filter((type) => !NATIVE_ONLY_TYPES.has(type)).map((type) => [GgmlType[type], type] as const);

/** Rows of a test matrix, each an edge case for the scale searches; cols is whole blocks of the type. */
function awkwardMatrix(cols: number, seed: number): Float32Array {
  const draw = seededRandom(seed);
  const gaussian = () => (draw() + draw() + draw() - 1.5) * 2;
  const rows: Array<(i: number) => number> = [
    () => gaussian(),
    () => 0,
    // The first block of 32 one constant, the rest random: Q4_1/Q5_1's d = 0, the K-quants' max == min.
    (i) => (i < 32 ? 0.3 : gaussian()),
    // Magnitudes whose f16 scales are large, and beyond f16's range (the scale is stored as infinity).
    () => gaussian() * 1e4,
    () => gaussian() * 1e5,
    // Scales that are f16 subnormals, and scales that round to 0 (the codes of the search are kept).
    () => gaussian() * 1e-6,
    () => gaussian() * 1e-9,
    () => -Math.abs(gaussian()) - 0.5,
    () => Math.abs(gaussian()) + 2,
    // Exact quarter steps: codes land on ties, where round-half-even and float rounding order decide.
    () => Math.round(gaussian() * 8) / 4,
    // One outlier per row.
    (i) => (i === 77 % cols ? 50 : gaussian() * 0.01),
  ];
  const out = new Float32Array(rows.length * cols);
  rows.forEach((value, r) => {
    for (let i = 0; i < cols; i++) out[r * cols + i] = value(i);
  });
  return out;
}

/** The TypeScript writers' bytes, once per matrix: every path and thread count is compared with the same reference. */
const referenceBytes = new Map<string, Uint8Array>();
function typescriptBytes(key: string, type: GgmlType, values: Float32Array): Uint8Array {
  if (!referenceBytes.has(key)) referenceBytes.set(key, encodeTensor(type, values));
  return referenceBytes.get(key)!;
}

/** The first byte where a and b differ, with the index (−1 when identical): a readable failure. */
function firstDifference(a: Uint8Array, b: Uint8Array): { at: number; ours: number | undefined; reference: number | undefined } {
  const length = Math.max(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return { at: i, ours: a[i], reference: b[i] };
  return { at: -1, ours: undefined, reference: undefined };
}

describe.each(PATHS_AND_THREADS)('native quantizers on the %s path, %i thread(s), write the TypeScript writers\' bytes', (isa, threads) => {
  const quantizer = quantizerDuringBlock(isa, threads);

  test('the threads asked for run, and closing gives the pool back as it was', () => {
    expect(addon.info().threads).toBe(threads);
    const inner = ggufQuantizer(2);
    expect(addon.info().threads).toBe(2);
    inner.close();
    expect(addon.info().threads).toBe(threads);
    expect(quantizer().description).toBe(`GGUF blocks by herd's native quantizers on ${threads} thread${threads === 1 ? '' : 's'}`);
  });

  test.each(TYPES)('%s: awkward rows', (_name, type) => {
    // Two super-blocks a row (or 16 blocks of 32): every row holds several blocks, and the edge rows sit between normal ones.
    const cols = 512;
    const values = awkwardMatrix(cols, type);
    const native = quantizer().quantize!(type, values, cols)!;
    expect(firstDifference(native, typescriptBytes(`awkward ${type}`, type, values))).toEqual({ at: -1, ours: undefined, reference: undefined });
  });

  test.each(TYPES)('%s: a random matrix of many chunks, shared out over the threads', (_name, type) => {
    const draw = seededRandom(1000 + type);
    const [rows, cols] = [37, 768];
    const values = Float32Array.from({ length: rows * cols }, () => (draw() - 0.5) * (draw() < 0.01 ? 40 : 1));
    const native = quantizer().quantize!(type, values, cols)!;
    expect(firstDifference(native, typescriptBytes(`random ${type}`, type, values))).toEqual({ at: -1, ours: undefined, reference: undefined });
  });

  test('rows that are not whole blocks, and types the native code does not write, are left to the TypeScript writers', () => {
    expect(quantizer().quantize!(GgmlType.Q4_K, new Float32Array(2 * 288), 288)).toBeNull();
    expect(quantizer().quantize!(GgmlType.Q8_0, new Float32Array(48), 48)).toBeNull();
    expect(quantizer().quantize!(GgmlType.IQ2_XXS, new Float32Array(256), 256)).toBeNull();
    // encodeTensor then refuses them as before.
    expect(() => encodeTensor(GgmlType.Q8_0, new Float32Array(48), 48, quantizer().quantize)).toThrow('Q8_0 needs rows that are a multiple of 32 long');
  });
});

test('the addon checks its sizes: a short output array or an unknown type is refused, not a write past its end', () => {
  expect(() => addon.quantize(GgmlType.Q8_0, new Float32Array(64), 2, 32, new Uint8Array(67))).toThrow(/quantize's type or sizes do not match/);
  expect(() => addon.quantize(GgmlType.IQ2_XXS, new Float32Array(256), 1, 256, new Uint8Array(66))).toThrow(/quantize's type or sizes do not match/);
});

interface ReferenceFile {
  file: string | null;
}
const reference = readJson<{ files: Record<string, ReferenceFile> }>(path.join(GGUF_LLAMACPP, 'reference.json'));

/** Tensor bytes of a GGUF file by name. */
function tensorsOf(file: GgufFile): Map<string, Uint8Array> {
  const bytes = fs.readFileSync(file.file);
  return new Map([...file.tensors.values()].map((info) => [info.name, new Uint8Array(bytes.buffer, bytes.byteOffset + info.begin, info.byteLength)]));
}

// llama.cpp quantized the fixture's F32 source with its reference quantizers (1 thread, no importance
// matrix); the native quantizers, on 3 threads, give every quantized tensor's bytes.
const LLAMA_CPP_MIXES = SEARCH_PATHS.flatMap((isa) => (['Q4_K_M', 'Q5_K_M', 'Q6_K', 'Q8_0'] as const).map((mix) => [mix, isa] as const));
test.each(LLAMA_CPP_MIXES)('llama.cpp\'s %s file of the gguf-llamacpp fixture, tensor by tensor, through the native quantizers on the %s path', (mix: GgufMix, isa) => {
  addon.choose(isa);
  const quantizer = ggufQuantizer(3);
  const { config, checkpoint } = openModelFolder(path.join(GGUF_LLAMACPP, 'source'));
  try {
    const theirs = tensorsOf(readGgufHeader(path.join(GGUF_LLAMACPP, reference.files[mix]!.file!)));
    const compared: string[] = [];
    for (const hf of checkpoint.names()) {
      let nativeCalls = 0;
      const counting: typeof quantizer.quantize = (type, data, rowLength) => {
        nativeCalls++;
        return quantizer.quantize!(type, data, rowLength);
      };
      const ours = ggufTensor(checkpoint.readFloat(hf), mix, config, counting);
      if (ours.type === GgmlType.F32) continue;
      expect([ours.name, nativeCalls, firstDifference(ours.bytes, theirs.get(ours.name)!).at]).toEqual([ours.name, 1, -1]);
      compared.push(ours.name);
    }
    // The fixture's 30 matrices (README: token_embd, output and 7 per layer of 4 layers).
    expect(compared).toHaveLength(30);
  } finally {
    checkpoint.close();
    quantizer.close();
    addon.choose(bestPath);
  }
});

describe('herd quantize --format gguf-*', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-native-quantize-'));
  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  // stories260K's Q4_K_M mix holds Q8_0, Q5_0 and F16 tensors (its rows are not whole super-blocks); gguf-q4_0 adds Q4_0; gguf-f16 has no blocks.
  test('runs the native quantizers on --threads and, with HERD_NATIVE=0, the TypeScript ones, writing the same file', async () => {
    const formats = ['gguf-q4_k_m', 'gguf-q4_0', 'gguf-f16'] as const;
    const noted = (note: string) => formats.map((format) => (format === 'gguf-f16' ? [] : [note]));
    const native = await runQuantizeJob({
      modelDir: STORIES, outDir: path.join(out, 'native'), formats: [...formats], threads: 2,
      calibration: { file: DEFAULT_CALIBRATION_FILE, samples: 1, seqLen: 32 }, gptq: { symmetric: true, actOrder: false, dampPercent: 0.01 }, nf4DoubleQuant: false,
    });
    expect(native.map((r) => r.notes)).toEqual(noted("GGUF blocks by herd's native quantizers on 2 threads"));
    const cli = herd(['quantize', '--model', STORIES, '--format', formats.join(','), '--out', path.join(out, 'typescript'), '--json'], undefined, { HERD_NATIVE: '0' });
    expect(cli.status).toBe(0);
    const results = JSON.parse(cli.stdout).formats as Array<{ path: string; notes: string[] }>;
    expect(results.map((r) => r.notes)).toEqual(noted("GGUF blocks by herd's TypeScript quantizers (native quantizers unavailable: switched off by HERD_NATIVE=0)"));
    results.forEach((r, i) => {
      expect(path.basename(r.path)).toBe(path.basename(native[i]!.path));
      expect(Buffer.compare(fs.readFileSync(r.path), fs.readFileSync(native[i]!.path))).toBe(0);
    });
  });
});
