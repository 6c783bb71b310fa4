/**
 * Jest in ESM mode through ts-jest; type checking is done once by `tsc` in `npm test`.
 *
 * Tiers, chosen by HERD_TEST_TIER (the npm scripts set it):
 * - full (default, `npm test` and CI): every suite except the opt-in ones;
 * - fast (`npm run test:fast`): the edit loop, without the suites listed in SLOW_SUITES;
 * - shared (`npm run test:shared`): only the opt-in suites, `*.shared.test.ts`, which read the
 *   team's ../shared folder (or HERD_SHARED) and fail, rather than skip, without it.
 */

/**
 * The slow tier: suites that took 40 s or more in one full run on the 2-core build machine while
 * other work kept its load average at 4-17 (jest's per-file times; the whole run took 32 minutes
 * there). Left out of the fast tier, which must stay under 2 minutes on an idle machine with no
 * suite above 20 s; the timing reporter names any other suite over 20 s. Kept as a list rather
 * than a file naming rule so that moving a suite between tiers does not rename it.
 */
export const SLOW_SUITES = [
  'test/native-quantize-lowbit.test.ts', // 23 s alone, 52 s beside two other suites at load 8: 6 mixes of the 3.8M-weight fixture on 4 path × thread settings, the CLI
  'test/cli.test.ts', // 68 s: every command through the built CLI
  'test/eval-compare.test.ts', // 185 s
  'test/finetune-adapter-cli.test.ts', // 186 s
  'test/finetune-checkpointing.test.ts', // 106 s on tfjs's cpu backend; about 6 s since it runs on wasm
  'test/finetune-cli.test.ts', // 47 s
  'test/guard-cli.test.ts', // 100 s at load 13: a CLI process per case, tiny-llama's 128k-row head
  'test/finetune-lora.test.ts', // 83 s on tfjs's cpu backend; about 11 s since it runs on wasm
  'test/finetune-qlora.test.ts', // 42 s
  'test/finetune-train.test.ts', // 142 s
  'test/finetune-dpo.test.ts', // 52-72 s at load 14 (about 16 s of CPU): DPO training runs, QLoRA and resume included
  'test/kernels-large.test.ts', // 93 s
  'test/kernels.test.ts', // 71 s
  'test/native-kernels.test.ts', // 24 s in the idle run of 2026-12-02: every kernel (18 formats, repacked layouts) × 4 ISA paths × 1 and 3 threads
  'test/native-model.test.ts', // 55 s: the fixtures on the native backend, and CLI processes with it switched off
  'test/native-calibrate.test.ts', // 36 s at load 9 (19 s of CPU): a whole AWQ layer on both paths, herd quantize with the addon on and off
  'test/quant-algorithms.test.ts', // 36 s in .ci/run's fast tier of 2026-12-02 at load ~2: AWQ's lone-linear groups now run each candidate through the layer runner's backend
  'test/kv-cache.test.ts', // 51 s
  'test/prompt.test.ts', // 114 s: a CLI process per case
  'test/remote-serve.test.ts', // 79 s: herd serve in a child process, the tiny model loaded twice
  'test/quant-engine.test.ts', // 131 s
  'test/quant-gguf-llama3.test.ts', // 137 s; 46 s in the run of 2026-12-02 (the reload on wasm)
  'test/quant-job.test.ts', // 220 s, of which 120 s the AWQ/GPTQ scorecard that then timed out (now smaller)
  'test/quant-gguf-mixes.test.ts', // 82 s: herd's mixes of the llama.cpp fixture model, block by block
  'test/gguf-chat.test.ts', // 32 s: a Llama 3.1 chat through a herd-written GGUF
  'test/json-contract.test.ts', // 27 s: every command's --json through the built CLI
  'test/generate-scripting.test.ts', // 24 s: generate as scripts run it, Ctrl-C included
  'test/serve-scheduler.test.ts', // 85 s at load 15 (21 s of CPU): batching on tfjs and on the kernels' worker threads
  'test/hub-cli.test.ts', // 55 s: models by name through the built CLI against the fake Hub
  'test/synth-cli.test.ts', // 34 s on a loaded machine: herd synth through the built CLI, a process per case
  'test/bench-compare.test.ts', // 10 s at load 6, 81 s at load 18: herd bench --compare's child processes on the small Q8_0 GGUF fixture and CLI runs
  'test/synth-pipeline.test.ts', // 19-31 s on a loaded machine (8 s of CPU): three pipeline runs on tiny-llama's 128k-entry head
];

const OPT_IN = '\\.shared\\.test\\.tsx?$';
const tier = process.env.HERD_TEST_TIER ?? 'full';
if (!['full', 'fast', 'shared'].includes(tier)) throw new Error(`HERD_TEST_TIER=${tier}: expected full, fast or shared`);

const escape = (file) => file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  ...(tier === 'shared' ? { testRegex: OPT_IN } : { testMatch: ['**/*.test.ts', '**/*.test.tsx'] }),
  testPathIgnorePatterns: [
    '/node_modules/',
    ...(tier === 'shared' ? [] : [OPT_IN]),
    ...(tier === 'fast' ? SLOW_SUITES.map((file) => `/${escape(file)}$`) : []),
  ],
  extensionsToTreatAsEsm: ['.ts', '.tsx'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { useESM: true }],
  },
  // The hang guard (test/hang-guard.ts), not a speed limit: a loaded machine may be many times
  // slower than an idle one. test/test-timeouts.test.ts keeps the two equal.
  testTimeout: 15 * 60 * 1000,
  // Both cores: most suites are one JavaScript thread, so two at a time roughly halve the run.
  maxWorkers: 2,
  reporters: [['<rootDir>/test/timing-reporter.js', { tier, slowSuites: SLOW_SUITES }], 'default'],
};
