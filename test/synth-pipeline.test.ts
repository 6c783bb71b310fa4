import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { generate } from '../src/engine/generate.js';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { GREEDY } from '../src/engine/sampling.js';
import { HerdError, HerdInterrupted } from '../src/errors.js';
import type { ChatModel, ChatRequest } from '../src/synth/chat-model.js';
import { LocalChatModel } from '../src/synth/chat-model.js';
import { renderConversation } from '../src/chat/render.js';
import { openModels } from '../src/synth/open-models.js';
import { parsePipeline, templateDate, type PipelineConfig } from '../src/synth/pipeline-config.js';
import { runPipeline, type PipelineModels, type SynthRow } from '../src/synth/pipeline.js';
import { STORIES, TINY_LLAMA } from './fixtures.js';

/**
 * A pipeline over 20 instructions (22 rows: two exact duplicates) with two local tiny generators
 * (stories260K twice per instruction, sampled; tiny-llama-3.1 once, greedy, through its chat
 * template with a system prompt) and a scripted judge
 * whose replies cycle through ten patterns, well-formed and malformed. Every expected rating and
 * pair below is read off the scripted reply by hand.
 */
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-synth-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const TOPICS = ['rain', 'cats', 'bread', 'rivers', 'stars', 'shoes', 'clocks', 'honey', 'maps', 'salt', 'kites', 'moss', 'bells', 'ink', 'wolves', 'glass', 'tea', 'snow', 'owls', 'sand'];
const INSTRUCTIONS = TOPICS.map((topic) => `Write one sentence about ${topic}.`);
// Rows 6 and 15 repeat earlier instructions exactly: they are dropped, the first kept.
const SOURCE_ROWS = [...INSTRUCTIONS.slice(0, 5), INSTRUCTIONS[1]!, ...INSTRUCTIONS.slice(5, 13), INSTRUCTIONS[12]!, ...INSTRUCTIONS.slice(13)];
const instructionsFile = path.join(work, 'instructions.jsonl');
fs.writeFileSync(instructionsFile, SOURCE_ROWS.map((instruction, i) => JSON.stringify({ id: i, instruction })).join('\n') + '\n');

const section = (n: number, rating: string, rationale: string) => `#### Output for Text ${n}\nRating: ${rating}\nRationale: ${rationale}`;
const sections = (...parts: string[]) => parts.join('\n\n');

/** Reply, expected ratings, expected pair (indices into the three generations) or why none. */
const PATTERNS: Array<{ reply: string; ratings: Array<number | null>; pair: [number, number] | 'tie' | 'too-few-ratings' }> = [
  { reply: sections(section(1, '5', 'Best.'), section(2, '3', 'Fair.'), section(3, '1', 'Off topic.')), ratings: [5, 3, 1], pair: [0, 2] },
  { reply: 'Rating: 2\nRationale: Vague.\n\nRating: 4\nRationale: Good.\n\nRating: 3\nRationale: Plain.', ratings: [2, 4, 3], pair: [1, 0] },
  { reply: sections(section(1, '4.5', 'Almost.'), section(2, '2', 'Weak.'), section(3, '5', 'Great.')), ratings: [null, 2, 5], pair: [2, 1] },
  { reply: sections(section(1, '3', 'Same.'), section(2, '3', 'Same.'), section(3, '3', 'Same.')), ratings: [3, 3, 3], pair: 'tie' },
  { reply: 'I cannot rate these texts.', ratings: [null, null, null], pair: 'too-few-ratings' },
  { reply: sections(section(1, '4', 'Good.'), section(2, '4', 'Good too.'), section(3, '2', 'Poor.')), ratings: [4, 4, 2], pair: [0, 2] },
  { reply: sections(section(1, '1', 'Wrong.'), section(2, 'four', 'Words.'), section(3, '5', 'Right.')), ratings: [1, null, 5], pair: [2, 0] },
  { reply: sections(section(1, '5', 'Fine.'), section(2, '1', 'Bad.')), ratings: [5, 1, null], pair: [0, 1] },
  { reply: sections(section(1, '4/5', 'Fraction.'), section(2, '3', 'Ok.'), section(3, 'N/A', 'Creative.')), ratings: [null, 3, null], pair: 'too-few-ratings' },
  { reply: sections(section(1, '1', 'Low.'), section(2, '2', 'Mid.'), section(3, '3', 'High.')), ratings: [1, 2, 3], pair: [2, 0] },
];
const patternOf = (instruction: string) => PATTERNS[INSTRUCTIONS.indexOf(instruction) % PATTERNS.length]!;

/** The judge: answers each row with its pattern's fixed reply, read from the prompt's annotation section. */
class ScriptedJudge implements ChatModel {
  readonly name = 'scripted-judge';
  readonly asked: string[] = [];

  constructor(private readonly failOn: string | null = null) {}

  async complete(request: ChatRequest): Promise<string> {
    const instruction = /## Annotation\n\n### Input\nInstruction: (.*)\n/.exec(request.user)![1]!;
    this.asked.push(instruction);
    if (instruction === this.failOn) throw new HerdError('scripted-judge: the judge went away');
    return patternOf(instruction).reply;
  }
}

const PIPELINE = (outputDir: string, generators: object[]) => ({
  source: { file: instructionsFile, column: 'instruction' },
  seed: 7,
  steps: [
    ...generators,
    { type: 'combine_columns' },
    { type: 'ultrafeedback', name: 'scripted-judge', model: 'scripted', aspect: 'overall-rating' },
    { type: 'preference_pairs', rejected: 'lowest' },
  ],
  output: { dir: outputDir },
});
const LOCAL_GENERATORS = [
  { type: 'text_generation', name: 'stories', model: STORIES, num_generations: 2, sampling: { temperature: 1, max_new_tokens: 3 } },
  { type: 'text_generation', name: 'tiny', model: TINY_LLAMA, system: 'Answer briefly.', sampling: { temperature: 0, max_new_tokens: 3 } },
];
/** The resumed and endpoint runs take the first rows only (tiny-llama's 128k-entry head is the slow part): each row depends on nothing but its instruction and the seed. */
const SUBSET = 5;

let tiny: LoadedModel;
let stories: LoadedModel;
const loader = async (modelPath: string) => (modelPath === TINY_LLAMA ? tiny : modelPath === STORIES ? stories : Promise.reject(new Error(`unexpected model ${modelPath}`)));

beforeAll(async () => {
  tiny = await loadModel(TINY_LLAMA, { backend: 'wasm' });
  stories = await loadModel(STORIES, { backend: 'wasm' });
});

async function modelsFor(config: PipelineConfig, judge: ChatModel): Promise<PipelineModels> {
  const { generators } = await openModels({ ...config, judge: null }, loader);
  return { generators, judge };
}

const firstLines = (file: string, count: number) => fs.readFileSync(file, 'utf8').split('\n').slice(0, count).map((line) => `${line}\n`).join('');
const readLines = (file: string) => fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);

describe('herd synth pipeline', () => {
  const uninterrupted = path.join(work, 'uninterrupted');
  const config = parsePipeline(PIPELINE(uninterrupted, LOCAL_GENERATORS), 'pipeline.yaml', work);
  let rows: SynthRow[];

  beforeAll(async () => {
    const result = await runPipeline(config, await modelsFor(config, new ScriptedJudge()));
    expect(result.counts).toMatchObject({ rows_read: 22, duplicates_dropped: 2, rows: 20, rows_resumed: 0, generations: 60, ratings: 44, missing_ratings: 16, pairs: 14, dropped: { tie: 2, 'too-few-ratings': 4, margin: 0 } });
    rows = readLines(result.files.rows!) as unknown as SynthRow[];
  });

  test("one row per distinct instruction, in source order, with distilabel's columns", () => {
    expect(rows.map((row) => row.instruction)).toEqual(INSTRUCTIONS);
    for (const row of rows) {
      expect(Object.keys(row)).toEqual(['instruction', 'generations', 'model_names', 'ratings', 'rationales', 'model_name', 'raw_judge_output', 'chosen', 'rejected', 'chosen_rating', 'rejected_rating', 'chosen_model', 'rejected_model', 'pair_dropped']);
      expect(row.model_names).toEqual(['stories', 'stories', 'tiny']);
      expect(row.generations).toHaveLength(3);
      expect(row.model_name).toBe('scripted-judge');
    }
  });

  test('ratings are parsed exactly; malformed ones are null with the raw reply kept', () => {
    for (const row of rows) {
      const pattern = patternOf(row.instruction);
      expect(row.ratings).toEqual(pattern.ratings);
      expect(row.raw_judge_output).toBe(pattern.reply);
    }
    expect(rows[0]!.rationales).toEqual(['Best.', 'Fair.', 'Off topic.']);
    expect(rows[2]!.rationales).toEqual(['Almost.', 'Weak.', 'Great.']);
  });

  test('pairs: highest rated chosen, lowest rejected, ties and unrated rows dropped', () => {
    for (const row of rows) {
      const { pair } = patternOf(row.instruction);
      if (typeof pair === 'string') {
        expect(row).toMatchObject({ chosen: null, rejected: null, pair_dropped: pair });
        continue;
      }
      const [chosen, rejected] = pair;
      expect(row.chosen).toEqual([{ role: 'user', content: row.instruction }, { role: 'assistant', content: row.generations[chosen] }]);
      expect(row.rejected).toEqual([{ role: 'user', content: row.instruction }, { role: 'assistant', content: row.generations[rejected] }]);
      expect([row.chosen_rating, row.rejected_rating]).toEqual([row.ratings![chosen], row.ratings![rejected]]);
      expect([row.chosen_model, row.rejected_model]).toEqual([row.model_names[chosen], row.model_names[rejected]]);
    }
  });

  test("preferences.jsonl is TRL's explicit-prompt format, one record per pair", () => {
    const records = readLines(path.join(uninterrupted, 'preferences.jsonl'));
    const paired = rows.filter((row) => row.chosen);
    expect(records).toEqual(paired.map((row) => ({ prompt: [{ role: 'user', content: row.instruction }], chosen: [row.chosen![1]], rejected: [row.rejected![1]] })));
  });

  test("the greedy generator answers what the engine generates from the chat template's prompt", () => {
    const messages = [{ role: 'system' as const, content: 'Answer briefly.' }, { role: 'user' as const, content: INSTRUCTIONS[0]! }];
    const ids = renderConversation(tiny.tokenizer, messages, { date: new Date(2024, 6, 26) }).ids;
    const expected = generate(tiny.model, tiny.tokenizer, { promptIds: ids, maxNewTokens: 3, sampling: GREEDY, stopTokenIds: tiny.generation.eosTokenIds, stopStrings: [], topLogprobs: 0 });
    expect(rows[0]!.generations[2]).toBe(expected.text);
  });

  test('each sampled answer has its own seed: answers differ across rows and between the two samples of a row', () => {
    expect(new Set(rows.map((row) => row.generations[0])).size).toBeGreaterThan(1);
    expect(rows.filter((row) => row.generations[0] !== row.generations[1]).length).toBeGreaterThan(0);
  });

  test('the run card names the models, sampling, prompt templates and counts', () => {
    const card = JSON.parse(fs.readFileSync(path.join(uninterrupted, 'run-card.json'), 'utf8'));
    expect(card.generators.map((g: { name: string; model: string }) => [g.name, g.model])).toEqual([['stories', STORIES], ['tiny', TINY_LLAMA]]);
    expect(card.generators[0].sampling).toEqual({ temperature: 1, top_p: 1, top_k: 0, min_p: 0, repetition_penalty: 1, max_new_tokens: 3 });
    expect(card.generators[1].system_prompt).toBe('Answer briefly.');
    expect(card.judge.user_prompt_template).toContain('Instruction: {instruction}\n\nTexts:\n<text 1> {text_1}\n<text 2> {text_2}\n<text 3> {text_3}\n');
    expect(card.counts.pairs).toBe(14);
    expect(card.timings.rows_this_run).toBe(20);
  });

  test('stopped after 2 rows, then failing at row 4, then resumed: the same file, each row produced once', async () => {
    const resumedDir = path.join(work, 'resumed');
    const resumed = parsePipeline(PIPELINE(resumedDir, LOCAL_GENERATORS), 'pipeline.yaml', work);
    let finished = 0;
    const stopAfterTwo = runPipeline(resumed, await modelsFor(resumed, new ScriptedJudge()), { limit: SUBSET, onRow: (done) => (finished = done), shouldStop: () => finished >= 2 });
    await expect(stopAfterTwo).rejects.toThrow(HerdInterrupted);
    await expect(stopAfterTwo).rejects.toThrow(/stopped after 2 of 5 rows/);
    const progressDir = path.join(resumedDir, '.herd-synth-progress');
    const [progressFile] = fs.readdirSync(progressDir).map((name) => path.join(progressDir, name));
    expect(fs.readFileSync(progressFile!, 'utf8').trimEnd().split('\n')).toHaveLength(2);
    // A kill in the middle of a write leaves a torn last line: that row runs again.
    fs.appendFileSync(progressFile!, '{"key":"0123456789abcdef","row":{"instr');

    const failing = new ScriptedJudge(INSTRUCTIONS[3]!);
    await expect(runPipeline(resumed, await modelsFor(resumed, failing), { limit: SUBSET })).rejects.toThrow(`${instructionsFile}: row 4: scripted-judge: the judge went away`);
    expect(failing.asked).toEqual(INSTRUCTIONS.slice(2, 4));

    const last = new ScriptedJudge();
    const result = await runPipeline(resumed, await modelsFor(resumed, last), { limit: SUBSET });
    expect(last.asked).toEqual(INSTRUCTIONS.slice(3, SUBSET));
    expect(result.counts.rows_resumed).toBe(3);
    expect(fs.readFileSync(result.files.rows!, 'utf8')).toBe(firstLines(path.join(uninterrupted, 'synth.jsonl'), SUBSET));
    expect(fs.existsSync(progressDir)).toBe(false);
  });

  test('the same pipeline against OpenAI-compatible endpoints gives the same file', async () => {
    const server = await chatServer({ tiny: new LocalChatModel('tiny', tiny, templateDate(config)), stories: new LocalChatModel('stories', stories, templateDate(config)) });
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
      const remote = LOCAL_GENERATORS.map(({ model: _path, ...step }) => ({ ...step, model: step.name, endpoint: url, max_concurrent_requests: 3 }));
      const endpointConfig = parsePipeline(PIPELINE(path.join(work, 'endpoints'), remote), 'pipeline.yaml', work);
      const result = await runPipeline(endpointConfig, await modelsFor(endpointConfig, new ScriptedJudge()), { limit: SUBSET });
      expect(fs.readFileSync(result.files.rows!, 'utf8')).toBe(firstLines(path.join(uninterrupted, 'synth.jsonl'), SUBSET));
    } finally {
      server.close();
    }
  });
});

/**
 * A stand-in for `herd serve` (not merged on this branch): /v1/chat/completions answered by herd's
 * engine with the request's sampling and seed, as an OpenAI-compatible server does.
 */
function chatServer(models: Record<string, LocalChatModel>): Promise<http.Server> {
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', async () => {
      // Greedy requests carry no top_p or seed (OpenAI's defaults: 1 and none).
      const call = JSON.parse(body) as { model: string; messages: Array<{ role: string; content: string }>; max_tokens: number; temperature: number; top_p?: number; seed?: number };
      const system = call.messages.find((m) => m.role === 'system')?.content ?? null;
      const user = call.messages.find((m) => m.role === 'user')!.content;
      const sampling = { temperature: call.temperature, topP: call.top_p ?? 1, topK: 0, minP: 0, repetitionPenalty: 1, maxNewTokens: call.max_tokens };
      const content = await models[call.model]!.complete({ system, user, sampling, seed: call.seed ?? 0 });
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }] }));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}
