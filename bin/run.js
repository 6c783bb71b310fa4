#!/usr/bin/env node
import v8 from 'node:v8';

// glibc gives each thread that first mallocs an arena of its own, and keeps the pages a side
// arena once used resident. The native addon limits malloc to one arena when it loads
// (src/native/addon.c); loaded only when a backend is chosen, it came after Node's worker threads
// had made their arenas while the GGUF header was read and the tokenizer built, 5-10 MiB of the
// 1B shape's peak RSS (docs/performance.md, "Third pass"). Loaded here, before anything else
// runs, through the one loader the commands use (it caches the addon, or why there is none, and
// HERD_NATIVE=0 keeps it unloaded); a bad HERD_CPU_ISA is left for the command to report.
const { loadNativeAddon } = await import('../dist/native/addon.js');
try {
  loadNativeAddon();
} catch {
  // The command that needs the kernels says why.
}

// V8 doubles its young generation (up to two 16 MB semi-spaces) while a model's tokenizer is
// built, and keeps it for the rest of the run: about 30 MB of RSS beside the weights. Kept at its
// first size, collections come more often: a model load took about 0.2 s more CPU time on the
// 1B shape, prefill and decode no more (docs/performance.md, "Peak RSS of a native load").
v8.setFlagsFromString('--semi-space-growth-factor=1');

// @oclif/core checks the Node version against its own engines (>=18) when imported, through the
// semver package: 47 modules and about 2 MiB of RSS for the rest of the run. herd needs Node 20,
// a stricter bound, checked here without semver; the variable is unset again so that processes
// herd starts (llama.cpp, a server under load) do not inherit it.
const NODE_MAJOR_NEEDED = 20;
if (Number(process.versions.node.split('.')[0]) < NODE_MAJOR_NEEDED) {
  process.emitWarning(`herd needs Node ${NODE_MAJOR_NEEDED} or later; this is Node ${process.versions.node}.`);
}
const inherited = process.env.OCLIF_DISABLE_ENGINE_WARNING;
process.env.OCLIF_DISABLE_ENGINE_WARNING = 'true';
const { execute } = await import('@oclif/core');
if (inherited === undefined) delete process.env.OCLIF_DISABLE_ENGINE_WARNING;
else process.env.OCLIF_DISABLE_ENGINE_WARNING = inherited;

// The config loaded without building ICU's collator (2.8 MiB of RSS; src/cli/oclif-config.ts).
const { loadOclifConfig } = await import('../dist/cli/oclif-config.js');
await execute({ loadOptions: await loadOclifConfig(import.meta.url) });
