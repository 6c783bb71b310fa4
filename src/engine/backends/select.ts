import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { HerdError } from '../../errors.js';
import { KernelOps, type KvCacheType } from '../../kernels/wasm-ops.js';
import { kernelModule } from '../../kernels/wasm-memory.js';
import { loadNativeAddon } from '../../native/addon.js';
import { NATIVE_FORMAT_CODES, NativeOps, nativeSupportsAll } from '../../native/native-ops.js';
import type { Ops } from '../ops.js';
import { TfjsOps } from './tfjs-ops.js';

/** The backends herd knows: tfjs ones in the order auto-detection tries them, then herd's own kernels (WASM, native C). */
export const BACKEND_NAMES = ['node-gpu', 'node', 'wasm', 'cpu', 'kernels', 'native'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BackendProbe {
  name: BackendName;
  available: boolean;
  /** Why it is or is not usable, for `herd env`. */
  reason: string;
}

interface BackendSpec {
  /** The package that provides it; optional ones are imported only if installed. */
  packageName: string;
  /** The name tfjs registers it under. */
  tfjsName: string;
  register: () => Promise<void>;
}

type TfjsBackendName = Exclude<BackendName, 'kernels' | 'native'>;

const require = createRequire(import.meta.url);

const SPECS: Record<TfjsBackendName, BackendSpec> = {
  'node-gpu': { packageName: '@tensorflow/tfjs-node-gpu', tfjsName: 'tensorflow', register: () => importOptional('@tensorflow/tfjs-node-gpu') },
  node: { packageName: '@tensorflow/tfjs-node', tfjsName: 'tensorflow', register: () => importOptional('@tensorflow/tfjs-node') },
  wasm: { packageName: '@tensorflow/tfjs-backend-wasm', tfjsName: 'wasm', register: registerWasm },
  cpu: { packageName: '@tensorflow/tfjs-backend-cpu', tfjsName: 'cpu', register: () => import('@tensorflow/tfjs-backend-cpu').then(() => {}) },
};

/** Tries each backend without activating any, so `herd env` can say what was found and why. */
export async function probeBackends(): Promise<BackendProbe[]> {
  const probes: BackendProbe[] = [];
  for (const name of BACKEND_NAMES) {
    // A path forced with HERD_CPU_ISA that the CPU lacks is an error when loading a model; here, a reason.
    probes.push(await probe(name).catch((error: Error) => ({ name, available: false, reason: error.message })));
  }
  return probes;
}

export interface BackendRequest {
  /** A backend name, or "tfjs" for the first tfjs backend that loads. */
  backend?: string;
  /** Threads for herd's kernels. */
  threads?: number;
  /** KV cache storage for herd's kernels (tfjs keeps float32). */
  kvCacheType?: KvCacheType;
  /** The checkpoint stores 16-bit or quantized weights, which herd's kernels compute on as stored. */
  packedWeights?: boolean;
  /**
   * The stored formats of all the model's weights (when known): the native kernels are chosen
   * automatically only if they compute on every one, else the WASM kernels are.
   */
  storedFormats?: readonly string[];
}

/** Every name --backend accepts. */
export const BACKEND_CHOICES: readonly string[] = [...BACKEND_NAMES, 'tfjs'];

const TFJS_ORDER: BackendName[] = ['node-gpu', 'node', 'wasm'];

/**
 * Activates the requested backend, or picks one: a GPU when tfjs-node-gpu is installed; else
 * herd's kernels for 16-bit and quantized weights (tfjs would widen them to float32); else the
 * first tfjs backend that loads.
 */
export async function activateBackend(request: BackendRequest = {}): Promise<Ops<unknown, unknown>> {
  const requested = request.backend;
  if (requested !== undefined && !BACKEND_CHOICES.includes(requested)) {
    throw new HerdError(`unknown backend "${requested}"; choose one of ${BACKEND_CHOICES.join(', ')}`);
  }
  const candidates = requested === undefined ? automaticOrder(request) : requested === 'tfjs' ? TFJS_ORDER : [requested as BackendName];
  const failures: string[] = [];
  for (const name of candidates) {
    const result = await probe(name);
    if (result.available && name === 'native') return NativeOps.create({ threads: request.threads, kvCacheType: request.kvCacheType }) as Ops<unknown, unknown>;
    if (result.available && name === 'kernels') return (await KernelOps.create({ threads: request.threads, kvCacheType: request.kvCacheType })) as Ops<unknown, unknown>;
    if (result.available && name !== 'kernels' && name !== 'native' && (await tf.setBackend(SPECS[name].tfjsName))) {
      await tf.ready();
      if (name === 'cpu') silenceNodeAdvice();
      return new TfjsOps(name) as Ops<unknown, unknown>;
    }
    failures.push(`${name}: ${result.reason}`);
  }
  throw new HerdError(`no usable backend (${failures.join('; ')})`);
}

function automaticOrder({ packedWeights, storedFormats }: BackendRequest): BackendName[] {
  if (!packedWeights) return TFJS_ORDER;
  const native: BackendName[] = storedFormats && nativeSupportsAll(storedFormats) ? ['native'] : [];
  return ['node-gpu', ...native, 'kernels', 'node', 'wasm'];
}

async function probe(name: BackendName): Promise<BackendProbe> {
  if (name === 'kernels') return probeKernels();
  if (name === 'native') return probeNative();
  const spec = SPECS[name];
  try {
    await spec.register();
  } catch (error) {
    return { name, available: false, reason: describeImportFailure(spec.packageName, error) };
  }
  if (tf.findBackendFactory(spec.tfjsName) === null) {
    return { name, available: false, reason: `${spec.packageName} loaded but registered no "${spec.tfjsName}" backend` };
  }
  return { name, available: true, reason: `${spec.packageName} ${packageVersion(spec.packageName)}` };
}

/**
 * The cpu backend prints a multi-line "install tfjs-node" banner on first use in Node; a person
 * who forced --backend cpu chose it, and `herd env` already says what else exists.
 */
function silenceNodeAdvice(): void {
  (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
}

function probeKernels(): BackendProbe {
  try {
    kernelModule();
    return { name: 'kernels', available: true, reason: "herd's WASM SIMD kernels (F32, F16, BF16, Q8_0, Q4_0 weights)" };
  } catch (error) {
    return { name: 'kernels', available: false, reason: (error as Error).message };
  }
}

/** The native kernels: whether they loaded, and the instruction-set path they chose and why. */
function probeNative(): BackendProbe {
  const { addon, reason } = loadNativeAddon();
  if (!addon) return { name: 'native', available: false, reason };
  const { isa, reason: why } = addon.info();
  return { name: 'native', available: true, reason: `herd's native C kernels on the ${isa} path (${why}; ${Object.keys(NATIVE_FORMAT_CODES).join(', ')} weights)` };
}

async function importOptional(packageName: string): Promise<void> {
  // A variable specifier keeps TypeScript and bundlers from requiring the optional package.
  const specifier: string = packageName;
  await import(specifier);
}

let wasmPathsSet = false;

async function registerWasm(): Promise<void> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  if (!wasmPathsSet) {
    // In Node the .wasm binaries are read from the package folder, never fetched.
    const distDir = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep;
    wasm.setWasmPaths(distDir);
    wasmPathsSet = true;
  }
}

function describeImportFailure(packageName: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') return `${packageName} is not installed`;
  return `${packageName} failed to load: ${((error as Error).message ?? String(error)).split('\n')[0]}`;
}

function packageVersion(packageName: string): string {
  try {
    return (require(`${packageName}/package.json`) as { version: string }).version;
  } catch {
    return '(version unknown)';
  }
}
