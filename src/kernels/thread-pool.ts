import { Worker } from 'node:worker_threads';
import { HerdError } from '../errors.js';
import type { PackedFormat } from '../engine/ops.js';
import { CHUNK_BYTES, chunkRows, rowBytes, storageBytes } from './linear.js';
import { ARG, COMMAND, Command, CONTROL_INTS, DONE, PACKED_FORMATS, RESULT, SEQUENCE, waitForChange, type WorkerSetup } from './protocol.js';

const WORKER_FILE = new URL('../../dist/kernels/worker.js', import.meta.url);
// Activations cross in blocks of at most this many floats.
const IO_FLOATS = 4 * 2 ** 20;

/** One worker and its control block. */
interface KernelWorker {
  thread: Worker;
  control: Int32Array;
  sequence: number;
}

/**
 * The worker threads that hold shards of the linear weights (the main thread holds the first
 * shard itself). Every call is synchronous: post a command, compute the main thread's share,
 * wait for the workers.
 */
export class ThreadPool {
  private readonly transfer = new SharedArrayBuffer(CHUNK_BYTES);
  private readonly input = new Float32Array(new SharedArrayBuffer(IO_FLOATS * 4));
  private readonly output = new Float32Array(new SharedArrayBuffer(IO_FLOATS * 4));
  private nextWeightId = 1;

  private constructor(private readonly workers: KernelWorker[]) {}

  /** Starts `count` workers and waits until each is listening. */
  static async start(count: number): Promise<ThreadPool> {
    const pool = new ThreadPool([]);
    for (let i = 0; i < count; i++) pool.workers.push(await pool.spawn());
    return pool;
  }

  /** Threads computing each linear layer, the main thread included. */
  get threads(): number {
    return this.workers.length + 1;
  }

  get maxFloats(): number {
    return IO_FLOATS;
  }

  /** Gives worker `index` its shard of a weight, read by `read` (rows from `firstRow`) into transfer chunks. */
  loadShard(index: number, format: PackedFormat, rows: number, cols: number, read: (target: Uint8Array, firstRow: number) => void): number {
    const id = this.nextWeightId++;
    const worker = this.workers[index]!;
    this.call(worker, Command.AllocateWeight, [id, storageBytes(format, rows, cols), PACKED_FORMATS.indexOf(format), rows, cols]);
    const chunk = chunkRows(format, cols);
    for (let first = 0; first < rows; first += chunk) {
      const count = Math.min(chunk, rows - first);
      read(new Uint8Array(this.transfer, 0, count * rowBytes(format, cols)), first);
      this.call(worker, Command.WriteWeight, [id, first, count]);
    }
    return id;
  }

  /**
   * Posts the activations to the workers holding shards of a weight (shard i on worker i);
   * finishLinear waits for them.
   */
  startLinear(shards: ReadonlyArray<{ id: number; rowStart: number }>, x: Float32Array, tokens: number, outDim: number): void {
    this.input.set(x);
    shards.forEach(({ id, rowStart }, i) => this.post(this.workers[i]!, Command.Linear, [id, tokens, rowStart, outDim]));
  }

  /** Waits for the shards' rows: they are in the result ([tokens, outDim], at each shard's columns). */
  finishLinear(shardCount: number): Float32Array {
    this.workers.slice(0, shardCount).forEach((worker) => this.wait(worker));
    return this.output;
  }

  /**
   * Has every worker read `bytes` of its own memory `passes` times while `onMainThread` runs;
   * returns the seconds each worker's reads took.
   */
  readMemory(bytes: number, passes: number, onMainThread: () => void): number[] {
    this.workers.forEach((worker) => this.post(worker, Command.ReadMemory, [bytes, passes]));
    onMainThread();
    return this.workers.map((worker) => {
      this.wait(worker);
      return worker.control[RESULT]! / 1e6;
    });
  }

  /** Rows `localRows` of worker `index`'s shard of weight `id`, as float32 rows of `cols`. */
  gatherRows(index: number, id: number, localRows: Int32Array, cols: number): Float32Array {
    new Int32Array(this.input.buffer, 0, localRows.length).set(localRows);
    this.call(this.workers[index]!, Command.GatherRows, [id, localRows.length]);
    return this.output.subarray(0, localRows.length * cols);
  }

  freeShard(index: number, id: number): void {
    this.call(this.workers[index]!, Command.FreeWeight, [id]);
  }

  async stop(): Promise<void> {
    for (const worker of this.workers) {
      this.post(worker, Command.Exit, []);
      await worker.thread.terminate();
    }
    this.workers.length = 0;
  }

  private async spawn(): Promise<KernelWorker> {
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_INTS * 4));
    const setup: WorkerSetup = { control: control.buffer as SharedArrayBuffer, transfer: this.transfer, input: this.input.buffer as SharedArrayBuffer, output: this.output.buffer as SharedArrayBuffer };
    const thread = new Worker(WORKER_FILE, { workerData: setup });
    await new Promise<void>((resolve, reject) => {
      thread.once('online', () => resolve());
      thread.once('error', reject);
    });
    // Once started, a worker idling in Atomics.wait must not keep the process alive.
    thread.unref();
    return { thread, control, sequence: 0 };
  }

  private call(worker: KernelWorker, command: number, args: number[]): void {
    this.post(worker, command, args);
    this.wait(worker);
  }

  private post(worker: KernelWorker, command: number, args: number[]): void {
    worker.control[COMMAND] = command;
    args.forEach((value, i) => (worker.control[ARG + i] = value));
    worker.sequence++;
    Atomics.store(worker.control, SEQUENCE, worker.sequence);
    Atomics.notify(worker.control, SEQUENCE);
  }

  private wait(worker: KernelWorker): void {
    for (;;) {
      const done = Atomics.load(worker.control, DONE);
      if (done === worker.sequence) return;
      if (done === -worker.sequence) throw new HerdError('a kernel worker failed (its message is above)');
      waitForChange(worker.control, DONE, done);
    }
  }
}
