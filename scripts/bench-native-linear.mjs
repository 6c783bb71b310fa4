#!/usr/bin/env node
/*
 * CPU time of the native addon's linear op on the 1B shape's layer sizes (docs/performance.md,
 * "Native C kernels"): process.cpuUsage (user + system, every thread of the process), best of N,
 * so that a machine shared with other work disturbs the figures far less than wall clock does.
 *
 *   node scripts/bench-native-linear.mjs [--threads N] [--isa avx512 | --alternate avx512,amx] [--formats Q8_0,Q4_0,Q4_K] [--tokens 1,64] [--hot] [--plain] [--small-pages]
 *
 * --alternate takes its paths in turn for every sample, one best figure each: on a host whose speed
 * drifts (a shared VM), paths measured one after another can differ by more than the code does.
 *
 * Weights are repacked as NativeOps.linearWeight repacks them (src/native/repack.h) unless --plain,
 * and on 2 MiB pages where Linux gives them, as NativeOps.loadMatrix asks, unless --small-pages.
 *
 * The weights are random bytes with a sane half-precision scale in every block (speed does not
 * depend on the values); each size is copied until the copies exceed the last-level cache, and
 * the calls rotate through them, so decode figures read weights from memory as a model does.
 * Run `npm run build:native` first.
 */
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const { values: options } = parseArgs({
  options: {
    threads: { type: 'string', default: '1' },
    isa: { type: 'string' },
    alternate: { type: 'string' },
    formats: { type: 'string', default: 'Q8_0,Q4_0,Q4_K' },
    tokens: { type: 'string', default: '1,64' },
    shapes: { type: 'string', default: '2048x2048,512x2048,8192x2048,2048x8192,128256x2048' },
    // One copy of each weight, reread from the caches: the kernels' arithmetic without the memory.
    hot: { type: 'boolean', default: false },
    // The stored layout, without the load-time repacking the model's linear weights get.
    plain: { type: 'boolean', default: false },
    // The weights on 4 KiB pages, without the 2 MiB pages NativeOps asks for (addon.adviseHugePages).
    'small-pages': { type: 'boolean', default: false },
    // Another build of the addon, to compare against (a copy of build/Release/herd_native.node).
    addon: { type: 'string', default: new URL('../build/Release/herd_native.node', import.meta.url).pathname },
  },
});

const addon = createRequire(import.meta.url)(options.addon);
if (options.isa) addon.choose(options.isa);
addon.startThreads(Number(options.threads));

// Format code (src/native/herd_native.h), block bytes, weights per block, offsets of f16 scales in a block.
const FORMATS = {
  F32: { code: 0, bytes: 4, weights: 1, halves: [] },
  F16: { code: 1, bytes: 2, weights: 1, halves: [] },
  BF16: { code: 2, bytes: 2, weights: 1, halves: [] },
  Q8_0: { code: 3, bytes: 34, weights: 32, halves: [0] },
  Q4_0: { code: 4, bytes: 18, weights: 32, halves: [0] },
  Q4_K: { code: 5, bytes: 144, weights: 256, halves: [0, 2] },
  Q6_K: { code: 6, bytes: 210, weights: 256, halves: [208] },
  Q5_K: { code: 7, bytes: 176, weights: 256, halves: [0, 2] },
  Q3_K: { code: 8, bytes: 110, weights: 256, halves: [108] },
  Q2_K: { code: 9, bytes: 84, weights: 256, halves: [80, 82] },
  Q4_1: { code: 10, bytes: 20, weights: 32, halves: [0, 2] },
  Q5_0: { code: 11, bytes: 22, weights: 32, halves: [0] },
  IQ4_XS: { code: 14, bytes: 136, weights: 256, halves: [0] },
};
const COPIES_ABOVE_BYTES = 96 << 20; // above this machine's 32 MiB L3

/* Memory for weights as NativeOps.loadMatrix allocates it: outside the JavaScript heap, on huge pages where the OS gives them. */
function weightMemory(length) {
  const out = new Uint8Array(Buffer.allocUnsafeSlow(length).buffer);
  if (!options['small-pages'] && addon.adviseHugePages) addon.adviseHugePages(out);
  return out;
}

function randomWeights(format, rows, cols) {
  const { bytes, weights, halves } = FORMATS[format];
  const out = weightMemory((rows * cols * bytes) / weights);
  let seed = 12345;
  for (let i = 0; i < out.length; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    out[i] = seed >>> 24;
  }
  if (format === 'F32') new Float32Array(out.buffer).forEach((_, i, a) => (a[i] = ((i % 97) - 48) / 64));
  if (format === 'F16' || format === 'BF16') new Uint16Array(out.buffer).forEach((_, i, a) => (a[i] = (format === 'F16' ? 0x2c00 : 0x3d80) | (i % 255)));
  for (let block = 0; block < out.length; block += bytes) for (const at of halves) [out[block + at], out[block + at + 1]] = [0x00, 0x20]; // 0x2000 ≈ 0.0078
  return out;
}

function cpuMs(fn) {
  const before = process.cpuUsage();
  fn();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

const shapes = options.shapes.split(',').map((shape) => shape.split('x').map(Number));
const tokenCounts = options.tokens.split(',').map(Number);
const isas = options.alternate ? options.alternate.split(',') : [addon.info().isa];
console.log(`isa ${isas.join(' / ')}, threads ${addon.info().threads}; CPU ms per call (best of N), and G products/s of CPU time`);
console.log(`format | rows × cols | tokens | ${isas.map((isa) => `${isa} CPU ms | G products/s`).join(' | ')}`);
for (const format of options.formats.split(',')) {
  for (const [rows, cols] of shapes) {
    const one = randomWeights(format, rows, cols);
    const copies = [one];
    while (!options.hot && copies.length * one.length < COPIES_ABOVE_BYTES) {
      const copy = weightMemory(one.length);
      copy.set(one);
      copies.push(copy);
    }
    const stored = FORMATS[format].code;
    const code = copies.map((copy) => (options.plain ? stored : addon.repackRows(stored, copy, rows, cols, false)))[0];
    for (const tokens of tokenCounts) {
      const x = Float32Array.from({ length: tokens * cols }, (_, i) => Math.sin(i * 0.37));
      const y = new Float32Array(tokens * rows);
      const products = rows * cols * tokens;
      const calls = Math.max(2, Math.min(30, Math.round(2e9 / products)));
      // Small products repeat within one sample: the CPU clock's resolution is coarse.
      const repeats = Math.max(1, Math.round(2e7 / products));
      const best = isas.map(() => Infinity);
      for (let call = 0; call < calls; call++) {
        isas.forEach((isa, i) => {
          if (options.alternate) addon.choose(isa);
          const sample = cpuMs(() => {
            for (let r = 0; r < repeats; r++) addon.linear(code, copies[(call * repeats + r) % copies.length], rows, cols, x, tokens, y);
          });
          best[i] = Math.min(best[i], sample / repeats);
        });
      }
      const figures = best.map((ms) => `${ms.toFixed(3)} | ${(products / ms / 1e6).toFixed(1)}`);
      console.log(`${format} | ${rows} × ${cols} | ${tokens} | ${figures.join(' | ')}`);
    }
  }
}
addon.stopThreads();
