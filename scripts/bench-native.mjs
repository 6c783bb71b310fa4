#!/usr/bin/env node
// The results table of issue 21 (docs/performance.md, "Against llama.cpp on the same file"):
// herd-native, herd-wasm and llama.cpp on the Llama-3.2-1B shape with random weights, for each
// format × thread count, prefill of a --prompt-tokens prompt and decode of --gen-tokens tokens,
// each engine in a child process of its own (`herd bench --compare llama.cpp --bandwidth`).
//
// The GGUF files are written once into --cache and reused. Run it after `npm run build`, on an
// idle machine, with node-llama-cpp installed (npm install --no-save node-llama-cpp@3.21.1):
//
//   npm run bench:native -- [--formats q8_0,q4_0,q4_k_m] [--threads 1,2] [--prompt-tokens 512]
//                           [--gen-tokens 64] [--competing-load N] [--cache DIR] [--tokenizer DIR]
//
// Prints progress on stderr, then the CPU and a markdown table on stdout; every run's JSON is
// kept in the cache folder as results-<time>.json.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HERD = path.join(ROOT, 'bin/run.js');

const { values: options } = parseArgs({
  options: {
    preset: { type: 'string', default: 'llama-3.2-1b' },
    formats: { type: 'string', default: 'q8_0,q4_0,q4_k_m' },
    threads: { type: 'string', default: '1,2' },
    'prompt-tokens': { type: 'string', default: '512' },
    'gen-tokens': { type: 'string', default: '64' },
    'competing-load': { type: 'string' },
    engines: { type: 'string' },
    cache: { type: 'string', default: path.join(os.homedir(), '.cache', 'herd', 'bench-native') },
    tokenizer: { type: 'string', default: path.join(ROOT, 'test/fixtures/llama-3.1-tokenizer') },
  },
});

const fromDist = (file) => import(path.join(ROOT, 'dist', file)).catch(() => {
  console.error(`bench-native: dist/${file} is missing; run \`npm run build\` first`);
  process.exit(1);
});
const { markdownTable } = await fromDist('bench/compare-table.js');
const { mixFormat, SYNTHETIC_MIXES, writeSyntheticGguf } = await fromDist('bench/synthetic-gguf.js');
const { SyntheticWeights } = await fromDist('engine/synthetic.js');
const { presetConfig } = await fromDist('spec/presets.js');

/** Runs the built CLI; its stdout, or the end of the run with its stderr's last line. */
function herd(args) {
  const result = spawnSync(process.execPath, [HERD, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * 2 ** 20 });
  if (result.status !== 0) {
    console.error(`bench-native: herd ${args.join(' ')} failed (status ${result.status})`);
    process.exit(1);
  }
  return result.stdout;
}

/** The preset's random weights in one format as a GGUF file in the cache, written once. */
function modelFile(format) {
  const file = path.join(options.cache, `${options.preset}-${format}.gguf`);
  if (fs.existsSync(file)) return file;
  console.error(`writing ${file}…`);
  fs.mkdirSync(options.cache, { recursive: true });
  // What `herd bench --synthetic PRESET --format FORMAT --write-gguf` writes, without loading the
  // model to measure it first. Written beside it and renamed: an interrupted write leaves no half file.
  const partial = `${file}.partial`;
  const config = presetConfig(options.preset);
  const mix = SYNTHETIC_MIXES[format];
  const weights = new SyntheticWeights(config, mix ? mixFormat(config, mix) : format.toUpperCase());
  writeSyntheticGguf(partial, config, weights, options.tokenizer, `${options.preset} (random ${mix ?? format.toUpperCase()} weights)`, mix);
  fs.renameSync(partial, file);
  return file;
}

/** The CPU's name and the vector features the kernels dispatch on, for the table's caption. */
function cpuDescription() {
  const info = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
  const flags = (/^flags\s*:(.*)$/m.exec(info)?.[1] ?? '').trim().split(/\s+/);
  const vector = flags.filter((flag) => /^(avx|fma|f16c|amx)/.test(flag));
  return `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} cores; ${vector.join(' ') || 'no AVX flags'}`;
}

const list = (text) => text.split(',').map((part) => part.trim()).filter((part) => part !== '');
const runs = [];
const started = Date.now();
for (const format of list(options.formats)) {
  const file = modelFile(format);
  for (const threads of list(options.threads)) {
    console.error(`${format} on ${threads} thread(s)…`);
    const args = ['bench', '--json', '--model', file, '--compare', 'llama.cpp', '--bandwidth', '--threads', threads, '--prompt-tokens', options['prompt-tokens'], '--gen-tokens', options['gen-tokens']];
    if (options['competing-load']) args.push('--competing-load', options['competing-load']);
    if (options.engines) args.push('--engines', options.engines);
    const report = JSON.parse(herd(args));
    runs.push({ label: format.toUpperCase(), threads: report.threads, rows: report.rows, loaded: report.competing_load?.engines, report });
  }
}

const resultsFile = path.join(options.cache, `results-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
fs.writeFileSync(resultsFile, `${JSON.stringify(runs.map((run) => run.report), null, 2)}\n`);
console.error(`done in ${Math.round((Date.now() - started) / 1000)} s; the JSON of every run is in ${resultsFile}`);
console.log(`${options.preset} shape, random weights, prompt ${options['prompt-tokens']} tokens, decode ${options['gen-tokens']}; ${cpuDescription()}\n`);
console.log(markdownTable(runs));
