import { loadModel } from '../src/backends/load.js';
import { STORIES } from './fixtures.js';

/*
 * ForwardOptions.into: a decode loop reads each step's logits into one array instead of a new one
 * per token (docs/performance.md, "Peak RSS of a native load"). The values must be the ones a new
 * array gets, on every backend.
 */

describe.each(['native', 'kernels', 'tfjs'])('forward into a caller array on the %s backend (stories260K)', (backend) => {
  test('the same logits as a new array, written into the same array every step', async () => {
    const { model, config } = await loadModel(STORIES, { backend, threads: 1, tokenizer: false });
    try {
      const prompt = Int32Array.from({ length: 9 }, (_, i) => (i * 37 + 5) % config.vocabSize);
      const [fresh, reused] = [model.createCache(16), model.createCache(16)];
      const into = new Float32Array(config.vocabSize).fill(Number.NaN);
      expect(model.forward(prompt, reused, { into })).toBe(into);
      expect(into).toEqual(model.forward(prompt, fresh));
      for (const id of [3, 17, 200]) {
        const expected = model.forward(Int32Array.of(id), fresh);
        expect(model.forward(Int32Array.of(id), reused, { into })).toBe(into);
        expect(into).toEqual(expected);
      }
      fresh.dispose();
      reused.dispose();
    } finally {
      model.dispose();
    }
  });

  test('a wrong size and allPositions are refused with a clear error', async () => {
    const { model, config } = await loadModel(STORIES, { backend, threads: 1, tokenizer: false });
    const cache = model.createCache(8);
    try {
      expect(() => model.forward(Int32Array.of(1, 2), cache, { into: new Float32Array(config.vocabSize + 1) })).toThrow(/read into an array of \d+ floats; the tensor has \d+/);
      expect(() => model.forward(Int32Array.of(1, 2), cache, { into: new Float32Array(2 * config.vocabSize), allPositions: true })).toThrow(/only the last position/);
    } finally {
      cache.dispose();
      model.dispose();
    }
  });
});
