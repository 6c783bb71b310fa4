import type { PackedFormat } from '../formats/weights.js';

/**
 * How the main thread and the kernel workers talk: all synchronously, through shared memory and
 * Atomics, so the model's forward pass stays an ordinary synchronous function.
 *
 * Each worker has its own control block (Int32Array over a SharedArrayBuffer):
 *   [SEQUENCE] the number of commands the main thread has posted; it increments it, then notifies;
 *   [DONE]     the number of commands the worker has finished (negated if the last one failed),
 *              set after each command, then notified;
 *   [SLOT0..]  a ring of COMMAND_SLOTS commands, command number s in slot s % COMMAND_SLOTS, each
 *              its code and ARGS integer arguments.
 * The worker runs the commands in order as they come, so the main thread may post several (the
 * q, k and v projections of a layer) and wait only when it needs a result: one synchronisation
 * where there were three. It must not post command s before command s - COMMAND_SLOTS is done.
 * Data travels through buffers shared by all workers: `transfer` (weight bytes on load), `input`
 * (activations, float32) and `output` (float32, [tokens, outDim], each worker writing its rows);
 * linear and attention commands name where in them their inputs and results lie.
 */

export const SEQUENCE = 0;
export const DONE = 1;
const FIRST_SLOT = 2;
export const ARGS = 7;
export const COMMAND_SLOTS = 8;
export const CONTROL_INTS = FIRST_SLOT + COMMAND_SLOTS * (1 + ARGS);

/** Where command number `sequence` (from 1) lies in a control block: its code, then its arguments. */
export function commandSlot(sequence: number): number {
  return FIRST_SLOT + (sequence % COMMAND_SLOTS) * (1 + ARGS);
}

export const Command = {
  /** Allocate a weight shard: id, byteLength, format index, rows, cols. */
  AllocateWeight: 1,
  /** Write `count` rows from row `firstRow` of weight `id`, their stored bytes in transfer: id, firstRow, count. */
  WriteWeight: 2,
  /**
   * output[outputAt + t·outDim + rowStart + i] = shard(id) · input[inputAt + t·cols ..]:
   * id, tokens, rowStart, outDim, inputAt, outputAt (offsets in floats).
   */
  Linear: 3,
  FreeWeight: 4,
  Exit: 5,
  /** Rows of shard `id` for the local row indices in input (as int32), to output as float32: id, count. */
  GatherRows: 7,
  /**
   * Read a private buffer of `bytes` bytes `passes` times (bandwidth probe): bytes, passes. The
   * worker pages the buffer in, then adds one to PROBE_ARRIVED of the input buffer (as Int32) and
   * waits until PROBE_STARTED is not 0, so that every thread's reads start together.
   */
  ReadMemory: 6,
  /** Allocate a KV cache for some kv heads: id, layers, kvHeads (this worker's), headDim, capacity, kvDtype (0 F32, 1 F16). */
  AllocateCache: 8,
  FreeCache: 9,
  /**
   * Attention of this worker's heads, as KernelOps.attention: id, layer, rows, start, inputAt,
   * outputAt, group (query heads per kv head). The input holds the heads' q rows
   * [rows, kvHeads · group · headDim], then k and v rows [rows, kvHeads · headDim]; the output
   * gets [rows, kvHeads · group · headDim].
   */
  Attention: 10,
  /** Copy positions 0..positions-1 of every layer from one of this worker's caches to another: fromId, toId, positions. */
  CopyCache: 11,
} as const;

/** The bandwidth probe's start barrier, Int32 slots at the input buffer's start (Command.ReadMemory). */
export const PROBE_ARRIVED = 0;
export const PROBE_STARTED = 1;

/** Weight formats travel as their index in this list. */
export const PACKED_FORMATS: readonly PackedFormat[] = [
  'F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_K', 'INT4_G128', 'Q4_1', 'Q5_0', 'Q5_1', 'IQ4_NL', 'Q6_K', 'Q5_K', 'Q3_K', 'Q2_K', 'IQ4_XS',
];

export interface WorkerSetup {
  control: SharedArrayBuffer;
  transfer: SharedArrayBuffer;
  input: SharedArrayBuffer;
  output: SharedArrayBuffer;
  /** Weights the worker puts in one memory before making another (ThreadMemories; undefined: the default). */
  weightBytesPerMemory: number | undefined;
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

/**
 * Copies `count` floats of each of `rows` rows: from `source` (rows `sourceStride` apart, from
 * `sourceAt`) to `target` (rows `targetStride` apart, from `targetAt`). How rows move between the
 * threads' memories and the shared buffers.
 */
export function copyColumns(rows: number, count: number, source: Float32Array, sourceStride: number, sourceAt: number, target: Float32Array, targetStride: number, targetAt: number): void {
  for (let r = 0; r < rows; r++) target.set(source.subarray(sourceAt + r * sourceStride, sourceAt + r * sourceStride + count), targetAt + r * targetStride);
}
