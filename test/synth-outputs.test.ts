import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import type { ChatModel, ChatRequest } from '../src/synth/chat-model.js';
import { parsePipeline } from '../src/synth/pipeline-config.js';
import { runPipeline } from '../src/synth/pipeline.js';

/**
 * The outputs of scripted runs (no model is loaded). Several UltraFeedback aspects in one run: the judge is asked once per aspect, each aspect's
 * ratings land in its own columns, and the pairs follow one aspect (overall-rating when judged,
 * else the first listed, or the one preference_pairs names). The generators and the judge are
 * scripted, so every expected rating below is read off the replies by hand. Parquet output:
 * read back with hyparquet, the same records as the jsonl files.
 */
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-synth-aspects-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const instructionsFile = path.join(work, 'instructions.jsonl');
fs.writeFileSync(instructionsFile, ['Name a fruit.', 'Name a tree.'].map((instruction) => JSON.stringify({ instruction })).join('\n') + '\n');

/** Answers "<name>: <instruction>", the same every time. */
const generator = (name: string): ChatModel => ({ name, complete: async (request: ChatRequest) => `${name}: ${request.user}` });

const typed = (n: number, rating: string) => `#### Output for Text ${n}\nType: 1, 2\nRationale: Relevant.\nRating: ${rating}\nRationale: Helpful ${rating}.`;
const plain = (n: number, rating: string) => `#### Output for Text ${n}\nRating: ${rating}\nRationale: Plain ${rating}.`;
/** Per aspect (told apart by the rubric's title), the reply: helpfulness prefers text 1, honesty text 2, overall text 1 with a malformed second rating. */
const REPLIES: Array<[string, string, Array<number | null>]> = [
  ['# Informativeness / Helpfulness Assessment', `${typed(1, '5')}\n\n${typed(2, '2')}`, [5, 2]],
  ['# Honesty and Uncertainty Expression Assessment', `${plain(1, '1')}\n\n${plain(2, '4')}`, [1, 4]],
  ['# General Text Quality Assessment', `${plain(1, '3')}\n\n${plain(2, '3.5')}`, [3, null]],
];

class AspectJudge implements ChatModel {
  readonly name = 'judge';
  readonly rubrics: string[] = [];

  async complete(request: ChatRequest): Promise<string> {
    const [rubric, reply] = REPLIES.find(([title]) => request.user.startsWith(`${title}\n`))!;
    this.rubrics.push(rubric);
    return reply;
  }
}

function pipeline(name: string, judgeStep: object, pairStep: object = {}, format = 'jsonl') {
  return parsePipeline({
    source: { file: instructionsFile },
    steps: [
      { type: 'text_generation', name: 'a', model: 'a' },
      { type: 'text_generation', name: 'b', model: 'b' },
      { type: 'ultrafeedback', name: 'judge', model: 'judge', ...judgeStep },
      { type: 'preference_pairs', ...pairStep },
    ],
    output: { dir: path.join(work, name), format },
  }, 'p.yaml', work);
}

const readLines = (file: string) => fs.readFileSync(file, 'utf8').trimEnd().split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
const readParquet = async (file: string) => parquetReadObjects({ file: await asyncBufferFromFile(file) });

async function run(name: string, judgeStep: object, pairStep: object = {}, format = 'jsonl') {
  const judge = new AspectJudge();
  const result = await runPipeline(pipeline(name, judgeStep, pairStep, format), { generators: [generator('a'), generator('b')], judge });
  const rows = result.files.rows === null ? [] : readLines(result.files.rows);
  return { rows, files: result.files, counts: result.counts, judge, card: JSON.parse(fs.readFileSync(result.files.card, 'utf8')) };
}

describe('herd synth with several aspects', () => {
  test('each aspect is judged and kept in its own columns; pairs follow the first aspect without overall-rating', async () => {
    const { rows, counts, judge, card } = await run('two', { aspects: ['helpfulness', 'honesty'] });
    expect(judge.rubrics).toEqual(['# Informativeness / Helpfulness Assessment', '# Honesty and Uncertainty Expression Assessment', '# Informativeness / Helpfulness Assessment', '# Honesty and Uncertainty Expression Assessment']);
    for (const row of rows) {
      expect(row).toMatchObject({
        ratings_helpfulness: [5, 2],
        rationales_helpfulness: ['Helpful 5.', 'Helpful 2.'],
        raw_judge_output_helpfulness: REPLIES[0]![1],
        ratings_honesty: [1, 4],
        rationales_honesty: ['Plain 1.', 'Plain 4.'],
        raw_judge_output_honesty: REPLIES[1]![1],
        // ratings/rationales are the pair aspect's, as one UltraFeedback step writes them.
        ratings: [5, 2],
        rationales: ['Helpful 5.', 'Helpful 2.'],
        raw_judge_output: REPLIES[0]![1],
        chosen_model: 'a',
        rejected_model: 'b',
        chosen_rating: 5,
        rejected_rating: 2,
      });
    }
    expect([counts.ratings, counts.missing_ratings, counts.pairs]).toEqual([8, 0, 2]);
    expect(card.judge).toMatchObject({ aspect: 'helpfulness', aspects: ['helpfulness', 'honesty'] });
    expect(Object.keys(card.judge.user_prompt_templates)).toEqual(['helpfulness', 'honesty']);
  });

  test('preference_pairs.aspect picks the aspect that chooses', async () => {
    const { rows } = await run('by-honesty', { aspects: ['helpfulness', 'honesty'] }, { aspect: 'honesty' });
    expect(rows.map((row) => [row.chosen_model, row.rejected_model, row.chosen_rating, row.rejected_rating])).toEqual([['b', 'a', 4, 1], ['b', 'a', 4, 1]]);
    expect(rows[0]!.ratings).toEqual([1, 4]);
  });

  test('overall-rating leads when it is judged; its missing rating leaves too few for a pair, counted over all aspects', async () => {
    const { rows, counts } = await run('with-overall', { aspects: ['honesty', 'overall-rating'] });
    expect(rows[0]).toMatchObject({ ratings: [3, null], ratings_overall_rating: [3, null], ratings_honesty: [1, 4], pair_dropped: 'too-few-ratings' });
    expect([counts.ratings, counts.missing_ratings, counts.pairs]).toEqual([6, 2, 0]);
  });

  test('one aspect keeps the single-step columns only', async () => {
    const { rows } = await run('one', { aspect: 'honesty' });
    expect(Object.keys(rows[0]!).filter((key) => key.startsWith('ratings'))).toEqual(['ratings']);
    expect(rows[0]!.ratings).toEqual([1, 4]);
  });

  test.each([
    [{ aspects: ['honesty', 'style'] }, {}, 'p.yaml: steps[2].aspects: unknown aspect "style"'],
    [{ aspects: ['honesty', 'honesty'] }, {}, 'p.yaml: steps[2].aspects: an aspect is listed twice'],
    [{ aspects: [] }, {}, 'p.yaml: steps[2].aspects: expected at least one aspect'],
    [{ aspect: 'honesty', aspects: ['honesty'] }, {}, 'p.yaml: steps[2]: give aspect (one) or aspects (a list), not both'],
    [{ aspects: ['honesty'] }, { aspect: 'helpfulness' }, 'p.yaml: steps[3].aspect: "helpfulness" is not an aspect the judge rates (honesty)'],
  ])('bad aspects %j %j: one line', (judgeStep, pairStep, message) => {
    expect(() => pipeline('bad', judgeStep, pairStep)).toThrow(message);
  });
});

describe('herd synth parquet output', () => {
  test('format both: synth.parquet and preferences.parquet read back as the jsonl records, nested lists and nulls included', async () => {
    const { rows, files } = await run('both', { aspects: ['overall-rating', 'helpfulness'] }, { aspect: 'helpfulness' }, 'both');
    expect(files).toMatchObject({ rows_parquet: path.join(work, 'both', 'synth.parquet'), preferences_parquet: path.join(work, 'both', 'preferences.parquet') });
    // The scripted values, not only a round trip: a null element in a list<int32>, messages as structs.
    expect(rows[0]).toMatchObject({ ratings_overall_rating: [3, null], ratings: [5, 2], chosen: [{ role: 'user', content: 'Name a fruit.' }, { role: 'assistant', content: 'a: Name a fruit.' }] });
    expect(await readParquet(files.rows_parquet!)).toEqual(rows);
    const preferences = readLines(files.preferences!);
    expect(preferences).toHaveLength(2);
    expect(await readParquet(files.preferences_parquet!)).toEqual(preferences);
  });

  test('format parquet: no jsonl, and a run without pairs writes an empty preferences.parquet', async () => {
    const { files } = await run('parquet-only', { aspect: 'overall-rating' }, {}, 'parquet');
    expect([files.rows, files.preferences]).toEqual([null, null]);
    expect(fs.readdirSync(path.join(work, 'parquet-only')).sort()).toEqual(['preferences.parquet', 'run-card.json', 'synth.parquet']);
    const rows = await readParquet(files.rows_parquet!);
    expect(rows.map((row) => [row.instruction, row.ratings, row.pair_dropped, row.chosen])).toEqual([['Name a fruit.', [3, null], 'too-few-ratings', null], ['Name a tree.', [3, null], 'too-few-ratings', null]]);
    expect(await readParquet(files.preferences_parquet!)).toEqual([]);
  });

  test('an unknown format is one line', () => {
    expect(() => pipeline('bad', {}, {}, 'csv')).toThrow('p.yaml: output.format: expected jsonl, parquet, both, got "csv"');
  });
});
