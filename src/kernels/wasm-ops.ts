import os from 'node:os';
import { copyInto, kvCacheBytes, type AttentionSlice, type KvCache, type KvCacheShape, type KvCacheType, type Ops } from '../engine/ops.js';
import type { WeightSource } from '../formats/weights.js';
import type { RopeTables } from '../engine/rope.js';
import { chunkRows, gatherRows, multiplyPlaced, readMemory, rowBytes, storageBytes, writeRows, type PlacedMatrix } from './linear.js';
import { allocateCacheShard, attendShard, copyCacheShard, freeCacheShard, type CacheShard } from './attention.js';
import { copyColumns } from './protocol.js';
import { ThreadPool, type Posted } from './thread-pool.js';
import { ThreadMemories, type KernelInstance } from './wasm-memory.js';

/**
 * Activations: float32 rows in the main instance's memory. A linear layer's output may be
 * unsettled (see KernelOps.linear) until an op reads it.
 */
export interface KernelTensor {
  offset: number;
  rows: number;
  cols: number;
}

/**
 * A weight as stored. With threads, the main thread holds rows [0, mainRows) (in `instance`,
 * one of its memories) and each worker one more contiguous shard.
 */
export interface KernelWeight extends PlacedMatrix {
  mainRows: number;
  shards: Array<{ id: number; rowStart: number }>;
}

/** A worker's share of a KV cache: kv heads [firstKvHead, firstKvHead + kvHeads). */
interface CacheShare {
  index: number;
  id: number;
  firstKvHead: number;
  kvHeads: number;
}

/** A KV cache split by kv heads: the main thread's first heads, then a share on each worker that has any. */
class KernelKvCache implements KvCache {
  length = 0;
  readonly bytes: number;

  constructor(
    readonly shape: KvCacheShape,
    readonly main: CacheShard,
    readonly shares: CacheShare[],
    private readonly release: () => void,
  ) {
    this.bytes = kvCacheBytes(shape, main.kvDtype === 1 ? 2 : 4);
  }

  dispose(): void {
    this.release();
    this.length = 0;
  }
}

export interface KernelOptions {
  /** Threads computing each linear layer, the main thread included (default: the cores available). */
  threads?: number;
  kvCacheType?: KvCacheType;
  /** Bytes of weights each thread puts in one WebAssembly memory before it makes another (ThreadMemories). */
  weightBytesPerMemory?: number;
  /** Where one-line notices go (default: stderr), e.g. that a weight type costs float32's memory. */
  notice?: (line: string) => void;
}

/** One sequence's rows of a batched attention (all of them, or as many as the shared buffers hold). */
interface AttentionPart {
  cache: KernelKvCache;
  q: KernelTensor;
  k: KernelTensor;
  v: KernelTensor;
  out: KernelTensor;
  start: number;
}

/** A part whose workers' heads are posted, one Posted per share of its cache. */
interface PostedAttention {
  part: AttentionPart;
  posted: Posted[];
}

/** A linear output whose workers' rows are still to come: rows [mainRows, rows) of every token. */
interface WorkerRows {
  posted: Posted;
  mainRows: number;
}

/**
 * The model's ops on herd's WASM SIMD kernels. Linear layers compute directly on the stored
 * weights (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q4_K and the other K-quants,
 * INT4_G128), split by output rows across worker threads that each own a WebAssembly memory, so
 * a model may exceed one memory's 4 GiB.
 *
 * A linear layer returns as soon as the main thread has its own rows; the workers' rows are
 * copied in (settled) when an op first reads the tensor. So the q, k and v projections of a
 * layer, or gate and up, run back to back on the workers with one wait among them. Attention is
 * split by kv heads in the same way, each thread keeping its heads' part of the KV cache.
 */
export class KernelOps implements Ops<KernelTensor, KernelWeight> {
  readonly name = 'kernels';
  private readonly memories: ThreadMemories;
  /** The main thread's first memory: activations, KV caches, scratch, norms and some weights. */
  private readonly instance: KernelInstance;
  private readonly unsettled = new Map<KernelTensor, WorkerRows>();
  /** The tensor whose rows the shared input buffer holds, for the next linear of the same input. */
  private staged: { tensor: KernelTensor; inputAt: number } | null = null;

  private readonly kvDtype: number;
  private readonly notice: (line: string) => void;
  /** Stored types already reported as dequantized at load: one notice per type per model. */
  private readonly dequantizedTypes = new Set<string>();

  private constructor(private readonly pool: ThreadPool | null, options: KernelOptions) {
    this.memories = new ThreadMemories(options.weightBytesPerMemory);
    this.instance = this.memories.home;
    this.kvDtype = options.kvCacheType === 'f16' ? 1 : 0;
    this.notice = options.notice ?? ((line) => process.stderr.write(`herd: ${line}\n`));
  }

  static async create(options: KernelOptions = {}): Promise<KernelOps> {
    const threads = Math.max(1, options.threads ?? os.availableParallelism());
    return new KernelOps(threads > 1 ? await ThreadPool.start(threads - 1, options.weightBytesPerMemory) : null, options);
  }

  get threads(): number {
    return this.pool?.threads ?? 1;
  }

  /** WebAssembly memories the main thread computes in (each worker has as many as its shards need). */
  get mainMemories(): number {
    return this.memories.count;
  }

  linearWeight(name: string, source: WeightSource): KernelWeight {
    return this.loadMatrix(name, source);
  }

  embeddingWeight(name: string, source: WeightSource): KernelWeight {
    return this.loadMatrix(name, source);
  }

  vectorWeight(name: string, source: WeightSource): KernelWeight {
    const host = source.readFloat(name);
    const offset = this.instance.allocate(host.data.byteLength);
    this.instance.floats(offset, host.data.length).set(host.data);
    return { instance: this.instance, offset, byteLength: host.data.byteLength, format: 'F32', rows: 1, cols: host.data.length, mainRows: 1, shards: [] };
  }

  /** Rows of the table for each id; rows held by a worker's shard are fetched from that worker. */
  embedding(table: KernelWeight, ids: Int32Array): KernelTensor {
    this.settleAll();
    const out = this.tensor(ids.length, table.cols);
    const local = [...ids.keys()].filter((i) => ids[i]! < table.mainRows);
    this.gatherLocal(table, local.map((i) => ids[i]!), local, out);
    table.shards.forEach((shard, index) => {
      const end = table.shards[index + 1]?.rowStart ?? table.rows;
      const positions = [...ids.keys()].filter((i) => ids[i]! >= shard.rowStart && ids[i]! < end);
      if (positions.length === 0) return;
      const rows = this.pool!.gatherRows(index, shard.id, Int32Array.from(positions, (i) => ids[i]! - shard.rowStart), table.cols);
      const target = this.instance.floats(out.offset, ids.length * table.cols);
      positions.forEach((position, k) => target.set(rows.subarray(k * table.cols, (k + 1) * table.cols), position * table.cols));
    });
    return out;
  }

  private gatherLocal(table: KernelWeight, rowIds: number[], positions: number[], out: KernelTensor): void {
    if (rowIds.length === 0) return;
    const memory = table.instance;
    memory.scope(() => {
      const idsOffset = memory.scratch(rowIds.length * 4);
      new Int32Array(memory.kernels.memory.buffer, idsOffset, rowIds.length).set(rowIds);
      const rows = memory.scratch(rowIds.length * table.cols * 4);
      gatherRows(memory, table, idsOffset, rowIds.length, rows);
      const gathered = memory.floats(rows, rowIds.length * table.cols);
      const target = this.floatsOf(out);
      positions.forEach((position, k) => target.set(gathered.subarray(k * table.cols, (k + 1) * table.cols), position * table.cols));
    });
  }

  linear(x: KernelTensor, weight: KernelWeight): KernelTensor {
    this.settle(x);
    const y = this.tensor(x.rows, weight.rows);
    const mainPart = { ...weight, rows: weight.mainRows };
    if (!this.pool || weight.shards.length === 0) {
      multiplyPlaced(this.instance, mainPart, x.offset, x.rows, y.offset, weight.rows);
      return y;
    }
    if (this.unsettled.size === 0) this.releaseShared();
    const inputFloats = this.staged?.tensor === x ? 0 : x.rows * x.cols;
    if (!this.pool.fits(inputFloats, x.rows * weight.rows)) this.settleAll();
    if (!this.pool.fits(x.rows * x.cols, x.rows * weight.rows)) return this.linearInChunks(x, mainPart, weight, y);
    const posted = this.pool.postLinear(weight.shards, this.stage(x), x.rows, weight.rows);
    multiplyPlaced(this.instance, mainPart, x.offset, x.rows, y.offset, weight.rows);
    this.unsettled.set(y, { posted, mainRows: weight.mainRows });
    return y;
  }

  /** A linear too large for the shared buffers, as many tokens at a time as they hold, each part waited for. */
  private linearInChunks(x: KernelTensor, mainPart: PlacedMatrix, weight: KernelWeight, y: KernelTensor): KernelTensor {
    const pool = this.pool!;
    const chunk = Math.max(1, Math.floor(pool.maxFloats / Math.max(x.cols, weight.rows)));
    for (let first = 0; first < x.rows; first += chunk) {
      const part = rowsOf(x, first, Math.min(chunk, x.rows - first));
      const yPart = rowsOf(y, first, part.rows);
      this.releaseShared();
      const posted = pool.postLinear(weight.shards, this.stage(part), part.rows, weight.rows);
      multiplyPlaced(this.instance, mainPart, part.offset, part.rows, yPart.offset, weight.rows);
      this.copyWorkerRows(yPart, { posted, mainRows: weight.mainRows });
    }
    return y;
  }

  /** Where x lies in the shared input buffer, copying it there unless it is already. */
  private stage(x: KernelTensor): number {
    if (this.staged?.tensor !== x) this.staged = { tensor: x, inputAt: this.pool!.stageInput(this.floatsOf(x)) };
    return this.staged.inputAt;
  }

  /** Gives back the room of the shared buffers; nothing may be unsettled. */
  private releaseShared(): void {
    this.pool!.reset();
    this.staged = null;
  }

  /** Waits for the workers' rows of the tensors, if they are unsettled, and copies them in. */
  private settle(...tensors: KernelTensor[]): void {
    for (const tensor of tensors) {
      const rows = this.unsettled.get(tensor);
      if (!rows) continue;
      this.copyWorkerRows(tensor, rows);
      this.unsettled.delete(tensor);
    }
  }

  private settleAll(): void {
    this.settle(...this.unsettled.keys());
    if (this.pool) this.releaseShared();
  }

  private copyWorkerRows(y: KernelTensor, { posted, mainRows }: WorkerRows): void {
    const results = this.pool!.awaitResults(posted);
    copyColumns(y.rows, y.cols - mainRows, results, y.cols, posted.outputAt + mainRows, this.floatsOf(y), y.cols, mainRows);
  }

  rmsNorm(x: KernelTensor, weight: KernelWeight, eps: number): KernelTensor {
    this.settle(x);
    const y = this.tensor(x.rows, x.cols);
    this.instance.kernels.rmsnorm(x.offset, weight.offset, y.offset, x.cols, x.rows, eps);
    return y;
  }

  rope(x: KernelTensor, heads: number, tables: RopeTables): KernelTensor {
    this.settle(x);
    const y = this.copy(x);
    const cos = this.upload(tables.cos);
    const sin = this.upload(tables.sin);
    this.instance.kernels.rope(y.offset, cos, sin, x.rows, heads, tables.headDim);
    return y;
  }

  /**
   * Each slice (sequence) attends against its own cache. Each thread computes the heads whose
   * keys and values it keeps: the workers' on the q, k and v rows staged for them, the main
   * thread's meanwhile. The workers' parts of every slice are posted before the main thread
   * computes any of its own, so a decoding batch waits for the workers once per layer, not once
   * per sequence (as many rows at a time as the shared buffers hold).
   */
  attention(q: KernelTensor, k: KernelTensor, v: KernelTensor, layer: number, slices: readonly AttentionSlice[]): KernelTensor {
    this.settle(q, k, v);
    const out = this.tensor(q.rows, q.cols);
    const parts = this.attentionParts(q, k, v, out, slices);
    const group = q.cols / k.cols;
    if (parts[0]!.cache.shares.length === 0) {
      for (const part of parts) attendShard(this.instance, part.cache.main, layer, group, part.q.offset, part.k.offset, part.v.offset, part.out.offset, part.q.rows, part.start);
      return out;
    }
    this.settleAll();
    let posted: PostedAttention[] = [];
    for (const part of parts) {
      const stagedFloats = part.q.rows * (part.q.cols + 2 * part.k.cols);
      if (!this.pool!.fits(stagedFloats, part.q.rows * part.q.cols)) posted = this.completeAttention(posted, layer, group);
      posted.push({ part, posted: this.postWorkerHeads(part, layer, group) });
    }
    this.completeAttention(posted, layer, group);
    return out;
  }

  /** The slices' rows of q, k, v and out, each slice in parts the shared buffers hold. */
  private attentionParts(q: KernelTensor, k: KernelTensor, v: KernelTensor, out: KernelTensor, slices: readonly AttentionSlice[]): AttentionPart[] {
    const chunk = this.pool ? Math.max(1, Math.floor(this.pool.maxFloats / (q.cols + 2 * k.cols))) : Infinity;
    const parts: AttentionPart[] = [];
    let row = 0;
    for (const { cache, start, rows } of slices) {
      for (let first = 0; first < rows; first += chunk) {
        const count = Math.min(chunk, rows - first);
        const at = (x: KernelTensor) => rowsOf(x, row + first, count);
        parts.push({ cache: cache as KernelKvCache, q: at(q), k: at(k), v: at(v), out: at(out), start: start + first });
      }
      row += rows;
    }
    return parts;
  }

  /** Stages each worker's heads of the part's q, k and v rows and posts its attention. */
  private postWorkerHeads({ cache, q, k, v, start }: AttentionPart, layer: number, group: number): Posted[] {
    const pool = this.pool!;
    const { headDim } = cache.shape;
    return cache.shares.map(({ index, id, firstKvHead, kvHeads }) => {
      const inputAt = pool.stageRows(this.floatsOf(q), q.rows, q.cols, firstKvHead * group * headDim, kvHeads * group * headDim);
      pool.stageRows(this.floatsOf(k), k.rows, k.cols, firstKvHead * headDim, kvHeads * headDim);
      pool.stageRows(this.floatsOf(v), v.rows, v.cols, firstKvHead * headDim, kvHeads * headDim);
      return pool.postAttention(index, id, layer, group, q.rows, start, inputAt, q.rows * kvHeads * group * headDim);
    });
  }

  /**
   * Computes the main thread's heads of every posted part, then copies in the workers' results;
   * the shared buffers are free again afterwards. Returns an empty list for the next parts.
   */
  private completeAttention(posted: PostedAttention[], layer: number, group: number): PostedAttention[] {
    for (const { part } of posted) {
      const { cache, q, k, v, out, start } = part;
      const width = cache.main.kvHeads * cache.shape.headDim;
      const mainOut = this.tensor(q.rows, width * group);
      const [mainQ, mainK, mainV] = [this.columns(q, width * group), this.columns(k, width), this.columns(v, width)];
      attendShard(this.instance, cache.main, layer, group, mainQ.offset, mainK.offset, mainV.offset, mainOut.offset, q.rows, start);
      copyColumns(q.rows, mainOut.cols, this.floatsOf(mainOut), mainOut.cols, 0, this.floatsOf(out), out.cols, 0);
    }
    for (const { part, posted: shares } of posted) {
      part.cache.shares.forEach(({ firstKvHead, kvHeads }, i) => {
        const results = this.pool!.awaitResults(shares[i]!);
        const width = kvHeads * group * part.cache.shape.headDim;
        copyColumns(part.q.rows, width, results, width, shares[i]!.outputAt, this.floatsOf(part.out), part.out.cols, firstKvHead * group * part.cache.shape.headDim);
      });
    }
    if (posted.length > 0) this.releaseShared();
    return [];
  }

  /** The first `count` columns of x, as a tensor of their own. */
  private columns(x: KernelTensor, count: number): KernelTensor {
    const y = this.tensor(x.rows, count);
    copyColumns(x.rows, count, this.floatsOf(x), x.cols, 0, this.floatsOf(y), count, 0);
    return y;
  }

  private floatsOf(x: KernelTensor): Float32Array {
    return this.instance.floats(x.offset, x.rows * x.cols);
  }

  swiglu(gate: KernelTensor, up: KernelTensor): KernelTensor {
    this.settle(gate, up);
    const out = this.tensor(gate.rows, gate.cols);
    this.instance.kernels.swiglu(gate.offset, up.offset, out.offset, gate.rows * gate.cols);
    return out;
  }

  add(a: KernelTensor, b: KernelTensor): KernelTensor {
    this.settle(a, b);
    const out = this.tensor(a.rows, a.cols);
    this.instance.kernels.add(a.offset, b.offset, out.offset, a.rows * a.cols);
    return out;
  }

  lastRows(x: KernelTensor, count: number): KernelTensor {
    this.settle(x);
    return { offset: x.offset + (x.rows - count) * x.cols * 4, rows: count, cols: x.cols };
  }

  pickRows(x: KernelTensor, rows: readonly number[]): KernelTensor {
    this.settle(x);
    const y = this.tensor(rows.length, x.cols);
    const source = this.floatsOf(x);
    const target = this.floatsOf(y);
    rows.forEach((row, i) => target.set(source.subarray(row * x.cols, (row + 1) * x.cols), i * x.cols));
    return y;
  }

  read(x: KernelTensor, into?: Float32Array): Float32Array {
    this.settle(x);
    return into ? copyInto(this.floatsOf(x), into) : this.floatsOf(x).slice();
  }

  /** The cache of each kv head lives with the thread that computes its attention (see attention). */
  createKvCache(shape: KvCacheShape): KvCache {
    const { layers, kvHeads, headDim, capacity } = shape;
    const starts = shareStarts(kvHeads, this.threads, 1);
    const main = allocateCacheShard(this.instance, { kvHeads: starts[1] ?? kvHeads, headDim, capacity, kvDtype: this.kvDtype }, layers);
    const shares = starts.slice(1).map((firstKvHead, index) => {
      const count = (starts[index + 2] ?? kvHeads) - firstKvHead;
      return { index, firstKvHead, kvHeads: count, id: this.pool!.allocateCache(index, layers, count, headDim, capacity, this.kvDtype) };
    });
    return new KernelKvCache(shape, main, shares, () => {
      freeCacheShard(this.instance, main);
      shares.forEach(({ index, id }) => this.pool!.freeCache(index, id));
    });
  }

  /** Each thread copies its own heads' part (the two caches split the heads alike). */
  copyKvCache(from: KvCache, to: KvCache, positions: number): void {
    const [source, target] = [from as KernelKvCache, to as KernelKvCache];
    this.settleAll();
    copyCacheShard(this.instance, source.main, target.main, positions);
    source.shares.forEach((share, i) => this.pool!.copyCache(share.index, share.id, target.shares[i]!.id, positions));
    to.length = positions;
  }

  scope<R>(fn: () => R): R {
    return this.instance.scope(() => {
      try {
        return fn();
      } finally {
        // Nothing freed may still be waiting for rows.
        this.settleAll();
      }
    });
  }

  /** Keeps only the layer's output of what it allocated, so a long prompt needs scratch for one layer, not all. */
  runLayer(input: KernelTensor, run: (input: KernelTensor) => KernelTensor): KernelTensor {
    const mark = this.instance.scratchMark();
    const output = run(input);
    this.settleAll();
    return { ...output, offset: this.instance.keepSince(mark, output.offset, output.rows * output.cols * 4) };
  }

  storedBytes(weight: KernelWeight): number {
    return weight.rows * rowBytes(weight.format, weight.cols);
  }

  disposeWeight(weight: KernelWeight): void {
    this.settleAll();
    weight.instance.free(weight.offset, weight.byteLength);
    weight.shards.forEach((shard, i) => this.pool!.freeShard(i, shard.id));
  }

  /**
   * The machine's read bandwidth as these kernels see it, in bytes per second: every thread
   * streams its own buffer of `bytesPerThread` (larger than the caches) `passes` times, all
   * starting together once every buffer is paged in; all the threads' bytes over the wall time
   * from that start until the last thread ended. (Adding each thread's own rate instead would
   * count threads that did not read at the same time as if they had.)
   */
  measureReadBandwidth(bytesPerThread = 256 * 2 ** 20, passes = 4): number {
    this.settleAll();
    const readOwn = (whenPagedIn: () => void) => readMemory(this.instance, bytesPerThread, passes, whenPagedIn);
    const seconds = this.pool ? this.pool.readMemory(bytesPerThread, passes, readOwn) : timedAlone(readOwn);
    return (this.threads * bytesPerThread * passes) / seconds;
  }

  /** Stops the worker threads. */
  async close(): Promise<void> {
    await this.pool?.stop();
  }

  /**
   * Reads a matrix as stored (float when the source has no packed form) straight into the
   * instances' memories: the main thread's rows, then each worker's shard through the pool.
   */
  private loadMatrix(name: string, source: WeightSource): KernelWeight {
    const packed = source.describePacked?.(name) ?? null;
    const host = packed && source.readPackedInto ? null : source.readFloat(name);
    const format = packed && !host ? packed.format : 'F32';
    if (host) this.noticeDequantized(name, source);
    const [rows, cols] = (packed?.shape ?? host!.shape) as [number, number];
    const bytesPerRow = rowBytes(format, cols);
    const read = (target: Uint8Array, firstRow: number) => {
      const byteOffset = firstRow * bytesPerRow;
      if (host) target.set(new Uint8Array(host.data.buffer, host.data.byteOffset + byteOffset, target.length));
      else source.readPackedInto!(name, target, byteOffset);
    };
    const starts = shareStarts(rows, this.threads, 4);
    const mainRows = starts[1] ?? rows;
    const byteLength = storageBytes(format, mainRows, cols);
    const memory = this.memories.forWeight(byteLength);
    const main = { instance: memory, offset: memory.allocate(byteLength), byteLength, format, rows: mainRows, cols };
    const chunk = chunkRows(format, cols);
    for (let first = 0; first < mainRows; first += chunk) {
      const count = Math.min(chunk, mainRows - first);
      writeRows(memory, main, first, count, (target) => read(target, first));
    }
    const shards = starts.slice(1).map((rowStart, i) => {
      const shardRows = (starts[i + 2] ?? rows) - rowStart;
      const id = this.pool!.loadShard(i, format, shardRows, cols, (target, firstRow) => read(target, rowStart + firstRow));
      return { id, rowStart };
    });
    return { ...main, rows, mainRows, shards };
  }

  /** Says once per stored type that its tensors were dequantized to float32, and what that costs. */
  private noticeDequantized(name: string, source: WeightSource): void {
    const stored = source.dequantizedAtLoad?.(name);
    if (!stored || this.dequantizedTypes.has(stored.type)) return;
    this.dequantizedTypes.add(stored.type);
    const times = (4 / stored.bytesPerWeight).toFixed(1);
    this.notice(`the CPU kernels do not compute on ${stored.type}; its tensors are dequantized to float32 at load (4 bytes per weight instead of ${stored.bytesPerWeight.toFixed(3)}, ${times}× the memory)`);
  }

  private tensor(rows: number, cols: number): KernelTensor {
    return { offset: this.instance.scratch(rows * cols * 4), rows, cols };
  }

  private copy(x: KernelTensor): KernelTensor {
    const y = this.tensor(x.rows, x.cols);
    this.instance.bytes(y.offset, x.rows * x.cols * 4).set(this.instance.bytes(x.offset, x.rows * x.cols * 4));
    return y;
  }

  private upload(values: Float32Array): number {
    const offset = this.instance.scratch(values.byteLength);
    this.instance.floats(offset, values.length).set(values);
    return offset;
  }
}

/**
 * Where each thread's share of `count` rows or heads starts, shares in multiples of `unit` (4
 * rows, the kernels' row block, for weights); threads past the last share get none.
 */
function shareStarts(count: number, threads: number, unit: number): number[] {
  const share = Math.ceil(count / threads / unit) * unit;
  const starts: number[] = [];
  for (let start = 0; start < count && starts.length < threads; start += share) starts.push(start);
  return starts;
}

/** The seconds one thread's probe reads take, from when its buffer is paged in (no pool: the main thread alone). */
function timedAlone(readOwn: (whenPagedIn: () => void) => void): number {
  let started = 0;
  readOwn(() => (started = performance.now()));
  return (performance.now() - started) / 1000;
}

function rowsOf(x: KernelTensor, first: number, count: number): KernelTensor {
  return { offset: x.offset + first * x.cols * 4, rows: count, cols: x.cols };
}
