#!/usr/bin/env node
/*
 * How a decoded token's time splits on the native backend (docs/performance.md, "Native C
 * kernels"): the weight products (linear and linearMany calls, which include their N-API call,
 * the activations' quantization and the pool's wake and wait) against every other op (norms,
 * RoPE, attention, SwiGLU, adds, reading the logits) and the time outside any op (model.ts's
 * JavaScript, the greedy argmax, garbage collection). Each op of the backend is timed through
 * loadModel's wrapOps; wall clock, so a shared machine inflates it: the fastest tokens' split
 * is printed too, and the process's CPU time (every thread) per token.
 *
 *   npm run build && node scripts/profile-decode.mjs FILE.gguf [--threads 2] [--prompt 16] [--tokens 64]
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { loadModel } from '../dist/backends/load.js';
import { argmax } from '../dist/engine/sampling.js';

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: { threads: { type: 'string', default: '2' }, prompt: { type: 'string', default: '16' }, tokens: { type: 'string', default: '64' } },
});
const [file] = positionals;
if (!file) throw new Error('usage: node scripts/profile-decode.mjs FILE.gguf [--threads 2] [--prompt 16] [--tokens 64]');
const PRODUCTS = new Set(['linear', 'linearMany']);
const FASTEST = 8;

const spent = new Map();
let timing = false;
const timed = (ops) =>
  new Proxy(ops, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      // scope wraps the whole forward pass and runLayer a layer's ops: containers, not ops.
      if (key === 'scope' || key === 'runLayer') return value.bind(target);
      return (...args) => {
        if (!timing) return value.apply(target, args);
        const started = performance.now();
        try {
          return value.apply(target, args);
        } finally {
          spent.set(key, (spent.get(key) ?? 0) + performance.now() - started);
        }
      };
    },
  });

const { model } = await loadModel(file, { backend: 'native', threads: Number(options.threads), wrapOps: timed });
const promptTokens = Number(options.prompt), steps = Number(options.tokens) - 1;
const cache = model.createCache(promptTokens + steps + 1);
// Into one array, as herd generate and herd bench read them (a fresh 0.5 MB array a token would
// time its page faults as the read).
const logits = model.forward(Int32Array.from({ length: promptTokens }, (_, i) => 1000 + 7 * i), cache);
const sum = (keep) => [...spent].reduce((total, [key, ms]) => total + (keep(key) ? ms : 0), 0);
const tokens = [];
const cpuBefore = process.cpuUsage();
timing = true;
for (let step = 0; step < steps; step++) {
  const [products, others, started] = [sum((key) => PRODUCTS.has(key)), sum((key) => !PRODUCTS.has(key)), performance.now()];
  model.forward(Int32Array.of(argmax(logits)), cache, { into: logits });
  const wall = performance.now() - started, productMs = sum((key) => PRODUCTS.has(key)) - products, otherMs = sum((key) => !PRODUCTS.has(key)) - others;
  tokens.push({ wall, products: productMs, others: otherMs, outside: wall - productMs - otherMs });
}
const cpu = process.cpuUsage(cpuBefore);

const split = (rows) => {
  const mean = (key) => rows.reduce((total, row) => total + row[key], 0) / rows.length;
  const share = (key) => `${mean(key).toFixed(2)} ms (${((100 * mean(key)) / mean('wall')).toFixed(1)} %)`;
  return `${mean('wall').toFixed(2)} ms a token: products ${share('products')}, other ops ${share('others')}, outside ops ${share('outside')}`;
};
console.log(`${file} on ${options.threads} threads, prompt ${promptTokens}, ${steps} decoded tokens, load average ${os.loadavg()[0].toFixed(2)}`);
console.log(`  all tokens:        ${split(tokens)}; CPU ${((cpu.user + cpu.system) / 1000 / steps).toFixed(2)} ms a token`);
console.log(`  fastest ${FASTEST} tokens: ${split([...tokens].sort((a, b) => a.wall - b.wall).slice(0, FASTEST))}`);
const ops = [...spent].filter(([key]) => !PRODUCTS.has(key)).sort((a, b) => b[1] - a[1]);
console.log(`  other ops, ms a token: ${ops.map(([key, ms]) => `${String(key)} ${(ms / steps).toFixed(2)}`).join(', ')}`);
