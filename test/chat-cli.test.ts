import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TINY_LLAMA } from './fixtures.js';
import { HANG_GUARD_MS } from './hang-guard.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/run.js');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-chat-cli-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** A module hook that reports on stderr every import of ink or react, to prove piped chats load neither. */
const REGISTER = path.join(work, 'register.mjs');
fs.writeFileSync(path.join(work, 'hooks.mjs'), `export async function resolve(specifier, context, next) {
  if (specifier === 'ink' || specifier === 'react' || specifier.includes('/tui/')) process.stderr.write('LOADED ' + specifier + '\\n');
  return next(specifier, context);
}\n`);
fs.writeFileSync(REGISTER, `import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n`);

function chat(args: string[], input: string) {
  const result = spawnSync(process.execPath, ['--import', REGISTER, BIN, 'chat', '--model', TINY_LLAMA, '--temperature', '0', '--date', '2024-07-26', ...args], { input, encoding: 'utf8', timeout: HANG_GUARD_MS });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('piped: each line is a turn, --json prints NDJSON events, the KV cache carries over, and --save/--export write the session', () => {
  const saved = path.join(work, 'chat.json');
  const exported = path.join(work, 'chat.jsonl');
  const result = chat(['--json', '--max-new-tokens', '4', '--system', 'Be brief.', '--save', saved, '--export', exported], 'Hello\n\nHow are you?\n');
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  const events = result.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  const turnEnds = events.filter((event) => event.type === 'turn_end');
  expect(turnEnds).toHaveLength(2); // the empty line is not a turn
  expect(new Set(events.map((event) => event.type))).toEqual(new Set(['token', 'turn_end']));
  for (const end of turnEnds) expect(end).toEqual(expect.objectContaining({ finish_reason: expect.stringMatching(/^(stop|length)$/), generated_tokens: expect.any(Number), decode_tokens_per_second: expect.any(Number) }));
  // The second turn computes only what the first did not already put in the cache.
  expect(turnEnds[1]!.computed_prompt_tokens as number).toBeLessThan((turnEnds[1]!.prompt_tokens as number) / 2);

  const session = JSON.parse(fs.readFileSync(saved, 'utf8'));
  expect(session.messages.map((message: { role: string }) => message.role)).toEqual(['system', 'user', 'assistant', 'user', 'assistant']);
  expect(session.messages[3].content).toBe('How are you?');
  expect(session.settings).toEqual(expect.objectContaining({ model: TINY_LLAMA, date: '2024-07-26', max_new_tokens: 4 }));
  expect(JSON.parse(fs.readFileSync(exported, 'utf8'))).toEqual({ messages: session.messages });

  // --resume continues it: with no input, exporting again writes the same conversation.
  const again = path.join(work, 'again.jsonl');
  const resumed = chat(['--resume', saved, '--export', again], '');
  expect(resumed.stderr).toBe('');
  expect(fs.readFileSync(again, 'utf8')).toBe(fs.readFileSync(exported, 'utf8'));
});

test('piped text mode prints one reply line per turn on stdout; a model without a chat template is a one-line error', () => {
  const result = chat(['--max-new-tokens', '3'], 'Hi\n');
  expect(result.stderr).toBe('');
  expect(result.stdout.endsWith('\n')).toBe(true);
  expect(result.stdout.split('\n')).toHaveLength(2);

  const stories = spawnSync(process.execPath, [BIN, 'chat'], { input: 'Hi\n', encoding: 'utf8', timeout: HANG_GUARD_MS });
  expect(stories.status).not.toBe(0);
  expect(stories.stderr).toMatch(/^herd: .*tokenizer_config\.json has no chat_template: this model has no chat format \(use raw text with herd generate\)\n$/);
});
