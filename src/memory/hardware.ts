import { HerdError } from '../errors.js';

export interface Accelerator {
  id: string;
  label: string;
  /** Capacity in bytes. HBM and GDDR sizes are binary: an "80GB" H100 holds 80 GiB. */
  bytes: number;
}

const GIB = 2 ** 30;
const gpu = (id: string, label: string, gib: number): Accelerator => ({ id, label, bytes: gib * GIB });

export const ACCELERATORS: readonly Accelerator[] = [
  gpu('h200', 'H200 141GB', 141),
  gpu('h100-94gb', 'H100 NVL 94GB', 94),
  gpu('h100-80gb', 'H100 80GB', 80),
  gpu('a100-80gb', 'A100 80GB', 80),
  gpu('a100-40gb', 'A100 40GB', 40),
  gpu('mi300x', 'MI300X 192GB', 192),
  gpu('l40s', 'L40S 48GB', 48),
  gpu('rtx-a6000', 'RTX A6000 48GB', 48),
  gpu('v100-32gb', 'V100 32GB', 32),
  gpu('rtx-5090', 'RTX 5090 32GB', 32),
  gpu('l4', 'L4 24GB', 24),
  gpu('a10g', 'A10G 24GB', 24),
  gpu('rtx-4090', 'RTX 4090 24GB', 24),
  gpu('rtx-3090', 'RTX 3090 24GB', 24),
  gpu('t4', 'T4 16GB', 16),
];

/** Short names that are not ambiguous. */
const ALIASES: Record<string, string> = { h100: 'h100-80gb', '4090': 'rtx-4090', '3090': 'rtx-3090', '5090': 'rtx-5090', a6000: 'rtx-a6000' };

const normalize = (name: string): string => name.toLowerCase().replace(/[^a-z0-9]/g, '');

/** Finds an accelerator by id, label or alias, ignoring case, spaces and dashes ("H100 80GB", "h100"). */
export function findAccelerator(name: string): Accelerator {
  const wanted = normalize(name);
  const id = normalize(ALIASES[wanted] ?? wanted);
  const match = ACCELERATORS.find((gpu) => normalize(gpu.id) === id || normalize(gpu.label) === wanted);
  if (!match) {
    throw new HerdError(`unknown GPU "${name}"; known: ${ACCELERATORS.map((gpu) => gpu.id).join(', ')} (or give --memory SIZE)`);
  }
  return match;
}

/** The devices a plan must fit: `count` identical devices, each with `bytesPerDevice` less a reserve. */
export interface Hardware {
  label: string;
  devices: number;
  bytesPerDevice: number;
  /** Per device: driver, CUDA context and allocator slack that models never get. */
  reserveBytes: number;
}

export function usableBytesPerDevice(hardware: Hardware): number {
  const usable = hardware.bytesPerDevice - hardware.reserveBytes;
  if (usable <= 0) throw new HerdError(`the reserve is as large as each device's memory (${hardware.label})`);
  return usable;
}
