import { workerData } from 'node:worker_threads';
import { allocateCacheShard, attendShard, freeCacheShard, type CacheShard } from './attention.js';
import { gatherRows, multiply, readMemory, rowBytes, writeRows, type StoredMatrix } from './linear.js';
import { ARGS, Command, commandSlot, copyColumns, DONE, PACKED_FORMATS, RESULT, SEQUENCE, waitForChange, type WorkerSetup } from './protocol.js';
import { KernelInstance } from './wasm-memory.js';

/**
 * A kernel worker: its own WebAssembly instance and memory holding its shard of every linear
 * weight, serving commands from the main thread until told to exit (protocol.ts).
 */
const setup = workerData as WorkerSetup;
const control = new Int32Array(setup.control);
const transfer = new Uint8Array(setup.transfer);
const input = new Float32Array(setup.input);
const output = new Float32Array(setup.output);
const instance = new KernelInstance();
const shards = new Map<number, StoredMatrix>();
const caches = new Map<number, CacheShard>();

let finished = 0;
commands: for (;;) {
  waitForChange(control, SEQUENCE, finished);
  const posted = Atomics.load(control, SEQUENCE);
  while (finished < posted) {
    const slot = commandSlot(finished + 1);
    const command = control[slot]!;
    if (command === Command.Exit) break commands;
    try {
      run(command, Array.from(control.subarray(slot + 1, slot + 1 + ARGS)));
    } catch (error) {
      // The main thread waits on DONE: tell it there, say why on stderr, and take no more commands.
      Atomics.store(control, DONE, -(finished + 1));
      Atomics.notify(control, DONE);
      process.stderr.write(`herd kernel worker: ${(error as Error).message}\n`);
      break commands;
    }
    finished++;
    Atomics.store(control, DONE, finished);
    Atomics.notify(control, DONE);
  }
}

function run(command: number, args: number[]): void {
  const [id, a, b, c, d, e, f] = args as [number, number, number, number, number, number, number];
  switch (command) {
    case Command.AllocateWeight:
      shards.set(id, { offset: instance.allocate(a), byteLength: a, format: PACKED_FORMATS[b]!, rows: c, cols: d });
      break;
    case Command.WriteWeight: {
      const shard = shards.get(id)!;
      writeRows(instance, shard, a, b, (target) => target.set(transfer.subarray(0, b * rowBytes(shard.format, shard.cols))));
      break;
    }
    case Command.Linear:
      linear(shards.get(id)!, a, b, c, d, e);
      break;
    case Command.GatherRows:
      gather(shards.get(id)!, a);
      break;
    case Command.ReadMemory:
      control[RESULT] = Math.round(readMemory(instance, id, a) * 1e6);
      break;
    case Command.FreeWeight: {
      const shard = shards.get(id)!;
      instance.free(shard.offset, shard.byteLength);
      shards.delete(id);
      break;
    }
    case Command.AllocateCache:
      caches.set(id, allocateCacheShard(instance, { kvHeads: b, headDim: c, capacity: d, kvDtype: e }, a));
      break;
    case Command.FreeCache:
      freeCacheShard(instance, caches.get(id)!);
      caches.delete(id);
      break;
    case Command.Attention:
      attend(caches.get(id)!, a, b, c, d, e, f);
      break;
  }
}

/** Computes this shard's rows for every token and writes them at their columns of the output. */
function linear(shard: StoredMatrix, tokens: number, rowStart: number, outDim: number, inputAt: number, outputAt: number): void {
  instance.scope(() => {
    const x = instance.scratch(tokens * shard.cols * 4);
    instance.floats(x, tokens * shard.cols).set(input.subarray(inputAt, inputAt + tokens * shard.cols));
    const y = instance.scratch(tokens * shard.rows * 4);
    multiply(instance, shard, x, tokens, y, shard.rows);
    copyColumns(tokens, shard.rows, instance.floats(y, tokens * shard.rows), shard.rows, 0, output, outDim, outputAt + rowStart);
  });
}

/** Attention of this worker's kv heads for the q, k and v rows staged at inputAt (see Command.Attention). */
function attend(cache: CacheShard, layer: number, rows: number, start: number, inputAt: number, outputAt: number, group: number): void {
  const qFloats = rows * cache.kvHeads * group * cache.headDim;
  const kvFloats = rows * cache.kvHeads * cache.headDim;
  instance.scope(() => {
    const q = instance.scratch((qFloats + 2 * kvFloats) * 4);
    instance.floats(q, qFloats + 2 * kvFloats).set(input.subarray(inputAt, inputAt + qFloats + 2 * kvFloats));
    const out = instance.scratch(qFloats * 4);
    attendShard(instance, cache, layer, group, q, q + qFloats * 4, q + (qFloats + kvFloats) * 4, out, rows, start);
    output.set(instance.floats(out, qFloats), outputAt);
  });
}

/** Dequantized rows of this shard for the row indices in the input buffer. */
function gather(shard: StoredMatrix, count: number): void {
  instance.scope(() => {
    const ids = instance.scratch(count * 4);
    new Int32Array(instance.kernels.memory.buffer, ids, count).set(new Int32Array(setup.input, 0, count));
    const rows = instance.scratch(count * shard.cols * 4);
    gatherRows(instance, shard, ids, count, rows);
    output.set(instance.floats(rows, count * shard.cols));
  });
}
