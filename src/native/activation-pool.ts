/**
 * The native backend's activations: float32 buffers lent out inside a scope and taken back when
 * it ends, and at the end of each decoder layer, so every layer, prefill part and decoded token
 * reuses the same few buffers. Left to the garbage collector instead, a 128-token prefill part
 * of the 1B shape leaves about 22 MB of Float32Arrays per layer behind; they were freed only when
 * V8 next collected, and malloc kept the freed pages, which added some 60 MB to the peak RSS
 * (docs/performance.md, "Peak RSS of a native load").
 *
 * A lent buffer holds whatever it held before: every native op writes all of its output. So
 * when the outermost scope ends (a prefill part, a decoded token) what the pass did not write of
 * a free buffer can go back to the OS (`discard`, the addon's discardPages), and is faulted in
 * again only when a longer pass writes it: a prefill's buffers leave RSS when decoding starts,
 * before it fills the rest of the KV cache (1B shape, Q4_0: 5.5 MiB of buffers, about 4 MiB off
 * the peak), while passes of one size, a prefill's parts or AWQ's, keep their pages (discarding
 * all of every buffer after each pass cost AWQ of the 1B shape 4.7 times the system time in page
 * faults; docs/performance.md).
 */
export class ActivationPool {
  /** Buffers free to lend, by length ascending. */
  private readonly free: Float32Array[] = [];
  /** Buffers lent inside the open scopes, in the order they were lent. */
  private readonly lent: Float32Array[] = [];
  private depth = 0;
  private ownedBytes = 0;
  /** Per buffer, the floats from its start that may be resident: written since its last discard. */
  private readonly resident = new Map<Float32Array, number>();
  /** Per buffer, the floats the current outermost scope has taken of it. */
  private readonly taken = new Map<Float32Array, number>();

  constructor(private readonly discard: (buffer: Float32Array) => void = () => {}) {}

  /** Bytes of the buffers the pool owns, lent or free: the activations' memory. */
  get bytes(): number {
    return this.ownedBytes;
  }

  /** `length` floats. Outside any scope nothing would give it back, so it is a new array. */
  take(length: number): Float32Array {
    if (this.depth === 0) return new Float32Array(length);
    const at = this.free.findIndex((buffer) => buffer.length >= length);
    const buffer = at >= 0 ? this.free.splice(at, 1)[0]! : this.grow(length);
    this.lent.push(buffer);
    this.taken.set(buffer, Math.max(this.taken.get(buffer) ?? 0, length));
    this.resident.set(buffer, Math.max(this.resident.get(buffer) ?? 0, length));
    return buffer.length === length ? buffer : buffer.subarray(0, length);
  }

  /** Runs fn; everything lent meanwhile comes back, except the buffers under what it returns. */
  scope<R>(fn: () => R): R {
    const mark = this.lent.length;
    this.depth++;
    let result: R | undefined;
    try {
      result = fn();
      return result;
    } finally {
      this.depth--;
      this.takeBack(mark, buffersOf(result));
      if (this.depth === 0) this.discardUntaken();
    }
  }

  /**
   * After a decoder layer: what it was lent comes back except its output's buffer, and so does
   * its input's (the model passes each layer's output to the next and reads the input no more).
   */
  endLayer(mark: number, input: Float32Array, output: Float32Array): void {
    this.takeBack(mark, new Set([output.buffer]));
    const at = this.lent.findIndex((buffer) => buffer.buffer === input.buffer);
    if (at >= 0 && input.buffer !== output.buffer) this.giveBack(this.lent.splice(at, 1)[0]!);
  }

  /** Where the next lent buffer goes: the mark a layer's endLayer gives back from. */
  mark(): number {
    return this.lent.length;
  }

  /** At the end of a pass: each free buffer's floats beyond what the pass took of it, where they may be resident. */
  private discardUntaken(): void {
    for (const buffer of this.free) {
      const taken = this.taken.get(buffer) ?? 0;
      if (taken < (this.resident.get(buffer) ?? 0)) {
        this.discard(buffer.subarray(taken));
        this.resident.set(buffer, taken);
      }
    }
    this.taken.clear();
  }

  private takeBack(mark: number, keep: ReadonlySet<ArrayBufferLike>): void {
    const kept = this.lent.splice(mark).filter((buffer) => keep.has(buffer.buffer) || (this.giveBack(buffer), false));
    if (this.depth > 0) this.lent.push(...kept);
    // A buffer returned from the outermost scope belongs to the caller now.
    else kept.forEach((buffer) => this.release(buffer));
  }

  /** The pool forgets a buffer it has lent for good. */
  private release(buffer: Float32Array): void {
    this.ownedBytes -= buffer.byteLength;
    this.resident.delete(buffer);
    this.taken.delete(buffer);
  }

  private giveBack(buffer: Float32Array): void {
    const at = this.free.findIndex((other) => other.length >= buffer.length);
    this.free.splice(at >= 0 ? at : this.free.length, 0, buffer);
  }

  private grow(length: number): Float32Array {
    this.ownedBytes += length * Float32Array.BYTES_PER_ELEMENT;
    return new Float32Array(length);
  }
}

/** The array buffers under a scope's result: a Float32Array, a tensor's data, or arrays of them. */
function buffersOf(value: unknown): Set<ArrayBufferLike> {
  const found = new Set<ArrayBufferLike>();
  const visit = (item: unknown): void => {
    if (item instanceof Float32Array) found.add(item.buffer);
    else if (Array.isArray(item)) item.forEach(visit);
    else if (typeof item === 'object' && item !== null && (item as { data?: unknown }).data instanceof Float32Array) found.add((item as { data: Float32Array }).data.buffer);
  };
  visit(value);
  return found;
}
