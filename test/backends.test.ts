import os from 'node:os';
import path from 'node:path';
import type { Backend, BackendName } from '../src/backends/backend.js';
import { loadModel } from '../src/backends/load.js';
import { checkFitsInMemory, machineMemory, memoryNeed } from '../src/backends/memory-check.js';
import { NATIVE } from '../src/backends/native.js';
import { TFJS_WASM } from '../src/backends/tfjs.js';
import { storedTensors } from '../src/engine/load.js';
import { SyntheticWeights } from '../src/engine/synthetic.js';
import { presetConfig } from '../src/spec/presets.js';
import { closeStartedBackends } from '../src/backends/open-backends.js';
import { activateBackend, automaticOrder, BACKENDS, chooseBackend, type Registry } from '../src/backends/registry.js';
import { HerdError } from '../src/errors.js';
import { GgmlType, readGgufHeader } from '../src/formats/gguf.js';
import { readSafetensorsHeader } from '../src/formats/safetensors.js';
import type { KernelOps } from '../src/kernels/wasm-ops.js';
import { requireNativeAddon } from '../src/native/addon.js';
import { nf4HeldBytes, nf4StoredBytes, packNf4Weight } from '../src/train/qlora.js';
import { herd } from './herd-cli.js';
import { GGUF_LLAMACPP, STORIES } from './fixtures.js';

/**
 * The backends as a layer of their own: the registry's choice by all of a model's stored types,
 * close() ending a backend's threads, and the refusal of a model larger than the memory it must
 * fit in (with a memory figure given, so no large file is needed), with its numbers worked out
 * here from the fixtures' headers.
 */
const Q8_GGUF = path.join(GGUF_LLAMACPP, 'model-Q8_0.gguf');
const GIB = 2 ** 30;
const MIB = 2 ** 20;

/** The registry with some backends' probes answering as given (the rest unchanged). */
function registryWith(answers: Partial<Record<BackendName, boolean>>, changes: Partial<Record<BackendName, Partial<Backend>>> = {}): Registry {
  const entries = Object.entries(BACKENDS).map(([name, backend]) => {
    const available = answers[name as BackendName];
    const probe = available === undefined ? backend.probe : async () => ({ name: name as BackendName, available, reason: available ? `${name} here` : `no ${name} in this test` });
    return [name, { ...backend, probe, ...changes[name as BackendName] }];
  });
  return Object.fromEntries(entries) as Registry;
}

describe('the registry', () => {
  test('float32 weights go to tfjs; packed ones to the native kernels when they compute on every stored type, then the WASM kernels, then tfjs', () => {
    expect(automaticOrder(['F32']).map((c) => c.name)).toEqual(['node-gpu', 'node', 'wasm']);
    expect(automaticOrder(['Q8_0', 'F32']).map((c) => c.name)).toEqual(['node-gpu', 'native', 'kernels', 'node', 'wasm']);
    // One type the native kernels lack (here they are made to lack Q8_0) takes them out for the whole model.
    const lacking = registryWith({}, { native: { computesOn: (format) => format === 'F32' } });
    const order = automaticOrder(['F32', 'Q8_0', 'F32'], lacking);
    expect(order.map((c) => c.name)).toEqual(['node-gpu', 'kernels', 'node', 'wasm']);
    expect(order[1]!.why).toBe('the native kernels do not compute on Q8_0');
  });

  test('the first candidate whose probe finds it is chosen, and the why names the ones passed over', async () => {
    const registry = registryWith({ 'node-gpu': false, native: false, kernels: true });
    const choice = await chooseBackend({ storedFormats: ['Q4_0', 'F32'] }, registry);
    expect(choice.backend.name).toBe('kernels');
    expect(choice.why).toBe("they compute on the model's weight types (Q4_0, F32); node-gpu: no node-gpu in this test; native: no native in this test");
    const tfjs = await chooseBackend({ backend: 'tfjs' }, registryWith({ 'node-gpu': false, node: false, wasm: true }));
    expect([tfjs.backend.name, tfjs.why]).toEqual(['wasm', 'forced by --backend tfjs (the first tfjs backend that loads); node-gpu: no node-gpu in this test; node: no node in this test']);
    await expect(chooseBackend({ backend: 'kernels' }, registryWith({ kernels: false }))).rejects.toThrow('no usable backend (kernels: no kernels in this test)');
    await expect(chooseBackend({ backend: 'cuda' })).rejects.toThrow(HerdError);
  });

  test("close() ends a backend's threads: the WASM kernels' workers and the native pool", async () => {
    const kernels = (await activateBackend({ backend: 'kernels', threads: 3 })) as unknown as KernelOps;
    await activateBackend({ backend: 'native', threads: 3 });
    expect([kernels.threads, requireNativeAddon().info().threads]).toEqual([3, 3]);
    await closeStartedBackends();
    expect([kernels.threads, requireNativeAddon().info().threads]).toEqual([1, 1]);
  });
});

/** stories260K (F32 safetensors) as the file stores it: every tensor's bytes. */
function storiesFileBytes(): number {
  return readSafetensorsHeader(path.join(STORIES, 'model.safetensors')).reduce((sum, entry) => sum + entry.end - entry.begin, 0);
}

/** The Q8_0 GGUF's weights (llama.cpp's rope_freqs table is not one) as stored, from first principles: Q8_0 is 34 bytes per 32 weights, F32 4 per weight. */
function q8FileBytes(): { stored: number; float32: number } {
  const tensors = [...readGgufHeader(Q8_GGUF).tensors.values()].filter((t) => t.name !== 'rope_freqs.weight');
  const elements = (dims: number[]) => dims.reduce((a, b) => a * b, 1);
  const stored = tensors.reduce((sum, t) => sum + (t.type === GgmlType.Q8_0 ? (elements(t.dims) / 32) * 34 : t.type === GgmlType.F32 ? elements(t.dims) * 4 : Number.NaN), 0);
  return { stored, float32: tensors.reduce((sum, t) => sum + elements(t.dims) * 4, 0) };
}

// KV caches: 2 (keys, values) × layers × kv heads × head dim × positions × bytes per element.
// stories260K: 5 layers, 4 kv heads of 8, max_position_embeddings 512 (below the 4,096 checked by default).
const STORIES_KV_F32 = 2 * 5 * 4 * 8 * 512 * 4;
// The GGUF: 4 layers, 4 kv heads of 32 (256 / 8 heads), 4,096 positions (its context is 131,072).
const Q8_KV_F16 = 2 * 4 * 4 * 32 * 4096 * 2;

describe('larger than memory', () => {
  async function refusal(model: string, options: Parameters<typeof loadModel>[1], bytes: number): Promise<{ message: string; progressed: boolean }> {
    let progressed = false;
    const error = await loadModel(model, { ...options, memory: { bytes, source: 'the test allows' }, onProgress: () => (progressed = true) }).then(
      () => null,
      (failure: Error) => failure,
    );
    expect(error).toBeInstanceOf(HerdError);
    return { message: error!.message, progressed };
  }

  test('the native backend counts the Q8_0 weights as stored and an F16 cache; one byte short is refused before any weight loads', async () => {
    const need = q8FileBytes().stored + Q8_KV_F16;
    const { message, progressed } = await refusal(Q8_GGUF, { backend: 'native', threads: 1, kvCacheType: 'f16' }, need - 1);
    expect(progressed).toBe(false);
    const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;
    expect(message).toBe(`the model does not fit in memory: on the native backend it needs ${mib(q8FileBytes().stored)} for weights + ${mib(Q8_KV_F16)} KV cache; the test allows ${mib(need - 1)}`);
    const loaded = await loadModel(Q8_GGUF, { backend: 'native', threads: 1, kvCacheType: 'f16', memory: { bytes: need, source: 'the test allows' } });
    expect(loaded.model.backendName).toBe('native');
  });

  test('tfjs widens every weight to float32 and keeps a float32 cache, whatever the cache type asked', async () => {
    const need = q8FileBytes().float32 + 2 * Q8_KV_F16;
    expect((await refusal(Q8_GGUF, { backend: 'wasm', kvCacheType: 'f16' }, need - 1)).message).toContain(`it needs ${(q8FileBytes().float32 / MIB).toFixed(1)} MiB for weights + ${((2 * Q8_KV_F16) / MIB).toFixed(1)} MiB KV cache`);
    const atFull = await loadModel(Q8_GGUF, { backend: 'wasm', memory: { bytes: need, source: 'the test allows' } });
    expect(atFull.model.backendName).toBe('wasm');
  });

  test('a context asked for is what the KV cache is counted at, up to the model\'s own', async () => {
    const weights = storiesFileBytes();
    await expect(loadModel(STORIES, { backend: 'wasm', contextTokens: 100_000, memory: { bytes: weights + STORIES_KV_F32, source: 'the test allows' } })).resolves.toBeDefined();
    const perPosition = STORIES_KV_F32 / 512;
    const { message } = await refusal(STORIES, { backend: 'wasm', contextTokens: 256 }, weights + 256 * perPosition - 1);
    expect(message).toContain(`+ ${((256 * perPosition) / MIB).toFixed(1)} MiB KV cache`);
  });

  test('Llama 3.1 8B in Q8_0 (its published shape, no file): 7.9 GiB on the native backend, 29.9 GiB widened on tfjs', () => {
    const config = presetConfig('llama-3.1-8b');
    const tensors = storedTensors(new SyntheticWeights(config, 'Q8_0'), config);
    // Matrices: two 128256 × 4096 tables (untied), and per layer q, o 4096², k, v 1024 × 4096, gate, up, down 14336 × 4096;
    // 65 norms of 4096 stay float32. Q8_0 is 34 bytes per 32 weights.
    const matrixWeights = 2 * 128256 * 4096 + 32 * (4096 * 4096 * 2 + 1024 * 4096 * 2 + 14336 * 4096 * 3);
    const normWeights = 65 * 4096;
    // KV cache of 4,096 positions: 2 × 32 layers × 8 kv heads × 128 × 4096 positions.
    const shape = { layers: 32, kvHeads: 8, headDim: 128, capacity: 4096 };
    const native = memoryNeed(NATIVE, tensors, { shape, type: 'f16' });
    expect(native).toEqual({ weightBytes: (matrixWeights / 32) * 34 + normWeights * 4, kvCacheBytes: 2 * 32 * 8 * 128 * 4096 * 2 });
    const tfjs = memoryNeed(TFJS_WASM, tensors, { shape, type: 'f16' });
    expect(tfjs).toEqual({ weightBytes: (matrixWeights + normWeights) * 4, kvCacheBytes: 2 * 32 * 8 * 128 * 4096 * 4 });
    const machine = { bytes: 8 * GIB, source: 'this machine has' };
    expect(() => checkFitsInMemory(NATIVE, native, machine)).toThrow('the model does not fit in memory: on the native backend it needs 7.9 GiB for weights + 512.0 MiB KV cache; this machine has 8.0 GiB');
    expect(() => checkFitsInMemory(TFJS_WASM, tfjs, { ...machine, bytes: 30 * GIB })).toThrow('on the wasm backend it needs 29.9 GiB for weights + 1.0 GiB KV cache; this machine has 30.0 GiB');
    expect(() => checkFitsInMemory(NATIVE, native, { ...machine, bytes: 9 * GIB })).not.toThrow();
  });

  test("QLoRA's NF4 base is counted at what packing it holds: codes two to a byte and a float32 absmax per 64 weights", () => {
    // 6 × 70 = 420 weights: 210 bytes of codes and 7 blocks (the last one partial) of 4 bytes.
    const packed = packNf4Weight({ name: 'w', shape: [6, 70], data: Float32Array.from({ length: 420 }, (_, i) => Math.sin(i)) });
    expect([nf4HeldBytes(420), nf4StoredBytes(packed)]).toEqual([238, 238]);
  });

  test("the figure: the machine's total memory (or a lower container limit), or HERD_MEMORY_LIMIT in bytes", () => {
    const machine = machineMemory({});
    expect(machine.bytes).toBeGreaterThan(0);
    expect(machine.bytes).toBeLessThanOrEqual(os.totalmem());
    expect(machineMemory({ HERD_MEMORY_LIMIT: '12345' })).toEqual({ bytes: 12345, source: 'HERD_MEMORY_LIMIT allows' });
    expect(() => machineMemory({ HERD_MEMORY_LIMIT: '24GiB' })).toThrow('HERD_MEMORY_LIMIT="24GiB" must be a positive number of bytes');
  });
});

describe('the CLI', () => {
  const args = ['generate', '-m', STORIES, '--backend', 'wasm', '--prompt-ids', '-', '-n', '2', '--temperature', '0'];

  test('a model larger than HERD_MEMORY_LIMIT is one error line with the numbers and a non-zero exit', () => {
    const run = herd([...args, '--json'], '[1]', { HERD_MEMORY_LIMIT: String(GIB / 1024) });
    expect(run.status).toBe(1);
    const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;
    expect(run.stderr).toBe(`herd: the model does not fit in memory: on the wasm backend it needs ${mib(storiesFileBytes())} for weights + ${mib(STORIES_KV_F32)} KV cache; HERD_MEMORY_LIMIT allows 1.0 MiB\n`);
    expect(JSON.parse(run.stdout).error).toMatchObject({ type: 'model', message: expect.stringContaining('does not fit in memory') });
  });

  test('--verbose says which backend was chosen and why', () => {
    const forced = herd([...args, '--verbose'], '[1]');
    expect(forced.status).toBe(0);
    expect(forced.stderr).toMatch(/^herd: backend wasm \(@tensorflow\/tfjs-backend-wasm [\d.]+\): forced by --backend wasm$/m);
    const automatic = herd(['generate', '-m', Q8_GGUF, '--prompt-ids', '-', '-n', '1', '--threads', '1', '--verbose'], '[1]');
    expect(automatic.status).toBe(0);
    expect(automatic.stderr).toMatch(/^herd: backend native \(herd's native C kernels on the \w+ path .*\): it computes on all of the model's weight types \((F32, Q8_0|Q8_0, F32)\)(; node-gpu: .*)?$/m);
  });
});
