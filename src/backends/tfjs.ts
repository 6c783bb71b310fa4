import { createRequire } from 'node:module';
import path from 'node:path';
import type { Ops } from '../engine/ops.js';
import { HerdError } from '../errors.js';
import { float32Bytes, type Backend, type BackendProbe } from './backend.js';

/**
 * tfjs is imported when a tfjs backend is probed or started, not with the registry: a model on
 * herd's own kernels then never holds tfjs' ~20 MB of code and heap beside its weights.
 */
const tfjsCore = () => import('@tensorflow/tfjs-core');

/** tfjs computes in float32: every stored type is widened at load, and its KV cache is float32. */
interface TfjsBackendSpec {
  name: 'node-gpu' | 'node' | 'wasm' | 'cpu';
  description: string;
  /** The package that provides it; optional ones are imported only if installed. */
  packageName: string;
  /** The name tfjs registers it under. */
  tfjsName: string;
  memory: Backend['memory'];
  register: () => Promise<void>;
}

const require = createRequire(import.meta.url);

function tfjsBackend(spec: TfjsBackendSpec): Backend {
  return {
    name: spec.name,
    description: spec.description,
    memory: spec.memory,
    probe: () => probeTfjs(spec),
    computesOn: (format) => format === 'F32',
    heldBytes: (_format, rows, cols) => float32Bytes(rows, cols),
    kvElementBytes: () => 4,
    create: async () => {
      await spec.register();
      const tf = await tfjsCore();
      if (!(await tf.setBackend(spec.tfjsName))) throw new HerdError(`${spec.packageName} did not start its "${spec.tfjsName}" backend`);
      await tf.ready();
      if (spec.name === 'cpu') silenceNodeAdvice(tf.backend());
      const { TfjsOps } = await import('./tfjs-ops.js');
      return new TfjsOps(spec.name) as Ops<unknown, unknown>;
    },
  };
}

export const TFJS_NODE_GPU = tfjsBackend({
  name: 'node-gpu',
  description: 'TensorFlow on a CUDA GPU (@tensorflow/tfjs-node-gpu, optional), float32',
  packageName: '@tensorflow/tfjs-node-gpu',
  tfjsName: 'tensorflow',
  memory: 'device',
  register: () => importOptional('@tensorflow/tfjs-node-gpu'),
});

export const TFJS_NODE = tfjsBackend({
  name: 'node',
  description: 'TensorFlow on the CPU (@tensorflow/tfjs-node, optional), float32',
  packageName: '@tensorflow/tfjs-node',
  tfjsName: 'tensorflow',
  memory: 'host',
  register: () => importOptional('@tensorflow/tfjs-node'),
});

export const TFJS_WASM = tfjsBackend({
  name: 'wasm',
  description: "tfjs' WebAssembly backend (always installed), float32",
  packageName: '@tensorflow/tfjs-backend-wasm',
  tfjsName: 'wasm',
  memory: 'host',
  register: registerWasm,
});

export const TFJS_CPU = tfjsBackend({
  name: 'cpu',
  description: "tfjs' pure-JavaScript backend (only when forced), float32",
  packageName: '@tensorflow/tfjs-backend-cpu',
  tfjsName: 'cpu',
  memory: 'host',
  register: () => import('@tensorflow/tfjs-backend-cpu').then(() => {}),
});

async function probeTfjs(spec: TfjsBackendSpec): Promise<BackendProbe> {
  const { name } = spec;
  try {
    await spec.register();
  } catch (error) {
    return { name, available: false, reason: describeImportFailure(spec.packageName, error) };
  }
  if ((await tfjsCore()).findBackendFactory(spec.tfjsName) === null) {
    return { name, available: false, reason: `${spec.packageName} loaded but registered no "${spec.tfjsName}" backend` };
  }
  return { name, available: true, reason: `${spec.packageName} ${packageVersion(spec.packageName)}` };
}

/**
 * The cpu backend prints a multi-line "install tfjs-node" banner on first use in Node; a person
 * who forced --backend cpu chose it, and `herd env` already says what else exists.
 */
function silenceNodeAdvice(cpuBackend: object): void {
  (cpuBackend as { firstUse: boolean }).firstUse = false;
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
