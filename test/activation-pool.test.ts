import { loadModel } from '../src/backends/load.js';
import { ActivationPool } from '../src/native/activation-pool.js';
import type { NativeOps } from '../src/native/native-ops.js';
import { STORIES } from './fixtures.js';

/*
 * The native backend's activations come from a pool that takes them back at the end of every
 * scope and layer (docs/performance.md, "Peak RSS of a native load"): a pass holds one layer's
 * activations, not every layer's, and later passes allocate nothing new.
 */

describe('ActivationPool', () => {
  test('a scope gives back what it was lent, and the next scope gets the same buffers', () => {
    const pool = new ActivationPool();
    const first = pool.scope(() => [pool.take(100), pool.take(50)]).map((buffer) => buffer.buffer);
    // Returned buffers belong to the caller; read() copies are what scopes return in practice.
    expect(pool.bytes).toBe(0);
    const lent: ArrayBufferLike[] = [];
    pool.scope(() => void lent.push(pool.take(100).buffer, pool.take(50).buffer));
    pool.scope(() => void lent.push(pool.take(100).buffer, pool.take(50).buffer));
    expect(lent[2]).toBe(lent[0]);
    expect(lent[3]).toBe(lent[1]);
    expect(first).not.toContain(lent[0]);
    expect(pool.bytes).toBe(150 * 4);
  });

  test('a smaller request is a view of a free buffer; outside a scope every request is a new array', () => {
    const pool = new ActivationPool();
    pool.scope(() => void pool.take(64));
    const view = pool.scope(() => {
      const small = pool.take(10);
      return { length: small.length, isView: small.buffer.byteLength === 64 * 4 };
    });
    expect(view).toEqual({ length: 10, isView: true });
    const outside = pool.take(64);
    expect(outside.length).toBe(64);
    expect(pool.bytes).toBe(64 * 4);
  });

  test('the end of a layer gives back its intermediates and its input, and keeps its output', () => {
    const pool = new ActivationPool();
    pool.scope(() => {
      const input = pool.take(8);
      const mark = pool.mark();
      const intermediate = pool.take(8);
      const output = pool.take(8);
      pool.endLayer(mark, input, output);
      const next = [pool.take(8), pool.take(8), pool.take(8)].map((buffer) => buffer.buffer);
      expect(next).toEqual(expect.arrayContaining([input.buffer, intermediate.buffer]));
      expect(next).not.toContain(output.buffer);
    });
    expect(pool.bytes).toBe(4 * 8 * 4);
  });

  test('when a pass ends, what it did not take of each free buffer is discarded, once; passes of one size discard nothing', () => {
    const discarded: Array<{ length: number; from: number }> = [];
    const pool = new ActivationPool((view) => void discarded.push({ length: view.buffer.byteLength / 4, from: view.byteOffset / 4 }));
    const pass = (lengths: number[]) => pool.scope(() => void lengths.forEach((length) => pool.take(length)));
    pass([32, 64]);
    pass([32, 64]);
    expect(discarded).toEqual([]);
    // A shorter pass (decoding after a prefill) takes the 32-float buffer's first 8: its other 24 and all of the 64 go.
    pass([8]);
    expect(discarded).toEqual([{ length: 32, from: 8 }, { length: 64, from: 0 }]);
    pass([8]);
    expect(discarded).toHaveLength(2);
    // A longer pass writes the 64 again; the 32 it leaves untaken then goes whole.
    pass([64]);
    expect(discarded.slice(2)).toEqual([{ length: 32, from: 0 }]);
  });

  test('an inner scope discards nothing, and a buffer returned to the caller is never discarded', () => {
    const discarded: ArrayBufferLike[] = [];
    const pool = new ActivationPool((view) => void discarded.push(view.buffer));
    pool.scope(() => void [pool.take(8), pool.take(32)]);
    const returned = pool.scope(() => {
      const result = pool.take(4);
      pool.scope(() => void pool.take(2));
      expect(discarded).toEqual([]);
      return result;
    });
    // The 4 came from the 8-float buffer, which the caller owns now; the 32's untaken 30 go.
    expect(discarded).toHaveLength(1);
    expect(discarded).not.toContain(returned.buffer);
    pool.scope(() => void pool.take(1));
    expect(discarded).toHaveLength(2);
    expect(discarded).not.toContain(returned.buffer);
  });

  test('a tensor returned from an inner scope stays lent to the outer one', () => {
    const pool = new ActivationPool();
    pool.scope(() => {
      const kept = pool.scope(() => ({ data: pool.take(16), rows: 1, cols: 16 }));
      expect(pool.take(16).buffer).not.toBe(kept.data.buffer);
    });
    expect(pool.bytes).toBe(2 * 16 * 4);
  });
});

describe('the native backend reuses its activations', () => {
  test('prefill holds one layer of one part, and a second prompt and decoding add nothing (stories260K)', async () => {
    const { model, config } = await loadModel(STORIES, { backend: 'native', threads: 1 });
    const ops = (model as unknown as { ops: NativeOps }).ops;
    const cache = model.createCache(200);
    model.forward(Int32Array.from({ length: 100 }, (_, i) => (i * 37) % config.vocabSize), cache);
    // One layer on a part of t tokens, op by op: its input, norm, q, k, v, RoPE'd q and k, attention,
    // o, residual, norm, gate, up, SwiGLU, down, residual; then the head's norm and logits on one row.
    const t = ops.prefillChunkTokens;
    const { hiddenSize: h, intermediateSize: f, numKeyValueHeads, headDim } = config;
    const kv = numKeyValueHeads * headDim;
    const oneLayer = t * (10 * h + 3 * kv + 3 * f) + h + config.vocabSize;
    const held = ops.activationBytes;
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(oneLayer * 4);
    model.forward(Int32Array.from({ length: 70 }, (_, i) => (i * 11) % config.vocabSize), cache);
    for (let step = 0; step < 10; step++) model.forward(Int32Array.of(step + 1), cache);
    expect(ops.activationBytes).toBe(held);
  });
});
