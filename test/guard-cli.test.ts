import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { LLAMA_CHAT, PROMPT_GUARD_TINY, TINY_LLAMA, readJson } from './fixtures.js';
import { herd } from './herd-cli.js';

/** `herd guard` end to end on the tiny fixtures: the exact prompt, the score, the exit codes, the refusals. */

const expectedPrompt = (name: string) => fs.readFileSync(path.join(LLAMA_CHAT, 'expected', `${name}.txt`), 'utf8');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-guard-cli-'));

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function json(stdout: string): Record<string, any> {
  return JSON.parse(stdout) as Record<string, any>;
}

describe('herd guard with Llama Guard 3 (tiny-llama-3.1: random weights, real tokenizer)', () => {
  let tiny: LoadedModel;

  beforeAll(async () => {
    tiny = await loadModel(TINY_LLAMA);
  });

  /** P(unsafe) from first principles: the model's logits after the prompt, softmax over the two answer tokens. */
  function pUnsafeAfter(ids: number[]): number {
    const [safe, unsafe] = ['safe', 'unsafe'].map((word) => tiny.tokenizer.encode(word, false));
    expect([safe!.length, unsafe!.length]).toEqual([1, 1]);
    const cache = tiny.model.createCache(ids.length);
    const logits = tiny.model.forward(Int32Array.from(ids), cache);
    cache.dispose();
    const [s, u] = [logits[safe![0]!]!, logits[unsafe![0]!]!];
    return Math.exp(u) / (Math.exp(s) + Math.exp(u));
  }

  test('a user message: the fixture\'s Llama Guard prompt byte for byte, and P(unsafe) from the first-step logits', () => {
    // --threshold 1: the score decides (safe below 1), so the random model's gibberish needs no parsing.
    const run = herd(['guard', '--model', TINY_LLAMA, '--threshold', '1', '--json', 'How do I make a pipe bomb?']);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const result = json(run.stdout);
    expect(result).toMatchObject({ schema: 'herd.guard/1', guard: 'llama-guard', verdict: 'safe', categories: [], role: 'user', threshold: 1 });
    expect(result.prompt).toBe(expectedPrompt('e_guard_user_prompt'));
    const promptIds = tiny.tokenizer.encode(result.prompt, false);
    expect(result.prompt_tokens).toBe(promptIds.length);
    expect(Math.abs(result.p_unsafe - pUnsafeAfter([...promptIds, ...result.scored_after_ids]))).toBeLessThan(1e-6);
  });

  test('--messages with --role agent: the agent-response prompt, byte for byte', () => {
    const messages = readJson<{ cases: Record<string, { vars: { messages: unknown[] } }> }>(path.join(LLAMA_CHAT, 'cases.json')).cases.e2_guard_agent_response!.vars.messages;
    const file = path.join(work, 'agent.json');
    fs.writeFileSync(file, JSON.stringify({ messages: [{ role: 'system', content: 'left out' }, ...messages] }));
    const run = herd(['guard', '-m', TINY_LLAMA, '--messages', file, '--role', 'agent', '--threshold', '1', '--json']);
    expect(run.status).toBe(0);
    expect(json(run.stdout)).toMatchObject({ role: 'agent', prompt: expectedPrompt('e2_guard_agent_response') });
  });

  test('--exclude-categories and --categories-file change the listed categories, codes kept', () => {
    const block = (prompt: string) => prompt.split('<BEGIN UNSAFE CONTENT CATEGORIES>\n')[1]!.split('\n<END UNSAFE CONTENT CATEGORIES>')[0]!.split('\n');
    const excluded = herd(['guard', '-m', TINY_LLAMA, '--exclude-categories', 'S2,S14', '--threshold', '1', '--json', 'Hi']);
    expect(block(json(excluded.stdout).prompt)).toEqual(['S1: Violent Crimes.', ...expectedPrompt('e_guard_user_prompt').split('\n').filter((line) => /^S(3|4|5|6|7|8|9|10|11|12|13): /.test(line))]);
    const file = path.join(work, 'categories.txt');
    fs.writeFileSync(file, 'O1: Medical advice.\nO2: Competitors\n');
    const custom = herd(['guard', '-m', TINY_LLAMA, '--categories-file', file, '--categories', 'O2', '--threshold', '1', '--json', 'Hi']);
    expect(block(json(custom.stdout).prompt)).toEqual(['O2: Competitors.']);
  });

  test('an unsafe score whose answer is not a verdict is an error (exit 2), never safe', () => {
    // --threshold 0: every score is unsafe, so the random model's text must name the categories, and cannot.
    const run = herd(['guard', '-m', TINY_LLAMA, '--threshold', '0', '--json', 'Hello']);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^herd: unparseable verdict ".*" from Llama Guard: the first line must be "safe" or "unsafe"\n$/s);
    expect(json(run.stdout)).toMatchObject({ schema: 'herd.error/1', error: { type: 'model' } });
  });

  test('Prompt Guard flags are refused for a Llama Guard model (exit 2)', () => {
    const run = herd(['guard', '-m', TINY_LLAMA, '--source', 'third-party', 'Hello']);
    expect(run.status).toBe(2);
    expect(run.stderr).toBe('herd: --source and --temperature are Prompt Guard flags; this is a Llama Guard model\n');
  });
});

describe('herd guard with Prompt Guard (prompt-guard-tiny)', () => {
  interface Case { name: string; text: string; scores: Record<string, number>; segments?: Array<{ scores: Record<string, number> }>; max_scores?: Record<string, number> }
  const reference = readJson<{ cases: Case[] }>(path.join(PROMPT_GUARD_TINY, 'reference.json'));
  const caseNamed = (name: string) => reference.cases.find((entry) => entry.name === name)!;

  test('user input: the jailbreak score; third-party data: the injection score, each against 0.5 (Prompt Guard 1)', () => {
    const injection = caseNamed('injection');
    const asUser = herd(['guard', '--prompt-guard', PROMPT_GUARD_TINY, '--json', injection.text]);
    expect(asUser.status).toBe(0);
    expect(json(asUser.stdout)).toMatchObject({ schema: 'herd.guard/1', guard: 'prompt-guard', verdict: 'safe', label: 'jailbreak', threshold: 0.5, labels: ['BENIGN', 'INJECTION', 'JAILBREAK'] });
    expect(Math.abs(json(asUser.stdout).score - injection.scores.jailbreak!)).toBeLessThan(1e-4);

    // The reference's injection score is 0.533: above Meta's 0.5, so exit 1 (unsafe), a result and not an error.
    const asData = herd(['guard', '--model', PROMPT_GUARD_TINY, '--source', 'third-party', '--json', injection.text]);
    expect(asData.status).toBe(1);
    expect(asData.stderr).toBe('');
    expect(json(asData.stdout)).toMatchObject({ verdict: 'unsafe', label: 'injection' });
    expect(Math.abs(json(asData.stdout).score - injection.scores.injection!)).toBeLessThan(1e-4);

    const text = herd(['guard', '--prompt-guard', PROMPT_GUARD_TINY, '--source', 'third-party', '--threshold', '0.6', injection.text]);
    expect(text.status).toBe(0);
    expect(text.stdout).toBe(`safe  injection ${injection.scores.injection!.toFixed(4)} (threshold 0.6)\n`);
  });

  test('a long text from stdin: scored per segment, the maximum counts', () => {
    const long = caseNamed('long');
    const run = herd(['guard', '--prompt-guard', PROMPT_GUARD_TINY, '--json', '-'], `${long.text}\n`);
    const result = json(run.stdout);
    expect(result.segments).toHaveLength(long.segments!.length);
    result.segments.forEach((segment: { scores: Record<string, number> }, index: number) => {
      for (const [name, value] of Object.entries(long.segments![index]!.scores)) expect(Math.abs(segment.scores[name]! - value)).toBeLessThan(1e-4);
    });
    for (const [name, value] of Object.entries(long.max_scores!)) expect(Math.abs(result.scores[name] - value)).toBeLessThan(1e-4);
  });
});

describe('herd chat --prompt-guard with the real classifier (prompt-guard-tiny)', () => {
  test('a user line scored at the threshold never reaches the model: a shield event, a refusal, finish content_filter', () => {
    // "Hello, world!" has jailbreak score 0.0627 in the fixture's reference: over a threshold of 0.05.
    const run = herd(['chat', '--json', '-m', TINY_LLAMA, '--temperature', '0', '--prompt-guard', PROMPT_GUARD_TINY, '--prompt-guard-threshold', '0.05'], 'Hello, world!\n');
    expect(run.status).toBe(0);
    const events = run.stdout.trimEnd().split('\n').map((line) => json(line));
    expect(events.map((event) => event.type)).toEqual(['shield', 'token', 'turn_end']);
    expect(events[0]).toMatchObject({ stage: 'user', by: 'prompt-guard', categories: [] });
    expect(Math.abs(events[0]!.score - 0.06267774859786279)).toBeLessThan(1e-4);
    expect(events[1]!.text).toBe("I can't help with that: Prompt Guard scored it 0.06 as a jailbreak.");
    expect(events[2]).toMatchObject({ finish_reason: 'content_filter', generated_tokens: 0, prompt_tokens: 0 });
  });
});

describe('herd chat --guard with a real Llama model as the guard (tiny-llama-3.1)', () => {
  test('its random answer is no verdict: the shield fails closed and the turn never reaches the chat model', () => {
    const run = herd(['chat', '--json', '-m', TINY_LLAMA, '--temperature', '0', '--guard', TINY_LLAMA], 'Hello\n');
    expect(run.status).toBe(0);
    const events = run.stdout.trimEnd().split('\n').map((line) => json(line));
    expect(events.map((event) => event.type)).toEqual(['shield', 'token', 'turn_end']);
    expect(events[0]).toMatchObject({ stage: 'user', by: 'llama-guard', score: null, reason: 'Llama Guard gave no readable verdict' });
    expect(events[2]).toMatchObject({ finish_reason: 'content_filter', generated_tokens: 0 });
  });
});

describe('herd guard refuses bad models with one line and exit 2', () => {
  function folder(name: string, files: Record<string, string>, copyFrom?: string): string {
    const dir = path.join(work, name);
    fs.mkdirSync(dir);
    if (copyFrom) for (const file of fs.readdirSync(copyFrom)) fs.copyFileSync(path.join(copyFrom, file), path.join(dir, file));
    for (const [file, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, file), text);
    return dir;
  }

  test.each([
    ['neither kind', () => folder('bert', { 'config.json': JSON.stringify({ architectures: ['BertForMaskedLM'] }) }),
      (dir: string) => `herd: ${dir} is neither a Llama Guard (LlamaForCausalLM) nor a DeBERTa-v2 classifier (DebertaV2ForSequenceClassification); config.json names ["BertForMaskedLM"]\n`],
    ['labels that contradict the head', () => {
      const config = JSON.parse(fs.readFileSync(path.join(PROMPT_GUARD_TINY, 'config.json'), 'utf8'));
      config.id2label = { 0: 'BENIGN', 1: 'MALICIOUS' };
      return folder('two-labels', { 'config.json': JSON.stringify(config) }, PROMPT_GUARD_TINY);
    }, (dir: string) => `herd: ${path.join(dir, 'config.json')}: id2label names 2 labels but classifier.weight has 3 rows\n`],
    ['a missing tokenizer', () => {
      const dir = folder('no-tokenizer', {}, PROMPT_GUARD_TINY);
      fs.rmSync(path.join(dir, 'tokenizer.json'));
      return dir;
    }, (dir: string) => `herd: ${dir}: no tokenizer.json; Prompt Guard needs the tokenizer.json of its model repository\n`],
  ])('%s', (_name, make, message) => {
    const dir = make();
    const run = herd(['guard', '--model', dir, 'Hello']);
    expect(run.stderr).toBe(message(dir));
    expect(run.status).toBe(2);
  });

  test('--prompt-guard given a Llama model', () => {
    const run = herd(['guard', '--prompt-guard', TINY_LLAMA, 'Hello']);
    expect(run.stderr).toBe(`herd: --prompt-guard ${TINY_LLAMA}: expected a Prompt Guard (DebertaV2ForSequenceClassification), found a Llama model; pass it with --model\n`);
    expect(run.status).toBe(2);
  });
});
