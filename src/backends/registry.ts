import type { Ops } from '../engine/ops.js';
import { HerdError } from '../errors.js';
import type { PackedFormat } from '../formats/weights.js';
import { BACKEND_NAMES, type Backend, type BackendName, type BackendOptions, type BackendProbe } from './backend.js';
import { KERNELS } from './kernels.js';
import { NATIVE } from './native.js';
import { keepOpen } from './open-backends.js';
import { TFJS_CPU, TFJS_NODE, TFJS_NODE_GPU, TFJS_WASM } from './tfjs.js';

/** Every backend herd has, by name (the type makes each name in BACKEND_NAMES have one). */
export type Registry = Readonly<Record<BackendName, Backend>>;
export const BACKENDS: Registry = { 'node-gpu': TFJS_NODE_GPU, node: TFJS_NODE, wasm: TFJS_WASM, cpu: TFJS_CPU, kernels: KERNELS, native: NATIVE };

/** Every name --backend accepts: a backend, or "tfjs" for the first tfjs backend that loads. */
export const BACKEND_CHOICES: readonly string[] = [...BACKEND_NAMES, 'tfjs'];

const TFJS_ORDER: readonly BackendName[] = ['node-gpu', 'node', 'wasm'];

/** Tries each backend without activating any, so `herd env` can say what was found and why. */
export async function probeBackends(): Promise<BackendProbe[]> {
  const probes: BackendProbe[] = [];
  for (const name of BACKEND_NAMES) {
    // A path forced with HERD_CPU_ISA that the CPU lacks is an error when loading a model; here, a reason.
    probes.push(await BACKENDS[name].probe().catch((error: Error) => ({ name, available: false, reason: error.message })));
  }
  return probes;
}

/** A backend in the order automatic selection tries them, and why it stands there. */
export interface Candidate {
  name: BackendName;
  why: string;
}

/**
 * The order automatic selection tries backends in for a model stored in `storedFormats` (all of
 * its weights' types): a GPU when tfjs-node-gpu is installed; for 16-bit and quantized weights,
 * the native kernels if they compute on every one of the types, then the WASM kernels (which
 * compute on all of them), then tfjs (which widens them to float32); float32 weights go to tfjs.
 */
export function automaticOrder(storedFormats: readonly PackedFormat[], registry: Registry = BACKENDS): Candidate[] {
  if (storedFormats.every((format) => format === 'F32')) {
    return TFJS_ORDER.map((name) => ({ name, why: 'float32 weights, which tfjs computes on as they are' }));
  }
  const types = [...new Set(storedFormats)].join(', ');
  const notNative = storedFormats.filter((format) => !registry.native.computesOn(format));
  const native: Candidate[] = notNative.length === 0 ? [{ name: 'native', why: `it computes on all of the model's weight types (${types})` }] : [];
  const kernelsWhy = notNative.length === 0 ? `they compute on the model's weight types (${types})` : `the native kernels do not compute on ${[...new Set(notNative)].join(', ')}`;
  return [
    { name: 'node-gpu', why: 'a GPU comes first' },
    ...native,
    { name: 'kernels', why: kernelsWhy },
    ...(['node', 'wasm'] as const).map((name) => ({ name, why: "herd's kernels are unavailable; tfjs widens the weights to float32" })),
  ];
}

/** The first backend of `order` that `probes` found. */
export function firstAvailable(order: readonly Candidate[], probes: readonly BackendProbe[]): BackendName | null {
  return order.find(({ name }) => probes.some((probe) => probe.name === name && probe.available))?.name ?? null;
}

export interface BackendRequest {
  /** A backend name, or "tfjs" for the first tfjs backend that loads; absent: automatic. */
  backend?: string;
  /** The stored types of all of the model's weights (automatic selection chooses by them); absent: float32. */
  storedFormats?: readonly PackedFormat[];
}

export interface BackendChoice {
  backend: Backend;
  probe: BackendProbe;
  /** Why this one: forced, or what automatic selection saw (the ones passed over and why). */
  why: string;
}

/** Chooses the requested backend, or the first usable one of the automatic order, without starting it. */
export async function chooseBackend(request: BackendRequest = {}, registry: Registry = BACKENDS): Promise<BackendChoice> {
  const passedOver: string[] = [];
  for (const candidate of candidatesFor(request, registry)) {
    const probe = await registry[candidate.name].probe();
    if (probe.available) {
      const why = passedOver.length === 0 ? candidate.why : `${candidate.why}; ${passedOver.join('; ')}`;
      return { backend: registry[candidate.name], probe, why };
    }
    passedOver.push(`${candidate.name}: ${probe.reason}`);
  }
  throw new HerdError(`no usable backend (${passedOver.join('; ')})`);
}

function candidatesFor({ backend, storedFormats = ['F32'] }: BackendRequest, registry: Registry): readonly Candidate[] {
  if (backend === undefined) return automaticOrder(storedFormats, registry);
  if (backend === 'tfjs') return TFJS_ORDER.map((name) => ({ name, why: 'forced by --backend tfjs (the first tfjs backend that loads)' }));
  if (!(BACKEND_NAMES as readonly string[]).includes(backend)) throw new HerdError(`unknown backend "${backend}"; choose one of ${BACKEND_CHOICES.join(', ')}`);
  return [{ name: backend as BackendName, why: `forced by --backend ${backend}` }];
}

/** Starts a chosen backend; the command that started it closes it when it ends (open-backends.ts). */
export async function startBackend(backend: Backend, options: BackendOptions = {}): Promise<Ops<unknown, unknown>> {
  return keepOpen(await backend.create(options));
}

/** Chooses and starts a backend for work that loads no model folder (synthetic weights, single layers, Prompt Guard's tfjs). */
export async function activateBackend(request: BackendRequest & BackendOptions = {}): Promise<Ops<unknown, unknown>> {
  return startBackend((await chooseBackend(request)).backend, request);
}
