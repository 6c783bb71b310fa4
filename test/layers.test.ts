import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The layers of herd, bottom up: the Llama spec → file formats → the engine → features →
 * commands. A lower layer never imports a higher one. This checks every relative import in src/.
 */
const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src');

/** What each folder may import besides itself and src/errors.ts. */
const ALLOWED: Record<string, readonly string[]> = {
  spec: [],
  formats: ['spec'],
  // The safety classifiers run on the engine's tokenizer and on tfjs (backends/) and read weights through formats/.
  guard: ['spec', 'formats', 'engine', 'backends'],
  // The Hugging Face cache and downloads: names, files and bytes, no model code.
  hub: ['spec', 'formats'],
  // The remote backend sits beneath the same chat loop and eval runner as the engine: it implements their interfaces.
  remote: ['spec', 'formats', 'engine', 'templates', 'chat', 'eval'],
  // herd synth runs models through the engine (batched by serve/'s scheduler) or remote/'s client,
  // prompts through the chat templates, and reads its instructions with eval's table readers.
  synth: ['spec', 'formats', 'engine', 'templates', 'eval', 'remote', 'serve', 'hub'],
  // The backends (tfjs, the WASM kernels, the native kernels) sit above the engine and the kernels:
  // each describes itself to the registry, which chooses one for a model and starts it.
  backends: ['spec', 'formats', 'engine', 'kernels', 'native'],
};

/** Folders a folder must never import. */
const FORBIDDEN: Record<string, readonly string[]> = {
  // The engine computes on whatever Ops it is given: it never reaches for a backend.
  engine: ['quant', 'train', 'eval', 'chat', 'tui', 'memory', 'commands', 'cli', 'bench', 'serve', 'hub', 'remote', 'backends', 'kernels', 'native'],
  // The serving engine (scheduler, prefix cache) sits on the engine; the engine and kernels never import it.
  kernels: ['serve', 'backends'],
  // chat/ and eval/ define the interfaces remote/ implements; they never reach for it.
  // The server (src/serve) is a feature: it renders chats with src/chat and runs the engine; only
  // commands use it, and synth/, which batches local models through its scheduler.
  chat: ['remote', 'serve'],
  eval: ['remote', 'serve'],
  cli: ['serve'],
  // The native C kernels sit beside the WASM kernels: the backends' registry imports them.
  native: ['serve', 'quant', 'train', 'eval', 'chat', 'tui', 'memory', 'commands', 'cli', 'bench', 'backends'],
};

interface Import {
  from: string;
  to: string;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'assembly' ? [] : sourceFiles(full);
    return /\.tsx?$/.test(entry.name) ? [full] : [];
  });
}

/** Relative imports of a file's text, as paths relative to src/. */
function importsOf(file: string, text: string): Import[] {
  const from = path.relative(SRC, file);
  return [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((match) => ({
    from,
    to: path.relative(SRC, path.resolve(path.dirname(file), match[1]!)),
  }));
}

function folderOf(relative: string): string {
  return relative.includes(path.sep) ? relative.split(path.sep)[0]! : '';
}

/** Every import that breaks the layer rules, as "from → to". */
function violations(imports: readonly Import[]): string[] {
  return imports
    .filter(({ from, to }) => {
      const source = folderOf(from);
      const target = folderOf(to);
      if (target === source || to.replace(/\.js$/, '') === 'errors') return false;
      const allowed = ALLOWED[source];
      if (allowed) return !allowed.includes(target);
      return FORBIDDEN[source]?.includes(target) ?? false;
    })
    .map(({ from, to }) => `${from} → ${to}`);
}

describe('layers', () => {
  test('no file in src imports a layer above its own', () => {
    const imports = sourceFiles(SRC).flatMap((file) => importsOf(file, fs.readFileSync(file, 'utf8')));
    expect(imports.length).toBeGreaterThan(200);
    expect(violations(imports)).toEqual([]);
  });

  // guard/ is a feature beside chat/ and serve/: the commands wire its shields into them (chat/ declares
  // the Shield it calls, guard/ fulfils it), so only commands/ and cli/ import guard/.
  test('only commands/ and cli/ import guard/', () => {
    const imports = sourceFiles(SRC).flatMap((file) => importsOf(file, fs.readFileSync(file, 'utf8')));
    const outside = imports.filter(({ from, to }) => folderOf(to) === 'guard' && !['guard', 'commands', 'cli'].includes(folderOf(from)));
    expect(outside.map(({ from, to }) => `${from} → ${to}`)).toEqual([]);
  });

  test('the rule catches the engine importing quant/ or train/, and formats/ importing the engine', () => {
    const fake = (from: string, source: string) => importsOf(path.join(SRC, from), source);
    expect(violations([
      ...fake('engine/load.ts', "import { quantize } from '../quant/job.js';"),
      ...fake('engine/model.ts', "import { LoraPair } from '../train/lora.js';"),
      ...fake('formats/gguf.ts', "import type { Ops } from '../engine/ops.js';"),
      ...fake('spec/tensors.ts', "import { readGgufHeader } from '../formats/gguf.js';"),
      ...fake('formats/gguf-llama.ts', "import { ggufNameOf } from '../spec/tensors.js';"),
      ...fake('engine/load.ts', "import { GgufWeights } from '../formats/gguf-llama.js';"),
      ...fake('guard/deberta.ts', "import { readFloatTensor } from '../formats/safetensors.js';"),
      ...fake('guard/prompt-guard.ts', "import { ChatSession } from '../chat/session.js';"),
    ])).toEqual([
      `${path.join('engine', 'load.ts')} → ${path.join('quant', 'job.js')}`,
      `${path.join('engine', 'model.ts')} → ${path.join('train', 'lora.js')}`,
      `${path.join('formats', 'gguf.ts')} → ${path.join('engine', 'ops.js')}`,
      `${path.join('spec', 'tensors.ts')} → ${path.join('formats', 'gguf.js')}`,
      `${path.join('guard', 'prompt-guard.ts')} → ${path.join('chat', 'session.js')}`,
    ]);
  });

  test('the rule catches the engine reaching for a backend, the kernels for the registry, and the registry for a feature', () => {
    const fake = (from: string, source: string) => importsOf(path.join(SRC, from), source);
    expect(violations([
      ...fake('engine/load.ts', "import { chooseBackend } from '../backends/registry.js';"),
      ...fake('engine/model.ts', "import { KernelOps } from '../kernels/wasm-ops.js';"),
      ...fake('engine/generate.ts', "import { NativeOps } from '../native/native-ops.js';"),
      ...fake('kernels/wasm-ops.ts', "import { KERNELS } from '../backends/kernels.js';"),
      ...fake('native/native-ops.ts', "import type { Backend } from '../backends/backend.js';"),
      ...fake('backends/registry.ts', "import { modelFlags } from '../cli/flags.js';"),
      ...fake('backends/load.ts', "import { openModel } from '../engine/load.js';"),
      ...fake('backends/native.ts', "import { NativeOps } from '../native/native-ops.js';"),
      ...fake('quant/job.ts', "import { activateBackend } from '../backends/registry.js';"),
    ])).toEqual([
      `${path.join('engine', 'load.ts')} → ${path.join('backends', 'registry.js')}`,
      `${path.join('engine', 'model.ts')} → ${path.join('kernels', 'wasm-ops.js')}`,
      `${path.join('engine', 'generate.ts')} → ${path.join('native', 'native-ops.js')}`,
      `${path.join('kernels', 'wasm-ops.ts')} → ${path.join('backends', 'kernels.js')}`,
      `${path.join('native', 'native-ops.ts')} → ${path.join('backends', 'backend.js')}`,
      `${path.join('backends', 'registry.ts')} → ${path.join('cli', 'flags.js')}`,
    ]);
  });

  // tfjs is one backend among three: its Ops and its packages live in src/backends/ (and in the
  // features that need autodiff or run Prompt Guard), never in the engine.
  test('the engine imports no tfjs package', () => {
    const engineFiles = sourceFiles(path.join(SRC, 'engine'));
    const tfjsImports = engineFiles.filter((file) => /from\s*'@tensorflow\/|import\(\s*'@tensorflow\//.test(fs.readFileSync(file, 'utf8')));
    expect(engineFiles.length).toBeGreaterThan(5);
    expect(tfjsImports.map((file) => path.relative(SRC, file))).toEqual([]);
  });
});
