import type { PackedFormat } from '../engine/ops.js';

/**
 * How the main thread and the kernel workers talk: all synchronously, through shared memory and
 * Atomics, so the model's forward pass stays an ordinary synchronous function.
 *
 * Each worker has its own control block (Int32Array over a SharedArrayBuffer):
 *   [SEQUENCE] the main thread increments it to post a command, then notifies;
 *   [DONE]     the worker sets it to the sequence number it finished (negated if the command
 *              failed), then notifies;
 *   [COMMAND], [ARG0..ARG5] the command and its integer arguments.
 * Data travels through buffers shared by all workers: `transfer` (weight bytes on load), `input`
 * (activations, float32) and `output` (float32, [tokens, outDim], each worker writing its rows).
 */

export const SEQUENCE = 0;
export const DONE = 1;
export const COMMAND = 2;
export const ARG = 3;
export const RESULT = 9;
export const CONTROL_INTS = 10;

export const Command = {
  /** Allocate a weight shard: id, byteLength, format index, rows, cols. */
  AllocateWeight: 1,
  /** Write `count` rows from row `firstRow` of weight `id`, their stored bytes in transfer: id, firstRow, count. */
  WriteWeight: 2,
  /** output[t, rowStart + i] = shard(id) · input[t]: id, tokens, rowStart, outDim. */
  Linear: 3,
  FreeWeight: 4,
  Exit: 5,
  /** Rows of shard `id` for the local row indices in input (as int32), to output as float32: id, count. */
  GatherRows: 7,
  /** Read a private buffer of `bytes` bytes `passes` times (bandwidth probe): bytes, passes; the
   *  worker leaves the microseconds the reads took in RESULT. */
  ReadMemory: 6,
} as const;

/** Weight formats travel as their index in this list. */
export const PACKED_FORMATS: readonly PackedFormat[] = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_K', 'INT4_G128'];

export interface WorkerSetup {
  control: SharedArrayBuffer;
  transfer: SharedArrayBuffer;
  input: SharedArrayBuffer;
  output: SharedArrayBuffer;
}

// About a millisecond of polling: longer than the gap between two layers' calls in a forward pass.
const SPINS = 100_000;

/**
 * Waits until control[index] is no longer `value`: polls first, then sleeps in Atomics.wait.
 * A thread woken from Atomics.wait takes tens of microseconds to run again, which a forward pass
 * with a hundred synchronised calls per token would pay every time.
 */
export function waitForChange(control: Int32Array, index: number, value: number): void {
  for (let spin = 0; spin < SPINS; spin++) if (Atomics.load(control, index) !== value) return;
  Atomics.wait(control, index, value);
}
