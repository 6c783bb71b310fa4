// The shared fixtures on the native backend, run by scripts/test-neon.sh with an arm64 Node under
// qemu (the checks of test/native-model.test.ts, without jest, which is too slow emulated):
// tiny-llama-3.1's greedy ids and top-5 logprobs within 1e-3 of the oracle, stories260K's 40
// greedy tokens on 3 threads (and its last 28 from a prompt of the first 12), and native greedy
// tokens equal to the WASM kernels' on llama.cpp's Q8_0 and Q4_K_M files. The WASM kernels need
// Node 20 (relaxed SIMD), which the emulated Node may not be, so their tokens come from a file
// the host's Node writes first.
// Usage: node model-check.mjs ROOT KERNEL_TOKENS.json, ROOT a tree with dist/, build/ and
// test/fixtures/; when KERNEL_TOKENS.json is missing, this run computes the WASM kernels' tokens
// into it before checking its own native path.
import fs from 'node:fs';
import path from 'node:path';

const [root, kernelTokensFile] = [path.resolve(process.argv[2]), path.resolve(process.argv[3])];
const dist = (file) => import(path.join(root, 'dist', file));
const { loadModel } = await dist('backends/load.js');
const { generate } = await dist('engine/generate.js');
const { GREEDY } = await dist('engine/sampling.js');
const { requireNativeAddon } = await dist('native/addon.js');
const fixtures = path.join(root, 'test', 'fixtures');
const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));

const info = requireNativeAddon().info();
console.log(`native path ${info.isa} (${info.reason})`);
let failures = 0;
const expectThat = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
};

async function greedy(model, backend, promptIds, maxNewTokens, threads = 2) {
  const loaded = await loadModel(model, { backend, threads });
  const result = generate(loaded.model, loaded.tokenizer, { promptIds, maxNewTokens, sampling: GREEDY, stopTokenIds: [], stopStrings: [], topLogprobs: 5 });
  return { result, backend: loaded.model.backendName };
}

const tiny = path.join(fixtures, 'tiny-llama-3.1');
for (const c of readJson(path.join(tiny, 'reference.json')).cases) {
  const { result, backend } = await greedy(tiny, 'native', c.prompt_ids, 16);
  let worst = 0, sameIds = backend === 'native' && JSON.stringify(result.generatedIds) === JSON.stringify(c.generated_ids);
  result.tokens.forEach((token, step) =>
    token.top.forEach(([id, logprob], rank) => {
      const [expectedId, expectedLogprob] = c.steps[step].top[rank];
      sameIds &&= id === expectedId;
      worst = Math.max(worst, Math.abs(logprob - expectedLogprob));
    }),
  );
  expectThat(sameIds && worst < 1e-3, `tiny-llama-3.1 (BF16) on ${backend}: greedy and top-5 ids as the oracle, logprobs within ${worst.toExponential(1)} (< 1e-3)`);
}

const stories = path.join(fixtures, 'stories260K');
const storyReference = readJson(path.join(stories, 'reference.json')).generated_ids;
const storyTokens = (await greedy(stories, 'native', [1], 40, 3)).result.generatedIds;
expectThat(JSON.stringify(storyTokens) === JSON.stringify(storyReference), 'stories260K (F32) on 3 threads: the 40 reference tokens');
// Resumed from its first 12 tokens: a prompt of 3 tokens or more takes the F32 rows through gemm_f32, and greedy decoding must go on as the reference did.
const resumed = (await greedy(stories, 'native', [1, ...storyReference.slice(0, 12)], 28, 3)).result.generatedIds;
expectThat(JSON.stringify(resumed) === JSON.stringify(storyReference.slice(12)), 'stories260K (F32), a 13-token prompt (gemm_f32): the reference\'s last 28 tokens');

const gguf = path.join(fixtures, 'gguf-llamacpp');
const storyStart = readJson(path.join(gguf, 'reference.json')).cases.find((c) => c.name === 'story_start').prompt_ids;
const GGUF_FILES = ['model-Q8_0.gguf', 'model-Q4_K_M.gguf'];
if (!fs.existsSync(kernelTokensFile)) {
  const tokens = {};
  for (const file of GGUF_FILES) tokens[file] = (await greedy(path.join(gguf, file), 'kernels', storyStart, 16)).result.generatedIds;
  fs.writeFileSync(kernelTokensFile, JSON.stringify(tokens));
}
const kernelTokens = readJson(kernelTokensFile);
for (const file of GGUF_FILES) {
  const native = await greedy(path.join(gguf, file), 'native', storyStart, 16);
  expectThat(native.backend === 'native' && JSON.stringify(native.result.generatedIds) === JSON.stringify(kernelTokens[file]), `${file}: native greedy tokens equal the WASM kernels'`);
}
console.log(failures ? `${failures} FAILED` : 'all passed');
process.exit(failures ? 1 : 0);
