import { Worker } from 'node:worker_threads';
import { HerdError } from '../errors.js';
import type { PackedFormat } from '../formats/weights.js';
import { CHUNK_BYTES, chunkRows, rowBytes, storageBytes } from './linear.js';
import { Command, COMMAND_SLOTS, commandSlot, CONTROL_INTS, copyColumns, DONE, PACKED_FORMATS, PROBE_ARRIVED, PROBE_STARTED, SEQUENCE, waitForChange, type WorkerSetup } from './protocol.js';

const WORKER_FILE = new URL('../../dist/kernels/worker.js', import.meta.url);
// Activations cross in blocks of at most this many floats.
const IO_FLOATS = 4 * 2 ** 20;

/** One worker and its control block. */
interface KernelWorker {
  thread: Worker;
  control: Int32Array;
  /** Commands posted to it so far. */
  sequence: number;
}

/**
 * Work posted to the workers: where its results will lie in the output buffer, and the command
 * number each worker runs it as (0 for a worker with no part in it).
 */
export interface Posted {
  outputAt: number;
  sequences: number[];
}

/**
 * The worker threads that hold shards of the linear weights (the main thread holds the first
 * shard itself) and the KV caches of some kv heads. Linear layers and attention are posted and
 * awaited separately, so the main thread computes its share meanwhile and may post several
 * before it needs their results; everything else is one synchronous call.
 *
 * Inputs and results of posted work take consecutive room in the shared input and output
 * buffers, given back all at once by `reset` when every result has been read.
 */
export class ThreadPool {
  private readonly transfer = new SharedArrayBuffer(CHUNK_BYTES);
  private readonly input = new Float32Array(new SharedArrayBuffer(IO_FLOATS * 4));
  private readonly output = new Float32Array(new SharedArrayBuffer(IO_FLOATS * 4));
  private inputUsed = 0;
  private outputUsed = 0;
  private nextId = 1;

  private constructor(
    private readonly workers: KernelWorker[],
    private readonly weightBytesPerMemory: number | undefined,
  ) {}

  /** Starts `count` workers and waits until each is listening; see ThreadMemories for `weightBytesPerMemory`. */
  static async start(count: number, weightBytesPerMemory?: number): Promise<ThreadPool> {
    const pool = new ThreadPool([], weightBytesPerMemory);
    for (let i = 0; i < count; i++) pool.workers.push(await pool.spawn());
    return pool;
  }

  /** Threads computing each linear layer, the main thread included. */
  get threads(): number {
    return this.workers.length + 1;
  }

  /** Floats the input and output buffers each hold. */
  get maxFloats(): number {
    return IO_FLOATS;
  }

  /** Gives worker `index` its shard of a weight, read by `read` (rows from `firstRow`) into transfer chunks. */
  loadShard(index: number, format: PackedFormat, rows: number, cols: number, read: (target: Uint8Array, firstRow: number) => void): number {
    const id = this.nextId++;
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

  /** Whether `inputFloats` more activations and `outputFloats` more results fit before the next reset. */
  fits(inputFloats: number, outputFloats: number): boolean {
    return this.inputUsed + inputFloats <= IO_FLOATS && this.outputUsed + outputFloats <= IO_FLOATS;
  }

  /** Copies activations into the input buffer (fits must have said there is room); returns where they start. */
  stageInput(x: Float32Array): number {
    return this.stageRows(x, 1, x.length, 0, x.length);
  }

  /** Copies columns [from, from + count) of `rows` rows of `rowLength` floats into the input buffer, row after row; returns where they start. */
  stageRows(source: Float32Array, rows: number, rowLength: number, from: number, count: number): number {
    const at = this.inputUsed;
    copyColumns(rows, count, source, rowLength, from, this.input, count, at);
    this.inputUsed += rows * count;
    return at;
  }

  /**
   * Has the workers holding shards of a weight (shard i on worker i) compute their rows for the
   * `tokens` activations staged at `inputAt`; awaitResults waits for them.
   */
  postLinear(shards: ReadonlyArray<{ id: number; rowStart: number }>, inputAt: number, tokens: number, outDim: number): Posted {
    const outputAt = this.take(tokens * outDim);
    const sequences = shards.map(({ id, rowStart }, i) => this.post(this.workers[i]!, Command.Linear, [id, tokens, rowStart, outDim, inputAt, outputAt]));
    return { outputAt, sequences };
  }

  /**
   * Has worker `index` compute attention for its kv heads of cache `id` on the q, k and v rows
   * staged at `inputAt` (see Command.Attention); its `outputFloats` results come at outputAt.
   */
  postAttention(index: number, id: number, layer: number, group: number, rows: number, start: number, inputAt: number, outputFloats: number): Posted {
    const outputAt = this.take(outputFloats);
    const sequences = this.workers.map((worker, i) => (i === index ? this.post(worker, Command.Attention, [id, layer, rows, start, inputAt, outputAt, group]) : 0));
    return { outputAt, sequences };
  }

  /** Waits for posted work: its results are then in the returned buffer from outputAt. */
  awaitResults(posted: Posted): Float32Array {
    posted.sequences.forEach((sequence, i) => this.waitFor(this.workers[i]!, sequence));
    return this.output;
  }

  /** Allocates a KV cache for `kvHeads` kv heads on worker `index` (see Command.AllocateCache); returns its id. */
  allocateCache(index: number, layers: number, kvHeads: number, headDim: number, capacity: number, kvDtype: number): number {
    const id = this.nextId++;
    this.call(this.workers[index]!, Command.AllocateCache, [id, layers, kvHeads, headDim, capacity, kvDtype]);
    return id;
  }

  /** Copies positions 0..positions-1 of worker `index`'s cache `fromId` into its cache `toId`. */
  copyCache(index: number, fromId: number, toId: number, positions: number): void {
    this.call(this.workers[index]!, Command.CopyCache, [fromId, toId, positions]);
  }

  freeCache(index: number, id: number): void {
    this.release(index, Command.FreeCache, id);
  }

  /** Starts the shared buffers over: the results of all posted work must have been read. */
  reset(): void {
    this.inputUsed = 0;
    this.outputUsed = 0;
  }

  /**
   * Has every worker read `bytes` of its own memory `passes` times while `readOwn` reads the main
   * thread's share, all starting together once every buffer is paged in (readOwn calls the
   * function it is given there); returns the seconds from that start until the last thread ended.
   */
  readMemory(bytes: number, passes: number, readOwn: (whenPagedIn: () => void) => void): number {
    const barrier = new Int32Array(this.input.buffer, 0, 2);
    barrier.fill(0);
    const sequences = this.workers.map((worker) => this.post(worker, Command.ReadMemory, [bytes, passes]));
    const start = () => {
      Atomics.store(barrier, PROBE_STARTED, 1);
      Atomics.notify(barrier, PROBE_STARTED);
    };
    let started = 0;
    try {
      readOwn(() => {
        this.awaitArrivals(barrier);
        started = performance.now();
        start();
      });
    } finally {
      // Workers waiting at the barrier must not wait forever when the main thread's share failed.
      start();
    }
    this.workers.forEach((worker, i) => this.waitFor(worker, sequences[i]!));
    return (performance.now() - started) / 1000;
  }

  /** Waits until every worker has paged its probe buffer in; a worker that failed meanwhile is an error. */
  private awaitArrivals(barrier: Int32Array): void {
    for (let arrived; (arrived = Atomics.load(barrier, PROBE_ARRIVED)) < this.workers.length; ) {
      if (this.workers.some((worker) => Atomics.load(worker.control, DONE) < 0)) throw new HerdError('a kernel worker failed (its message is above)');
      Atomics.wait(barrier, PROBE_ARRIVED, arrived, 10);
    }
  }

  /** Rows `localRows` of worker `index`'s shard of weight `id`, as float32 rows of `cols` (the shared buffers must be free). */
  gatherRows(index: number, id: number, localRows: Int32Array, cols: number): Float32Array {
    new Int32Array(this.input.buffer, 0, localRows.length).set(localRows);
    this.call(this.workers[index]!, Command.GatherRows, [id, localRows.length]);
    return this.output.subarray(0, localRows.length * cols);
  }

  freeShard(index: number, id: number): void {
    this.release(index, Command.FreeWeight, id);
  }

  /** Frees a weight or cache on a worker; once the pool has stopped, its memory went with it. */
  private release(index: number, command: number, id: number): void {
    const worker = this.workers[index];
    if (worker) this.call(worker, command, [id]);
  }

  async stop(): Promise<void> {
    for (const worker of this.workers) {
      // A worker whose command failed has stopped taking commands already.
      if (Atomics.load(worker.control, DONE) >= 0) this.post(worker, Command.Exit, []);
      await worker.thread.terminate();
    }
    this.workers.length = 0;
  }

  private async spawn(): Promise<KernelWorker> {
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_INTS * 4));
    const setup: WorkerSetup = {
      control: control.buffer as SharedArrayBuffer,
      transfer: this.transfer,
      input: this.input.buffer as SharedArrayBuffer,
      output: this.output.buffer as SharedArrayBuffer,
      weightBytesPerMemory: this.weightBytesPerMemory,
    };
    const thread = new Worker(WORKER_FILE, { workerData: setup });
    await new Promise<void>((resolve, reject) => {
      thread.once('online', () => resolve());
      thread.once('error', reject);
    });
    // Once started, a worker idling in Atomics.wait must not keep the process alive.
    thread.unref();
    return { thread, control, sequence: 0 };
  }

  /** Room for `floats` results in the output buffer. */
  private take(floats: number): number {
    const at = this.outputUsed;
    this.outputUsed += floats;
    return at;
  }

  private call(worker: KernelWorker, command: number, args: number[]): void {
    this.waitFor(worker, this.post(worker, command, args));
  }

  /** Posts a command once its slot is free; returns its number. */
  private post(worker: KernelWorker, command: number, args: number[]): number {
    const sequence = worker.sequence + 1;
    this.waitFor(worker, sequence - COMMAND_SLOTS);
    const slot = commandSlot(sequence);
    worker.control[slot] = command;
    args.forEach((value, i) => (worker.control[slot + 1 + i] = value));
    worker.sequence = sequence;
    Atomics.store(worker.control, SEQUENCE, sequence);
    Atomics.notify(worker.control, SEQUENCE);
    return sequence;
  }

  /** Waits until the worker has finished command number `sequence`. */
  private waitFor(worker: KernelWorker, sequence: number): void {
    for (;;) {
      const done = Atomics.load(worker.control, DONE);
      if (done < 0) throw new HerdError('a kernel worker failed (its message is above)');
      if (done >= sequence) return;
      waitForChange(worker.control, DONE, done);
    }
  }
}

