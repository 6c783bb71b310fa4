import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { attachModel } from '../src/serve/start.js';
import { HerdServer } from '../src/serve/server.js';
import { BatchedLocalChatModel } from '../src/synth/batched-model.js';
import type { ChatModel, ChatRequest } from '../src/synth/chat-model.js';
import { openModels } from '../src/synth/open-models.js';
import { parsePipeline } from '../src/synth/pipeline-config.js';
import { runPipeline } from '../src/synth/pipeline.js';
import { TINY_LLAMA } from './fixtures.js';

/**
 * The same herd synth pipeline run on a local model, on the same model batched through herd
 * serve's scheduler, and against `herd serve` serving it gives the same file: the scheduler's
 * sampling and the served chat template and per-request seeds are the local ones. herd serve
 * renders with today's date, so every run takes today as the template's date.
 */
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-synth-serve-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const instructionsFile = path.join(work, 'instructions.jsonl');
fs.writeFileSync(instructionsFile, ['Say hello.', 'Name a river.'].map((instruction) => JSON.stringify({ instruction })).join('\n') + '\n');

/** Rates the first text above the second, whatever they say. */
const judge: ChatModel = { name: 'judge', complete: async (_: ChatRequest) => '#### Output for Text 1\nRating: 4\nRationale: A.\n\n#### Output for Text 2\nRating: 2\nRationale: B.\n\n#### Output for Text 3\nRating: 3\nRationale: C.' };

const today = new Date();
const TODAY = `${today.getFullYear()}-${String(today.getMonth() + 1).padStart(2, '0')}-${String(today.getDate()).padStart(2, '0')}`;

function pipeline(outputDir: string, where: (name: string) => object) {
  return parsePipeline({
    source: { file: instructionsFile },
    seed: 3,
    date: TODAY,
    steps: [
      { type: 'text_generation', name: 'sampled', system: 'Answer briefly.', num_generations: 2, sampling: { temperature: 1, top_k: 20, max_new_tokens: 3 }, ...where('sampled') },
      { type: 'text_generation', name: 'greedy', sampling: { temperature: 0, max_new_tokens: 3 }, ...where('greedy') },
      { type: 'ultrafeedback', name: 'judge', model: 'scripted' },
      { type: 'preference_pairs' },
    ],
    output: { dir: outputDir },
  }, 'pipeline.yaml', work);
}

let tiny: LoadedModel;
beforeAll(async () => {
  tiny = await loadModel(TINY_LLAMA, { backend: 'wasm' });
});

test('a local run one request at a time, a batched local run and a run against herd serve write the same synth.jsonl', async () => {
  const local = pipeline(path.join(work, 'local'), () => ({ model: TINY_LLAMA }));
  const localModels = await openModels({ ...local, judge: null }, async () => tiny);
  const localRun = await runPipeline(local, { generators: localModels.generators, judge });

  // Three sequences at once through herd serve's scheduler, in this process.
  const batched = pipeline(path.join(work, 'batched'), () => ({ model: TINY_LLAMA, max_concurrent_requests: 3 }));
  const batchedModels = await openModels({ ...batched, judge: null }, async () => tiny);
  expect(batchedModels.generators.map((model) => model.constructor)).toEqual([BatchedLocalChatModel, BatchedLocalChatModel]);
  try {
    const batchedRun = await runPipeline(batched, { generators: batchedModels.generators, judge });
    expect(fs.readFileSync(batchedRun.files.rows!, 'utf8')).toBe(fs.readFileSync(localRun.files.rows!, 'utf8'));
  } finally {
    await batchedModels.close();
  }

  const server = new HerdServer({ maxBodyBytes: 1 << 20, timeoutSeconds: null });
  const url = await server.listen(0, '127.0.0.1');
  const { modelId } = attachModel(server, tiny, { host: '127.0.0.1', port: 0, maxBodyBytes: 1 << 20, timeoutSeconds: null, scheduler: { parallel: 2, maxQueue: 16, contextLength: 512, prefixCacheBytes: 0 } });
  try {
    const served = pipeline(path.join(work, 'served'), () => ({ model: modelId, endpoint: `${url}/v1`, max_concurrent_requests: 2 }));
    const servedModels = await openModels({ ...served, judge: null }, async () => Promise.reject(new Error('nothing loads locally')));
    const servedRun = await runPipeline(served, { generators: servedModels.generators, judge });
    expect(servedRun.counts.rows).toBe(2);
    // Each sampled answer has its own seed on the server too: a row's two samples differ.
    const rows = fs.readFileSync(servedRun.files.rows!, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line) as { generations: string[] });
    expect(rows.every((row) => row.generations[0] !== row.generations[1])).toBe(true);
    expect(fs.readFileSync(servedRun.files.rows!, 'utf8')).toBe(fs.readFileSync(localRun.files.rows!, 'utf8'));
  } finally {
    await server.shutdown(0);
  }
});
