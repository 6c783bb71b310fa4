import type { Ops } from '../src/engine/ops.js';
import { ActivationRecorder } from '../src/quant/calibration.js';

/**
 * model.ts sends a layer's q/k/v and gate/up through Ops.linearMany when the backend has one.
 * The calibration recorder wraps a backend with Object.create and intercepts `linear` to record
 * each weight's inputs: inheriting the backend's linearMany would let those products bypass it.
 */
test("the calibration recorder does not inherit a backend's linearMany, so every product passes its linear", () => {
  const calls: string[] = [];
  const backend = {
    name: 'fake',
    linear: (x: number, weight: string) => (calls.push(`linear ${weight}`), x),
    linearMany: (x: number, weights: readonly string[]) => (calls.push('linearMany'), weights.map(() => x)),
    read: (x: number) => Float32Array.of(x),
  } as unknown as Ops<number, string>;
  const wrapped = new ActivationRecorder(new Map()).wrap(backend);
  expect(wrapped.linearMany).toBeUndefined();
  wrapped.linear(1, 'q');
  expect(calls).toEqual(['linear q']);
});
