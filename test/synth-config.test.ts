import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GENERATOR_SAMPLING, modelLocation, parsePipeline, pipelineFromFlags } from '../src/synth/pipeline-config.js';
import { readInstructions } from '../src/synth/source.js';

// The pipeline description and the instructions source, checked without running a model.
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-synth-config-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const generator = { type: 'text_generation', model: 'models/a' };
const judge = { type: 'ultrafeedback', model: 'models/judge' };
const parse = (steps: object[], extra: object = {}) => parsePipeline({ source: { file: 'in.jsonl' }, steps, output: { dir: 'out' }, ...extra }, 'p.yaml', work);

describe('pipeline YAML', () => {
  test('defaults: paths relative to the file, overall-rating, lowest, margin 1, the template date, greedy judge', () => {
    const config = parse([generator, { type: 'combine_columns' }, judge, { type: 'preference_pairs' }]);
    expect(config.source).toEqual({ file: path.join(work, 'in.jsonl'), dataset: null, column: 'instruction' });
    expect(config.generators[0]).toMatchObject({ name: 'a', location: { kind: 'local', path: path.join(work, 'models/a') }, system: null, numGenerations: 1, sampling: { temperature: 0.7, maxNewTokens: 512 } });
    expect(config.judge).toMatchObject({ name: 'judge', aspect: 'overall-rating', sampling: { temperature: 0, maxNewTokens: 1024 } });
    expect(config.pairs).toEqual({ rejected: 'lowest', minMargin: 1 });
    expect(config).toMatchObject({ outputDir: path.join(work, 'out'), seed: 0, date: '2024-07-26', retries: 3 });
  });

  test('an endpoint model keeps its served name', () => {
    const config = parse([{ type: 'text_generation', endpoint: 'http://gpu1:8000/v1', model: 'meta-llama/Llama-3.1-70B-Instruct' }]);
    expect(config.generators[0]).toMatchObject({ name: 'meta-llama/Llama-3.1-70B-Instruct', location: { kind: 'endpoint', url: 'http://gpu1:8000/v1', model: 'meta-llama/Llama-3.1-70B-Instruct' } });
  });

  test.each([
    [[generator, { type: 'translate' }], {}, 'p.yaml: steps[1].type: unknown step "translate" (steps: text_generation, combine_columns, ultrafeedback, preference_pairs)'],
    [[{ ...generator, temprature: 1 }], {}, 'p.yaml: steps[0].temprature: unknown key (expected type, name, model, endpoint, sampling, max_concurrent_requests, system, num_generations)'],
    [[judge], {}, 'p.yaml: steps[0]: ultrafeedback needs a text_generation step before it'],
    [[generator, { type: 'preference_pairs' }], {}, 'p.yaml: steps[1]: preference_pairs needs an ultrafeedback step before it'],
    [[generator, judge, generator], {}, 'p.yaml: steps[2]: text_generation steps come before the ultrafeedback step'],
    [[generator, { ...judge, aspect: 'style' }], {}, 'p.yaml: steps[1].aspect: unknown aspect "style" (aspects: overall-rating, helpfulness, honesty, instruction-following, truthfulness)'],
    [[generator, generator], {}, 'p.yaml: steps: two generators are named "a": give each its own name'],
    [[{ ...generator, sampling: { top_p: 2 } }], {}, 'p.yaml: steps[0].sampling.top_p: expected a number from 0 to 1, got 2'],
    [[{ ...generator, num_generations: 1.5 }], {}, 'p.yaml: steps[0].num_generations: expected a whole number, got 1.5'],
    [[{ type: 'text_generation', endpoint: 'gpu1:8000', model: 'x' }], {}, 'p.yaml: steps[0].endpoint: "gpu1:8000" is not an http(s) URL'],
    [[generator], { date: '2024-02-30' }, 'p.yaml: date: expected a date as YYYY-MM-DD, got "2024-02-30"'],
    [[], {}, 'p.yaml: steps: the pipeline needs at least one text_generation step'],
  ])('%j %j → %s', (steps, extra, message) => {
    expect(() => parse(steps, extra)).toThrow(message);
  });

  test('flags: --dataset with --split, repeated --aspect (pairs by overall-rating when given), --format', () => {
    const config = pipelineFromFlags({
      instructions: { dataset: 'HuggingFaceH4/ultrafeedback_binarized', split: 'train_prefs' }, column: 'prompt', generators: ['models/a'], judge: 'models/judge',
      aspects: ['honesty', 'overall-rating', 'honesty'], numGenerations: 1, generatorSampling: GENERATOR_SAMPLING, judgeMaxNewTokens: 64, rejected: 'lowest', outputDir: 'out', outputFormat: 'parquet', seed: 0, retries: 0,
    });
    expect(config.source).toEqual({ file: null, dataset: { id: 'HuggingFaceH4/ultrafeedback_binarized', split: 'train_prefs', revision: 'main' }, column: 'prompt' });
    expect(config.judge).toMatchObject({ aspects: ['honesty', 'overall-rating'], aspect: 'overall-rating' });
    expect(config.outputFormat).toBe('parquet');
  });

  test('flags: MODEL@URL is a served model, a bare URL asks for the name', () => {
    expect(modelLocation('meta-llama/Llama-3.1-8B-Instruct@http://127.0.0.1:8000/v1')).toEqual({ kind: 'endpoint', model: 'meta-llama/Llama-3.1-8B-Instruct', url: 'http://127.0.0.1:8000/v1' });
    expect(() => modelLocation('http://127.0.0.1:8000/v1')).toThrow('http://127.0.0.1:8000/v1: name the served model as MODEL@http://127.0.0.1:8000/v1');
  });
});

describe('instructions source', () => {
  test('csv with quoted commas; exact duplicates dropped (first kept); --limit after deduplication', async () => {
    const file = path.join(work, 'in.csv');
    fs.writeFileSync(file, 'id,instruction\n1,"Name red, green and blue."\n2,Say hi.\n3,"Name red, green and blue."\n4,Say hi!\n');
    const all = await readInstructions([file], 'instruction', undefined);
    expect(all.instructions.map((i) => [i.text, i.sourceRow])).toEqual([['Name red, green and blue.', 1], ['Say hi.', 2], ['Say hi!', 4]]);
    expect([all.rowsRead, all.duplicatesDropped]).toEqual([4, 1]);
    expect((await readInstructions([file], 'instruction', 2)).instructions.map((i) => i.text)).toEqual(['Name red, green and blue.', 'Say hi.']);
  });

  test('a json array; a missing column, an empty instruction and a hub id given as a file are one line each', async () => {
    const file = path.join(work, 'in.json');
    fs.writeFileSync(file, JSON.stringify([{ instruction: 'A.' }, { prompt: 'B.' }]));
    await expect(readInstructions([file], 'instruction', undefined)).rejects.toThrow(`${file}: row 2: no column "instruction" (columns: prompt)`);
    fs.writeFileSync(file, JSON.stringify([{ instruction: '  ' }]));
    await expect(readInstructions([file], 'instruction', undefined)).rejects.toThrow(`${file}: row 1: column "instruction" is not a non-empty string`);
    await expect(readInstructions(['HuggingFaceH4/ultrafeedback'], 'instruction', undefined)).rejects.toThrow('(a Hub dataset is source.dataset in a pipeline file, or --dataset)');
  });
});
