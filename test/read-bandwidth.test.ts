import { measureReadBandwidth, parallelReadRate } from '../src/bench/read-bandwidth.js';
import { KernelOps } from '../src/kernels/wasm-ops.js';
import { ISA_NAMES, requireNativeAddon } from '../src/native/addon.js';

// herd bench --bandwidth's probes. No speed is checked: only that the rules are right and the
// figures are read rates at all (a machine reads between 100 MB/s and 10 TB/s).
const GB = 1e9;
const SANE = [0.1 * GB, 10_000 * GB] as const;

describe('the parallel read rate: all bytes over the wall time from the first start to the last end', () => {
  test('two threads reading 1 GB each over the same second read 2 GB/s', () => {
    expect(parallelReadRate([{ bytes: GB, start: 10, end: 11 }, { bytes: GB, start: 10, end: 11 }])).toBe(2 * GB);
  });

  test('two threads reading 1 GB in one second each, one after the other, read 1 GB/s (adding their rates would say 2)', () => {
    expect(parallelReadRate([{ bytes: GB, start: 0, end: 1 }, { bytes: GB, start: 1, end: 2 }])).toBe(GB);
  });

  test('threads half overlapping read 2 GB in 1.5 s; a slow thread sets the wall time', () => {
    expect(parallelReadRate([{ bytes: GB, start: 0, end: 1 }, { bytes: GB, start: 0.5, end: 1.5 }])).toBeCloseTo((2 * GB) / 1.5, -3);
    expect(parallelReadRate([{ bytes: GB, start: 0, end: 0.5 }, { bytes: GB, start: 0, end: 2 }])).toBe(GB);
  });

  test('one thread: its own rate', () => {
    expect(parallelReadRate([{ bytes: 3 * GB, start: 2, end: 3.5 }])).toBe(2 * GB);
  });
});

describe('the native probe', () => {
  const addon = requireNativeAddon();

  test('every thread reads its own buffer, the threads at once: on 2 threads some repetition\'s reads overlap', () => {
    // The threads start together, but a loaded machine may deschedule one right after the
    // barrier (then the rule above counts the repetition at its wall time); of twenty, one overlaps.
    addon.startThreads(2);
    try {
      const repetitions = 20;
      const intervals = addon.readBandwidth(64 * 2 ** 20, 1, repetitions);
      expect(intervals.length).toBe(repetitions * 2 * 2);
      const overlaps = Array.from({ length: repetitions }, (_, repetition) => {
        const [start0, end0, start1, end1] = intervals.subarray(repetition * 4, repetition * 4 + 4);
        expect([end0! > start0!, end1! > start1!]).toEqual([true, true]);
        return Math.max(start0!, start1!) < Math.min(end0!, end1!);
      });
      expect(overlaps).toContain(true);
    } finally {
      addon.stopThreads();
    }
  });

  test('herd bench --bandwidth takes it when the addon loads: a sane rate, and the addon\'s threads as they were', async () => {
    addon.startThreads(3);
    try {
      const measured = await measureReadBandwidth(2);
      expect(measured).toMatchObject({ bandwidth_probe: 'native', bandwidth_threads: 2 });
      expect(measured.read_bytes_per_second).toBeGreaterThan(SANE[0]);
      expect(measured.read_bytes_per_second).toBeLessThan(SANE[1]);
      // The median of the same repetitions the best was taken from: a rate, at most the best.
      expect(measured.read_bytes_per_second_median).toBeGreaterThan(SANE[0]);
      expect(measured.read_bytes_per_second_median).toBeLessThanOrEqual(measured.read_bytes_per_second);
      expect(addon.info().threads).toBe(3);
    } finally {
      addon.stopThreads();
    }
  });

  test('every path this CPU runs has a read loop that reads (buffers of a size that is no multiple of its iteration too)', () => {
    const runnable = ISA_NAMES.filter((name) => addon.info().paths[name] === '');
    try {
      for (const isa of runnable) {
        addon.choose(isa);
        const [start, end] = addon.readBandwidth(8 * 2 ** 20 + 100, 1, 1);
        expect([isa, end! > start!]).toEqual([isa, true]);
      }
    } finally {
      addon.choose(process.env.HERD_CPU_ISA);
    }
  });

  test('sizes it cannot use are errors', () => {
    expect(() => addon.readBandwidth(0, 1, 1)).toThrow('must be positive');
  });
});

test('the WASM kernels\' probe on 2 threads (npm run build first: its worker runs from dist/): a sane rate', async () => {
  const kernels = await KernelOps.create({ threads: 2 });
  try {
    const rate = kernels.measureReadBandwidth(32 * 2 ** 20, 1);
    expect(rate).toBeGreaterThan(SANE[0]);
    expect(rate).toBeLessThan(SANE[1]);
  } finally {
    await kernels.close();
  }
});
