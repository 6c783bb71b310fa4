import fs from 'node:fs';
import v8 from 'node:v8';
import { HerdError } from '../errors.js';

/** The functions src/kernels/assembly/index.ts exports; pointers are byte offsets. */
export interface KernelExports {
  memory: WebAssembly.Memory;
  linear_float(dtype: number, w: number, x: number, y: number, inDim: number, outDim: number, tokens: number, rowStart: number, rowEnd: number): void;
  quantize_activations(x: number, q: number, scales: number, sums: number, split: number, inDim: number, tokens: number): void;
  linear_q(format: number, w: number, xq: number, xScales: number, xSums: number, xSplit: number, y: number, inDim: number, outDim: number, tokens: number, rowStart: number, rowEnd: number): void;
  repack_rows(format: number, src: number, dst: number, groups: number, blocks: number): void;
  repack_q4k(src: number, dst: number, groups: number, superBlocks: number): void;
  rmsnorm(x: number, w: number, y: number, dim: number, rows: number, eps: number): void;
  rope(x: number, cos: number, sin: number, rows: number, heads: number, headDim: number): void;
  cache_write(kvDtype: number, src: number, cache: number, rows: number, start: number, kvHeads: number, headDim: number, capacity: number): void;
  attention(kvDtype: number, q: number, keys: number, values: number, out: number, scores: number, rows: number, start: number, heads: number, kvHeads: number, headDim: number, capacity: number): void;
  swiglu(gate: number, up: number, out: number, n: number): void;
  add(a: number, b: number, out: number, n: number): void;
  embedding_float(dtype: number, table: number, ids: number, out: number, dim: number, count: number): void;
  embedding_q(format: number, table: number, ids: number, out: number, dim: number, count: number): void;
  read_sum(start: number, bytes: number): number;
  linear_q4k(w: number, xq: number, xScales: number, xSums: number, y: number, inDim: number, outDim: number, tokens: number, rowStart: number, rowEnd: number): void;
  embedding_q4k(table: number, ids: number, out: number, dim: number, count: number): void;
  linear_kquant(type: number, w: number, x: number, y: number, inDim: number, outDim: number, tokens: number, rowStart: number, rowEnd: number, scratch: number): void;
  embedding_kquant(type: number, table: number, ids: number, out: number, dim: number, count: number): void;
  linear_int4(w: number, xq: number, xScales: number, xSums: number, y: number, inDim: number, outDim: number, tokens: number, rowStart: number, rowEnd: number): void;
  activation_block_sums(x: number, sums: number, inDim: number, tokens: number): void;
  linear_blocks32(format: number, w: number, x: number, sums: number, y: number, inDim: number, outDim: number, tokens: number, rowStart: number, rowEnd: number): void;
  embedding_blocks32(format: number, table: number, ids: number, out: number, dim: number, count: number): void;
}

const WASM_FILE = new URL('../../dist/kernels/herd-kernels.wasm', import.meta.url);
const PAGE = 65536;
// Below this offset lies whatever static data the compiled module keeps.
const FIRST_FREE_BYTE = PAGE;
const ALIGN = 16;
const GROWTH_STEP = 16 * 2 ** 20;
const MAX_BYTES = 65536 * PAGE;
// Weights a thread puts in one memory before it makes another: the first memory keeps the other
// half of its 4 GiB for the thread's share of the KV cache (an 8B model's F32 cache of 15,000
// positions on two threads), activations and scratch.
const WEIGHT_BYTES_PER_MEMORY = 2 * 2 ** 30;

let compiled: WebAssembly.Module | null = null;

/** The compiled kernels, read once per process (and per worker) from the file the build wrote. */
export function kernelModule(): WebAssembly.Module {
  if (!compiled) {
    if (!fs.existsSync(WASM_FILE)) throw new HerdError(`the CPU kernels are not built (${WASM_FILE.pathname} is missing): run npm run build`);
    const bytes = fs.readFileSync(WASM_FILE);
    enableRelaxedSimd(bytes);
    compiled = new WebAssembly.Module(bytes);
  }
  return compiled;
}

/**
 * The kernels use relaxed SIMD's 8-bit dot product (one instruction for 16 products, where plain
 * SIMD needs five). V8 ships it from version 11.4 (Node 22); Node 20's V8 has it behind a flag,
 * which must be set before the module compiles. V8's flags are process-wide, so workers see it.
 */
function enableRelaxedSimd(bytes: Uint8Array): void {
  if (WebAssembly.validate(bytes)) return;
  v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  if (!WebAssembly.validate(bytes)) throw new HerdError(`this Node.js (${process.version}) cannot compile the CPU kernels: they need WebAssembly relaxed SIMD (Node 20 or later)`);
}

/**
 * One instance of the kernels with its own linear memory (at most 4 GiB) and an allocator for it.
 * Long-lived blocks (weights, KV caches) come from a first-fit free list; the intermediate results
 * of one forward pass come from a bump region above them that is dropped when the pass ends.
 */
export class KernelInstance {
  readonly kernels: KernelExports;
  private readonly freeBlocks: Array<{ offset: number; size: number }> = [];
  private top = FIRST_FREE_BYTE;
  private scratchTop: number | null = null;

  constructor() {
    this.kernels = new WebAssembly.Instance(kernelModule(), {}).exports as unknown as KernelExports;
  }

  /** Bytes from the first long-lived block to the end of the highest. */
  get reservedBytes(): number {
    return this.top - FIRST_FREE_BYTE;
  }

  /** A long-lived block, kept until free(). */
  allocate(bytes: number): number {
    if (this.scratchTop !== null) throw new Error('long-lived allocation inside a scratch scope');
    const size = roundUp(Math.max(bytes, 1));
    const index = this.freeBlocks.findIndex((block) => block.size >= size);
    if (index >= 0) {
      const block = this.freeBlocks[index]!;
      const offset = block.offset;
      if (block.size === size) this.freeBlocks.splice(index, 1);
      else Object.assign(block, { offset: block.offset + size, size: block.size - size });
      return offset;
    }
    const offset = this.top;
    this.top += size;
    this.ensureCapacity(this.top);
    return offset;
  }

  free(offset: number, bytes: number): void {
    const size = roundUp(Math.max(bytes, 1));
    this.freeBlocks.push({ offset, size });
    this.freeBlocks.sort((a, b) => a.offset - b.offset);
    // Merge neighbours, then give the last block back to the top.
    for (let i = this.freeBlocks.length - 1; i > 0; i--) {
      const before = this.freeBlocks[i - 1]!;
      const block = this.freeBlocks[i]!;
      if (before.offset + before.size === block.offset) {
        before.size += block.size;
        this.freeBlocks.splice(i, 1);
      }
    }
    const last = this.freeBlocks[this.freeBlocks.length - 1];
    if (last && last.offset + last.size === this.top) {
      this.top = last.offset;
      this.freeBlocks.pop();
    }
  }

  /** Scratch memory for the current scope. */
  scratch(bytes: number): number {
    if (this.scratchTop === null) throw new Error('scratch allocation outside a scope');
    const offset = this.scratchTop;
    this.scratchTop += roundUp(Math.max(bytes, 1));
    this.ensureCapacity(this.scratchTop);
    return offset;
  }

  /** Where the next scratch allocation goes. */
  scratchMark(): number {
    if (this.scratchTop === null) throw new Error('scratch mark outside a scope');
    return this.scratchTop;
  }

  /**
   * Releases the scratch allocated since `mark` except `bytes` bytes at `offset`, which move
   * down to `mark`; returns their new offset.
   */
  keepSince(mark: number, offset: number, bytes: number): number {
    if (offset < mark) return offset;
    new Uint8Array(this.kernels.memory.buffer).copyWithin(mark, offset, offset + bytes);
    this.scratchTop = mark + roundUp(Math.max(bytes, 1));
    return mark;
  }

  /** Runs fn with scratch memory that is released when it returns. Scopes do not nest. */
  scope<R>(fn: () => R): R {
    if (this.scratchTop !== null) return fn();
    this.scratchTop = this.top;
    try {
      return fn();
    } finally {
      this.scratchTop = null;
    }
  }

  /** A view of memory; take a new one after any allocation, which may grow (and move) the buffer. */
  bytes(offset: number, length: number): Uint8Array {
    return new Uint8Array(this.kernels.memory.buffer, offset, length);
  }

  floats(offset: number, length: number): Float32Array {
    return new Float32Array(this.kernels.memory.buffer, offset, length);
  }

  private ensureCapacity(end: number): void {
    const memory = this.kernels.memory;
    const size = memory.buffer.byteLength;
    if (end <= size) return;
    if (end > MAX_BYTES) throw new HerdError(`the CPU kernels need ${(end / 2 ** 30).toFixed(2)} GiB in one WebAssembly memory, over its 4 GiB limit`);
    // At least double (and 16 MiB): loading a model allocates thousands of blocks, pages never
    // touched cost address space, not memory, and every grow makes V8 collect garbage (it counts
    // the memory as external), which with the tokenizer's heap costs tens of milliseconds each.
    // Fall back to the exact need.
    const generous = Math.min(Math.max(end, size * 2, size + GROWTH_STEP), MAX_BYTES);
    for (const target of [generous, end]) {
      try {
        memory.grow(Math.ceil((target - size) / PAGE));
        return;
      } catch {
        // try the smaller size
      }
    }
    throw new HerdError(`the CPU kernels could not grow their memory to ${(end / 2 ** 30).toFixed(2)} GiB`);
  }

}

/**
 * The memories one thread computes in. The first (`home`) holds the activations, KV caches and
 * scratch, and weights up to `weightBytes`; a weight goes to the first memory with room for it
 * under that limit, or to a new memory when none has. So one thread's share of a model may be
 * larger than one WebAssembly memory's 4 GiB.
 */
export class ThreadMemories {
  readonly home = new KernelInstance();
  private readonly all = [this.home];

  constructor(private readonly weightBytes = WEIGHT_BYTES_PER_MEMORY) {}

  get count(): number {
    return this.all.length;
  }

  /** The memory a weight of `bytes` bytes is to be allocated in. */
  forWeight(bytes: number): KernelInstance {
    const roomy = this.all.find((instance) => instance.reservedBytes + roundUp(bytes) <= this.weightBytes);
    if (roomy) return roomy;
    const fresh = new KernelInstance();
    this.all.push(fresh);
    return fresh;
  }
}

function roundUp(bytes: number): number {
  return Math.ceil(bytes / ALIGN) * ALIGN;
}
