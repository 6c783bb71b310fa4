import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GGUF_LLAMACPP, STORIES, TINY_LLAMA, readJson } from './fixtures.js';
import { BIN, herd } from './herd-cli.js';

// herd generate as a shell script uses it: exact prompts, token ids in, NDJSON out, exit statuses.
// These run the built CLI (npm test builds first).
const GGUF_SOURCE = path.join(GGUF_LLAMACPP, 'source');

function expectOneLineError(result: ReturnType<typeof herd>, status: number, pattern: RegExp): void {
  expect(result.status).toBe(status);
  expect(result.stdout).toBe('');
  expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(result.stderr).toMatch(pattern);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-scripting-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

interface PromptCase { name: string; text: string; prompt_ids: number[] }
const chatCase = readJson<{ cases: PromptCase[] }>(path.join(GGUF_LLAMACPP, 'reference.json')).cases.find((c) => c.name === 'chat')!;
const stories = readJson<{ prompt_ids: number[]; generated_ids: number[]; generated_text: string }>(`${STORIES}/reference.json`);
const tiny = readJson<{ cases: Array<PromptCase & { generated_ids: number[]; steps: Array<{ id: number; logprob: number }> }> }>(`${TINY_LLAMA}/reference.json`).cases.find((c) => c.name === 'capital')!;

describe('prompt text is used exactly', () => {
  // The Llama 3.1 template rendered up to the assistant header: it ends in "\n\n" (id 271 in the
  // fixture's ids), which a trimmed prompt loses.
  const rawIds = (args: string[], input?: string) => {
    const result = herd(['generate', '-m', GGUF_SOURCE, '--raw', '--json', '--max-new-tokens', '1', ...args], input);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    return JSON.parse(result.stdout) as { prompt: string; prompt_ids: number[] };
  };

  test('a prompt ending in "\\n\\n" from --prompt-file, stdin with echo\'s newline, or the argument gives the reference ids', () => {
    expect(chatCase.text.endsWith('\n\n')).toBe(true);
    const file = path.join(work, 'chat-prompt.txt');
    fs.writeFileSync(file, chatCase.text);
    for (const report of [rawIds(['--prompt-file', file]), rawIds([], `${chatCase.text}\n`), rawIds([chatCase.text])]) {
      expect(report.prompt).toBe(chatCase.text);
      // The text starts with <|begin_of_text|>, so no second BOS is added (the fixture's add_bos is false).
      expect(report.prompt_ids).toEqual(chatCase.prompt_ids);
    }
  });

  test('stdin loses exactly one final newline, never more', () => {
    const report = rawIds([], chatCase.text);
    expect(report.prompt).toBe(chatCase.text.slice(0, -1));
    expect(report.prompt_ids.slice(0, -1)).toEqual(chatCase.prompt_ids.slice(0, -1));
    expect(report.prompt_ids).not.toEqual(chatCase.prompt_ids);
  });

  test('--prompt-file keeps every byte, the final newline included', () => {
    const file = path.join(work, 'with-newline.txt');
    fs.writeFileSync(file, `${chatCase.text}\n`);
    expect(rawIds(['--prompt-file', file]).prompt).toBe(`${chatCase.text}\n`);
  });

  test('an empty raw prompt generates from BOS alone: llama2.c\'s greedy story (stories260K)', () => {
    for (const result of [herd(['generate', '--raw', '--json', '-n', '40', '']), herd(['generate', '--raw', '--json', '-n', '40'], '\n')]) {
      expect(result.status).toBe(0);
      const report = JSON.parse(result.stdout);
      expect(report.prompt).toBe('');
      expect(report.prompt_ids).toEqual(stories.prompt_ids);
      expect(report.generated_ids).toEqual(stories.generated_ids);
      expect(report.text).toBe(stories.generated_text);
    }
  });

  test('an empty prompt without --raw is refused with one line', () => {
    expectOneLineError(herd(['generate', '']), 1, /^herd: the prompt is empty \(pass --raw/);
    expectOneLineError(herd(['generate'], '\n'), 1, /^herd: the prompt is empty/);
  });

  test('a prompt argument and --prompt-file together are a usage error (exit 2)', () => {
    const file = path.join(work, 'p.txt');
    fs.writeFileSync(file, 'Once');
    expectOneLineError(herd(['generate', '--prompt-file', file, 'Once']), 2, /^herd: give the prompt as an argument or with --prompt-file, not both\n$/);
  });

  test('a missing --prompt-file is one line, exit 1', () => {
    expectOneLineError(herd(['generate', '--prompt-file', path.join(work, 'absent.txt')]), 1, /absent\.txt: cannot be read \(ENOENT\)/);
  });
});

describe('--prompt-ids', () => {
  test('feeds the ids exactly and reproduces the reference\'s greedy ids and logprobs (tiny-llama-3.1)', () => {
    const result = herd(['generate', '-m', TINY_LLAMA, '--prompt-ids', '-', '--json', '--temperature', '0', '-n', '16', '--logprobs', '1'], JSON.stringify(tiny.prompt_ids));
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.prompt).toBeNull();
    expect(report.prompt_ids).toEqual(tiny.prompt_ids);
    expect(report.generated_ids).toEqual(tiny.generated_ids);
    report.logprobs.forEach((token: { id: number; logprob: number }, i: number) => {
      expect(token.id).toBe(tiny.steps[i]!.id);
      // BF16 weights in float32 against the float64 oracle: the README's tolerance is about 1e-4 at most.
      expect(Math.abs(token.logprob - tiny.steps[i]!.logprob)).toBeLessThan(1e-3);
    });
  });

  test('no BOS is added: ids without it are fed as they are', () => {
    const file = path.join(work, 'ids.json');
    fs.writeFileSync(file, JSON.stringify(stories.generated_ids.slice(0, 4)));
    const report = JSON.parse(herd(['generate', '--prompt-ids', file, '--json', '-n', '1']).stdout);
    expect(report.prompt_ids).toEqual(stories.generated_ids.slice(0, 4));
  });

  test('an id outside the vocabulary, a non-integer or a non-array is one line, exit 1', () => {
    // stories260K has 512 ids (0..511).
    expectOneLineError(herd(['generate', '--prompt-ids', '-'], '[1, 512]'), 1, /^herd: --prompt-ids: item 1 is 512, outside the model's vocabulary \(ids 0 to 511\)\n$/);
    expectOneLineError(herd(['generate', '--prompt-ids', '-'], '[-1]'), 1, /item 0 is -1, outside the model's vocabulary/);
    expectOneLineError(herd(['generate', '--prompt-ids', '-'], '[1, 2.5]'), 1, /item 1 is 2\.5, not an integer token id/);
    expectOneLineError(herd(['generate', '--prompt-ids', '-'], '{"ids": [1]}'), 1, /expected a JSON array of token ids/);
    expectOneLineError(herd(['generate', '--prompt-ids', '-'], '[]'), 1, /the array is empty/);
  });

  test('with a prompt argument, --prompt-file or --system it is a usage error (exit 2), as --json with --stream-json', () => {
    expectOneLineError(herd(['generate', '--prompt-ids', '-', 'Once'], '[1]'), 2, /^herd: give the prompt as an argument or with --prompt-ids, not both\n$/);
    expectOneLineError(herd(['generate', '--prompt-ids', '-', '--prompt-file', 'x.txt'], '[1]'), 2, /--prompt-file/);
    expectOneLineError(herd(['generate', '--prompt-ids', '-', '--system', 'Be brief.'], '[1]'), 2, /--system/);
    // With --json the failure is also the herd.error/1 object on stdout (docs/scripting.md).
    const both = herd(['generate', '--json', '--stream-json', 'Once']);
    expect(both.status).toBe(2);
    expect(both.stderr).toBe('herd: --json and --stream-json print different things: choose one\n');
    expect(JSON.parse(both.stdout)).toEqual({ schema: 'herd.error/1', error: { message: '--json and --stream-json print different things: choose one', type: 'usage' } });
  });
});

describe('--stream-json', () => {
  test('one object per token whose texts join to the text, then the finish object; no colour', () => {
    const result = herd(['generate', '--raw', '--stream-json', '--logprobs', '1', '-n', '12', '']);
    expect(result.status).toBe(0);
    expect(result.stdout).not.toContain('\u001b[');
    const lines = result.stdout.trimEnd().split('\n').map((line) => JSON.parse(line));
    const tokens = lines.slice(0, -1);
    expect(tokens.map((token) => token.id)).toEqual(stories.generated_ids.slice(0, 12));
    expect(tokens.map((token) => token.text).join('')).toBe(stories.generated_text.slice(0, 'Once upon a time, there was a little girl'.length));
    tokens.forEach((token) => expect(token.logprob).toBeLessThan(0));
    expect(lines.at(-1)).toEqual(expect.objectContaining({ finish_reason: 'length', usage: { prompt_tokens: 1, generated_tokens: 12 }, timings: expect.any(Object) }));
  });
});

describe('Ctrl-C', () => {
  /** Starts herd, sends SIGINT once `ready` matches what it printed, and collects the rest. */
  function interrupted(args: string[], ready: (stdout: string, stderr: string) => boolean): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    const check = () => {
      if (!sent && ready(stdout, stderr)) {
        sent = true;
        child.kill('SIGINT');
      }
    };
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); check(); });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); check(); });
    return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
  }

  // tiny-llama's context is 131072, so 100000 new tokens would run for hours: only SIGINT ends it.
  const endless = ['generate', '-m', TINY_LLAMA, '--raw', '--temperature', '0', '-n', '100000', tiny.text];

  test('during generate --json: a valid JSON object with the partial output, finish_reason "interrupted", exit 130', async () => {
    // --verbose notes the first token on stderr: generation has started.
    const result = await interrupted([...endless, '--json', '--verbose'], (_, stderr) => stderr.includes('first token after'));
    expect(result.status).toBe(130);
    const report = JSON.parse(result.stdout);
    expect(report.finish_reason).toBe('interrupted');
    expect(report.generated_ids.length).toBeGreaterThan(0);
    expect(report.generated_ids.length).toBeLessThan(100000);
    const compared = Math.min(report.generated_ids.length, tiny.generated_ids.length);
    expect(report.generated_ids.slice(0, compared)).toEqual(tiny.generated_ids.slice(0, compared));
    expect(report.text.length).toBeGreaterThan(0);
  });

  test('during generate --stream-json: the token lines so far, then a finish object, exit 130', async () => {
    const result = await interrupted([...endless, '--stream-json'], (stdout) => stdout.includes('\n'));
    expect(result.status).toBe(130);
    const lines = result.stdout.trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(lines.at(-1).finish_reason).toBe('interrupted');
    expect(lines.length - 1).toBe(lines.at(-1).usage.generated_tokens);
    expect(lines[0].id).toBe(tiny.generated_ids[0]);
  });
});
