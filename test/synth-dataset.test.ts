import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { splitDataFiles } from '../src/hub/dataset.js';
import type { ChatModel, ChatRequest } from '../src/synth/chat-model.js';
import { parsePipeline } from '../src/synth/pipeline-config.js';
import { runPipeline } from '../src/synth/pipeline.js';
import { fakeHubSuite, type FakeHub, type FakeFile } from './fake-hub.js';

/**
 * A Hub dataset id as herd synth's source: the split's data files are downloaded from the fake
 * Hub into the cache's datasets--org--name layout and the rows are read from them; offline, the
 * cache alone serves them. The generator is scripted (no model is loaded).
 */
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-synth-dataset-'));
const DATASET = 'herd-test/prompts';

const parquet = (name: string, prompts: string[]): FakeFile => ({
  path: name,
  content: Buffer.from(parquetWriteBuffer({ columnData: [{ name: 'prompt', data: prompts, type: 'STRING' }] })),
  lfs: true,
});
const FILES: FakeFile[] = [
  { path: 'README.md', content: Buffer.from('# prompts\n'), lfs: false },
  parquet('data/train-00000-of-00002.parquet', ['Say hi.', 'Name a colour.']),
  parquet('data/train-00001-of-00002.parquet', ['Name a tree.', 'Say hi.']),
  parquet('data/test-00000-of-00001.parquet', ['Held out.']),
  { path: 'data/train_prefs-00000-of-00001.jsonl', content: Buffer.from('{"prompt": "Pick one."}\n'), lfs: false },
];

let hub: FakeHub;
let commit: string;
const suite = fakeHubSuite(work, (fake) => {
  hub = fake;
  commit = fake.addRepo(`datasets/${DATASET}`, FILES);
});

/** Answers "<instruction> (answered)": the rows show which instructions were read, in order. */
const echo: ChatModel = { name: 'echo', complete: async (request: ChatRequest) => `${request.user} (answered)` };

function pipeline(name: string, source: object) {
  return parsePipeline({ source: { column: 'prompt', ...source }, steps: [{ type: 'text_generation', name: 'echo', model: 'echo' }], output: { dir: path.join(work, name) } }, 'p.yaml', work);
}

async function instructionsOf(name: string, source: object, env: NodeJS.ProcessEnv): Promise<string[]> {
  const result = await runPipeline(pipeline(name, source), { generators: [echo], judge: null }, { env });
  return fs.readFileSync(result.files.rows!, 'utf8').trimEnd().split('\n').map((line) => (JSON.parse(line) as { instruction: string }).instruction);
}

describe('herd synth with a Hub dataset as the source', () => {
  test("the split's shards are downloaded into datasets--org--name and read in order; offline, the cache serves them", async () => {
    const { cache, env } = suite.cacheEnv();
    expect(await instructionsOf('online', { dataset: DATASET, split: 'train' }, env)).toEqual(['Say hi.', 'Name a colour.', 'Name a tree.']);
    const resolved = hub.requests.filter((r) => r.kind === 'resolve').map((r) => r.url.replace(/^https?:\/\/[^/]+/, ''));
    expect(resolved.sort()).toEqual([`/datasets/${DATASET}/resolve/${commit}/data/train-00000-of-00002.parquet`, `/datasets/${DATASET}/resolve/${commit}/data/train-00001-of-00002.parquet`]);
    const repoDir = path.join(cache, 'datasets--herd-test--prompts');
    expect(fs.readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8')).toBe(commit);
    expect(fs.readdirSync(path.join(repoDir, 'snapshots', commit, 'data')).sort()).toEqual(['train-00000-of-00002.parquet', 'train-00001-of-00002.parquet']);
    expect(fs.readFileSync(path.join(repoDir, 'snapshots', commit, 'data', 'train-00000-of-00002.parquet'))).toEqual(FILES[1]!.content);

    hub.resetCounts();
    expect(await instructionsOf('offline', { dataset: DATASET, split: 'train' }, { ...env, HF_HUB_OFFLINE: '1' })).toEqual(['Say hi.', 'Name a colour.', 'Name a tree.']);
    expect(hub.requests).toEqual([]);
  });

  test('a split named like another (train_prefs beside train) takes only its own files', async () => {
    const { env } = suite.cacheEnv();
    expect(await instructionsOf('prefs', { dataset: DATASET, split: 'train_prefs' }, env)).toEqual(['Pick one.']);
  });

  test('an unknown split, an uncached offline dataset and a bad id are one line each', async () => {
    const { env } = suite.cacheEnv();
    await expect(instructionsOf('bad-split', { dataset: DATASET, split: 'validation' }, env)).rejects.toThrow(
      `dataset ${DATASET}@main: no data files for split "validation" (data files: data/test-00000-of-00001.parquet, data/train-00000-of-00002.parquet, data/train-00001-of-00002.parquet, data/train_prefs-00000-of-00001.jsonl)`,
    );
    await expect(instructionsOf('offline-empty', { dataset: DATASET }, { ...env, HF_HUB_OFFLINE: '1' })).rejects.toThrow(`HF_HUB_OFFLINE is set and dataset ${DATASET}@main has no split "train" in the cache`);
    expect(() => pipeline('bad-id', { dataset: 'prompts' })).toThrow('p.yaml: source.dataset: "prompts" is not a Hub dataset id (org/name)');
    expect(() => pipeline('both', { dataset: DATASET, file: 'in.jsonl' })).toThrow('p.yaml: source: give file (a local file) or dataset (a Hub dataset id), one of the two');
  });

  test('split files by name, as datasets finds them; parquet first', () => {
    const paths = ['train.jsonl', 'data/train-00000.parquet', 'data/train_sft-0.parquet', 'valid/part-0.csv', 'pretrain.jsonl', 'README.md'];
    expect(splitDataFiles(paths, 'train')).toEqual(['data/train-00000.parquet']);
    expect(splitDataFiles(paths.filter((p) => p.endsWith('.jsonl')), 'train')).toEqual(['train.jsonl']);
    expect(splitDataFiles(paths, 'valid')).toEqual(['valid/part-0.csv']);
    expect(splitDataFiles(paths, 'test')).toEqual([]);
  });
});
