#!/usr/bin/env node
/*
 * CPU time of the native addon's attention on the 1B shape (32 query heads on 8 kv heads of 64):
 * one decoded row at a given context, and a prefill part of 32 rows ending there, over F32 and F16
 * caches. process.cpuUsage (every thread of the process), best of N, as bench-native-linear.mjs.
 *
 *   node scripts/bench-native-attention.mjs [--threads N] [--isa avx512] [--context 512,2048] [--addon path]
 *
 * Run `npm run build:native` first.
 */
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const { values: options } = parseArgs({
  options: {
    threads: { type: 'string', default: '1' },
    isa: { type: 'string' },
    context: { type: 'string', default: '512,2048' },
    repeats: { type: 'string', default: '7' },
    // Another build of the addon, to compare against (a copy of build/Release/herd_native.node).
    addon: { type: 'string', default: new URL('../build/Release/herd_native.node', import.meta.url).pathname },
  },
});

const addon = createRequire(import.meta.url)(options.addon);
if (options.isa) addon.choose(options.isa);
addon.startThreads(Number(options.threads));

const [heads, kvHeads, headDim] = [32, 8, 64];

function random(length) {
  return Float32Array.from({ length }, () => Math.random() * 2 - 1);
}

/* Best CPU milliseconds of one call over `repeats` runs of enough calls to last ~50 ms. */
function cpuMs(call) {
  const calls = Math.max(1, Math.round(50 / Math.max(0.01, timeOnce(call))));
  let best = Infinity;
  for (let r = 0; r < Number(options.repeats); r++) {
    const before = process.cpuUsage();
    for (let i = 0; i < calls; i++) call();
    const used = process.cpuUsage(before);
    best = Math.min(best, (used.user + used.system) / 1000 / calls);
  }
  return best;
}

function timeOnce(call) {
  const before = process.cpuUsage();
  call();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

for (const context of options.context.split(',').map(Number)) {
  for (const type of ['f32', 'f16']) {
    const capacity = context;
    const elements = kvHeads * capacity * headDim;
    const [keys, values] = [0, 1].map(() => (type === 'f16' ? new Uint16Array(elements) : new Float32Array(elements)));
    // Fill the cache with real rows (an all-zero one would give flat scores): one prefill call.
    const all = (rows) => [random(rows * heads * headDim), random(rows * kvHeads * headDim), random(rows * kvHeads * headDim)];
    {
      const [q, k, v] = all(context);
      addon.attention(keys, values, kvHeads, headDim, capacity, q, k, v, new Float32Array(q.length), 0, heads);
    }
    for (const rows of [1, 32]) {
      const [q, k, v] = all(rows);
      const out = new Float32Array(q.length);
      const ms = cpuMs(() => addon.attention(keys, values, kvHeads, headDim, capacity, q, k, v, out, context - rows, heads));
      console.log(`${type} cache, context ${context}, ${rows} row(s): ${ms.toFixed(3)} ms CPU a layer`);
    }
  }
}
addon.stopThreads();
