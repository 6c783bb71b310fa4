import { workerData } from 'node:worker_threads';
import { allocateCacheShard, attendShard, copyCacheShard, freeCacheShard, type CacheShard } from './attention.js';
import { gatherRows, multiply, readMemory, rowBytes, writeRows, type PlacedMatrix } from './linear.js';
import { ARGS, Command, commandSlot, copyColumns, DONE, PACKED_FORMATS, PROBE_ARRIVED, PROBE_STARTED, SEQUENCE, waitForChange, type WorkerSetup } from './protocol.js';
import { ThreadMemories } from './wasm-memory.js';

/**
 * A kernel worker: its own WebAssembly instances and memories holding its shard of every linear
 * weight, serving commands from the main thread until told to exit (protocol.ts).
 */
const setup = workerData as WorkerSetup;
const control = new Int32Array(setup.control);
const transfer = new Uint8Array(setup.transfer);
const input = new Float32Array(setup.input);
const output = new Float32Array(setup.output);
const probeBarrier = new Int32Array(setup.input, 0, 2);
const memories = new ThreadMemories(setup.weightBytesPerMemory);
// KV caches and the bandwidth probe's buffer live here; weights wherever memories places them.
const instance = memories.home;
const shards = new Map<number, PlacedMatrix>();
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
    case Command.AllocateWeight: {
      const memory = memories.forWeight(a);
      shards.set(id, { instance: memory, offset: memory.allocate(a), byteLength: a, format: PACKED_FORMATS[b]!, rows: c, cols: d });
      break;
    }
    case Command.WriteWeight: {
      const shard = shards.get(id)!;
      writeRows(shard.instance, shard, a, b, (target) => target.set(transfer.subarray(0, b * rowBytes(shard.format, shard.cols))));
      break;
    }
    case Command.Linear:
      linear(shards.get(id)!, a, b, c, d, e);
      break;
    case Command.GatherRows:
      gather(shards.get(id)!, a);
      break;
    case Command.ReadMemory:
      readMemory(instance, id, a, () => {
        Atomics.add(probeBarrier, PROBE_ARRIVED, 1);
        Atomics.notify(probeBarrier, PROBE_ARRIVED);
        waitForChange(probeBarrier, PROBE_STARTED, 0);
      });
      break;
    case Command.FreeWeight: {
      const shard = shards.get(id)!;
      shard.instance.free(shard.offset, shard.byteLength);
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
    case Command.CopyCache:
      copyCacheShard(instance, caches.get(id)!, caches.get(a)!, b);
      break;
  }
}

/** Computes this shard's rows for every token and writes them at their columns of the output. */
function linear(shard: PlacedMatrix, tokens: number, rowStart: number, outDim: number, inputAt: number, outputAt: number): void {
  const memory = shard.instance;
  memory.scope(() => {
    const x = memory.scratch(tokens * shard.cols * 4);
    memory.floats(x, tokens * shard.cols).set(input.subarray(inputAt, inputAt + tokens * shard.cols));
    const y = memory.scratch(tokens * shard.rows * 4);
    multiply(memory, shard, x, tokens, y, shard.rows);
    copyColumns(tokens, shard.rows, memory.floats(y, tokens * shard.rows), shard.rows, 0, output, outDim, outputAt + rowStart);
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
function gather(shard: PlacedMatrix, count: number): void {
  const memory = shard.instance;
  memory.scope(() => {
    const ids = memory.scratch(count * 4);
    new Int32Array(memory.kernels.memory.buffer, ids, count).set(new Int32Array(setup.input, 0, count));
    const rows = memory.scratch(count * shard.cols * 4);
    gatherRows(memory, shard, ids, count, rows);
    output.set(memory.floats(rows, count * shard.cols));
  });
}
